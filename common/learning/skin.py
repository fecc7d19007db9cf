"""Peaks strung along the skin line: the breast's edge, not a finding.

On film the skin is a thin bright rim at the breast's edge, and the detector answers
along it: single linkage strings those peaks into long clusters that follow the edge,
as on digitised CBIS-DDSM film, and readers dismiss them. Calcifications in the skin
itself (dermal) are benign, and the breast's glandular tissue, where suspicious ones
form, lies beneath a layer of subcutaneous fat. So the points of a cluster within
``SKIN_BAND_MM`` of the breast mask's edge are a **skin line** run when there are at least
``SKIN_MIN_POINTS`` of them spanning at least ``SKIN_MIN_LENGTH_MM``: a compact group near
the edge (a finding, or skin specks) is not one. The thresholds were chosen on the
clusters a film-trained detector finds (docs/results.md, "Curving vessels and the skin
line").
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

#: Distance from the breast mask's edge within which a point lies on the skin line (mm).
SKIN_BAND_MM = 2.0
#: Fewest points, and shortest extent (mm), of a skin line run.
SKIN_MIN_POINTS = 8
SKIN_MIN_LENGTH_MM = 8.0


def edge_distance(points: np.ndarray, mask: np.ndarray, spacing_mm: float) -> np.ndarray:
    """Return each point's distance to the nearest pixel outside ``mask`` (mm).

    Computed in the points' bounding box widened by the band, so that a cluster costs
    what its box does; distances beyond the band are not exact (only whether they
    exceed it matters).
    """
    p = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    if len(p) == 0:
        return np.zeros(0)
    pad = int(np.ceil(SKIN_BAND_MM / spacing_mm)) + 2
    h, w = mask.shape
    rows = np.clip(p[:, 0].astype(int), 0, h - 1)
    cols = np.clip(p[:, 1].astype(int), 0, w - 1)
    r0, c0 = max(rows.min() - pad, 0), max(cols.min() - pad, 0)
    r1, c1 = min(rows.max() + pad + 1, h), min(cols.max() + pad + 1, w)
    distance = ndimage.distance_transform_edt(mask[r0:r1, c0:c1])
    return distance[rows - r0, cols - c0] * spacing_mm


def skin_run(points: np.ndarray, mask: np.ndarray, spacing_mm: float) -> np.ndarray | None:
    """Return which of a cluster's points are a run along the skin line, or None.

    Parameters
    ----------
    points : numpy.ndarray
        (N, 2) canonical pixel positions (row, col).
    mask : numpy.ndarray
        The breast mask (bool) the points lie in.
    spacing_mm : float
        The canonical pixel spacing.

    Returns
    -------
    numpy.ndarray or None
        bool per point: within ``SKIN_BAND_MM`` of the edge, where those points are at
        least ``SKIN_MIN_POINTS`` spanning at least ``SKIN_MIN_LENGTH_MM``; else None.
    """
    p = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    if len(p) < SKIN_MIN_POINTS:
        return None
    near = edge_distance(p, mask, spacing_mm) <= SKIN_BAND_MM
    if near.sum() < SKIN_MIN_POINTS:
        return None
    # the run's diameter (it follows the curving edge): its widest extent over 16
    # directions, within 0.5 % of it
    angles = np.linspace(0.0, np.pi, 16, endpoint=False)
    extents = np.ptp(p[near] @ np.stack([np.cos(angles), np.sin(angles)]), axis=0)
    return near if float(extents.max()) * spacing_mm >= SKIN_MIN_LENGTH_MM else None
