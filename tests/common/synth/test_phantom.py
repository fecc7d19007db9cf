"""The phantom's parenchyma: a power-law spectrum like a mammogram's."""

import numpy as np

from common.synth.generate import SIZES
from common.synth.phantom import render_breast


def _beta(patch: np.ndarray, spacing_mm: float, lo: float = 0.1, hi: float = 1.0) -> float:
    """Power-law exponent of a square patch's radially averaged spectrum (lo-hi cycles/mm)."""
    n = patch.shape[0]
    window = np.hanning(n)[:, None] * np.hanning(n)[None, :]
    power = np.abs(np.fft.fftshift(np.fft.fft2((patch - patch.mean()) * window))) ** 2
    y, x = np.indices(power.shape)
    radius = np.hypot(y - n // 2, x - n // 2).astype(int)
    radial = np.bincount(radius.ravel(), power.ravel()) / np.bincount(radius.ravel())
    freq = np.arange(len(radial)) / (n * spacing_mm)
    keep = (freq >= lo) & (freq <= hi)
    slope, _ = np.polyfit(np.log(freq[keep]), np.log(radial[keep]), 1)
    return -slope


def test_parenchyma_spectrum_falls_with_beta_near_three():
    spacing = 0.1
    height, width = SIZES["medium"]
    shape = (round(height / spacing), round(width / spacing))
    betas = []
    for density in (1, 2, 3, 4):
        for seed in (0, 1):
            p = render_breast(shape, "CC", density, np.random.default_rng(seed))
            n = int(min(shape) * 0.4)  # a 38 mm patch of breast behind the nipple
            r0, c0 = int(p.center_row - n / 2), int(p.depth * 0.25)
            betas.append(_beta(p.attenuation[r0 : r0 + n, c0 : c0 + n], spacing))
    # mammograms: 1.5-3.5, mean 2.8 (Burgess 2003); 3.2-3.3 (Chen et al. 2012)
    assert 2.7 <= np.mean(betas) <= 3.2, betas
    assert min(betas) > 2.3
