"""Study sizing: tied to the pilot's own analysis, minimal case counts, split-plot."""

import numpy as np
import pytest

from common.study.fom import auc_covariances
from common.study.mrmc import analyse
from common.study.sizing import Pilot, cases_needed, plan, power


def _pilot_analysis(seed=0, r=5, c=100):
    rng = np.random.default_rng(seed)
    truth = np.arange(c) < 40
    case = rng.normal(size=c)
    reader = rng.normal(0, 0.15, (2, r, 1))
    x = case + truth * (1.0 + np.array([0.0, 0.3])[:, None, None] + reader)
    x = x + rng.normal(0, 0.7, (2, 1, c)) + rng.normal(0, 0.6, (2, r, c))  # modality x case
    theta, covs = auc_covariances(np.digitize(x, [-1, 0, 1, 2]).reshape(2 * r, c), truth)
    return analyse(theta.reshape(2, r), {"jackknife": covs["jackknife"]}, c)


def test_at_the_pilots_own_design_the_noncentrality_is_its_observed_f():
    out = _pilot_analysis()
    pilot = Pilot.from_analysis(out)
    assert pilot.var_tr > 0 and pilot.cov2 > pilot.cov3  # no clamp in play
    got = power(pilot, pilot.readers, pilot.cases, abs(out["auc.diff"]))
    # the expected denominator at the pilot's size is the observed one
    assert got["ddf"] == pytest.approx(out["rrrc_jackknife.df"], rel=1e-10)
    assert got["ncp"] == pytest.approx(out["rrrc_jackknife.F"], rel=1e-10)


def test_van_dyke_pilot_matches_its_analysis(vandyke_dir):
    from common.study.ratings import load_ratings

    ratings = load_ratings(vandyke_dir / "vandyke.csv")
    theta, covs = auc_covariances(ratings.values.reshape(10, -1), ratings.truth)
    out = analyse(theta.reshape(2, 5), covs, 114)
    got = power(Pilot.from_analysis(out), 5, 114, abs(out["auc.diff"]))
    assert got["ddf"] == pytest.approx(15.2596745891418, rel=1e-9)
    assert got["ncp"] == pytest.approx(4.45631869315726, rel=1e-9)


def test_cases_needed_is_the_smallest_reaching_the_target():
    pilot = Pilot.from_analysis(_pilot_analysis(1))
    for readers in (4, 8):
        n = cases_needed(pilot, readers, 0.1)
        assert power(pilot, readers, n, 0.1)["power"] >= 0.8
        assert power(pilot, readers, n - 1, 0.1)["power"] < 0.8
    # more readers never need more cases; a tiny effect may not be reachable
    rows = plan(pilot, 0.1)["table"]
    cases = [r["cases"] for r in rows]
    assert cases == sorted(cases, reverse=True)
    assert cases_needed(pilot, 2, 0.001, max_cases=5000) is None


def test_split_plot_needs_more_than_crossed_and_reduces_to_it():
    pilot = Pilot.from_analysis(_pilot_analysis(2))
    crossed = power(pilot, 8, 200, 0.05)
    assert power(pilot, 8, 200, 0.05, groups=1) == crossed
    # 4 hospitals of 2 readers, each reading its own quarter of the cases: each AUC is
    # noisier than the shared cases' correlation saves, so more cases are needed
    assert cases_needed(pilot, 8, 0.1, groups=4) > cases_needed(pilot, 8, 0.1)
    one_each = power(pilot, 8, 200, 0.05, groups=8)  # one reader per hospital
    assert one_each["ddf"] == pytest.approx(7.0)  # no covariance term: the paired t test
    with pytest.raises(ValueError, match="same number"):
        power(pilot, 9, 200, 0.05, groups=4)
