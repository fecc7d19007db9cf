"""Metrics: DeLong against O(n²) references and pROC, pooled sums equal pooled data."""

import csv

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from common.evaluation.metrics import (
    CalibrationStats,
    FrocStats,
    PointStats,
    RocStats,
    delong,
    delong_test,
)


def mann_whitney_reference(scores, labels):
    """Independent O(n²) AUC and DeLong (1988) variance from placement values."""
    pos = [s for s, y in zip(scores, labels, strict=True) if y]
    neg = [s for s, y in zip(scores, labels, strict=True) if not y]

    def psi(x, y):
        return 1.0 if x > y else 0.5 if x == y else 0.0

    v10 = [sum(psi(x, y) for y in neg) / len(neg) for x in pos]
    v01 = [sum(psi(x, y) for x in pos) / len(pos) for y in neg]
    auc = sum(v10) / len(pos)
    s10 = sum((v - auc) ** 2 for v in v10) / (len(pos) - 1)
    s01 = sum((v - auc) ** 2 for v in v01) / (len(neg) - 1)
    return auc, s10 / len(pos) + s01 / len(neg)


def test_delong_equals_quadratic_reference_with_ties():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 150)
    scores = np.round(rng.normal(labels * 0.8, 1.0), 1)  # rounding makes ties
    (auc,), cov = delong(scores, labels)
    ref_auc, ref_var = mann_whitney_reference(scores, labels)
    assert auc == pytest.approx(ref_auc, abs=1e-12)
    assert cov[0, 0] == pytest.approx(ref_var, abs=1e-12)
    assert auc == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)


def test_delong_reproduces_proc_asah(asah_dir):
    rows = list(csv.DictReader((asah_dir / "asah.csv").open()))
    y = np.array([r["outcome"] == "Poor" for r in rows])
    col = {k: np.array([float(r[k]) for r in rows]) for k in ("wfns", "s100b", "ndka")}
    expected = {  # pROC's test suite (see the fixture's README)
        ("wfns", "s100b"): (
            0.823678861788618,
            0.731368563685637,
            2.20898359144091,
            0.0271757822291882,
        ),
        ("wfns", "ndka"): (
            0.823678861788618,
            0.611957994579946,
            2.79777591868904,
            0.00514557970691098,
        ),
        ("ndka", "s100b"): (
            0.611957994579946,
            0.731368563685637,
            -1.39077002573558,
            0.164295175223054,
        ),
    }
    for (a, b), (auc_a, auc_b, z, p) in expected.items():
        t = delong_test(col[a], col[b], y)
        assert t["auc_a"] == pytest.approx(auc_a, abs=1e-9)
        assert t["auc_b"] == pytest.approx(auc_b, abs=1e-9)
        assert t["z"] == pytest.approx(z, abs=1e-9)
        assert t["p"] == pytest.approx(p, abs=1e-9)
    lo, hi = delong_test(col["wfns"], col["s100b"], y)["ci"]
    assert lo == pytest.approx(0.0104061769564846, abs=1e-9)
    assert hi == pytest.approx(0.174214419249478, abs=1e-9)


def test_histogram_delong_equals_raw_delong_on_binned_scores():
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 2, 400)
    scores = 1 / (1 + np.exp(-rng.normal(labels * 1.2 - 0.6, 1.0)))
    stats = RocStats.from_scores(scores, labels, bins=100)
    binned = np.minimum((scores * 100).astype(int), 99)
    (auc,), cov = delong(binned, labels)
    got_auc, got_var = stats.delong()
    assert got_auc == pytest.approx(auc, abs=1e-12) and got_var == pytest.approx(cov[0, 0])


def test_pooled_statistics_equal_statistics_of_pooled_data():
    rng = np.random.default_rng(2)
    sites = []
    for n in (50, 120, 30):
        y = rng.integers(0, 2, n)
        sites.append((rng.beta(2 + 3 * y, 3, n), y))
    pooled_scores = np.concatenate([s for s, _ in sites])
    pooled_labels = np.concatenate([y for _, y in sites])
    summed = sum((RocStats.from_scores(s, y) for s, y in sites), RocStats.empty())
    direct = RocStats.from_scores(pooled_scores, pooled_labels)
    assert np.array_equal(summed.pos, direct.pos) and summed.delong() == direct.delong()
    cal = [CalibrationStats.from_scores(s, y) for s, y in sites]
    total = cal[0] + cal[1] + cal[2]
    assert total.ece() == pytest.approx(
        CalibrationStats.from_scores(pooled_scores, pooled_labels).ece(), abs=1e-12
    )
    roundtrip = RocStats.from_dict(summed.to_dict())
    assert roundtrip.delong() == summed.delong()


def test_threshold_and_operating_point():
    stats = RocStats.from_scores([0.1, 0.4, 0.6, 0.9, 0.2, 0.7], [0, 0, 0, 1, 1, 1], bins=10)
    op = stats.at_threshold(0.5)
    assert (op["tp"], op["fn"], op["tn"], op["fp"]) == (2, 1, 2, 1)
    t = stats.threshold_for_sensitivity(1.0)
    assert stats.at_threshold(t)["sensitivity"] == 1.0 and t == pytest.approx(0.2)
    fpr, tpr, _ = stats.curve()
    assert fpr[0] == tpr[0] == 0 and fpr[-1] == tpr[-1] == 1


def test_ece_of_perfect_and_bad_calibration():
    rng = np.random.default_rng(3)
    p = rng.uniform(0, 1, 20000)
    y = rng.uniform(0, 1, 20000) < p
    assert CalibrationStats.from_scores(p, y).ece() < 0.02
    assert CalibrationStats.from_scores(np.full(100, 0.9), np.zeros(100)).ece() == pytest.approx(
        0.9
    )


def test_froc_sums_and_reads_operating_points():
    a, b = FrocStats.empty(bins=100), FrocStats.empty(bins=100)
    a.add_image([0.9, None], [0.95, 0.3])
    a.add_image([], [0.5])
    b.add_image([0.4], [])
    b.add_image([0.7], [0.8, 0.2])
    pooled = a + b
    assert (pooled.lesions, pooled.images, pooled.missed) == (4, 4, 1)
    # descending: FP .95, hit .9, FP .8, hit .7, FP .5, hit .4, FP .3, FP .2 (4 images)
    assert pooled.sensitivity_at(0.25) == 0.25
    assert pooled.sensitivity_at(0.5) == 0.5
    assert pooled.sensitivity_at(1.0) == 0.75 and pooled.sensitivity_at(0.1) == 0.0
    assert FrocStats.from_dict(pooled.to_dict()).summary() == pooled.summary()


def test_point_matching():
    s = PointStats.match([[0, 0], [10, 10], [50, 50]], [[1, 0], [11, 11], [30, 30]], 2.0)
    assert (s.tp, s.fp, s.fn) == (2, 1, 1)
    assert (s + s).precision() == pytest.approx(2 / 3)
    assert PointStats.match(np.zeros((0, 2)), [[1, 1]], 2).recall() == 0.0
