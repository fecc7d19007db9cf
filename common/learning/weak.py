"""Weak supervision: calcification centres for findings annotated only as a region.

Real annotations are ROI masks (CBIS-DDSM), boxes (VinDr-Mammo) or a centroid, rarely one
point per calcification (INbreast). The detector is taught peaks on calcifications, so a
finding without points gets *candidate centres* derived from its own image:

1. the white top-hat of the canonical image (the image minus its 0.9 mm local mean), which
   keeps spots smaller than about 1 mm and removes parenchyma;
2. the noise of that top-hat, a robust standard deviation (1.4826 × MAD) over the breast
   in a 5 mm margin around the region;
3. local maxima (3 × 3) of the top-hat inside the region (the mask, else the box grown by
   :data:`MARGIN_MM`, the same tolerance that localises a reader's mark), at least
   ``k`` noise deviations above zero (default 4), no two closer than 0.3 mm;
4. the brightest ``max_points`` of them. A region with none falls back to its centroid,
   so that a faint finding still teaches one peak.

The rule is what radiologists call a calcification on a mammogram (a spot brighter than
its surroundings and smaller than a millimetre); ``bench/bench_weak.py`` measures it
against the centroid-only target and per-calcification points.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

#: Tolerance (mm) added to a box on every side.
MARGIN_MM = 1.0

#: Target rules a finding without points can be trained with.
WEAK_TARGETS = ("candidates", "centroid", "mil")


def candidate_points(
    pixels: np.ndarray,
    box: tuple[float, float, float, float] | None,
    centroid: np.ndarray,
    spacing_mm: float,
    breast: np.ndarray | None = None,
    region: np.ndarray | None = None,
    k: float = 4.0,
    max_points: int = 40,
) -> np.ndarray:
    """Return (N, 2) candidate calcification centres (row, col) of one finding.

    Parameters
    ----------
    pixels : numpy.ndarray
        Canonical image in [0, 1].
    box : tuple of float or None
        The finding's (row0, col0, row1, col1) on the canonical grid.
    centroid : numpy.ndarray
        The finding's centre (the answer when nothing qualifies).
    spacing_mm : float
        Canonical pixel spacing.
    breast : numpy.ndarray, optional
        bool breast mask (the noise is measured inside it).
    region : numpy.ndarray, optional
        bool ROI mask on the canonical grid; replaces the box where given.
    k : float
        Threshold in robust noise deviations.
    max_points : int
        Most candidates kept (brightest first).
    """
    centroid = np.asarray(centroid, dtype=np.float64).reshape(1, 2)
    if box is None and region is None:
        return centroid
    h, w = pixels.shape
    if region is not None:
        rows, cols = np.nonzero(region)
        if rows.size == 0:
            return centroid
        box = (rows.min(), cols.min(), rows.max() + 1, cols.max() + 1)
    grow = MARGIN_MM / spacing_mm
    noise_grow = 5.0 / spacing_mm
    r0, c0 = int(max(0, box[0] - noise_grow)), int(max(0, box[1] - noise_grow))
    r1, c1 = int(min(h, box[2] + noise_grow + 1)), int(min(w, box[3] + noise_grow + 1))
    window = pixels[r0:r1, c0:c1].astype(np.float32)
    if window.size == 0:
        return centroid
    size = max(3, int(round(0.9 / spacing_mm)) | 1)
    tophat = window - ndimage.uniform_filter(window, size)
    tophat = ndimage.gaussian_filter(tophat, 0.7)
    tissue = breast[r0:r1, c0:c1] if breast is not None else np.ones(window.shape, bool)
    values = tophat[tissue] if tissue.any() else tophat.ravel()
    noise = 1.4826 * float(np.median(np.abs(values - np.median(values))))
    if noise <= 0:
        return centroid
    if region is not None:
        inside = region[r0:r1, c0:c1]
    else:
        rr, cc = np.mgrid[r0:r1, c0:c1]
        inside = (
            (rr >= box[0] - grow)
            & (rr < box[2] + grow)
            & (cc >= box[1] - grow)
            & (cc < box[3] + grow)
        )
    separation = max(1, int(round(0.3 / spacing_mm)))
    peaks = (
        (tophat == ndimage.maximum_filter(tophat, 2 * separation + 1))
        & inside
        & tissue
        & (tophat > k * noise)
    )
    coords = np.argwhere(peaks)
    if len(coords) == 0:
        return centroid
    order = np.argsort(-tophat[peaks], kind="stable")[:max_points]
    return (coords[order] + np.array([r0, c0])).astype(np.float64)
