"""Reader-study statistics that sum across hospitals, and the tests computed from them.

Per reading arm: the ROC histograms of its scores and its confusion counts. Per pair of
arms: the per-class **2-D joint histogram** of their binned scores (paired DeLong: each
case's placement under both arms and their covariance follow exactly from it) and the
paired 2x2 tables of their binary calls (McNemar). Everything is counts, so summing the
hospitals' statistics gives exactly the statistics of the union of their cases.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import numpy as np
from scipy.stats import norm
from statsmodels.stats.contingency_tables import mcnemar
from statsmodels.stats.proportion import proportion_confint

from common.evaluation.metrics import DEFAULT_BINS, RocStats, auc_ci, bin_scores

#: Below this many discordant pairs McNemar's test is the exact binomial one.
EXACT_BELOW = 25


def wilson(count: int, total: int, level: float = 0.95) -> dict:
    """Return a proportion with its Wilson score interval (NaN when ``total`` is 0)."""
    if total == 0:
        return {"value": float("nan"), "ci95": [float("nan"), float("nan")], "n": 0}
    lo, hi = proportion_confint(count, total, alpha=1 - level, method="wilson")
    return {"value": count / total, "ci95": [float(lo), float(hi)], "n": int(total)}


def mcnemar_test(table: np.ndarray, exact_below: int = EXACT_BELOW) -> dict:
    """McNemar's test of a paired 2x2 table [[both, A only], [B only, neither]].

    Exact (binomial) when the discordant pairs are fewer than ``exact_below``, otherwise
    the chi-square test with continuity correction (statsmodels).
    """
    table = np.asarray(table, dtype=np.int64)
    b, c = int(table[0, 1]), int(table[1, 0])
    if b + c == 0:
        return {
            "p": 1.0,
            "statistic": 0.0,
            "test": "none (no discordant pairs)",
            "discordant": [b, c],
        }
    exact = b + c < exact_below
    result = mcnemar(table, exact=exact, correction=True)
    return {
        "p": float(result.pvalue),
        "statistic": float(result.statistic),
        "test": "McNemar exact" if exact else "McNemar chi2 (corrected)",
        "discordant": [b, c],
    }


@dataclass
class ArmStats:
    """One arm on one set of cases.

    Attributes
    ----------
    roc : RocStats
        Binned scores of malignant (positive) and other (negative) breasts.
    tp, fn, fp, tn : int
        Recall calls against malignancy.
    calcified, detected : int
        Breasts with calcifications, and those the arm reported anything in.
    """

    roc: RocStats
    tp: int = 0
    fn: int = 0
    fp: int = 0
    tn: int = 0
    calcified: int = 0
    detected: int = 0

    @classmethod
    def empty(cls, bins: int = DEFAULT_BINS) -> ArmStats:
        """Statistics of no case."""
        return cls(RocStats.empty(bins))

    @classmethod
    def from_cases(
        cls, scores, calls, detected, malignant, calcified, bins: int = DEFAULT_BINS
    ) -> ArmStats:
        """Count one arm's outputs on cases (arrays of equal length)."""
        calls, detected = np.asarray(calls, bool), np.asarray(detected, bool)
        malignant, calcified = np.asarray(malignant, bool), np.asarray(calcified, bool)
        return cls(
            RocStats.from_scores(scores, malignant, bins),
            tp=int((calls & malignant).sum()),
            fn=int((~calls & malignant).sum()),
            fp=int((calls & ~malignant).sum()),
            tn=int((~calls & ~malignant).sum()),
            calcified=int(calcified.sum()),
            detected=int((detected & calcified).sum()),
        )

    def __add__(self, other: ArmStats) -> ArmStats:
        return ArmStats(
            self.roc + other.roc, *(getattr(self, k) + getattr(other, k) for k in _COUNTS)
        )

    @property
    def cases(self) -> int:
        """Number of breasts."""
        return self.tp + self.fn + self.fp + self.tn

    def summary(self) -> dict:
        """Sensitivity, specificity, miss rates, recall rate and AUC, each with a 95% CI."""
        auc, var = self.roc.delong()
        lo, hi = auc_ci(auc, var) if np.isfinite(auc) else (float("nan"), float("nan"))
        return {
            "cases": self.cases,
            "malignant": self.tp + self.fn,
            "calcified": self.calcified,
            "sensitivity": wilson(self.tp, self.tp + self.fn),
            "specificity": wilson(self.tn, self.tn + self.fp),
            "miss_rate": wilson(self.fn, self.tp + self.fn),
            "recall_rate": wilson(self.tp + self.fp, self.cases),
            "detection_miss_rate": wilson(self.calcified - self.detected, self.calcified),
            "auc": {"value": auc, "ci95": [lo, hi], "var": var},
        }

    def to_dict(self) -> dict:
        """JSON-ready counts."""
        return {"roc": self.roc.to_dict(), **{k: getattr(self, k) for k in _COUNTS}}

    @classmethod
    def from_dict(cls, d: dict) -> ArmStats:
        """Inverse of :meth:`to_dict`."""
        return cls(RocStats.from_dict(d["roc"]), *(int(d[k]) for k in _COUNTS))


