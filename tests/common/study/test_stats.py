"""Reader-study statistics: paired DeLong from joint histograms, McNemar, pooling."""

import csv
import itertools

import numpy as np
import pytest
from statsmodels.stats.contingency_tables import mcnemar

from common.evaluation.metrics import delong
from common.study.stats import ArmStats, PairStats, mcnemar_test, wilson

BINS = 1000


def _rank_scores(values) -> np.ndarray:
    """Scores in [0, 1] whose bins are the values' dense ranks (order and ties kept)."""
    _, ranks = np.unique(np.asarray(values, float), return_inverse=True)
    return (ranks + 0.5) / BINS


def _arm(scores, cut=0.5):
    scores = np.asarray(scores)
    return {"scores": scores, "calls": scores >= cut, "detected": scores >= cut / 2}


def _asah(asah_dir):
    path = asah_dir / "asah.csv"
    rows = list(csv.DictReader(path.open()))
    y = np.array([r["outcome"] == "Poor" for r in rows])
    cols = {k: np.array([float(r[k]) for r in rows]) for k in ("wfns", "s100b", "ndka")}
    return y, cols


@pytest.mark.parametrize(
    "a, b, auc_a, auc_b, z, p",
    [
        (
            "wfns",
            "s100b",
            0.823678861788618,
            0.731368563685637,
            2.20898359144091,
            0.0271757822291882,
        ),
        (
            "wfns",
            "ndka",
            0.823678861788618,
            0.611957994579946,
            2.79777591868904,
            0.00514557970691098,
        ),
        (
            "ndka",
            "s100b",
            0.611957994579946,
            0.731368563685637,
            -1.39077002573558,
            0.164295175223054,
        ),
    ],
)
def test_joint_histogram_delong_reproduces_proc(asah_dir, a, b, auc_a, auc_b, z, p):
    y, cols = _asah(asah_dir)
    pair = PairStats.from_cases(
        _arm(_rank_scores(cols[a])), _arm(_rank_scores(cols[b])), y, y, BINS
    )
    test = pair.delong_test()
    assert test["a"] == pytest.approx(auc_a, abs=1e-12)
    assert test["b"] == pytest.approx(auc_b, abs=1e-12)
    assert test["z"] == pytest.approx(z, abs=1e-9)
    assert test["p"] == pytest.approx(p, abs=1e-9)
    if (a, b) == ("wfns", "s100b"):
        assert test["ci95"] == pytest.approx([0.0104061769564846, 0.174214419249478], abs=1e-9)


def _quadratic_delong(sa, sb, y):
    """Independent O(n²) DeLong: explicit pairwise kernels, placements, sample covariance."""
    out_v01, out_v10, aucs = [], [], []
    for s in (sa, sb):
        pos, neg = s[y], s[~y]
        psi = (pos[:, None] > neg[None, :]) + 0.5 * (pos[:, None] == neg[None, :])
        aucs.append(psi.mean())
        out_v01.append(psi.mean(axis=1))
        out_v10.append(psi.mean(axis=0))
    m, n = y.sum(), (~y).sum()
    return np.array(aucs), np.cov(np.stack(out_v01)) / m + np.cov(np.stack(out_v10)) / n


def test_joint_histogram_delong_equals_quadratic_and_fast_raw():
    rng = np.random.default_rng(4)
    y = rng.uniform(size=300) < 0.3
    sa = np.clip(0.5 + 0.2 * y + 0.2 * rng.standard_normal(300), 0, 1).round(2)  # ties
    sb = np.clip(0.6 * sa + 0.4 * rng.uniform(size=300) + 0.1 * y, 0, 1)
    pair = PairStats.from_cases(_arm(sa), _arm(sb), y, y, BINS)
    aucs, cov = pair.delong()
    binned = [np.minimum((s * BINS).astype(int), BINS - 1) for s in (sa, sb)]
    ref_aucs, ref_cov = _quadratic_delong(*binned, y)
    fast_aucs, fast_cov = delong(np.stack(binned), y)
    np.testing.assert_allclose(aucs, ref_aucs, atol=1e-12)
    np.testing.assert_allclose(cov, ref_cov, atol=1e-12)
    np.testing.assert_allclose(cov, fast_cov, atol=1e-12)


def test_delong_variance_matches_bootstrap(asah_dir):
    y, cols = _asah(asah_dir)
    a, b = cols["wfns"], cols["s100b"]
    var = PairStats.from_cases(_arm(_rank_scores(a)), _arm(_rank_scores(b)), y, y, BINS)
    test = var.delong_test()
    delong_var = ((test["ci95"][1] - test["ci95"][0]) / (2 * 1.959963984540054)) ** 2
    rng = np.random.default_rng(0)
    pos, neg = np.flatnonzero(y), np.flatnonzero(~y)
    diffs = []
    for _ in range(3000):  # stratified bootstrap, as pROC's
        idx = np.concatenate([rng.choice(pos, pos.size), rng.choice(neg, neg.size)])
        aucs, _ = _quadratic_delong(a[idx], b[idx], y[idx])
        diffs.append(aucs[0] - aucs[1])
    assert np.var(diffs, ddof=1) == pytest.approx(delong_var, rel=0.15)


