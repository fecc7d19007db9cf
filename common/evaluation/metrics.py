"""Detection and classification metrics as sufficient statistics that sum across sites.

Every ``*Stats`` object holds counts or histograms only (no per-case values), supports
``+`` (so per-hospital statistics can be pooled by summing), ``to_dict``/``from_dict``
(to travel), and methods that turn the (summed) statistics into the metric. Pooling by
summing gives exactly the metric of the union of the data, on the same binning.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.stats import norm

DEFAULT_BINS = 1000


def bin_scores(scores: np.ndarray, bins: int) -> np.ndarray:
    """Map scores in [0, 1] to bin indices 0..bins-1 (1.0 in the last bin)."""
    s = np.clip(np.asarray(scores, dtype=np.float64), 0.0, 1.0)
    return np.minimum((s * bins).astype(np.int64), bins - 1)


# --- DeLong on raw scores ---------------------------------------------------------------


def _midrank(x: np.ndarray) -> np.ndarray:
    """Midranks (1-based, ties averaged) of ``x``."""
    order = np.argsort(x, kind="mergesort")
    xs = x[order]
    n = len(x)
    ranks = np.empty(n, dtype=np.float64)
    i = 0
    while i < n:
        j = i
        while j < n and xs[j] == xs[i]:
            j += 1
        ranks[i:j] = 0.5 * (i + j - 1) + 1
        i = j
    out = np.empty(n, dtype=np.float64)
    out[order] = ranks
    return out


def delong(scores: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """AUCs and their DeLong covariance for one or more score sets on the same cases.

    Fast algorithm of Sun & Xu (2014). Higher scores are more suspicious.

    Parameters
    ----------
    scores : numpy.ndarray
        (k, n) scores of k readers/models on n cases (or (n,) for one).
    labels : numpy.ndarray
        (n,) 1 for positive cases, 0 for negative ones.

    Returns
    -------
    aucs : numpy.ndarray
        (k,) AUCs.
    cov : numpy.ndarray
        (k, k) covariance of the AUC estimates.
    """
    scores = np.atleast_2d(np.asarray(scores, dtype=np.float64))
    labels = np.asarray(labels).astype(bool)
    pos, neg = scores[:, labels], scores[:, ~labels]
    m, n = pos.shape[1], neg.shape[1]
    if m == 0 or n == 0:
        raise ValueError("DeLong needs at least one positive and one negative case")
    k = scores.shape[0]
    tx = np.stack([_midrank(pos[r]) for r in range(k)])
    ty = np.stack([_midrank(neg[r]) for r in range(k)])
    tz = np.stack([_midrank(np.concatenate([pos[r], neg[r]])) for r in range(k)])
    aucs = (tz[:, :m].sum(axis=1) / m - (m + 1) / 2) / n
    v01 = (tz[:, :m] - tx) / n  # placement of each positive among negatives
    v10 = 1.0 - (tz[:, m:] - ty) / m  # placement of each negative among positives
    sx = np.atleast_2d(np.cov(v01)) if m > 1 else np.zeros((k, k))
    sy = np.atleast_2d(np.cov(v10)) if n > 1 else np.zeros((k, k))
    return aucs, sx / m + sy / n


def auc_ci(auc: float, var: float, level: float = 0.95) -> tuple[float, float]:
    """Normal-approximation confidence interval of an AUC, clipped to [0, 1]."""
    z = norm.ppf(0.5 + level / 2)
    half = z * np.sqrt(max(var, 0.0))
    return max(0.0, auc - half), min(1.0, auc + half)


def delong_test(scores_a, scores_b, labels) -> dict:
    """Paired DeLong test of two correlated AUCs: difference, z, two-sided p and 95% CI."""
    aucs, cov = delong(np.stack([scores_a, scores_b]), labels)
    diff = aucs[0] - aucs[1]
    var = cov[0, 0] + cov[1, 1] - 2 * cov[0, 1]
    z = diff / np.sqrt(var) if var > 0 else 0.0
    half = norm.ppf(0.975) * np.sqrt(max(var, 0.0))
    return {
        "auc_a": float(aucs[0]),
        "auc_b": float(aucs[1]),
        "difference": float(diff),
        "z": float(z),
        "p": float(2 * norm.sf(abs(z))),
        "ci": (float(diff - half), float(diff + half)),
    }


# --- ROC from per-class histograms -------------------------------------------------------


@dataclass
class RocStats:
    """Per-class histograms of binned scores: enough for ROC, AUC, DeLong CI, sens/spec.

    Attributes
    ----------
    pos, neg : numpy.ndarray
        Counts of positive / negative cases per score bin (bin i is [i/B, (i+1)/B)).
    """

    pos: np.ndarray
    neg: np.ndarray

    @classmethod
    def from_scores(cls, scores, labels, bins: int = DEFAULT_BINS) -> RocStats:
        """Histogram ``scores`` (in [0, 1]) by ``labels`` (1 positive, 0 negative)."""
        idx = bin_scores(scores, bins)
        labels = np.asarray(labels).astype(bool)
        return cls(
            pos=np.bincount(idx[labels], minlength=bins).astype(np.int64),
            neg=np.bincount(idx[~labels], minlength=bins).astype(np.int64),
        )

    @classmethod
    def empty(cls, bins: int = DEFAULT_BINS) -> RocStats:
        """Statistics of no cases."""
        return cls(np.zeros(bins, np.int64), np.zeros(bins, np.int64))

    def __add__(self, other: RocStats) -> RocStats:
        if self.pos.shape != other.pos.shape:
            raise ValueError("cannot add ROC statistics with different binning")
        return RocStats(self.pos + other.pos, self.neg + other.neg)

    @property
    def n_pos(self) -> int:
        """Number of positive cases."""
        return int(self.pos.sum())

    @property
    def n_neg(self) -> int:
        """Number of negative cases."""
        return int(self.neg.sum())

    def auc(self) -> float:
        """Mann-Whitney AUC of the binned scores (ties count one half)."""
        return self.delong()[0]

    def delong(self) -> tuple[float, float]:
        """(AUC, DeLong variance) computed exactly from the histograms.

        A positive's placement is the share of negatives below it plus half of those in
        its bin; the variance is that of the placements (Sun & Xu), weighted by counts.
        """
        m, n = self.n_pos, self.n_neg
        if m == 0 or n == 0:
            return float("nan"), float("nan")
        neg_below = np.concatenate([[0], np.cumsum(self.neg)[:-1]])
        pos_above = self.pos.sum() - np.cumsum(self.pos)
        v01 = (neg_below + 0.5 * self.neg) / n  # per bin, for positives
        v10 = (pos_above + 0.5 * self.pos) / m  # per bin, for negatives
        auc = float((self.pos * v01).sum() / m)
        s01 = (self.pos * (v01 - auc) ** 2).sum() / (m - 1) if m > 1 else 0.0
        s10 = (self.neg * (v10 - auc) ** 2).sum() / (n - 1) if n > 1 else 0.0
        return auc, float(s01 / m + s10 / n)

    def auc_ci(self, level: float = 0.95) -> tuple[float, float]:
        """DeLong confidence interval of the AUC."""
        auc, var = self.delong()
        return auc_ci(auc, var, level)

    def curve(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Return (false positive rate, true positive rate, threshold), threshold falling."""
        tp = np.concatenate([[0], np.cumsum(self.pos[::-1])]) / max(self.n_pos, 1)
        fp = np.concatenate([[0], np.cumsum(self.neg[::-1])]) / max(self.n_neg, 1)
        bins = len(self.pos)
        thresholds = np.concatenate([[1.0 + 1e-9], (np.arange(bins)[::-1]) / bins])
        return fp, tp, thresholds

    def at_threshold(self, threshold: float) -> dict:
        """Sensitivity and specificity calling positive every score ≥ ``threshold``."""
        bins = len(self.pos)
        k = int(np.ceil(threshold * bins - 1e-9))
        tp, fn = int(self.pos[k:].sum()), int(self.pos[:k].sum())
        tn, fp = int(self.neg[:k].sum()), int(self.neg[k:].sum())
        return {
            "threshold": k / bins,
            "sensitivity": tp / (tp + fn) if tp + fn else float("nan"),
            "specificity": tn / (tn + fp) if tn + fp else float("nan"),
            "tp": tp,
            "fn": fn,
            "tn": tn,
            "fp": fp,
        }

    def threshold_for_sensitivity(self, target: float) -> float:
        """Highest bin-edge threshold whose sensitivity reaches ``target``."""
        bins = len(self.pos)
        above = np.cumsum(self.pos[::-1])[::-1]  # positives in bins ≥ k
        ok = np.flatnonzero(above >= target * max(self.n_pos, 1))
        return float(ok[-1] / bins) if ok.size else 0.0

    def to_dict(self) -> dict:
        """JSON-ready sparse form."""
        return {"bins": len(self.pos), "pos": _sparse(self.pos), "neg": _sparse(self.neg)}

    @classmethod
    def from_dict(cls, d: dict) -> RocStats:
        """Inverse of :meth:`to_dict`."""
        return cls(_dense(d["pos"], d["bins"]), _dense(d["neg"], d["bins"]))


