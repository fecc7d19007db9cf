"""Reader panels: MRMC analyses from summed joint histograms equal those of the union."""

import numpy as np
import pytest

from common.evaluation.metrics import bin_scores
from common.study.fom import auc_covariances
from common.study.mrmc import analyse, split_plot
from common.study.panel import PanelStats, split_plot_panels
from common.study.ratings import load_ratings


def _ordinal(seed, t=2, r=4, c=90):
    rng = np.random.default_rng(seed)
    truth = rng.random(c) < 0.4
    case = rng.normal(size=c)
    x = case + truth * (1.0 + rng.normal(0, 0.3, size=(t, r, 1))) + rng.normal(size=(t, r, c))
    return np.digitize(x, [-1.5, -0.5, 0.5, 1.5, 2.5]), truth  # levels 0..5


def _central(values, truth):
    t, r, c = values.shape
    theta, covs = auc_covariances(values.reshape(t * r, c), truth)
    return analyse(theta.reshape(t, r), covs, c, int((~truth).sum()))


def _close(a, b, tol=1e-9):
    assert set(a) == set(b)
    for key in b:
        assert a[key] == pytest.approx(b[key], rel=tol, abs=tol), key


def test_pooled_panels_equal_the_union_of_cases():
    values, truth = _ordinal(0)
    site = np.random.default_rng(1).integers(0, 3, len(truth))
    panels = [
        PanelStats.from_cases(
            values[:, :, site == s], truth[site == s], ("u", "a"), tuple("wxyz"), 6, True
        )
        for s in range(3)
    ]
    pooled = PanelStats.from_dict(sum(panels[1:], panels[0]).to_dict())
    _close(pooled.analyse(), _central(values, truth))


def test_pooled_van_dyke_equals_the_published_union(vandyke_dir):
    ratings = load_ratings(vandyke_dir / "vandyke.csv")
    values, levels = np.unique(ratings.values, return_inverse=True)
    levels, n = levels.reshape(ratings.values.shape), len(values)
    site = np.arange(len(ratings.cases)) % 4
    panels = [
        PanelStats.from_cases(
            levels[:, :, site == s],
            ratings.truth[site == s],
            ratings.modalities,
            ratings.readers,
            n,
            True,
        )
        for s in range(4)
    ]
    _close(sum(panels[1:], panels[0]).analyse(), _central(ratings.values, ratings.truth))


def test_continuous_scores_are_exact_on_their_bins():
    rng = np.random.default_rng(2)
    truth = rng.random(200) < 0.3
    scores = np.clip(rng.random((2, 3, 200)) * 0.8 + 0.2 * truth, 0, 1)
    panel = PanelStats.from_cases(scores, truth, ("u", "a"), ("p", "q", "r"), bins=100)
    _close(panel.analyse(), _central(bin_scores(scores, 100), truth))
    raw = _central(scores, truth)
    assert panel.analyse()["auc.modality1"] == pytest.approx(raw["auc.modality1"], abs=0.02)


def test_hospitals_readers_are_never_matched():
    values, truth = _ordinal(3)
    a = PanelStats.from_cases(values, truth, ("u", "a"), tuple("wxyz"), 6, True)
    b = PanelStats.from_cases(values, truth, ("u", "a"), tuple("WXYZ"), 6, True)
    with pytest.raises(ValueError, match="never matched"):
        a + b


def test_split_plot_from_panels_equals_the_central_nested_analysis():
    values, truth = _ordinal(4, r=5, c=120)
    site = np.arange(120) % 2
    readers = [(0, 1), (2, 3, 4)]  # each hospital's own readers read its own cases
    panels, thetas, blocks = [], [], []
    for s, rs in enumerate(readers):
        v, tr = values[:, list(rs)][:, :, site == s], truth[site == s]
        panels.append(PanelStats.from_cases(v, tr, ("u", "a"), tuple(map(str, rs)), 6, True))
        theta, covs = auc_covariances(v.reshape(2 * len(rs), -1), tr)
        thetas.append(theta.reshape(2, -1))
        blocks.append((rs, covs["jackknife"]))
    theta = np.concatenate(thetas, 1)
    full = np.zeros((10, 10))
    for rs, cov in blocks:
        idx = [i * 5 + j for i in range(2) for j in rs]
        full[np.ix_(idx, idx)] = cov
    central = split_plot(theta, full, np.array([0, 0, 1, 1, 1]))
    federated = split_plot_panels(panels)
    federated.pop("split_plot_jackknife.cases")
    _close(federated, central)
    assert central["split_plot_jackknife.r_star"] == pytest.approx((4 + 9) / 5)


def test_release_policy_flags_small_panels():
    values, truth = _ordinal(5, c=30)
    panel = PanelStats.from_cases(values, truth, ("u", "a"), tuple("wxyz"), 6, True)
    assert panel.small(min(panel.abnormal, panel.normal) + 1)
    assert not panel.small(min(panel.abnormal, panel.normal))
