"""Clusters strung along straight lines: scratches and calcified vessels, not findings.

An emulsion scratch is a thin straight line, and a calcified vessel shows two parallel
tracks (its walls, "tram lines") about a vessel's width apart, straight or curving with
the vessel. The detector fires along
both, and single linkage strings the peaks into long clusters. Readers dismiss both.
Malignant calcifications cast in a duct (BI-RADS linear or segmental) lie along a line
too, but they are scattered across it by a few tenths of a millimetre. So a cluster is
set aside only when nearly all of its points lie on one line, or on two parallel lines,
within 0.15 mm: as straight as the peak grid allows.

The rule (:func:`line_artifact`): a cluster of at least ``LINE_MIN_POINTS`` points spanning
at least ``LINE_MIN_LENGTH_MM`` is a **scratch** when at least ``SCRATCH_SHARE`` of them
lie in one straight band ``LINE_BAND_MM`` wide; one of at least ``VESSEL_MIN_POINTS``
spanning at least ``VESSEL_MIN_LENGTH_MM`` is a **vessel** when at least ``VESSEL_SHARE``
of them lie in two parallel bands that wide, 0.7–2.5 mm apart, each holding at least 3,
or when at least ``ARC_SHARE`` of at least ``ARC_MIN_POINTS`` lie in two such concentric
arcs (:func:`_arc_tracks`: a vessel curving with a radius of at least
``VESSEL_MIN_RADIUS_MM``). Two bands catch scattered points more easily than one,
hence the larger minimum. Scratches are judged straight only: a malignant cast along a
duct may curve, a scratch from film transport does not.
:func:`vessel_tracks` finds a vessel's tracks inside a cluster that holds more (peaks
beside them, a finding the vessel passes), so that the cascade can split them off. The
thresholds were chosen on the film bench's clusters and on clusters the phantom draws
(docs/results.md, "Line artifacts"); the tests check them on fresh draws.
"""

from __future__ import annotations

import functools
import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import NamedTuple

import numpy as np

#: Width of the band a straight line's points fall in (mm): the 0.2 mm peak grid's
#: spread across a line at any angle.
LINE_BAND_MM = 0.3
#: Fewest points of a cluster judged a scratch (fewer lie on a line by chance).
LINE_MIN_POINTS = 8
#: Shortest extent of such a cluster (mm).
LINE_MIN_LENGTH_MM = 5.0
#: Share of points in one band that makes a scratch.
SCRATCH_SHARE = 0.85
#: Fewest points and shortest extent (mm) of a cluster judged a calcified vessel.
VESSEL_MIN_POINTS = 15
VESSEL_MIN_LENGTH_MM = 10.0
#: Share of points in two parallel bands that makes a calcified vessel.
VESSEL_SHARE = 0.85
#: Distances between a vessel's two tracks tried (mm).
VESSEL_GAPS_MM = np.arange(0.7, 2.5001, 0.05)
#: How far beside a vessel's tracks a point still belongs to the vessel (mm).
TRACK_MARGIN_MM = 1.0
#: Share of the points along and beside a vessel's tracks that lie on them.
TRACK_SHARE = 0.82
#: Share of the points on two concentric arcs that makes a curving vessel (of a cluster,
#: or of the strip along them), and the fewest points on them: stricter than for straight
#: tracks, since more clusters lie on some pair of arcs than on a pair of lines.
ARC_SHARE = 0.9
ARC_MIN_POINTS = 20
#: Tightest curve of a vessel's tracks followed (mm): tighter concentric arcs would fit
#: ring-shaped benign calcifications.
VESSEL_MIN_RADIUS_MM = 10.0
#: Radius around a seed point where a vessel's tracks are first fitted straight (mm), and
#: the radii the fit then grows through.
ARC_SEED_MM = 4.0
ARC_STEPS_MM = (6.0, 9.0, 13.0, 19.0, 28.0, np.inf, np.inf)


