"""Breast segmentation: a binary mask and its bounding box on the canonical image."""

from __future__ import annotations

import numpy as np
from scipy import ndimage


def otsu_threshold(values: np.ndarray, bins: int = 256) -> float:
    """Return Otsu's threshold for values in [0, 1]."""
    hist, edges = np.histogram(values, bins=bins, range=(0.0, 1.0))
    hist = hist.astype(np.float64)
    total = hist.sum()
    if total == 0:
        return 0.5
    centers = (edges[:-1] + edges[1:]) / 2
    uppers = edges[1:]
    w0 = np.cumsum(hist)
    w1 = total - w0
    m0 = np.cumsum(hist * centers)
    mu0 = m0 / np.maximum(w0, 1e-12)
    mu1 = (m0[-1] - m0) / np.maximum(w1, 1e-12)
    between = w0 * w1 * (mu0 - mu1) ** 2
    # the threshold is the top of the last background bin: values above it are foreground
    return float(uppers[int(np.argmax(between))])


def breast_mask(image: np.ndarray, work_size: int = 160) -> np.ndarray:
    """Segment the breast in a canonical [0, 1] image.

    Otsu threshold on a reduced copy, largest connected component, holes filled; the
    result is brought back to full size. Background air is dark after VOI and
    MONOCHROME1 inversion, so tissue is the bright class.

    Parameters
    ----------
    image : numpy.ndarray
        float32 image in [0, 1].
    work_size : int
        Longest side of the reduced copy the segmentation runs on.

    Returns
    -------
    numpy.ndarray
        bool mask of ``image.shape``.
    """
    h, w = image.shape
    step = max(1, -(-max(h, w) // work_size))  # ceil: the reduced copy fits work_size
    small = image[::step, ::step]
    values = small.ravel()
    thr = otsu_threshold(values)
    # Otsu splits air from dense tissue; the thin skin rim lies between. Go down to just
    # above the air's noise floor instead.
    air = values[values <= thr]
    if air.size:
        air = _darkest_mode(air)
        floor = float(np.median(air))
        noise = 1.4826 * float(np.median(np.abs(air - floor)))
        thr = min(thr, max(floor + 5 * noise, floor + 0.1 * (thr - floor)))
    fg = small > thr
    labels, n = ndimage.label(fg)
    if n == 0:
        return np.zeros(image.shape, dtype=bool)
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    fg = labels == int(np.argmax(sizes))
    # Pad so closing does not erode the breast where it meets the image edge
    fg = ndimage.binary_closing(np.pad(fg, 3, mode="edge"), iterations=2)[3:-3, 3:-3]
    # Fill holes: background not connected to the image border (cheaper than
    # binary_fill_holes' iterative propagation)
    bg, _ = ndimage.label(~fg)
    border = np.unique(np.concatenate([bg[0], bg[-1], bg[:, 0], bg[:, -1]]))
    fg |= ~np.isin(bg, border)
    # back to full size by repeating each reduced pixel step x step times
    rows = np.minimum(np.arange(h) // step, fg.shape[0] - 1)
    cols = np.minimum(np.arange(w) // step, fg.shape[1] - 1)
    return np.take(np.take(fg, rows, axis=0), cols, axis=1)


def _darkest_mode(values: np.ndarray) -> np.ndarray:
    """Return the darkest class of ``values`` when it holds two well separated ones.

    When a bright pectoral muscle or dense tissue takes Otsu's upper class, the lower one
    holds air *and* fatty tissue, and its median would be tissue.
    """
    t = otsu_threshold(values)
    low, high = values[values <= t], values[values > t]
    if low.size == 0 or high.size == 0:
        return values
    spread = 1.4826 * float(np.median(np.abs(low - np.median(low))))
    gap = float(np.median(high) - np.median(low))
    return low if gap > 10 * spread + 0.02 else values


def bounding_box(mask: np.ndarray) -> tuple[int, int, int, int]:
    """Return (row0, col0, row1, col1), end-exclusive, of a mask; the whole image if empty."""
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    if rows.size == 0:
        return (0, 0, mask.shape[0], mask.shape[1])
    return (int(rows[0]), int(cols[0]), int(rows[-1]) + 1, int(cols[-1]) + 1)
