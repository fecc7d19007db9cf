"""OR and DBM analyses against the published Van Dyke and Franken results."""

import json

import numpy as np
import pytest

from common.study.fom import auc_covariances
from common.study.mrmc import analyse, dbm_analysis, or_analysis, split_plot
from common.study.ratings import load_ratings


def _study(folder, name):
    ratings = load_ratings(folder / f"{name}.csv")
    t, r, c = ratings.values.shape
    theta, covs = auc_covariances(ratings.values.reshape(t * r, c), ratings.truth)
    return ratings, theta.reshape(t, r), covs


@pytest.mark.parametrize(
    "name, expected", [("vandyke", "expected.json"), ("franken", "expected_franken.json")]
)
def test_every_published_number_is_reproduced(vandyke_dir, name, expected):
    ratings, theta, covs = _study(vandyke_dir, name)
    assert ratings.problems == []
    out = analyse(theta, covs, len(ratings.cases), int((~ratings.truth).sum()))
    published = json.loads((vandyke_dir / expected).read_text())
    assert len(published) > 140
    missing = sorted(set(published) - set(out))
    assert not missing
    for key, value in published.items():
        assert out[key] == pytest.approx(value, rel=1e-6, abs=1e-12), key


def test_franken_exercises_the_clamp(vandyke_dir):
    ratings, theta, covs = _study(vandyke_dir, "franken")
    out = or_analysis(theta, covs["jackknife"])
    assert out["or_jackknife.Cov2"] < out["or_jackknife.Cov3"]
    assert out["rrrc_jackknife.df"] == pytest.approx(3.0)  # the clamp zeroes r(Cov2 - Cov3)
    assert out["rrrc_jackknife.F"] == pytest.approx(out["rrfc.F"])


def _random_study(seed, t=2, r=4, c=60):
    rng = np.random.default_rng(seed)
    truth = np.arange(c) < c // 3
    case = rng.normal(size=c)
    x = case + truth * (1.2 + rng.normal(0, 0.3, size=(t, r, 1))) + rng.normal(size=(t, r, c))
    ratings = np.digitize(x, [-1, 0, 1, 2]).astype(float)  # five ordinal levels
    theta, covs = auc_covariances(ratings.reshape(t * r, c), truth)
    return theta.reshape(t, r), covs, c


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_dbm_equals_or_jackknife_for_random_readers_and_fixed_cases(seed):
    theta, covs, c = _random_study(seed)
    o = or_analysis(theta, covs["jackknife"])
    d = dbm_analysis(theta, covs["jackknife"], c)
    for key in ("F", "df", "p"):
        assert d[f"dbm_rrrc.{key}"] == pytest.approx(o[f"rrrc_jackknife.{key}"], rel=1e-10)
        assert d[f"dbm_rrfc.{key}"] == pytest.approx(o[f"rrfc.{key}"], rel=1e-10)
    assert d["dbm.VarR"] == pytest.approx(o["or_jackknife.VarR"], rel=1e-9)
    assert d["dbm.VarTR"] == pytest.approx(o["or_jackknife.VarTR"], rel=1e-9)
    # fixed readers: DBM refers its statistic to F(1, c - 1), OR to chi-square(1)
    assert d["dbm_frrc.df"] == c - 1
    assert o["frrc_jackknife.df"] == 1
    if o["or_jackknife.Cov2"] >= o["or_jackknife.Cov3"]:
        assert d["dbm_frrc.F"] == pytest.approx(o["frrc_jackknife.chisq"], rel=1e-9)
        assert d["dbm_frrc.p"] > o["frrc_jackknife.p"]


def test_dbm_pseudovalues_computed_case_by_case_agree():
    c, rng = 40, np.random.default_rng(3)
    truth = np.arange(c) < c // 3
    ratings = rng.integers(1, 6, size=(6, c)).astype(float) + truth * 1.0
    theta, covs = auc_covariances(ratings, truth)
    # pseudovalues by leaving each case out and recomputing every AUC
    loo = np.array(
        [auc_covariances(np.delete(ratings, k, 1), np.delete(truth, k))[0] for k in range(c)]
    )
    pseudo = c * theta[None, :] - (c - 1) * loo  # (cases, readings)
    y = pseudo.T.reshape(2, 3, c)
    grand = y.mean()
    mi, mj, mk = y.mean((1, 2)), y.mean((0, 2)), y.mean((0, 1))
    mik, mjk = y.mean(1), y.mean(0)
    ms_c = 2 * 3 * ((mk - grand) ** 2).sum() / (c - 1)
    ms_tc = 3 * ((mik - mi[:, None] - mk[None, :] + grand) ** 2).sum() / (c - 1)
    resid = y - y.mean(2, keepdims=True) - mik[:, None, :] - mjk[None] + mi[:, None, None]
    resid = resid + mj[None, :, None] + mk[None, None, :] - grand
    ms_trc = (resid**2).sum() / (2 * (c - 1))
    d = dbm_analysis(theta.reshape(2, 3), covs["jackknife"], c)
    assert d["dbm.MS_C"] == pytest.approx(ms_c, rel=1e-10)
    assert d["dbm.MS_TC"] == pytest.approx(ms_tc, rel=1e-10)
    assert d["dbm.MS_TRC"] == pytest.approx(ms_trc, rel=1e-10)


def test_split_plot_with_one_group_is_the_crossed_analysis():
    theta, covs, _ = _random_study(4)
    crossed = or_analysis(theta, covs["jackknife"])
    nested = split_plot(theta, covs["jackknife"], np.zeros(theta.shape[1]))
    pairs = {f"split_plot_jackknife.{k}": f"rrrc_jackknife.{k}" for k in ("F", "df", "p")}
    for k in ("ci_lower", "ci_upper", "modality1.ci_lower", "modality2.df", "modality2.se"):
        pairs[f"split_plot_jackknife.{k}"] = f"rrrc_jackknife.{k}"
    for k in ("chisq", "p", "ci_lower", "ci_upper"):
        pairs[f"split_plot_frrc_jackknife.{k}"] = f"frrc_jackknife.{k}"
    for k in ("VarR", "VarTR"):
        pairs[f"split_plot_jackknife.{k}"] = f"or_jackknife.{k}"
    for a, b in pairs.items():
        assert nested[a] == pytest.approx(crossed[b], rel=1e-12), a


def test_split_plot_denominator_uses_within_group_pairs_only():
    theta, covs, _ = _random_study(5, r=4)
    groups = np.array([0, 0, 1, 1])
    cov = covs["jackknife"].copy()
    rdr = np.tile(np.arange(4), 2)
    cov[groups[rdr][:, None] != groups[rdr][None, :]] = 0.0  # no shared case across groups
    out = split_plot(theta, cov, groups)
    assert out["split_plot_jackknife.r_star"] == 2.0
    within = (groups[rdr][:, None] == groups[rdr][None, :]) & (rdr[:, None] != rdr[None, :])
    mod = np.repeat(np.arange(2), 4)
    same_m = mod[:, None] == mod[None, :]
    assert out["split_plot_jackknife.Cov2"] == pytest.approx(cov[within & same_m].mean())
    assert out["split_plot_jackknife.Cov3"] == pytest.approx(cov[within & ~same_m].mean())