def test_pooled_pairs_equal_the_union_and_mcnemar_equals_statsmodels():
    rng = np.random.default_rng(5)
    sites = []
    for n in (40, 70, 55):
        y = rng.uniform(size=n) < 0.35
        calcified = y | (rng.uniform(size=n) < 0.3)
        sa = np.clip(0.4 + 0.3 * y + 0.2 * rng.standard_normal(n), 0, 1)
        sb = np.clip(sa + 0.1 * rng.standard_normal(n), 0, 1)
        sites.append((_arm(sa), _arm(sb, 0.45), y, calcified))
    pooled = sum(
        (PairStats.from_cases(*s, bins=BINS) for s in sites[1:]),
        PairStats.from_cases(*sites[0], bins=BINS),
    )
    union = [{k: np.concatenate([s[i][k] for s in sites]) for k in sites[0][0]} for i in (0, 1)]
    y = np.concatenate([s[2] for s in sites])
    calcified = np.concatenate([s[3] for s in sites])
    central = PairStats.from_cases(*union, y, calcified, BINS)
    assert pooled.to_dict() == central.to_dict()
    summary = pooled.summary()
    # McNemar from raw per-case calls, tabulated independently
    ca, cb = union[0]["calls"][y], union[1]["calls"][y]
    table = [[np.sum(ca & cb), np.sum(ca & ~cb)], [np.sum(~ca & cb), np.sum(~ca & ~cb)]]
    b, c = table[0][1], table[1][0]
    ref = mcnemar(table, exact=b + c < 25, correction=True)
    assert summary["sensitivity"]["p"] == pytest.approx(ref.pvalue, abs=1e-12)
    assert summary["sensitivity"]["a"] == pytest.approx(ca.mean())
    assert summary["miss_rate"]["b"] == pytest.approx(1 - cb.mean())
    na, nb = ~union[0]["calls"][~y], ~union[1]["calls"][~y]
    spec_table = [[np.sum(na & nb), np.sum(na & ~nb)], [np.sum(~na & nb), np.sum(~na & ~nb)]]
    ref = mcnemar(spec_table, exact=spec_table[0][1] + spec_table[1][0] < 25, correction=True)
    assert summary["specificity"]["p"] == pytest.approx(ref.pvalue, abs=1e-12)
    assert PairStats.from_dict(pooled.to_dict()).to_dict() == pooled.to_dict()


@pytest.mark.parametrize("b, c", [(3, 9), (20, 31), (0, 0)])
def test_mcnemar_exact_and_chi2(b, c):
    table = np.array([[50, b], [c, 40]])
    out = mcnemar_test(table)
    if b + c == 0:
        assert out["p"] == 1.0
    else:
        ref = mcnemar(table, exact=b + c < 25, correction=True)
        assert out["p"] == pytest.approx(ref.pvalue) and out["discordant"] == [b, c]
        assert ("exact" in out["test"]) == (b + c < 25)


def test_arm_stats_rates_and_sums():
    rng = np.random.default_rng(6)
    parts = []
    for n in (30, 50):
        y = rng.uniform(size=n) < 0.4
        calc = y | (rng.uniform(size=n) < 0.4)
        s = np.clip(0.3 + 0.4 * y + 0.2 * rng.standard_normal(n), 0, 1)
        parts.append((s, s >= 0.5, s >= 0.3, y, calc))
    pooled = ArmStats.from_cases(*parts[0]) + ArmStats.from_cases(*parts[1])
    union = ArmStats.from_cases(*(np.concatenate(x) for x in zip(*parts, strict=True)))
    assert pooled.to_dict() == union.to_dict()
    s, calls, det, y, calc = (np.concatenate(x) for x in zip(*parts, strict=True))
    summary = pooled.summary()
    assert summary["sensitivity"]["value"] == pytest.approx(calls[y].mean())
    assert summary["miss_rate"]["value"] == pytest.approx(1 - calls[y].mean())
    assert summary["specificity"]["value"] == pytest.approx(1 - calls[~y].mean())
    assert summary["recall_rate"]["value"] == pytest.approx(calls.mean())
    assert summary["detection_miss_rate"]["value"] == pytest.approx(1 - det[calc].mean())
    lo, hi = summary["sensitivity"]["ci95"]
    assert lo < summary["sensitivity"]["value"] < hi


def test_wilson_matches_formula():
    out = wilson(8, 10)
    z = 1.959963984540054
    p, n = 0.8, 10
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    assert out["ci95"] == pytest.approx([centre - half, centre + half])
    assert np.isnan(wilson(0, 0)["value"])


def test_pair_stats_refuse_mixed_binning():
    a = PairStats.from_cases(_arm([0.1, 0.9]), _arm([0.2, 0.8]), [0, 1], [0, 1], 100)
    b = PairStats.from_cases(_arm([0.1, 0.9]), _arm([0.2, 0.8]), [0, 1], [0, 1], 1000)
    with pytest.raises(ValueError, match="binning"):
        a + b
    assert list(itertools.chain(*a.sensitivity.tolist())) == [1, 0, 0, 0]