_COUNTS = ("tp", "fn", "fp", "tn", "calcified", "detected")


def _table(a, b) -> np.ndarray:
    """Paired 2x2 table [[both, A only], [B only, neither]] of boolean arrays."""
    a, b = np.asarray(a, bool), np.asarray(b, bool)
    return np.array(
        [[(a & b).sum(), (a & ~b).sum()], [(~a & b).sum(), (~a & ~b).sum()]], dtype=np.int64
    )


@dataclass
class PairStats:
    """Two arms read on the same cases.

    Attributes
    ----------
    pos, neg : Counter
        (bin of A's score, bin of B's score) → number of malignant / other breasts.
    sensitivity, specificity, detection : numpy.ndarray
        Paired 2x2 tables of the calls among malignant breasts, of the calls among the
        others, and of "anything reported" among calcified breasts.
    """

    bins: int
    pos: Counter = field(default_factory=Counter)
    neg: Counter = field(default_factory=Counter)
    sensitivity: np.ndarray = field(default_factory=lambda: np.zeros((2, 2), np.int64))
    specificity: np.ndarray = field(default_factory=lambda: np.zeros((2, 2), np.int64))
    detection: np.ndarray = field(default_factory=lambda: np.zeros((2, 2), np.int64))

    @classmethod
    def from_cases(
        cls, a: dict, b: dict, malignant, calcified, bins: int = DEFAULT_BINS
    ) -> PairStats:
        """Pair two arms' outputs (dicts of ``scores``, ``calls``, ``detected`` arrays)."""
        malignant, calcified = np.asarray(malignant, bool), np.asarray(calcified, bool)
        ia, ib = bin_scores(a["scores"], bins), bin_scores(b["scores"], bins)
        pos = Counter(zip(ia[malignant].tolist(), ib[malignant].tolist(), strict=True))
        neg = Counter(zip(ia[~malignant].tolist(), ib[~malignant].tolist(), strict=True))
        ca, cb = np.asarray(a["calls"], bool), np.asarray(b["calls"], bool)
        # specificity counts correct negatives: pair the "not recalled" indicators
        da, db = np.asarray(a["detected"], bool), np.asarray(b["detected"], bool)
        return cls(
            bins,
            pos,
            neg,
            _table(ca[malignant], cb[malignant]),
            _table(~ca[~malignant], ~cb[~malignant]),
            _table(da[calcified], db[calcified]),
        )

    def __add__(self, other: PairStats) -> PairStats:
        if self.bins != other.bins:
            raise ValueError("cannot add paired statistics with different binning")
        return PairStats(
            self.bins,
            self.pos + other.pos,
            self.neg + other.neg,
            self.sensitivity + other.sensitivity,
            self.specificity + other.specificity,
            self.detection + other.detection,
        )

    def delong(self) -> tuple[np.ndarray, np.ndarray]:
        """(AUCs of A and B, their 2x2 DeLong covariance), exact on the binned scores.

        A positive's placement under an arm is the share of negatives scored below it
        plus half of those tied; the covariance is that of the placements over cases,
        which the joint histogram gives cell by cell.
        """
        m, n = sum(self.pos.values()), sum(self.neg.values())
        if m == 0 or n == 0:
            nan = float("nan")
            return np.array([nan, nan]), np.full((2, 2), nan)
        p_cells, p_counts = _cells(self.pos)
        n_cells, n_counts = _cells(self.neg)
        v01, v10 = [], []
        for arm in (0, 1):
            pos_h = np.bincount(p_cells[:, arm], weights=p_counts, minlength=self.bins)
            neg_h = np.bincount(n_cells[:, arm], weights=n_counts, minlength=self.bins)
            neg_below = np.concatenate([[0.0], np.cumsum(neg_h)[:-1]])
            pos_above = m - np.cumsum(pos_h)
            v01.append(((neg_below + 0.5 * neg_h) / n)[p_cells[:, arm]])
            v10.append(((pos_above + 0.5 * pos_h) / m)[n_cells[:, arm]])
        v01, v10 = np.stack(v01), np.stack(v10)
        aucs = (v01 * p_counts).sum(axis=1) / m
        d01, d10 = v01 - aucs[:, None], v10 - aucs[:, None]
        s01 = (d01 * p_counts) @ d01.T / (m - 1) if m > 1 else np.zeros((2, 2))
        s10 = (d10 * n_counts) @ d10.T / (n - 1) if n > 1 else np.zeros((2, 2))
        return aucs, s01 / m + s10 / n

    def delong_test(self, level: float = 0.95) -> dict:
        """Paired DeLong test of AUC(A) - AUC(B): difference, CI, z and two-sided p."""
        aucs, cov = self.delong()
        diff = float(aucs[0] - aucs[1])
        var = float(cov[0, 0] + cov[1, 1] - 2 * cov[0, 1])
        if not np.isfinite(var):
            nan = float("nan")
            return {"a": nan, "b": nan, "difference": nan, "ci95": [nan, nan], "z": nan, "p": nan}
        z = diff / np.sqrt(var) if var > 0 else 0.0
        half = norm.ppf(0.5 + level / 2) * np.sqrt(max(var, 0.0))
        return {
            "a": float(aucs[0]),
            "b": float(aucs[1]),
            "difference": diff,
            "ci95": [float(diff - half), float(diff + half)],
            "z": float(z),
            "p": float(2 * norm.sf(abs(z))) if var > 0 else 1.0,
        }

    def summary(self, exact_below: int = EXACT_BELOW) -> dict:
        """Paired differences (A - B) and P-values: sensitivity, specificity, miss rates, AUC."""

        def rates(table: np.ndarray) -> dict:
            total = int(table.sum())
            a = (table[0, 0] + table[0, 1]) / total if total else float("nan")
            b = (table[0, 0] + table[1, 0]) / total if total else float("nan")
            return {
                "a": float(a),
                "b": float(b),
                "difference": float(a - b),
                "n": total,
                **mcnemar_test(table, exact_below),
            }

        sens, spec, det = (rates(t) for t in (self.sensitivity, self.specificity, self.detection))
        miss = {**sens, "a": 1 - sens["a"], "b": 1 - sens["b"], "difference": -sens["difference"]}
        det_miss = {**det, "a": 1 - det["a"], "b": 1 - det["b"], "difference": -det["difference"]}
        return {
            "sensitivity": sens,
            "specificity": spec,
            "miss_rate": miss,
            "detection_miss_rate": det_miss,
            "auc": self.delong_test(),
        }

    def to_dict(self) -> dict:
        """JSON-ready counts (sparse joint histograms)."""
        return {
            "bins": self.bins,
            "pos": {f"{i},{j}": int(c) for (i, j), c in sorted(self.pos.items())},
            "neg": {f"{i},{j}": int(c) for (i, j), c in sorted(self.neg.items())},
            **{k: getattr(self, k).tolist() for k in ("sensitivity", "specificity", "detection")},
        }

    @classmethod
    def from_dict(cls, d: dict) -> PairStats:
        """Inverse of :meth:`to_dict`."""

        def joint(cells: dict) -> Counter:
            out = Counter()
            for key, count in cells.items():
                i, j = (int(v) for v in key.split(","))
                out[(i, j)] = int(count)
            return out

        return cls(
            int(d["bins"]),
            joint(d["pos"]),
            joint(d["neg"]),
            *(
                np.asarray(d[k], np.int64).reshape(2, 2)
                for k in ("sensitivity", "specificity", "detection")
            ),
        )


def _cells(joint: Counter) -> tuple[np.ndarray, np.ndarray]:
    keys = sorted(joint)
    return (
        np.asarray(keys, dtype=np.int64).reshape(-1, 2),
        np.asarray([joint[k] for k in keys], dtype=np.float64),
    )