def _sparse(counts: np.ndarray) -> dict[str, int]:
    nz = np.flatnonzero(counts)
    return {str(int(i)): int(counts[i]) for i in nz}


def _dense(sparse: dict, bins: int) -> np.ndarray:
    out = np.zeros(bins, np.int64)
    for k, v in sparse.items():
        out[int(k)] = int(v)
    return out


# --- calibration ------------------------------------------------------------------------


@dataclass
class CalibrationStats:
    """Per-bin count, sum of predicted probabilities and sum of outcomes (for ECE)."""

    count: np.ndarray
    prob_sum: np.ndarray
    label_sum: np.ndarray

    @classmethod
    def from_scores(cls, probs, labels, bins: int = 10) -> CalibrationStats:
        """Bin predicted probabilities and outcomes."""
        probs = np.asarray(probs, dtype=np.float64)
        idx = bin_scores(probs, bins)
        return cls(
            count=np.bincount(idx, minlength=bins).astype(np.int64),
            prob_sum=np.bincount(idx, weights=probs, minlength=bins),
            label_sum=np.bincount(idx, weights=np.asarray(labels, float), minlength=bins),
        )

    def __add__(self, other: CalibrationStats) -> CalibrationStats:
        return CalibrationStats(
            self.count + other.count,
            self.prob_sum + other.prob_sum,
            self.label_sum + other.label_sum,
        )

    def ece(self) -> float:
        """Return the expected calibration error (count-weighted |mean prob - rate|)."""
        total = self.count.sum()
        if total == 0:
            return float("nan")
        used = self.count > 0
        gap = np.abs(self.prob_sum[used] - self.label_sum[used]) / self.count[used]
        return float((self.count[used] * gap).sum() / total)

    def to_dict(self) -> dict:
        """JSON-ready form."""
        return {k: getattr(self, k).tolist() for k in ("count", "prob_sum", "label_sum")}

    @classmethod
    def from_dict(cls, d: dict) -> CalibrationStats:
        """Inverse of :meth:`to_dict`."""
        return cls(
            np.asarray(d["count"], np.int64), np.asarray(d["prob_sum"]), np.asarray(d["label_sum"])
        )


