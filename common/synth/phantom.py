"""A compressed-breast phantom: outline, thickness fall-off, parenchyma, pectoral muscle.

Images are rendered in the canonical orientation (chest wall on the left) as an
"attenuation" map: 0 is air, about 1 is dense tissue at full thickness.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from common.synth.texture import power_law_noise

#: Approximate fibroglandular area fraction per BI-RADS density category (A–D as 1–4).
GLANDULAR_FRACTION = {1: 0.08, 2: 0.25, 3: 0.5, 4: 0.75}


@dataclass
class Phantom:
    """A rendered breast.

    Attributes
    ----------
    attenuation : numpy.ndarray
        float32 map, canonical orientation.
    mask : numpy.ndarray
        bool breast region (muscle included).
    center_row : float
        Row of the breast axis (nipple height).
    depth : float
        Columns from chest wall to nipple.
    half_height : float
        Half the breast's extent along the chest wall.
    glandular : numpy.ndarray
        float32 fibroglandular weight in [0, 1] (for lesion placement and reader models).
    muscle : numpy.ndarray or None
        bool pectoral muscle (MLO views), the truth of its segmentation.
    """

    attenuation: np.ndarray
    mask: np.ndarray
    center_row: float
    depth: float
    half_height: float
    glandular: np.ndarray
    muscle: np.ndarray | None = None

    def position(self, depth_frac: float, lateral_frac: float) -> tuple[float, float]:
        """Return (row, col) of a point given as fractions of depth and half-height."""
        col = depth_frac * self.depth
        # the outline narrows towards the nipple
        reach = self.half_height * np.sqrt(max(1e-3, 1.0 - depth_frac**2))
        return self.center_row + lateral_frac * reach, col


def render_breast(
    shape: tuple[int, int], view: str, density: int, rng: np.random.Generator
) -> Phantom:
    """Render a breast of BI-RADS ``density`` (1–4) for a CC or MLO view."""
    h, w = shape
    rows, cols = np.mgrid[0:h, 0:w].astype(np.float32)
    mlo = view.upper() == "MLO"
    center = h * rng.uniform(0.54, 0.62) if mlo else h * rng.uniform(0.46, 0.54)
    half = h * (rng.uniform(0.40, 0.46) if mlo else rng.uniform(0.38, 0.45))
    depth = w * rng.uniform(0.70, 0.86)

    # Irregular outline: elliptic radius modulated by a smooth angular wobble
    angle = np.arctan2((rows - center) / half, cols / depth)
    wobble = (
        1.0
        + 0.03 * np.sin(3 * angle + rng.uniform(0, 6.3))
        + 0.02 * np.sin(5 * angle + rng.uniform(0, 6.3))
    )
    radius = np.hypot((rows - center) / half, cols / depth) / wobble
    pec_w, pec_h = w * rng.uniform(0.22, 0.34), h * rng.uniform(0.35, 0.55)
    if mlo:
        # axillary tail: the breast reaches the top of the image beyond the muscle
        reach = pec_w * 1.25 + (depth * 0.75 - pec_w * 1.25) * np.clip(rows / center, 0, 1)
        tail = (rows < center) & (cols < reach)
        radius = np.where(tail, np.minimum(radius, 0.6 + 0.4 * cols / reach), radius)
    mask = radius < 1.0

    # compressed thickness: flat in the middle, falling off over the outer rim
    edge = np.clip((radius - 0.82) / 0.18, 0.0, 1.0)
    thickness = (1.0 - edge**2).astype(np.float32) * mask

    # two power-law fields: the image's spectrum then falls with beta about 2.9 over
    # 0.1-1 cycles/mm (tests/common/synth/test_phantom.py), within what mammograms
    # measure: 1.5-3.5, mean about 2.8 (Burgess, SPIE 2003, 5034); 3.17 CC, 3.30 MLO
    # (Chen et al., Med Phys 2012;39:1435)
    coarse = power_law_noise(shape, 3.0, rng)
    fine = power_law_noise(shape, 2.6, rng)
    # more glandular tissue behind the nipple than near the skin or chest wall
    envelope = np.exp(-(((cols / depth) - 0.45) ** 2) / 0.12) * np.exp(
        -(((rows - center) / half) ** 2) / 0.5
    )
    raw = coarse + 1.6 * envelope
    inside = raw[mask]
    fraction = GLANDULAR_FRACTION.get(int(density), 0.3)
    threshold = np.quantile(inside, 1.0 - fraction) if inside.size else 0.0
    glandular = 1.0 / (1.0 + np.exp(-(raw - threshold) / 0.5))
    glandular = ndimage.gaussian_filter(glandular, 1.0).astype(np.float32) * mask

    attenuation = thickness * (0.30 + 0.40 * glandular + (0.015 + 0.05 * glandular) * fine)
    muscle = None
    if mlo:
        muscle = (cols / pec_w + rows / pec_h) < 1.0
        attenuation = np.where(muscle, np.maximum(attenuation, 0.78 + 0.03 * fine), attenuation)
        mask = mask | muscle
    skin = mask & (radius > 0.975) & (radius < 1.0)
    attenuation = attenuation + 0.06 * skin
    return Phantom(
        attenuation=np.clip(attenuation, 0.0, None).astype(np.float32),
        mask=mask,
        center_row=float(center),
        depth=float(depth),
        half_height=float(half),
        glandular=glandular,
        muscle=muscle,
    )
