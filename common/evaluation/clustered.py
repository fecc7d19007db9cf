"""Clustered AUC variance (Obuchowski 1997), from summable within-unit histograms.

A lesion seen in the CC and the MLO view gives two findings whose scores are correlated;
DeLong's variance treats them as independent and is too small. Obuchowski's estimator
("Nonparametric analysis of clustered ROC curve data", Biometrics 1997; 53:567–578) takes
the unit (here the breast) as the sampling unit. With units i holding m_i positive and
n_i negative findings (M, N in all, I units), V10_i the sum of unit i's positives'
placements among all negatives and V01_i likewise:

    S10 = I/((I−1)M) Σ (V10_i − m_i θ)²,  S01 = I/((I−1)N) Σ (V01_i − n_i θ)²,
    S11 = I/(I−1) Σ (V10_i − m_i θ)(V01_i − n_i θ),
    Var(θ) = S10/M + S01/N + 2·S11/(M·N).

The sums need, besides the class histograms, the histograms of **pairs of findings in the
same unit** (positive–positive, negative–negative, positive–negative, each finding with
itself included): counts that add across hospitals like every other statistic here.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from common.evaluation.metrics import DEFAULT_BINS, RocStats, bin_scores


@dataclass
class ClusteredRoc:
    """Class histograms plus within-unit pair histograms of binned scores.

    Attributes
    ----------
    roc : RocStats
        Per-class histograms of all findings.
    pp, nn, pn : Counter
        (bin, bin) → ordered pairs of findings in the same unit: both positive, both
        negative, positive then negative. A finding pairs with itself in ``pp``/``nn``.
    units : int
        Number of units with at least one finding.
    """

    roc: RocStats
    pp: Counter = field(default_factory=Counter)
    nn: Counter = field(default_factory=Counter)
    pn: Counter = field(default_factory=Counter)
    units: int = 0

    @classmethod
    def empty(cls, bins: int = DEFAULT_BINS) -> ClusteredRoc:
        """Statistics of no finding."""
        return cls(RocStats.empty(bins))

    @classmethod
    def from_scores(cls, scores, labels, units, bins: int = DEFAULT_BINS) -> ClusteredRoc:
        """Count findings' scores (in [0, 1]) by label and unit (any hashable key)."""
        labels = np.asarray(labels).astype(bool)
        idx = bin_scores(scores, bins)
        out = cls(RocStats.from_scores(scores, labels, bins))
        groups: dict = {}
        for b, pos, unit in zip(idx.tolist(), labels.tolist(), units, strict=True):
            groups.setdefault(unit, ([], []))[0 if pos else 1].append(b)
        for pos, neg in groups.values():
            out.pp.update((a, b) for a in pos for b in pos)
            out.nn.update((a, b) for a in neg for b in neg)
            out.pn.update((a, b) for a in pos for b in neg)
        out.units = len(groups)
        return out

    def __add__(self, other: ClusteredRoc) -> ClusteredRoc:
        return ClusteredRoc(
            self.roc + other.roc,
            self.pp + other.pp,
            self.nn + other.nn,
            self.pn + other.pn,
            self.units + other.units,
        )

    def variance(self) -> tuple[float, float]:
        """(AUC, Obuchowski's clustered variance); NaN without both classes or 2 units."""
        m, n, k = self.roc.n_pos, self.roc.n_neg, self.units
        if m == 0 or n == 0 or k < 2:
            return float("nan"), float("nan")
        neg_below = np.concatenate([[0], np.cumsum(self.roc.neg)[:-1]])
        pos_above = m - np.cumsum(self.roc.pos)
        p = (neg_below + 0.5 * self.roc.neg) / n  # a positive's placement, by bin
        q = (pos_above + 0.5 * self.roc.pos) / m
        theta = float((self.roc.pos * p).sum() / m)

        def sums(joint: Counter, f, g) -> tuple[float, float, float, float]:
            if not joint:
                return 0.0, 0.0, 0.0, 0.0
            cells = np.asarray(list(joint), dtype=np.int64)
            w = np.asarray(list(joint.values()), dtype=np.float64)
            fa, gb = f[cells[:, 0]], g[cells[:, 1]]
            return (w * fa * gb).sum(), (w * fa).sum(), (w * gb).sum(), w.sum()

        v10v10, mv10, _, mm = sums(self.pp, p, p)
        v01v01, nv01, _, nn = sums(self.nn, q, q)
        v10v01, nv10, mv01, mn = sums(self.pn, p, q)
        s10 = k / ((k - 1) * m) * (v10v10 - 2 * theta * mv10 + theta**2 * mm)
        s01 = k / ((k - 1) * n) * (v01v01 - 2 * theta * nv01 + theta**2 * nn)
        s11 = k / (k - 1) * (v10v01 - theta * nv10 - theta * mv01 + theta**2 * mn)
        return theta, float(s10 / m + s01 / n + 2 * s11 / (m * n))

    def to_dict(self) -> dict:
        """JSON-ready counts (sparse)."""

        def dump(c: Counter) -> dict:
            return {f"{a},{b}": int(v) for (a, b), v in sorted(c.items())}

        return {
            "roc": self.roc.to_dict(),
            "pp": dump(self.pp),
            "nn": dump(self.nn),
            "pn": dump(self.pn),
            "units": self.units,
        }

    @classmethod
    def from_dict(cls, d: dict) -> ClusteredRoc:
        """Inverse of :meth:`to_dict`."""

        def load(cells: dict) -> Counter:
            return Counter({tuple(int(x) for x in k.split(",")): int(v) for k, v in cells.items()})

        return cls(
            RocStats.from_dict(d["roc"]),
            load(d["pp"]),
            load(d["nn"]),
            load(d["pn"]),
            int(d["units"]),
        )