# --- detection: FROC and point matching -------------------------------------------------


@dataclass
class FrocStats:
    """Cluster-level FROC statistics, per image and per area of breast searched.

    Attributes
    ----------
    lesion_best : numpy.ndarray
        Histogram over score bins of each true cluster's best hitting detection score
        (a lesion never hit is counted in ``missed``).
    fp : numpy.ndarray
        Histogram of the scores of detections that hit no true cluster.
    missed, images : int
        Lesions with no hit at any threshold; images evaluated.
    area_cm2 : float
        Breast area searched over all images (cm²): false clusters per cm² scale to a
        full-field image whatever the size of the images evaluated.
    normal_fp : numpy.ndarray
        Histogram of the false clusters' scores on images with no finding.
    normal_images : int
        Images with no finding.
    normal_area_cm2 : float
        Breast area searched on them (cm²).
    vessels : int
        True clusters that are calcified vessels alone, not counted as lesions where the
        cascade sets vessels aside (a detection on one is still a false mark when marked).
    """

    lesion_best: np.ndarray
    fp: np.ndarray
    missed: int
    images: int
    area_cm2: float = 0.0
    normal_fp: np.ndarray | None = None
    normal_images: int = 0
    normal_area_cm2: float = 0.0
    vessels: int = 0

    def __post_init__(self) -> None:
        """Give ``normal_fp`` the bins of ``fp`` when not given."""
        if self.normal_fp is None:
            self.normal_fp = np.zeros(len(self.fp), np.int64)

    @classmethod
    def empty(cls, bins: int = DEFAULT_BINS) -> FrocStats:
        """Statistics of no image."""
        return cls(np.zeros(bins, np.int64), np.zeros(bins, np.int64), 0, 0)

    def __add__(self, other: FrocStats) -> FrocStats:
        return FrocStats(
            self.lesion_best + other.lesion_best,
            self.fp + other.fp,
            self.missed + other.missed,
            self.images + other.images,
            self.area_cm2 + other.area_cm2,
            self.normal_fp + other.normal_fp,
            self.normal_images + other.normal_images,
            self.normal_area_cm2 + other.normal_area_cm2,
            self.vessels + other.vessels,
        )

    def add_image(
        self,
        hits: list[float | None],
        fp_scores,
        area_cm2: float = 0.0,
        normal: bool = False,
        vessels: int = 0,
    ) -> None:
        """Add one image.

        Parameters
        ----------
        hits : list
            Each true cluster's best hitting detection score, None if never hit.
        fp_scores : sequence of float
            Scores of the detections that hit no true cluster.
        area_cm2 : float
            Breast area the detector searched on this image.
        normal : bool
            The image has no finding.
        vessels : int
            Calcified vessels annotated on it and left out of ``hits``.
        """
        bins = len(self.fp)
        for h in hits:
            if h is None:
                self.missed += 1
            else:
                self.lesion_best[bin_scores([h], bins)[0]] += 1
        counts = np.zeros(bins, np.int64)
        if len(fp_scores):
            counts = np.bincount(bin_scores(fp_scores, bins), minlength=bins)
        self.fp += counts
        self.images += 1
        self.area_cm2 += float(area_cm2)
        self.vessels += int(vessels)
        if normal:
            self.normal_fp += counts
            self.normal_images += 1
            self.normal_area_cm2 += float(area_cm2)

    @property
    def lesions(self) -> int:
        """Number of true clusters."""
        return int(self.lesion_best.sum()) + self.missed

    def curve(self) -> tuple[np.ndarray, np.ndarray]:
        """Return (false positives per image, sensitivity), threshold falling."""
        sens = np.cumsum(self.lesion_best[::-1]) / max(self.lesions, 1)
        fppi = np.cumsum(self.fp[::-1]) / max(self.images, 1)
        return np.concatenate([[0.0], fppi]), np.concatenate([[0.0], sens])

    def full_field_curve(self, breast_cm2: float) -> tuple[np.ndarray, np.ndarray]:
        """Return (false clusters per full-field image, sensitivity), threshold falling.

        A full-field image is ``breast_cm2`` of breast; NaN false positives without area.
        """
        sens = np.cumsum(self.lesion_best[::-1]) / max(self.lesions, 1)
        per_cm2 = np.cumsum(self.fp[::-1]) / self.area_cm2 if self.area_cm2 > 0 else np.nan
        return np.concatenate([[0.0], per_cm2 * breast_cm2]), np.concatenate([[0.0], sens])

    def sensitivity_at(self, fp_per_image: float, breast_cm2: float | None = None) -> float:
        """Highest sensitivity reached with at most ``fp_per_image`` false positives.

        With ``breast_cm2`` the false positives are counted per full-field image of that
        breast area.
        """
        fppi, sens = self.curve() if breast_cm2 is None else self.full_field_curve(breast_cm2)
        ok = fppi <= fp_per_image + 1e-12
        return float(sens[ok].max()) if ok.any() else 0.0

    def sensitivity_above(self, threshold: float) -> float:
        """Share of true clusters hit by a detection scoring at least ``threshold``."""
        first = _first_bin(threshold, len(self.fp))
        return float(self.lesion_best[first:].sum() / max(self.lesions, 1))

    def fp_per_cm2(self, threshold: float) -> float:
        """Return the false clusters scoring at least ``threshold`` per cm² of breast."""
        if self.area_cm2 <= 0:
            return float("nan")
        return float(self.fp[_first_bin(threshold, len(self.fp)) :].sum() / self.area_cm2)

    def normal_fp_per_cm2(self, threshold: float) -> float:
        """Return the false clusters scoring at least ``threshold`` per cm² of normal breast."""
        if self.normal_area_cm2 <= 0:
            return float("nan")
        first = _first_bin(threshold, len(self.fp))
        return float(self.normal_fp[first:].sum() / self.normal_area_cm2)

    def summary(self, points=(0.25, 0.5, 1.0, 2.0)) -> dict:
        """Sensitivity at each FP/image point and their mean."""
        values = {f"sens@{p:g}fp": self.sensitivity_at(p) for p in points}
        values["mean_sensitivity"] = float(np.mean(list(values.values())))
        values.update(lesions=self.lesions, images=self.images, vessels=self.vessels)
        return values

    def to_dict(self) -> dict:
        """JSON-ready form."""
        return {
            "bins": len(self.fp),
            "lesion_best": _sparse(self.lesion_best),
            "fp": _sparse(self.fp),
            "missed": self.missed,
            "images": self.images,
            "area_cm2": self.area_cm2,
            "normal_fp": _sparse(self.normal_fp),
            "normal_images": self.normal_images,
            "normal_area_cm2": self.normal_area_cm2,
            "vessels": self.vessels,
        }

    @classmethod
    def from_dict(cls, d: dict) -> FrocStats:
        """Inverse of :meth:`to_dict`."""
        return cls(
            _dense(d["lesion_best"], d["bins"]),
            _dense(d["fp"], d["bins"]),
            int(d["missed"]),
            int(d["images"]),
            float(d.get("area_cm2", 0.0)),
            _dense(d.get("normal_fp", {}), d["bins"]),
            int(d.get("normal_images", 0)),
            float(d.get("normal_area_cm2", 0.0)),
            int(d.get("vessels", 0)),
        )