def _remembered(fn: Callable) -> Callable:
    """Remember ``fn``'s latest results, keyed by the contents of its array argument.

    The cascade's rules judge each cluster in turn (the vessel split, the walls, the
    line rule), and each places the same tracks over the same points. Arrays in a result
    are made read-only, since callers share them; ``cache_clear()`` forgets every result.
    """
    cache: OrderedDict = OrderedDict()
    lock = threading.Lock()

    @functools.wraps(fn)
    def remembered(p: np.ndarray, *args):
        key = (p.shape, p.dtype.str, p.tobytes(), args)
        with lock:
            if key in cache:
                cache.move_to_end(key)
                return cache[key]
        result = fn(p, *args)
        for value in result if isinstance(result, tuple) else ():
            if isinstance(value, np.ndarray):
                value.setflags(write=False)
        with lock:
            cache[key] = result
            while len(cache) > 64:
                cache.popitem(last=False)
        return result

    def cache_clear() -> None:
        with lock:
            cache.clear()

    remembered.cache_clear = cache_clear
    return remembered


class _Tracks(NamedTuple):
    """Two tracks placed over a cluster's points: which lie on them, and where each lies."""

    on: np.ndarray  #: bool per point: in either band
    across: np.ndarray  #: per point, the position across the tracks (mm)
    along: np.ndarray  #: per point, the position along them (mm)
    start: float  #: where the first band starts across them (mm)
    gap: float  #: from the first band's start to the second's (mm)
    #: (along, across) → the centred positions there (mm): the tracks' geometry
    place: Callable[[np.ndarray, np.ndarray], np.ndarray]


def _straight(d: np.ndarray, n: np.ndarray) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    """Return ``place`` for lines along ``d`` with ``n`` across them (unit vectors)."""
    return lambda along, across: np.multiply.outer(along, d) + np.multiply.outer(across, n)


def _curved(
    centre: np.ndarray, base: float, radius: float
) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    """Return ``place`` for arcs about ``centre``, ``along`` from angle ``base`` at ``radius``."""

    def place(along: np.ndarray, across: np.ndarray) -> np.ndarray:
        angle = np.asarray(along) / radius + base
        across = np.asarray(across)
        return centre + np.stack([across * np.sin(angle), across * np.cos(angle)], axis=-1)

    return place


def _bands(values: np.ndarray) -> tuple[tuple[int, float], tuple[int, float, float]]:
    """Return the best placements of one band and of two parallel bands over ``values``.

    ``values`` are positions across the bands (mm). One band is (count, start); two are
    (count, start, gap), each band holding at least 3 (count 0 where none does). A band
    starts at a value: the densest placement of a band always does.
    """
    across = np.sort(values)
    one = np.searchsorted(across, across + LINE_BAND_MM, "right") - np.arange(len(across))
    start = across[:, None] + VESSEL_GAPS_MM[None, :]
    two = np.searchsorted(across, start + LINE_BAND_MM, "right") - np.searchsorted(
        across, start, "left"
    )
    both = np.where((two >= 3) & (one[:, None] >= 3), one[:, None] + two, 0)
    i = int(np.argmax(one))
    k, g = np.unravel_index(int(np.argmax(both)), both.shape)
    return (int(one[i]), float(across[i])), (
        int(both[k, g]),
        float(across[k]),
        float(VESSEL_GAPS_MM[g]),
    )


def _in_bands(across: np.ndarray, start: float, gap: float) -> tuple[np.ndarray, np.ndarray]:
    """Return which ``across`` positions lie in the first band and which in the second."""
    eps = 1e-9  # the bands' edges as the search counted them
    first = (across >= start - eps) & (across <= start + LINE_BAND_MM + eps)
    second = (across >= start + gap - eps) & (across <= start + gap + LINE_BAND_MM + eps)
    return first, second


