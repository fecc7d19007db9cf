"""Split a pooled data set into simulated hospitals, by patient, with chosen skew.

Public data sets such as CBIS-DDSM come as one pool; a consortium is simulated by giving
each hospital a disjoint set of patients, with size imbalance (relative ``sizes``) and
label skew (a Dirichlet draw per class: small ``alpha`` gives very different malignant
shares, large ``alpha`` approaches the sizes). The result depends only on the patients,
the settings and the seed, so every process of a simulation computes the same split.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from common.data.records import ImageRecord


@dataclass(frozen=True)
class PartitionSpec:
    """How to split patients into ``hospitals`` sites.

    Attributes
    ----------
    alpha : float or None
        Dirichlet concentration of label skew; None: each class split by ``sizes``.
    sizes : tuple of float or None
        Relative site sizes (default: equal).
    """

    hospitals: int
    alpha: float | None = None
    sizes: tuple[float, ...] | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        """Validate settings."""
        if self.hospitals < 1:
            raise ValueError("need at least one hospital")
        if self.alpha is not None and self.alpha <= 0:
            raise ValueError("Dirichlet alpha must be positive")
        if self.sizes is not None and (len(self.sizes) != self.hospitals or min(self.sizes) <= 0):
            raise ValueError(f"sizes must give {self.hospitals} positive weights")

    @classmethod
    def parse(cls, hospitals: int, text: str, seed: int = 0) -> PartitionSpec:
        """Read 'iid', 'dirichlet:ALPHA', 'sizes:W1,W2,...' or both joined by '+'."""
        alpha, sizes = None, None
        for part in filter(None, text.split("+")):
            kind, _, value = part.partition(":")
            if kind == "iid":
                continue
            if kind == "dirichlet":
                alpha = float(value)
            elif kind == "sizes":
                sizes = tuple(float(v) for v in value.split(","))
            else:
                raise ValueError(f"unknown partition '{part}' (iid, dirichlet:A, sizes:W,...)")
        return cls(hospitals, alpha, sizes, seed)


def patient_class(images: Sequence[ImageRecord]) -> str:
    """Return 'malignant', 'benign' or 'normal' for a patient's images."""
    labels = {im.label for im in images}
    return "malignant" if "malignant" in labels else "benign" if "benign" in labels else "normal"


def partition(records: Sequence[ImageRecord], spec: PartitionSpec) -> list[list[ImageRecord]]:
    """Assign every patient (all of its images) to one hospital.

    Returns
    -------
    list of list of ImageRecord
        One list per hospital, in hospital order; together exactly ``records``.
    """
    by_patient: dict[str, list[ImageRecord]] = defaultdict(list)
    for im in records:
        by_patient[im.patient_id].append(im)

    # order patients by a seeded hash, not by input order, so the split is stable
    def key(p: str) -> bytes:
        return hashlib.sha256(f"{spec.seed}|{p}".encode()).digest()

    by_class: dict[str, list[str]] = defaultdict(list)
    for p in sorted(by_patient, key=key):
        by_class[patient_class(by_patient[p])].append(p)
    rng = np.random.default_rng(spec.seed)
    base = np.asarray(spec.sizes or [1.0] * spec.hospitals, dtype=np.float64)
    base = base / base.sum()
    out: list[list[ImageRecord]] = [[] for _ in range(spec.hospitals)]
    for cls in sorted(by_class):
        patients = by_class[cls]
        share = base if spec.alpha is None else rng.dirichlet(spec.alpha * base * spec.hospitals)
        counts = _apportion(share, len(patients))
        start = 0
        for h, n in enumerate(counts):
            for p in patients[start : start + n]:
                out[h].extend(by_patient[p])
            start += n
    return out


def _apportion(share: np.ndarray, n: int) -> list[int]:
    """Integer counts summing to ``n`` closest to ``share * n`` (largest remainders)."""
    raw = share * n
    counts = np.floor(raw).astype(int)
    for i in np.argsort(-(raw - counts), kind="stable")[: n - counts.sum()]:
        counts[i] += 1
    return counts.tolist()
