"""Summable statistics of a reader panel, from which an MRMC analysis follows exactly.

A *panel* is the readings (modality × reader) of one set of cases: e.g. a hospital's
juniors, each alone and with the model. Per class (abnormal, normal) and per pair of
readings it holds the **joint histogram** of the two readings' binned ratings. From these
counts alone :meth:`PanelStats.fom` gives every AUC and its jackknife, DeLong and unbiased
covariances: a case's placement, and its leave-one-out AUC, depend only on its bin and on
the marginal histograms, and every covariance term is a sum over cases of a product of
two readings' values, which the pair's joint histogram gives cell by cell. Exact for
ordinal ratings; to the bin width for continuous scores.

Panels of the same readers on different cases add (a reader panel reading the union of
the cases); panels of different hospitals with their own readers do not — they enter a
split-plot analysis (:func:`split_plot_panels`) side by side.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from common.evaluation.metrics import DEFAULT_BINS, bin_scores
from common.study import mrmc
from common.study.fom import psi


@dataclass
class PanelStats:
    """Joint rating histograms of every pair of a panel's readings, per class.

    Attributes
    ----------
    modalities, readers : tuple of str
        The readings are their product, modality-major.
    bins : int
        Rating bins (ordinal levels, or bins of a score in [0, 1]).
    pos, neg : dict
        (reading a, reading b), a ≤ b → Counter of (bin under a, bin under b) over the
        abnormal / normal cases.
    """

    modalities: tuple[str, ...]
    readers: tuple[str, ...]
    bins: int = DEFAULT_BINS
    pos: dict[tuple[int, int], Counter] = field(default_factory=dict)
    neg: dict[tuple[int, int], Counter] = field(default_factory=dict)

    @property
    def readings(self) -> int:
        """Number of readings (modalities × readers)."""
        return len(self.modalities) * len(self.readers)

    @property
    def abnormal(self) -> int:
        """Number of abnormal cases (a wAFROC panel's weights sum to one per case)."""
        return int(round(sum(self.pos.get((0, 0), Counter()).values())))

    @property
    def normal(self) -> int:
        """Number of normal cases."""
        return sum(self.neg.get((0, 0), Counter()).values())

    @property
    def cases(self) -> int:
        """Number of cases."""
        return self.abnormal + self.normal

    @classmethod
    def from_cases(
        cls,
        ratings: np.ndarray,
        truth: np.ndarray,
        modalities: tuple[str, ...],
        readers: tuple[str, ...],
        bins: int = DEFAULT_BINS,
        ordinal: bool = False,
    ) -> PanelStats:
        """Count a panel's ratings.

        Parameters
        ----------
        ratings : numpy.ndarray
            (modalities, readers, cases): scores in [0, 1], or with ``ordinal`` integer
            levels 0..bins-1.
        truth : numpy.ndarray
            (cases,) booleans: abnormal.
        """
        ratings = np.asarray(ratings)
        t, r, _ = ratings.shape
        if (t, r) != (len(modalities), len(readers)):
            raise ValueError("ratings do not match the panel's modalities and readers")
        flat = ratings.reshape(t * r, -1)
        if ordinal:
            levels = flat.astype(np.int64)
            if (levels != flat).any() or levels.min() < 0 or levels.max() >= bins:
                raise ValueError(f"ordinal ratings must be integers 0..{bins - 1}")
        else:
            levels = bin_scores(flat, bins)
        truth = np.asarray(truth, dtype=bool)
        out = cls(tuple(modalities), tuple(readers), bins)
        for a in range(t * r):
            for b in range(a, t * r):
                pa, pb = levels[a], levels[b]
                out.pos[(a, b)] = Counter(zip(pa[truth].tolist(), pb[truth].tolist(), strict=True))
                out.neg[(a, b)] = Counter(
                    zip(pa[~truth].tolist(), pb[~truth].tolist(), strict=True)
                )
        return out

    @classmethod
    def from_marks(
        cls,
        fp: np.ndarray,
        lesions: list[np.ndarray],
        modalities: tuple[str, ...],
        readers: tuple[str, ...],
        bins: int = DEFAULT_BINS,
        weights: list[np.ndarray] | None = None,
    ) -> PanelStats:
        """Count a wAFROC panel (RJafroc's weighted AFROC figure of merit) from marks.

        A normal case's rating is its highest non-lesion mark; an abnormal case's are its
        lesions' ratings (a lesion's highest localising mark), each weighted (default
        1/L per lesion, RJafroc's equal weights). Unmarked is below every mark and ties
        with unmarked (bin 0; marks take bins 1..bins-1). The abnormal "cells" are the
        weighted pairs of lesions of the same case, Σ W_l W_l', so that
        :meth:`fom` gives the wAFROC and its jackknife and DeLong covariances exactly.

        Parameters
        ----------
        fp : numpy.ndarray
            (modalities, readers, normal cases): highest mark in [0, 1], NaN for none.
        lesions : list of numpy.ndarray
            Per abnormal case, (modalities, readers, lesions): lesion ratings, NaN unmarked.
        weights : list of numpy.ndarray, optional
            Per abnormal case, its lesions' weights (summing to 1).
        """
        fp = np.asarray(fp, dtype=np.float64)
        t, r, _ = fp.shape
        k = t * r

        def level(x: np.ndarray) -> np.ndarray:
            x = np.asarray(x, dtype=np.float64).reshape(k, -1)
            out = 1 + bin_scores(np.nan_to_num(x, nan=0.0), bins - 1)
            return np.where(np.isnan(x), 0, out)

        out = cls(tuple(modalities), tuple(readers), bins)
        normal = level(fp)
        abnormal = [level(case) for case in lesions]
        if weights is None:
            weights = [np.full(case.shape[1], 1.0 / case.shape[1]) for case in abnormal]
        for w in weights:
            if abs(float(np.sum(w)) - 1.0) > 1e-9:
                raise ValueError("each abnormal case's lesion weights must sum to 1")
        for a in range(k):
            for b in range(a, k):
                out.neg[(a, b)] = Counter(zip(normal[a].tolist(), normal[b].tolist(), strict=True))
                cells: Counter = Counter()
                for case, w in zip(abnormal, weights, strict=True):
                    for i, wi in enumerate(w):
                        for j, wj in enumerate(w):
                            cells[(int(case[a, i]), int(case[b, j]))] += float(wi * wj)
                out.pos[(a, b)] = cells
        return out

    def __add__(self, other: PanelStats) -> PanelStats:
        if (self.modalities, self.readers, self.bins) != (
            other.modalities,
            other.readers,
            other.bins,
        ):
            raise ValueError(
                "panels add only with the same modalities, readers and bins (a hospital's "
                "own readers are never matched with another's)"
            )
        keys = set(self.pos) | set(other.pos)
        return PanelStats(
            self.modalities,
            self.readers,
            self.bins,
            {k: self.pos.get(k, Counter()) + other.pos.get(k, Counter()) for k in keys},
            {k: self.neg.get(k, Counter()) + other.neg.get(k, Counter()) for k in keys},
        )

    def marginal(self, abnormal: bool, a: int) -> np.ndarray:
        """Histogram of reading ``a``'s ratings over the abnormal (or normal) cases."""
        joint = self.pos if abnormal else self.neg
        h = np.zeros(self.bins)
        for (u, _), n in joint[(a, a)].items():
            h[u] += n
        return h

    def fom(self) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """(modalities, readers) AUCs and their jackknife, DeLong, unbiased covariances."""
        k = self.readings
        m, n = self.abnormal, self.normal
        if m < 2 or n < 2:
            raise ValueError("an MRMC analysis needs at least two abnormal and two normal cases")
        c = m + n
        place_pos, place_neg, theta = [], [], np.zeros(k)
        for a in range(k):
            ph, nh = self.marginal(True, a), self.marginal(False, a)
            below = np.concatenate([[0.0], np.cumsum(nh)[:-1]])
            above = m - np.cumsum(ph)
            place_pos.append((below + 0.5 * nh) / n)  # an abnormal case's placement
            place_neg.append((above + 0.5 * ph) / m)
            theta[a] = (ph * place_pos[a]).sum() / m
        covs = {name: np.zeros((k, k)) for name in ("jackknife", "delong", "unbiased")}
        delta = (n * m) ** 2 / (n * (n - 1) * m * (m - 1))
        for a in range(k):
            for b in range(a, k):
                pu, pv, pw = _cells(self.pos[(a, b)])
                nu, nv, nw = _cells(self.neg[(a, b)])
                xa, xb = place_pos[a][pu] - theta[a], place_pos[b][pv] - theta[b]
                ya, yb = place_neg[a][nu] - theta[a], place_neg[b][nv] - theta[b]
                s10, s01 = (pw * xa * xb).sum(), (nw * ya * yb).sum()
                values = {
                    "delong": s10 / (m - 1) / m + s01 / (n - 1) / n,
                    "jackknife": (c - 1) / c * (s10 / (m - 1) ** 2 + s01 / (n - 1) ** 2),
                }
                rows = (pw * place_pos[a][pu] * place_pos[b][pv]).sum() * n * n
                cols = (nw * place_neg[a][nu] * place_neg[b][nv]).sum() * m * m
                pairs = pw @ (psi(pu, nu) * psi(pv, nv)) @ nw
                sa, sb = m * n * theta[a], m * n * theta[b]
                values["unbiased"] = ((1 - delta) * sa * sb + delta * (rows + cols - pairs)) / (
                    n * m
                ) ** 2
                for name, v in values.items():
                    covs[name][a, b] = covs[name][b, a] = v
        return theta.reshape(len(self.modalities), len(self.readers)), covs

    def analyse(self, level: float = mrmc.LEVEL) -> dict[str, float]:
        """Every OR and DBM analysis of this (fully crossed) panel."""
        theta, covs = self.fom()
        return mrmc.analyse(theta, covs, self.cases, self.normal, level)

    def to_dict(self) -> dict:
        """JSON-ready counts (sparse joint histograms)."""

        def dump(joint: dict) -> dict:
            return {
                f"{a},{b}": {f"{u},{v}": _number(c) for (u, v), c in sorted(h.items())}
                for (a, b), h in sorted(joint.items())
            }

        return {
            "modalities": list(self.modalities),
            "readers": list(self.readers),
            "bins": self.bins,
            "pos": dump(self.pos),
            "neg": dump(self.neg),
        }

    @classmethod
    def from_dict(cls, d: dict) -> PanelStats:
        """Inverse of :meth:`to_dict`."""

        def load(joint: dict) -> dict:
            out = {}
            for key, cells in joint.items():
                a, b = (int(x) for x in key.split(","))
                out[(a, b)] = Counter(
                    {
                        tuple(int(x) for x in cell.split(",")): _number(c)
                        for cell, c in cells.items()
                    }
                )
            return out

        return cls(
            tuple(d["modalities"]),
            tuple(d["readers"]),
            int(d["bins"]),
            load(d["pos"]),
            load(d["neg"]),
        )

    def small(self, min_cell: int) -> bool:
        """Whether a class has fewer than ``min_cell`` cases (but more than none)."""
        return any(0 < x < min_cell for x in (self.abnormal, self.normal, self.cases))


def _number(c) -> int | float:
    """Return a count as an int, a lesion weight sum (wAFROC panels) as a float."""
    return int(c) if float(c).is_integer() else float(c)


def _cells(joint: Counter) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    keys = sorted(joint)
    cells = np.asarray(keys, dtype=np.int64).reshape(-1, 2)
    return cells[:, 0], cells[:, 1], np.asarray([joint[k] for k in keys], dtype=np.float64)


def split_plot_panels(
    panels: list[PanelStats], name: str = "jackknife", level: float = mrmc.LEVEL
) -> dict[str, float]:
    """Split-plot OR analysis of several hospitals' panels (readers and cases nested).

    Every panel must have the same modalities; its readers are its own. The AUC matrix
    puts the panels' readers side by side and the covariance is block-diagonal: readers of
    different hospitals share no case.
    """
    if not panels:
        raise ValueError("no reader panel")
    modalities = panels[0].modalities
    if any(p.modalities != modalities for p in panels):
        raise ValueError("every hospital's panel must have the same modalities")
    t = len(modalities)
    thetas, covs, groups = [], [], []
    for g, panel in enumerate(panels):
        theta, cov = panel.fom()
        thetas.append(theta)
        covs.append(cov[name])
        groups.extend([g] * theta.shape[1])
    theta = np.concatenate(thetas, axis=1)
    r = theta.shape[1]
    full = np.zeros((t * r, t * r))
    start = 0
    for theta_g, cov_g in zip(thetas, covs, strict=True):
        rg = theta_g.shape[1]
        idx = np.array([i * r + start + j for i in range(t) for j in range(rg)])
        full[np.ix_(idx, idx)] = cov_g
        start += rg
    out = mrmc.split_plot(theta, full, np.asarray(groups), name, level)
    out[f"split_plot_{name}.cases"] = sum(p.cases for p in panels)
    return out