def _first_bin(threshold: float, bins: int) -> int:
    """First score bin whose scores all reach ``threshold`` (a bin edge, rounded up)."""
    return int(np.clip(np.ceil(float(threshold) * bins - 1e-9), 0, bins))


@dataclass
class PointStats:
    """Point-level matching counts at one threshold: precision and recall."""

    tp: int = 0
    fp: int = 0
    fn: int = 0

    def __add__(self, other: PointStats) -> PointStats:
        return PointStats(self.tp + other.tp, self.fp + other.fp, self.fn + other.fn)

    @classmethod
    def match(cls, predicted: np.ndarray, truth: np.ndarray, radius: float) -> PointStats:
        """Greedy one-to-one matching of predicted to true points within ``radius``."""
        predicted = np.asarray(predicted, float).reshape(-1, 2)
        truth = np.asarray(truth, float).reshape(-1, 2)
        if len(predicted) == 0 or len(truth) == 0:
            return cls(0, len(predicted), len(truth))
        d = np.linalg.norm(predicted[:, None, :] - truth[None, :, :], axis=2)
        pairs = np.argwhere(d <= radius)
        order = np.argsort(d[pairs[:, 0], pairs[:, 1]], kind="stable")
        used_p, used_t = set(), set()
        for i, j in pairs[order]:
            if i not in used_p and j not in used_t:
                used_p.add(int(i))
                used_t.add(int(j))
        tp = len(used_p)
        return cls(tp, len(predicted) - tp, len(truth) - tp)

    def precision(self) -> float:
        """TP / (TP + FP)."""
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else float("nan")

    def recall(self) -> float:
        """TP / (TP + FN)."""
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else float("nan")
