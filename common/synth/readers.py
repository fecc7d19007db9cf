"""Simulated radiologists reading breasts as BI-RADS categories.

A binormal model: each reader sees a latent suspicion that is N(0, 1) for normal breasts,
shifted by ``d_prime`` for malignant ones and by ``benign_shift`` for benign findings.
A lesion is missed outright (read as if normal) with a probability that grows for subtle
lesions and dense breasts. Thresholds on the latent value give BI-RADS 1–5.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from scipy.stats import norm


@dataclass(frozen=True)
class ReaderProfile:
    """Skill of one simulated reader.

    Attributes
    ----------
    d_prime : float
        Separation of malignant from normal latent suspicion (binormal d').
    benign_shift : float
        Latent shift of benign findings (they look a little suspicious).
    miss_base : float
        Probability of missing an obvious lesion in a fatty breast.
    miss_per_subtlety : float
        Added miss probability per subtlety step below 5.
    miss_per_density : float
        Added miss probability per density category above A.
    thresholds : tuple of float
        Latent cut-offs between BI-RADS 1|2|3|4|5.
    """

    reader_id: str
    role: str
    d_prime: float
    benign_shift: float
    miss_base: float
    miss_per_subtlety: float
    miss_per_density: float
    thresholds: tuple[float, float, float, float] = (0.0, 0.8, 1.4, 2.2)

    def to_dict(self) -> dict:
        """Return a JSON-ready dict."""
        return asdict(self)

    def miss_probability(self, subtlety: int | None, density: int | None) -> float:
        """Return the probability that this reader misses a lesion outright."""
        s = 5 - int(subtlety or 3)
        d = int(density or 2) - 1
        return float(np.clip(self.miss_base + self.miss_per_subtlety * s
                             + self.miss_per_density * d, 0.0, 0.95))  # fmt: skip


SENIOR = ReaderProfile("senior-1", "senior", 2.4, 0.9, 0.03, 0.04, 0.03)
JUNIOR = ReaderProfile("junior-1", "junior", 1.5, 1.1, 0.08, 0.07, 0.05)
DEFAULT_READERS = (SENIOR, JUNIOR)


def read_breast(
    profile: ReaderProfile,
    truth: str,
    subtlety: int | None,
    density: int | None,
    rng: np.random.Generator,
) -> tuple[int, float]:
    """Return (BI-RADS 1–5, suspicion 0–100) for one breast.

    Parameters
    ----------
    truth : {"normal", "benign", "malignant"}
        What the breast holds.
    """
    shift = {"normal": 0.0, "benign": profile.benign_shift, "malignant": profile.d_prime}[truth]
    if truth != "normal" and rng.uniform() < profile.miss_probability(subtlety, density):
        shift = 0.0
    latent = shift + rng.standard_normal()
    birads = 1 + int(np.searchsorted(profile.thresholds, latent))
    suspicion = float(np.round(100 * norm.cdf(latent - profile.d_prime / 2), 1))
    return birads, suspicion
