"""wAFROC panels: RJafroc's figure of merit and its jackknife, from summed weighted pairs."""

import numpy as np
import pytest

from common.evaluation.metrics import bin_scores
from common.study.panel import PanelStats

BINS = 51


def _wafroc(fp, lesions, weights):
    """RJafroc's wAFROC for one reading, loop for loop (unmarked = -inf, ties ½)."""
    total = 0.0
    for case, w in zip(lesions, weights, strict=True):
        for f in fp:
            for rating, wl in zip(case, w, strict=True):
                total += wl * (1.0 if f < rating else 0.5 if f == rating else 0.0)
    return total / (len(fp) * len(lesions))


def _levels(x):
    x = np.asarray(x, float)
    return np.where(np.isnan(x), -np.inf, bin_scores(np.nan_to_num(x), BINS - 1))


def _study(seed, t=2, r=3, normal=30, abnormal=25):
    rng = np.random.default_rng(seed)
    reader = rng.normal(0, 0.3, (t, r, 1))
    fp = 1 / (1 + np.exp(-(rng.normal(-1, 1, (t, r, normal)) + reader)))
    fp[rng.random(fp.shape) < 0.4] = np.nan  # no mark on the normal case
    lesions, weights = [], []
    for _ in range(abnormal):
        count = int(rng.integers(1, 4))
        ll = 1 / (1 + np.exp(-(rng.normal(0.8, 1, (t, r, count)) + reader)))
        ll[rng.random(ll.shape) < 0.25] = np.nan  # the lesion was not marked
        lesions.append(ll)
        w = rng.random(count) + 0.2
        weights.append(w / w.sum())
    return fp, lesions, weights


def _direct(fp, lesions, weights, t, r):
    """(t, r) wAFROC and its jackknife covariance by leaving each case out."""
    k = t * r
    fpl = _levels(fp).reshape(k, -1)
    lls = [_levels(c).reshape(k, -1) for c in lesions]

    def fom(keep_n, keep_a):
        return np.array(
            [
                _wafroc(fpl[i, keep_n], [lls[j][i] for j in keep_a], [weights[j] for j in keep_a])
                for i in range(k)
            ]
        )

    n, a = fpl.shape[1], len(lls)
    theta = fom(np.arange(n), range(a))
    loo = [fom(np.delete(np.arange(n), x), range(a)) for x in range(n)]
    loo += [fom(np.arange(n), [j for j in range(a) if j != x]) for x in range(a)]
    loo = np.array(loo)
    c = n + a
    d = loo - loo.mean(axis=0)
    return theta, (c - 1) / c * d.T @ d


def test_wafroc_and_its_jackknife_from_the_panel_equal_the_direct_computation():
    fp, lesions, weights = _study(0)
    panel = PanelStats.from_marks(fp, lesions, ("a", "b"), ("1", "2", "3"), BINS, weights)
    theta, covs = panel.fom()
    want, jack = _direct(fp, lesions, weights, 2, 3)
    assert theta.ravel() == pytest.approx(want, abs=1e-12)
    assert covs["jackknife"] == pytest.approx(jack, rel=1e-9, abs=1e-15)


def test_pooled_wafroc_panels_equal_the_union():
    fp, lesions, weights = _study(1, normal=40, abnormal=36)
    halves = []
    for sl_n, sl_a in ((slice(0, 20), slice(0, 18)), (slice(20, 40), slice(18, 36))):
        halves.append(
            PanelStats.from_marks(
                fp[:, :, sl_n], lesions[sl_a], ("a", "b"), ("1", "2", "3"), BINS, weights[sl_a]
            )
        )
    pooled = PanelStats.from_dict((halves[0] + halves[1]).to_dict())
    union = PanelStats.from_marks(fp, lesions, ("a", "b"), ("1", "2", "3"), BINS, weights)
    a, b = pooled.analyse(), union.analyse()
    assert pooled.abnormal == 36 and pooled.normal == 40
    for key in b:
        assert a[key] == pytest.approx(b[key], rel=1e-9, abs=1e-12), key


def test_one_lesion_always_marked_and_every_normal_marked_is_the_roc_auc():
    rng = np.random.default_rng(2)
    fp = rng.random((2, 2, 30))
    ll = [rng.random((2, 2, 1)) * 0.5 + 0.5 for _ in range(20)]
    panel = PanelStats.from_marks(fp, ll, ("a", "b"), ("1", "2"), BINS)
    roc = PanelStats.from_cases(
        np.concatenate([np.concatenate(ll, axis=2), fp], axis=2),
        np.arange(50) < 20,
        ("a", "b"),
        ("1", "2"),
        BINS - 1,
    )
    got, want = panel.analyse(), roc.analyse()
    for key in ("auc.modality1", "rrrc_jackknife.F", "or_jackknife.Var"):
        assert got[key] == pytest.approx(want[key], rel=1e-12), key


def test_lesion_weights_must_sum_to_one():
    fp, lesions, _ = _study(3, abnormal=3)
    bad = [np.ones(c.shape[2]) for c in lesions]
    with pytest.raises(ValueError, match="sum to 1"):
        PanelStats.from_marks(fp, lesions, ("a", "b"), ("1", "2", "3"), BINS, bad)
