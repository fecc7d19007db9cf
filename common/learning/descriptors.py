"""Fixed morphometric descriptors of a calcification cluster's ROI crop.

What radiologists read from a cluster (BI-RADS): how many calcifications, how large and
how varied, how elongated (fine linear), how bright, whether rims or lucent centres,
and how they are laid out (spread, linear/segmental). Computed without learning from the
background-subtracted crop: bright connected components inside a central disc, found by
hysteresis (grown through pixels above ``grow`` robust noise sigmas from seeds above ``k``),
so a faint calcification keeps its whole outline instead of breaking into noise-sized
pieces.

Why fixed features: DP-SGD adds noise to every trainable parameter, so with a few
hundred clusters a CNN's ~50k weights drown in it, while a linear model on a handful of
good fixed features keeps most of its accuracy (Tramèr & Boneh, "Differentially private
learning needs better features (or much more data)", ICLR 2021). Every value is on a
fixed scale of order one (logs, ratios, fractions), and :func:`standardise` centres and
scales them with fixed typical values: no statistics of a hospital's data are used to
normalise them, so none leak.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

NAMES = (
    "log_count",
    "log_mean_area",
    "area_cv",
    "log_max_area",
    "log_mean_elongation",
    "elongated_fraction",
    "log_mean_contrast",
    "contrast_cv",
    "hole_fraction",
    "spread",
    "layout_linearity",
    "log_density",
    "log_bright_area",
    "log_strong_count",
)

# Typical mean and spread of each descriptor over augmented training crops of the
# built-in synthetic consortium (3 seeds, ~3000 crops; the seeds agree to ~0.1). Fixed
# constants, not fitted per site: they only precondition the logistic model. How the
# thresholds were chosen: ``docs/results.md``, "Descriptors".
TYPICAL_CENTRE = np.array(
    [2.47, 3.14, 0.55, 3.88, 0.64, 0.22, 1.75, 0.26, 0.09, 1.17, 0.36, 1.47, 1.1, 1.07],
    dtype=np.float32,
)
TYPICAL_SCALE = np.array(
    [0.63, 0.63, 0.26, 0.71, 0.32, 0.26, 0.26, 0.16, 0.2, 0.17, 0.32, 0.52, 0.14, 0.96],
    dtype=np.float32,
)

_EIGHT = np.ones((3, 3), dtype=bool)


def cluster_descriptors(
    crop: np.ndarray, k: float = 3.5, grow: float = 1.5, background: int = 9
) -> np.ndarray:
    """Return the :data:`NAMES` descriptors (float32) of one ROI crop.

    Parameters
    ----------
    crop : ndarray
        (H, W) canonical intensities in [0, 1], centred on the cluster.
    k : float
        Seed threshold in robust noise sigmas (median absolute deviation): a component
        must reach it somewhere.
    grow : float
        Threshold the components are grown through from their seeds (``k`` or more: no
        growing).
    background : int
        Side of the box mean subtracted as background, in pixels.
    """
    x = np.asarray(crop, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"expected a 2-D crop, got shape {x.shape}")
    h, w = x.shape
    r = x - ndi.uniform_filter(x, background, mode="nearest")
    sigma = 1.4826 * np.median(np.abs(r - np.median(r))) + 1e-4
    z = r / sigma
    yy, xx = np.mgrid[:h, :w].astype(np.float64)
    cy, cx = (h - 1) / 2, (w - 1) / 2
    inside = (yy - cy) ** 2 + (xx - cx) ** 2 <= (0.45 * min(h, w)) ** 2
    seeds = (z > k) & inside
    low, _ = ndi.label((z > min(grow, k)) & inside, structure=_EIGHT)
    seeded = np.unique(low[seeds])
    mask = np.isin(low, seeded[seeded > 0])
    labels, n = ndi.label(mask, structure=_EIGHT)
    out = np.zeros(len(NAMES), dtype=np.float32)
    out[0] = np.log1p(n)
    if n == 0:
        return out
    idx = np.arange(1, n + 1)
    ones = np.ones_like(z)
    area = ndi.sum(ones, labels, idx)
    peak = ndi.maximum(z, labels, idx)
    com_y = ndi.sum(yy, labels, idx) / area
    com_x = ndi.sum(xx, labels, idx) / area
    # second moments of each component: elongation = sqrt of the eigenvalue ratio
    m_yy = ndi.sum(yy**2, labels, idx) / area - com_y**2
    m_xx = ndi.sum(xx**2, labels, idx) / area - com_x**2
    m_xy = ndi.sum(yy * xx, labels, idx) / area - com_y * com_x
    half_trace = (m_yy + m_xx) / 2
    disc = np.sqrt(np.maximum(half_trace**2 - (m_yy * m_xx - m_xy**2), 0.0))
    pixel_var = 1 / 12  # a single pixel's own spread keeps dots round
    elongation = np.sqrt(
        (half_trace + disc + pixel_var) / (np.maximum(half_trace - disc, 0.0) + pixel_var)
    )
    holes = (ndi.binary_fill_holes(mask) & ~mask).sum() / mask.sum()
    spread = np.sqrt(np.mean((com_y - cy) ** 2 + (com_x - cx) ** 2))
    linearity = 0.0
    if n >= 3:
        ev = np.linalg.eigvalsh(np.cov(np.stack([com_y, com_x])))
        linearity = np.log((ev[1] + 1) / (ev[0] + 1))
    out[1:] = [
        np.log(area.mean()),
        area.std() / area.mean(),
        np.log(area.max()),
        np.log(elongation.mean()),
        np.mean(elongation > 2.5),
        np.log(peak.mean()),
        peak.std() / peak.mean(),
        holes,
        4 * spread / h,
        linearity / 3,
        np.log1p(1000 * n / (np.pi * (spread + 5) ** 2)),
        np.log1p(mask.sum()) / 5,
        np.log1p(np.sum(peak > 2 * k)),
    ]
    return out


def describe_batch(crops: np.ndarray) -> np.ndarray:
    """Descriptors of a batch of crops (N, H, W) or (N, 1, H, W): (N, len(NAMES))."""
    crops = np.asarray(crops)
    if crops.ndim == 4:
        crops = crops[:, 0]
    if len(crops) == 0:
        return np.zeros((0, len(NAMES)), np.float32)
    return np.stack([cluster_descriptors(c) for c in crops])


def standardise(descriptors: np.ndarray) -> np.ndarray:
    """Centre and scale descriptors with the fixed typical values (float32)."""
    return ((np.asarray(descriptors) - TYPICAL_CENTRE) / TYPICAL_SCALE).astype(np.float32)