@_remembered
def _placements(p: np.ndarray) -> tuple[tuple, tuple]:
    """Return the best placements of one band and of two parallel bands over centred ``p``.

    Each is (count, angle, start, gap): the points in the band(s), the direction (rad),
    where the first band starts across it (mm) and the gap to the second (0 for one).
    Directions are searched every 1° and refined every 0.1° around the best ones; a band
    starts at a point (the densest placement of a band always does).
    """

    def best(angles: np.ndarray) -> tuple[tuple, tuple]:
        one_best, two_best = (0, 0.0, 0.0, 0.0), (0, 0.0, 0.0, 0.0)
        for angle in angles:
            (n1, s1), (n2, s2, gap) = _bands(p @ np.array([np.cos(angle), -np.sin(angle)]))
            if n1 > one_best[0]:
                one_best = (n1, float(angle), s1, 0.0)
            if n2 > two_best[0]:
                two_best = (n2, float(angle), s2, gap)
        return one_best, two_best

    coarse = np.deg2rad(np.arange(0.0, 180.0, 1.0))
    one, two = best(coarse)
    refined = [one, two]
    for angle in {one[1], two[1]}:
        f_one, f_two = best(angle + np.deg2rad(np.arange(-1.0, 1.0001, 0.1)))
        refined = [
            max(refined[0], f_one, key=lambda t: t[0]),
            max(refined[1], f_two, key=lambda t: t[0]),
        ]
    return refined[0], refined[1]


def line_shares(points_mm: np.ndarray) -> tuple[float, float]:
    """Return the largest shares of points in one band and in two parallel bands.

    Parameters
    ----------
    points_mm : numpy.ndarray
        (N, 2) point positions in mm.

    Returns
    -------
    one, two : float
        Shares in ``LINE_BAND_MM`` of one line and of two lines ``VESSEL_GAPS_MM`` apart,
        each with at least 3 points (0 where none is); see :func:`_placements`.
    """
    p = np.asarray(points_mm, dtype=np.float64).reshape(-1, 2)
    if len(p) == 0:
        return 0.0, 0.0
    one, two = _placements(p - p.mean(axis=0))
    return one[0] / len(p), two[0] / len(p)


def _straight_tracks(p: np.ndarray) -> _Tracks:
    """Return the two parallel straight bands holding the most of centred ``p``."""
    _, (count, angle, start, gap) = _placements(p)
    across = p @ np.array([np.cos(angle), -np.sin(angle)])
    first, second = _in_bands(across, start, gap)
    if count == 0:  # no two bands hold 3 points each
        first, second = np.zeros(len(p), dtype=bool), np.zeros(len(p), dtype=bool)
    d, n = np.array([np.sin(angle), np.cos(angle)]), np.array([np.cos(angle), -np.sin(angle)])
    return _Tracks(first | second, across, p @ d, start, gap, _straight(d, n))


