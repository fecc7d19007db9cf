"""Clustered AUC variance: from summed pair histograms, against a direct computation."""

import numpy as np
import pytest

from common.evaluation.clustered import ClusteredRoc
from common.evaluation.metrics import RocStats, bin_scores


def _direct(scores, labels, units):
    """Obuchowski 1997 computed finding by finding."""
    scores, labels, units = map(np.asarray, (scores, labels, units))
    pos, neg = scores[labels], scores[~labels]
    psi = (pos[:, None] > neg[None, :]) + 0.5 * (pos[:, None] == neg[None, :])
    theta = psi.mean()
    m, n = len(pos), len(neg)
    keys = sorted(set(units.tolist()))
    v10 = np.array([psi[units[labels] == u].sum() / n for u in keys])
    v01 = np.array([psi[:, units[~labels] == u].sum() / m for u in keys])
    mi = np.array([(units[labels] == u).sum() for u in keys])
    ni = np.array([(units[~labels] == u).sum() for u in keys])
    k = len(keys)
    s10 = k / ((k - 1) * m) * ((v10 - mi * theta) ** 2).sum()
    s01 = k / ((k - 1) * n) * ((v01 - ni * theta) ** 2).sum()
    s11 = k / (k - 1) * ((v10 - mi * theta) * (v01 - ni * theta)).sum()
    return theta, s10 / m + s01 / n + 2 * s11 / (m * n)


def _breasts(rng, count, d=1.0):
    """Findings seen in two views (correlated scores), some breasts with two findings."""
    scores, labels, units = [], [], []
    for b in range(count):
        for _finding in range(1 + (rng.random() < 0.3)):
            malignant = rng.random() < 0.4
            lesion = rng.normal() + d * malignant
            for _view in range(2):
                scores.append(1 / (1 + np.exp(-(lesion + 0.4 * rng.normal()))))
                labels.append(malignant)
                units.append(b)
    return np.array(scores), np.array(labels), units


def test_pooled_pair_histograms_equal_the_direct_estimator():
    rng = np.random.default_rng(0)
    s, y, u = _breasts(rng, 120)
    half = len(s) // 2
    while u[half] == u[half - 1]:  # a breast stays in one hospital
        half += 1
    a = ClusteredRoc.from_scores(s[:half], y[:half], u[:half], 200)
    b = ClusteredRoc.from_scores(s[half:], y[half:], u[half:], 200)
    pooled = ClusteredRoc.from_dict((a + b).to_dict())
    theta, var = _direct(bin_scores(s, 200), y, u)
    got = pooled.variance()
    assert got[0] == pytest.approx(theta, abs=1e-12)
    assert got[1] == pytest.approx(var, rel=1e-9)


def test_two_views_of_a_lesion_widen_the_interval_and_match_its_spread():
    rng = np.random.default_rng(1)
    aucs, clustered, naive = [], [], []
    for _ in range(300):
        s, y, u = _breasts(rng, 60)
        c = ClusteredRoc.from_scores(s, y, u, 200)
        theta, var = c.variance()
        aucs.append(theta)
        clustered.append(var)
        naive.append(RocStats.from_scores(s, y, 200).delong()[1])
    spread = np.var(aucs, ddof=1)
    assert np.mean(clustered) == pytest.approx(spread, rel=0.2)
    assert np.mean(naive) < 0.75 * spread  # views as independent cases: too narrow


def test_one_finding_per_unit_is_about_delong():
    rng = np.random.default_rng(2)
    s, y = rng.random(300), rng.random(300) < 0.4
    s = np.clip(s + 0.2 * y, 0, 1)
    c = ClusteredRoc.from_scores(s, y, list(range(300)), 200)
    assert c.variance()[1] == pytest.approx(RocStats.from_scores(s, y, 200).delong()[1], rel=0.02)
