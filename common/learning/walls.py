"""A calcified vessel's walls in the pixels: ridges that run on along both its tracks.

The line rule (:mod:`common.learning.lines`) judges a cluster by its points alone. On a
real detector's clusters that is not enough: along a vessel the detector also fires
beside each wall and the linkage joins peaks beyond, so only part of the points lie on
the two tracks, no more than on some pair of tracks through a finding. The pixels tell
them apart. A vessel's walls are ridges that run on along the tracks, with gaps only
where the wall is not calcified. A finding's calcifications lying along a pair of tracks
are specks and short casts with tissue between them.

The rule (:func:`walled_tracks`): in a cluster of at least ``ARC_MIN_POINTS`` points, the
two tracks holding the most of them (straight or arcs, as the line rule places them)
are a vessel's where they hold at least ``WALL_MIN_POINTS`` spanning at least
``WALL_MIN_LENGTH_MM``, where along each track at least ``RIDGE_SHARE`` of the length
shows a ridge, and along the line midway between them (the lumen) at most
``LUMEN_SHARE`` does (:func:`ridge_shares`); tracks shorter than
``VESSEL_MIN_LENGTH_MM`` need ``SHORT_RIDGE_SHARE`` and at most ``SHORT_LUMEN_SHARE``.
The points along and beside the tracks are then the vessel's. The thresholds were
chosen on the film bench's detector clusters (docs/results.md, "Vessel walls in the
pixels", "Short stretches of vessel").
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from common.learning.lines import (
    ARC_MIN_POINTS,
    LINE_BAND_MM,
    VESSEL_MIN_LENGTH_MM,
    _arc_tracks,
    _straight_tracks,
    _strip,
    _Tracks,
)

#: Scale of the curvature a wall is found by (mm): about a calcified wall's half-width.
RIDGE_SIGMA_MM = 0.1
#: How far either side of a track's centre line its ridge is looked for (mm): the peak
#: grid's spread about a line.
RIDGE_REACH_MM = 0.2
#: Steps along a track at which the ridge is looked for (mm).
RIDGE_STEP_MM = 0.1
#: A ridge: the curvature across the track, less the magnitude of that along it, at least
#: this many times the spread (robust) of the sharpest curvature over the cluster's box.
RIDGE_LEVEL = 2.0
#: Share of each track's length that must show a ridge.
RIDGE_SHARE = 0.5
#: Most of the line midway between the tracks that may show a ridge: a vessel's lumen
#: shows none, while two tracks laid over one wide or winding line of casts both meet it.
LUMEN_SHARE = 0.25
#: Fewest points on the two tracks.
WALL_MIN_POINTS = 10
#: Shortest stretch of tracks judged by its walls (mm): a detector may fire along a part
#: of a vessel. Below ``VESSEL_MIN_LENGTH_MM`` a stretch must show more of both walls
#: (``SHORT_RIDGE_SHARE``) and less lumen (``SHORT_LUMEN_SHARE``): a finding's line of
#: casts a few millimetres long can run as two walls would.
WALL_MIN_LENGTH_MM = 6.0
SHORT_RIDGE_SHARE = 0.68
SHORT_LUMEN_SHARE = 0.1
#: Margin of tissue around the cluster over which the curvature is computed (mm).
BOX_MARGIN_MM = 3.0


def _hessian(
    pixels: np.ndarray, spacing_mm: float, points_rc: np.ndarray
) -> tuple[np.ndarray, tuple[np.ndarray, np.ndarray, np.ndarray], float]:
    """Return the box's corner, its Hessian (rr, rc, cc) and the curvature's spread."""
    margin = int(np.ceil(BOX_MARGIN_MM / spacing_mm))
    lo = np.maximum(np.floor(points_rc.min(axis=0)).astype(int) - margin, 0)
    hi = np.minimum(np.ceil(points_rc.max(axis=0)).astype(int) + margin + 1, pixels.shape)
    box = np.asarray(pixels[lo[0] : hi[0], lo[1] : hi[1]], dtype=np.float64)
    sigma = RIDGE_SIGMA_MM / spacing_mm
    rr, rc, cc = (ndimage.gaussian_filter(box, sigma, order=o) for o in ((2, 0), (1, 1), (0, 2)))
    half = (rr + cc) / 2
    sharpest = half - np.sqrt(np.maximum(half**2 - (rr * cc - rc**2), 0.0))
    spread = 1.4826 * float(np.median(np.abs(sharpest - np.median(sharpest))))
    return lo, (rr, rc, cc), spread


def ridge_shares(
    pixels: np.ndarray, spacing_mm: float, points_rc: np.ndarray, tracks: _Tracks
) -> tuple[float, float, float]:
    """Return the shares of the tracks' length, and of the line between, showing a ridge.

    Parameters
    ----------
    pixels, spacing_mm, points_rc
        As for :func:`walled_tracks`; ``tracks`` were placed over the points in mm,
        centred on their mean.
    tracks : _Tracks
        Two tracks over the points.

    Returns
    -------
    first, second, between : float
        For each track and for the line midway between them, over the stretch of the
        tracks their points span, every ``RIDGE_STEP_MM``: the share of steps where,
        within ``RIDGE_REACH_MM`` of the line, the curvature across the track less the
        magnitude of that along it reaches ``RIDGE_LEVEL`` times the robust spread of
        the sharpest curvature over the cluster's box (Hessian at ``RIDGE_SIGMA_MM``).
        0 where the box is flat.
    """
    p = np.asarray(points_rc, dtype=np.float64)
    corner, (rr, rc, cc), spread = _hessian(pixels, spacing_mm, p)
    if spread <= 0:
        return 0.0, 0.0, 0.0
    origin = p.mean(axis=0) * spacing_mm
    along = tracks.along[tracks.on]
    steps = np.arange(along.min(), along.max() + 1e-9, RIDGE_STEP_MM)
    offsets = np.arange(-RIDGE_REACH_MM, RIDGE_REACH_MM + 1e-9, 0.05)
    a = np.repeat(steps, len(offsets))
    shares = []
    for centre in (tracks.start, tracks.start + tracks.gap, tracks.start + tracks.gap / 2):
        u = centre + LINE_BAND_MM / 2 + np.tile(offsets, len(steps))
        at = (tracks.place(a, u) + origin) / spacing_mm - corner
        tangent = tracks.place(a + 0.05, u) - tracks.place(a - 0.05, u)
        tangent /= np.linalg.norm(tangent, axis=1, keepdims=True)
        normal = np.stack([-tangent[:, 1], tangent[:, 0]], axis=1)
        h = [ndimage.map_coordinates(x, at.T, order=1, mode="nearest") for x in (rr, rc, cc)]

        def curve(v: np.ndarray, h: list[np.ndarray] = h) -> np.ndarray:
            return v[:, 0] ** 2 * h[0] + 2 * v[:, 0] * v[:, 1] * h[1] + v[:, 1] ** 2 * h[2]

        ridge = (-curve(normal) - np.abs(curve(tangent))).reshape(len(steps), len(offsets))
        shares.append(float(np.mean(ridge.max(axis=1) >= RIDGE_LEVEL * spread)))
    return shares[0], shares[1], shares[2]


def walled_tracks(
    pixels: np.ndarray, spacing_mm: float, points_rc: np.ndarray
) -> np.ndarray | None:
    """Return the points on and beside a vessel whose walls show as ridges, or None.

    Parameters
    ----------
    pixels : numpy.ndarray
        The canonical image (calcium bright).
    spacing_mm : float
        Its pixel spacing (mm, square).
    points_rc : numpy.ndarray
        (N, 2) a cluster's points (pixels).

    Returns
    -------
    numpy.ndarray or None
        bool per point: in the strip along the tracks (the line rule's, ``_strip``);
        None where the cluster is too small, or the tracks hold too few points or show
        too little ridge (module docstring).
    """
    p = np.asarray(points_rc, dtype=np.float64).reshape(-1, 2)
    if len(p) < ARC_MIN_POINTS:
        return None
    mm = p * spacing_mm
    centred = mm - mm.mean(axis=0)  # as the line rule centres them: the same tracks
    tracks = _straight_tracks(centred)
    arcs = _arc_tracks(centred)
    if arcs is not None and arcs.on.sum() > tracks.on.sum():
        tracks = arcs
    strip = _strip(tracks, WALL_MIN_POINTS, 0.0, WALL_MIN_LENGTH_MM)
    if strip is None:
        return None
    first, second, between = ridge_shares(pixels, spacing_mm, p, tracks)
    along = tracks.along[tracks.on]
    short = along.max() - along.min() < VESSEL_MIN_LENGTH_MM
    walls, lumen = (SHORT_RIDGE_SHARE, SHORT_LUMEN_SHARE) if short else (RIDGE_SHARE, LUMEN_SHARE)
    if min(first, second) < walls or between > lumen:
        return None
    return strip