def _fits(p: np.ndarray, first: np.ndarray, second: np.ndarray) -> list[tuple]:
    """Return (across, along, place) of ``p`` for two parallel lines and two concentric arcs.

    Both are fitted to the points of the ``first`` and ``second`` track. The lines by
    orthogonal regression about each track's mean. The arcs start from two parabolas
    sharing all but their offset, fitted across the lines (least squares), whose curve
    at the tracks' middle gives a centre; the centre and the two radii are then fitted to
    the points' distances (Gauss–Newton: the algebraic circle fit would bend nearly
    straight tracks too much). Arcs are kept where they curve no tighter than
    ``VESSEL_MIN_RADIUS_MM``.
    """
    both = first | second
    tracks = np.concatenate([p[first] - p[first].mean(axis=0), p[second] - p[second].mean(axis=0)])
    d = np.linalg.svd(tracks, full_matrices=False)[2][0]
    n = np.array([d[1], -d[0]])
    along, across = p @ d, p @ n
    fits = [(across, along, _straight(d, n))]
    u, w = along[both], across[both]
    design = np.column_stack([first[both], second[both], u, u**2]).astype(np.float64)
    a1, a2, b, c = np.linalg.lstsq(design, w, rcond=None)[0]
    u0 = float(u.mean())
    slope = b + 2 * c * u0
    bend = 2 * c / (1 + slope**2) ** 1.5
    if abs(bend) * 1e4 < 1:  # straight to 10 m: the lines are the fit
        return fits
    norm = np.hypot(1.0, slope)
    middle = u0 * d + ((a1 + a2) / 2 + b * u0 + c * u0**2) * n
    centre = middle + (n - slope * d) / norm / bend
    side = second[both].astype(np.float64)
    q = p[both]
    radii = np.array([0.0, 0.0])
    for _ in range(6):
        offset = q - centre
        dist = np.hypot(offset[:, 0], offset[:, 1])
        radii = np.array([dist[side == 0].mean(), dist[side == 1].mean()])
        residual = dist - radii[side.astype(int)]
        jacobian = np.column_stack([-offset / dist[:, None], -(1 - side), -side])
        step = np.linalg.lstsq(jacobian, -residual, rcond=None)[0]
        centre = centre + step[:2]
        if np.hypot(*step[:2]) < 1e-4:
            break
    offset = p - centre
    radius = np.hypot(offset[:, 0], offset[:, 1])
    if not VESSEL_MIN_RADIUS_MM <= radii.mean() < 1e4:
        return fits
    mean = (offset[both] / radius[both, None]).mean(axis=0)
    base = float(np.arctan2(mean[0], mean[1]))
    turn = np.arctan2(offset[:, 0], offset[:, 1]) - base
    turn = (turn + np.pi) % (2 * np.pi) - np.pi
    fits.append((radius, turn * radii.mean(), _curved(centre, base, radii.mean())))
    return fits


@_remembered
def _grown_tracks(p: np.ndarray, seed: int) -> _Tracks | None:
    """Return a vessel's tracks grown from point ``seed`` of centred ``p``, or None.

    The tracks are placed straight over the points within ``ARC_SEED_MM`` of the seed
    (:func:`_placements`), then fitted again (:func:`_fits`, lines or arcs, whichever
    holds more) and placed again (:func:`_bands`) over the points within each of
    ``ARC_STEPS_MM`` in turn, so that they follow a vessel as it curves.
    """
    distance = np.hypot(*(p - p[seed]).T)
    near = distance <= ARC_SEED_MM
    if near.sum() < LINE_MIN_POINTS:
        return None
    local = _straight_tracks(p[near] - p[near].mean(axis=0))
    if not local.on.any():
        return None
    first, second = np.zeros(len(p), dtype=bool), np.zeros(len(p), dtype=bool)
    first[near], second[near] = _in_bands(local.across, local.start, local.gap)
    tracks = None
    for reach in ARC_STEPS_MM:
        if first.sum() < 3 or second.sum() < 3:
            return None
        near = distance <= reach
        best = None
        for across, along, place in _fits(p, first, second):
            count, start, gap = _bands(across[near])[1]
            if count and (best is None or count > best[0]):
                best = (count, across, along, start, gap, place)
        if best is None:
            return None
        _, across, along, start, gap, place = best
        first, second = _in_bands(across, start, gap)
        first &= near
        second &= near
        tracks = _Tracks(first | second, across, along, start, gap, place)
    return tracks


def _arc_tracks(p: np.ndarray, extra_seeds: tuple[int, ...] = ()) -> _Tracks | None:
    """Return the tracks grown (:func:`_grown_tracks`) holding the most of centred ``p``.

    Seeds are the points at the middle, the quartiles and the first and last tenths of the
    cluster's long axis, and ``extra_seeds``; the search stops at a seed whose tracks hold
    0.95 of the points.
    """
    axis = np.linalg.svd(p, full_matrices=False)[2][0]
    along = p @ axis
    quantiles = np.quantile(along, (0.5, 0.25, 0.75, 0.1, 0.9))
    seeds = [int(np.argmin(np.abs(along - q))) for q in quantiles]
    best = None
    for seed in dict.fromkeys([*seeds, *extra_seeds]):
        tracks = _grown_tracks(p, seed)
        if tracks is not None and (best is None or tracks.on.sum() > best.on.sum()):
            best = tracks
            if best.on.mean() >= 0.95:
                break
    return best


