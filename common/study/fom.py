"""Empirical AUCs of several readings of the same cases and their covariance over cases.

This module works on per-case ratings (a hospital's own data, or a public reader study);
:mod:`common.study.panel` computes the same quantities from summable histograms. Three
covariance estimators (keys of the returned dict):

- ``jackknife``: (c−1)/c · Σ_k (θ_(k) − θ̄)(θ'_(k) − θ̄'), leaving out one case at a time;
- ``delong``: S10/n1 + S01/n0 of the placements (DeLong et al. 1988), ddof 1;
- ``unbiased``: Gallas et al. 2007 (the U-statistic estimator; MRMCaov ``unbiased()``).
"""

from __future__ import annotations

import numpy as np


def psi(pos: np.ndarray, neg: np.ndarray) -> np.ndarray:
    """Kernel ψ(x, y) over (positive, negative) pairs: 1 above, ½ tied, 0 below."""
    pos, neg = np.asarray(pos, np.float64)[:, None], np.asarray(neg, np.float64)[None, :]
    return (pos > neg) + 0.5 * (pos == neg)


def auc_covariances(ratings: np.ndarray, truth: np.ndarray) -> tuple[np.ndarray, dict]:
    """AUC of each reading and their covariance matrices over cases.

    Parameters
    ----------
    ratings : numpy.ndarray
        (readings, cases): every reading rates every case (higher = more suspicious).
    truth : numpy.ndarray
        (cases,) booleans: abnormal.

    Returns
    -------
    (numpy.ndarray, dict)
        AUCs (readings,) and {estimator: (readings, readings) covariance}.
    """
    ratings = np.asarray(ratings, dtype=np.float64)
    truth = np.asarray(truth, dtype=bool)
    pos, neg = ratings[:, truth], ratings[:, ~truth]
    n1, n0 = pos.shape[1], neg.shape[1]
    c = n1 + n0
    if n1 < 2 or n0 < 2:
        raise ValueError("an MRMC analysis needs at least two abnormal and two normal cases")
    kernels = np.stack([psi(p, q) for p, q in zip(pos, neg, strict=True)])  # (K, n1, n0)
    theta = kernels.mean(axis=(1, 2))
    v10 = kernels.mean(axis=2)  # placement of each abnormal case
    v01 = kernels.mean(axis=1)  # of each normal case
    d10, d01 = v10 - theta[:, None], v01 - theta[:, None]
    delong = d10 @ d10.T / (n1 - 1) / n1 + d01 @ d01.T / (n0 - 1) / n0
    # leave-one-out AUCs minus the AUC (their mean over all cases is the AUC)
    jk = np.concatenate([(theta[:, None] - v10) / (n1 - 1), (theta[:, None] - v01) / (n0 - 1)], 1)
    jackknife = (c - 1) / c * jk @ jk.T
    s = kernels.sum(axis=(1, 2))
    rows, cols = kernels.sum(axis=2), kernels.sum(axis=1)
    flat = kernels.reshape(len(theta), -1)
    delta = (n0 * n1) ** 2 / (n0 * (n0 - 1) * n1 * (n1 - 1))
    unbiased = (
        (1 - delta) * np.outer(s, s) + delta * (rows @ rows.T + cols @ cols.T - flat @ flat.T)
    ) / (n0 * n1) ** 2
    return theta, {"jackknife": jackknife, "delong": delong, "unbiased": unbiased}
