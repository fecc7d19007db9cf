"""Coarse calcifications: peaks on the rim of a calcification millimetres across.

Large benign calcifications ("popcorn" in an involuting fibroadenoma, dystrophic
calcifications, the calcified rims of oil cysts) are several millimetres across,
far larger than the sub-millimetre calcifications a calcification CAD is for. BI-RADS
calls them typically benign, and readers see them without being prompted. A detector
trained on microcalcifications fires along their sharp rims: single linkage then
strings those peaks into a cluster around the calcification.

The rule (:func:`coarse_points`) finds such calcifications in the pixels. A grey opening
with a disc ``COARSE_MIN_MM`` across keeps only the bright structures at least that
wide, so microcalcifications are gone from it and tissue is smooth in it. The rim of a
calcification that wide stays as a step, where the opened image rises at least
``COARSE_EDGE`` (display range per mm). That step must bound an object that stands at
least ``COARSE_RISE`` above its surroundings: above the opened image's own opening by a
``COARSE_BACKGROUND_MM`` square, which keeps out most of the edges of wider regions.
Rims within ``COARSE_MIN_MM`` of the edge of the searched region (the breast, less an
oblique view's muscle) do not count, since the opening steps down to the air there.
Grown by ``COARSE_REACH_MM`` (a rim broken where the tissue beside it is bright joins
up again), a rim must run round an object: the minor axis of its pixels' second moments
at least ``COARSE_ROUNDNESS`` of the major. The edges of dense tissue, of the pectoral
muscle or of tape run on as lines. A point lies on the calcification where it is on a
grown rim or inside one. Where at least ``COARSE_MIN_POINTS`` of a cluster's points lie on coarse
calcifications, they are split off as ``"coarse"`` (:func:`common.learning.inference.split_off`).
The thresholds were chosen on the film bench's detector clusters (docs/results.md,
"Coarse calcifications").
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

#: Narrowest calcification judged coarse (mm): the opening disc's diameter. The
#: suspicious morphologies are finer than 0.5 mm; BI-RADS' popcorn is over 2 mm.
COARSE_MIN_MM = 1.5
#: Least rise of the opened image across a coarse calcification's rim (display range per mm).
COARSE_EDGE = 0.6
#: Least height of the object the rim bounds above its surroundings (display range).
COARSE_RISE = 0.15
#: Side of the square opening that gives those surroundings (mm): wider than the
#: phantom's largest popcorn lump, narrower than dense tissue or the pectoral muscle.
COARSE_BACKGROUND_MM = 10.0
#: How far from a rim a point still lies on it (mm): the detector's peaks straddle it.
COARSE_REACH_MM = 0.4
#: Smoothing before the opening (mm): about the film grain's correlation length.
COARSE_SMOOTH_MM = 0.1
#: Least ratio of a rim's minor to major axis: a rim runs round an object, while the
#: edges of tissue, the pectoral muscle or tape run on as lines.
COARSE_ROUNDNESS = 0.3
#: Fewest of a cluster's points on coarse calcifications for them to be split off.
COARSE_MIN_POINTS = 2


def _disc(diameter_px: int) -> np.ndarray:
    """Return a bool disc ``diameter_px`` pixels across (odd)."""
    r = (diameter_px - 1) / 2
    y, x = np.mgrid[-int(r) : int(r) + 1, -int(r) : int(r) + 1]
    return x * x + y * y <= r * r + 1e-9


def coarse_map(box: np.ndarray, inside: np.ndarray, spacing_mm: float) -> np.ndarray:
    """Return where ``box`` shows a coarse calcification: on or within reach of its rim.

    Parameters
    ----------
    box : numpy.ndarray
        A crop of the canonical image (calcium bright, display range 0–1).
    inside : numpy.ndarray
        bool, the same shape: the searched region (breast, less an oblique view's muscle).
    spacing_mm : float
        The pixel spacing (mm, square).

    Returns
    -------
    numpy.ndarray
        bool, the same shape (module docstring).
    """
    smooth = ndimage.gaussian_filter(
        np.asarray(box, dtype=np.float64), COARSE_SMOOTH_MM / spacing_mm
    )
    opened = ndimage.grey_opening(
        smooth, footprint=_disc(int(round(COARSE_MIN_MM / spacing_mm)) | 1)
    )
    side = int(round(COARSE_BACKGROUND_MM / spacing_mm)) | 1
    rise = opened - ndimage.grey_opening(opened, size=(side, side))
    gradient = np.hypot(*np.gradient(opened)) / spacing_mm
    reach = _disc(2 * int(round(COARSE_REACH_MM / spacing_mm)) + 1)
    rim = (gradient >= COARSE_EDGE) & (ndimage.maximum_filter(rise, footprint=reach) >= COARSE_RISE)
    rim &= ndimage.distance_transform_edt(inside) * spacing_mm > COARSE_MIN_MM
    # the rim grown by the reach: a rim broken where the tissue beside it is bright is
    # one object again
    grown = ndimage.binary_dilation(rim, structure=reach)
    labels, n = ndimage.label(grown, structure=np.ones((3, 3), dtype=bool))
    if n == 0:
        return grown
    keep = _roundness(labels, n) >= COARSE_ROUNDNESS
    return ndimage.binary_fill_holes(np.concatenate([[False], keep])[labels])


def _roundness(labels: np.ndarray, n: int) -> np.ndarray:
    """Return each labelled rim's minor-to-major axis ratio (its pixels' second moments)."""
    index = np.arange(1, n + 1)
    rows, cols = (x.astype(np.float64) for x in np.indices(labels.shape))
    count = np.asarray(ndimage.sum(np.ones_like(rows), labels, index))

    def mean(x: np.ndarray) -> np.ndarray:
        return np.asarray(ndimage.sum(x, labels, index)) / count

    mr, mc = mean(rows), mean(cols)
    vrr, vcc, vrc = (
        mean(rows * rows) - mr**2,
        mean(cols * cols) - mc**2,
        mean(rows * cols) - mr * mc,
    )
    half = (vrr + vcc) / 2
    root = np.sqrt(np.maximum(half**2 - (vrr * vcc - vrc**2), 0.0))
    return np.sqrt(np.maximum(half - root, 0.0) / np.maximum(half + root, 1e-12))


def coarse_points(
    pixels: np.ndarray, region: np.ndarray, spacing_mm: float, points_rc: np.ndarray
) -> np.ndarray | None:
    """Return which of a cluster's points lie on coarse calcifications, or None.

    Parameters
    ----------
    pixels : numpy.ndarray
        The canonical image (calcium bright).
    region : numpy.ndarray
        bool, the searched region (:func:`common.imaging.breast.search_region`).
    spacing_mm : float
        Its pixel spacing (mm, square).
    points_rc : numpy.ndarray
        (N, 2) a cluster's points (pixels).

    Returns
    -------
    numpy.ndarray or None
        bool per point, on or inside a coarse calcification's rim (:func:`coarse_map`),
        where at least ``COARSE_MIN_POINTS`` are; else None.
    """
    p = np.asarray(points_rc, dtype=np.float64).reshape(-1, 2)
    if len(p) < COARSE_MIN_POINTS:
        return None
    margin = int(np.ceil((COARSE_BACKGROUND_MM / 2 + COARSE_REACH_MM + 0.5) / spacing_mm))
    rows = np.clip(p[:, 0].astype(int), 0, pixels.shape[0] - 1)
    cols = np.clip(p[:, 1].astype(int), 0, pixels.shape[1] - 1)
    r0, c0 = max(rows.min() - margin, 0), max(cols.min() - margin, 0)
    r1 = min(rows.max() + margin + 1, pixels.shape[0])
    c1 = min(cols.max() + margin + 1, pixels.shape[1])
    found = coarse_map(pixels[r0:r1, c0:c1], region[r0:r1, c0:c1], spacing_mm)[rows - r0, cols - c0]
    return found if found.sum() >= COARSE_MIN_POINTS else None