def line_artifact(points_mm: np.ndarray) -> str | None:
    """Return ``"scratch"`` or ``"vessel"`` for a cluster strung along lines, else None."""
    p = np.asarray(points_mm, dtype=np.float64).reshape(-1, 2)
    if len(p) < LINE_MIN_POINTS:
        return None
    centred = p - p.mean(axis=0)
    direction = np.linalg.svd(centred, full_matrices=False)[2][0]
    length = float(np.ptp(centred @ direction))
    if length < LINE_MIN_LENGTH_MM:
        return None
    one, two = line_shares(p)
    if one >= SCRATCH_SHARE:
        return "scratch"
    if len(p) < VESSEL_MIN_POINTS or length < VESSEL_MIN_LENGTH_MM:
        return None
    if two >= VESSEL_SHARE:
        return "vessel"
    arcs = _arc_tracks(centred) if len(p) >= ARC_MIN_POINTS else None
    if arcs is not None and arcs.on.mean() >= ARC_SHARE:
        return "vessel"
    return None


def _strip(
    tracks: _Tracks, least: int, share: float, length: float = VESSEL_MIN_LENGTH_MM
) -> np.ndarray | None:
    """Return the points along and beside ``tracks`` where they are a vessel's, or None.

    They are when the tracks hold at least ``least`` points over at least ``length`` mm
    along them, and ``share`` of the strip.
    """
    count = int(tracks.on.sum())
    if count < least:
        return None
    lo, hi = tracks.along[tracks.on].min(), tracks.along[tracks.on].max()
    if hi - lo < length:
        return None
    strip = (tracks.along >= lo) & (tracks.along <= hi)
    strip &= (tracks.across >= tracks.start - TRACK_MARGIN_MM) & (
        tracks.across <= tracks.start + tracks.gap + LINE_BAND_MM + TRACK_MARGIN_MM
    )
    if count < share * strip.sum():
        return None
    return strip


def vessel_tracks(points_mm: np.ndarray) -> np.ndarray | None:
    """Return the points on and beside a calcified vessel's tracks in a cluster, or None.

    The two parallel bands holding the most points (:func:`_placements`, the search
    :func:`line_shares` makes), or the two concentric arcs grown from their middle
    (:func:`_grown_tracks`) where these hold more, are a vessel's tracks when they hold
    at least ``VESSEL_MIN_POINTS`` spanning at least ``VESSEL_MIN_LENGTH_MM`` along them,
    and at least ``TRACK_SHARE`` of the points in the strip they span, widened by
    ``TRACK_MARGIN_MM`` on either side (arcs: ``ARC_MIN_POINTS`` and ``ARC_SHARE``). That
    strip's points are the vessel's: the peaks the detector gives beside a vessel's
    walls. Points beyond it (a finding the vessel passes, or peaks the linkage joined)
    are not. Where the straight bands are no vessel's, arcs are grown from more seeds
    (:func:`_arc_tracks`).

    Returns
    -------
    numpy.ndarray or None
        bool per point: in the vessel's strip; None where the cluster holds no vessel.
    """
    p = np.asarray(points_mm, dtype=np.float64).reshape(-1, 2)
    if len(p) < VESSEL_MIN_POINTS:
        return None
    p = p - p.mean(axis=0)
    straight = _straight_tracks(p)
    middle = p[straight.on].mean(axis=0) if straight.on.any() else np.zeros(2)
    seed = int(np.argmin(np.hypot(*(p - middle).T)))
    strip = _strip(straight, VESSEL_MIN_POINTS, TRACK_SHARE)
    # a vessel curving away from straight tracks is followed further by the arcs
    arcs = _grown_tracks(p, seed) if strip is not None else _arc_tracks(p, (seed,))
    arc_strip = None if arcs is None else _strip(arcs, ARC_MIN_POINTS, ARC_SHARE)
    if arc_strip is not None and (strip is None or arcs.on.sum() > straight.on.sum()):
        return arc_strip
    return strip
