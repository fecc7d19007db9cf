"""Power-law (1/f^beta) noise, the spectrum of mammographic parenchyma."""

from __future__ import annotations

from functools import lru_cache

import numpy as np


@lru_cache(maxsize=16)
def _amplitude(h: int, w: int, beta: float) -> np.ndarray:
    """Spectral amplitude f^(-beta/2) on the rfft grid (the same for every image of a shape)."""
    fy = np.fft.fftfreq(h)[:, None]
    fx = np.fft.rfftfreq(w)[None, :]
    f = np.hypot(fy, fx)
    f[0, 0] = np.inf  # no DC component
    amplitude = f ** (-beta / 2.0)
    amplitude.setflags(write=False)
    return amplitude


def power_law_noise(shape: tuple[int, int], beta: float, rng: np.random.Generator) -> np.ndarray:
    """Return zero-mean, unit-variance noise whose power spectrum falls as 1/f^beta.

    Parameters
    ----------
    shape : tuple of int
        (rows, columns).
    beta : float
        Spectral exponent; about 3 for breast tissue (Burgess 2001).
    rng : numpy.random.Generator
        Source of randomness.
    """
    amplitude = _amplitude(int(shape[0]), int(shape[1]), float(beta))
    spectrum = amplitude * (
        rng.standard_normal(amplitude.shape) + 1j * rng.standard_normal(amplitude.shape)
    )
    field = np.fft.irfft2(spectrum, s=tuple(shape))
    field -= field.mean()
    std = field.std()
    return (field / std if std > 0 else field).astype(np.float32)
