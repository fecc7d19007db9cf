"""Clusters strung along straight lines: scratches and calcified vessels, not findings.

An emulsion scratch is a thin straight line, and a calcified vessel shows two parallel
tracks (its walls, "tram lines") about a vessel's width apart. The detector fires along
both, and single linkage strings the peaks into long clusters. Readers dismiss both.
Malignant calcifications cast in a duct (BI-RADS linear or segmental) lie along a line
too, but they are scattered across it by a few tenths of a millimetre. So a cluster is
set aside only when nearly all of its points lie on one line, or on two parallel lines,
within 0.15 mm: as straight as the peak grid allows.

The rule (:func:`line_artifact`): a cluster of at least ``LINE_MIN_POINTS`` points spanning
at least ``LINE_MIN_LENGTH_MM`` is a **scratch** when at least ``SCRATCH_SHARE`` of them
lie in one straight band ``LINE_BAND_MM`` wide; one of at least ``VESSEL_MIN_POINTS``
spanning at least ``VESSEL_MIN_LENGTH_MM`` is a **vessel** when at least ``VESSEL_SHARE``
of them lie in two parallel bands that wide, 0.7–2.5 mm apart, each holding at least 3.
Two bands catch scattered points more easily than one, hence the larger minimum.
:func:`vessel_tracks` finds a vessel's tracks inside a cluster that holds more (peaks
beside them, a finding the vessel passes), so that the cascade can split them off. The
thresholds were chosen on the film bench's clusters and on clusters the phantom draws
(docs/results.md, "Line artifacts"); the tests check them on fresh draws.
"""

from __future__ import annotations

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


def _placements(p: np.ndarray) -> tuple[tuple, tuple]:
    """Return the best placements of one band and of two parallel bands over centred ``p``.

    Each is (count, angle, start, gap): the points in the band(s), the direction (rad),
    where the first band starts across it (mm) and the gap to the second (0 for one).
    Directions are searched every 1° and refined every 0.1° around the best ones; a band
    starts at a point (the densest placement of a band always does).
    """
    n = len(p)
    index = np.arange(n)

    def best(angles: np.ndarray) -> tuple[tuple, tuple]:
        one_best, two_best = (0, 0.0, 0.0, 0.0), (0, 0.0, 0.0, 0.0)
        for angle in angles:
            across = np.sort(p @ np.array([np.cos(angle), -np.sin(angle)]))
            one = np.searchsorted(across, across + LINE_BAND_MM, "right") - index
            start = across[:, None] + VESSEL_GAPS_MM[None, :]
            two = np.searchsorted(across, start + LINE_BAND_MM, "right") - np.searchsorted(
                across, start, "left"
            )
            both = np.where((two >= 3) & (one[:, None] >= 3), one[:, None] + two, 0)
            i = int(np.argmax(one))
            if one[i] > one_best[0]:
                one_best = (int(one[i]), float(angle), float(across[i]), 0.0)
            k, g = np.unravel_index(int(np.argmax(both)), both.shape)
            if both[k, g] > two_best[0]:
                two_best = (int(both[k, g]), float(angle), float(across[k]), VESSEL_GAPS_MM[g])
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
    if len(p) >= VESSEL_MIN_POINTS and length >= VESSEL_MIN_LENGTH_MM and two >= VESSEL_SHARE:
        return "vessel"
    return None


def vessel_tracks(points_mm: np.ndarray) -> np.ndarray | None:
    """Return the points on and beside a calcified vessel's tracks in a cluster, or None.

    The two parallel bands holding the most points (:func:`_placements`, the search
    :func:`line_shares` makes) are a vessel's
    tracks when they hold at least ``VESSEL_MIN_POINTS`` spanning at least
    ``VESSEL_MIN_LENGTH_MM`` along them, and at least ``TRACK_SHARE`` of the points in the
    strip they span, widened by ``TRACK_MARGIN_MM`` on either side. That strip's points are
    the vessel's: the peaks the detector gives beside a vessel's walls. Points beyond it
    (a finding the vessel passes, or peaks the linkage joined) are not.

    Returns
    -------
    numpy.ndarray or None
        bool per point: in the vessel's strip; None where the cluster holds no vessel.
    """
    p = np.asarray(points_mm, dtype=np.float64).reshape(-1, 2)
    if len(p) < VESSEL_MIN_POINTS:
        return None
    p = p - p.mean(axis=0)
    _, (count, angle, start, gap) = _placements(p)
    if count < VESSEL_MIN_POINTS:
        return None
    across = p @ np.array([np.cos(angle), -np.sin(angle)])
    along = p @ np.array([np.sin(angle), np.cos(angle)])
    eps = 1e-9  # the bands' edges as the search counted them
    on = (across >= start - eps) & (across <= start + LINE_BAND_MM + eps)
    on |= (across >= start + gap - eps) & (across <= start + gap + LINE_BAND_MM + eps)
    lo, hi = along[on].min(), along[on].max()
    if hi - lo < VESSEL_MIN_LENGTH_MM:
        return None
    strip = (along >= lo) & (along <= hi)
    strip &= (across >= start - TRACK_MARGIN_MM) & (
        across <= start + gap + LINE_BAND_MM + TRACK_MARGIN_MM
    )
    if on.sum() < TRACK_SHARE * strip.sum():
        return None
    return strip
