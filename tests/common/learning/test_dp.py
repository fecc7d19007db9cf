"""Privacy accounting (Opacus RDP) against closed forms."""

import math
import subprocess
import sys

import pytest
from scipy.optimize import brentq
from scipy.stats import norm

from common.learning.dp import epsilon


def _exact_gaussian_epsilon(noise: float, releases: int, delta: float) -> float:
    """Tight ε of ``releases`` Gaussian mechanisms (sensitivity 1, std ``noise``).

    Their composition is μ-GDP with μ = √releases / noise, whose privacy profile is
    δ(ε) = Φ(-ε/μ + μ/2) - e^ε Φ(-ε/μ - μ/2) (Dong, Roth & Su 2019; Balle & Wang 2018).
    """
    mu = math.sqrt(releases) / noise

    def gap(eps):
        return norm.cdf(-eps / mu + mu / 2) - math.exp(eps) * norm.cdf(-eps / mu - mu / 2) - delta

    return brentq(gap, 0.0, 500.0)


@pytest.mark.parametrize(("noise", "releases"), [(1.0, 1), (1.0, 2), (1.1, 3), (3.0, 50)])
def test_unsampled_gaussian_epsilon_is_a_close_upper_bound_of_the_exact_one(noise, releases):
    delta = 1e-5
    rdp = epsilon([(noise, 1.0, releases)], delta)
    exact = _exact_gaussian_epsilon(noise, releases, delta)
    # RDP is valid (never below) and within 10 % of the exact ε
    assert exact <= rdp <= 1.10 * exact


def test_group_privacy_multiplies_epsilon_and_grows_delta():
    import math

    from common.learning.dp import group_privacy

    assert group_privacy(1.0, 1e-5, 1) == pytest.approx((1.0, 1e-5))
    eps, delta = group_privacy(0.5, 1e-6, 4)
    assert eps == 2.0 and delta == pytest.approx(4 * math.exp(1.5) * 1e-6)
    assert group_privacy(8.0, 1e-5, 32) == (256.0, 1.0)  # no guarantee left
    assert group_privacy(8.0, 1e-5, 0) == (0.0, 0.0)


def test_delta_above_one_over_n_is_refused():
    from common.learning.dp import DPConfig

    assert DPConfig(noise_multiplier=1.0, delta=1e-3).delta_for(1000) == 1e-3
    with pytest.raises(ValueError, match="above 1/n"):
        DPConfig(noise_multiplier=1.0, delta=1e-3).delta_for(1001)


def test_apps_load_opacus_only_when_privacy_is_accounted():
    # every simulated SuperNode process loads the ClientApp; opacus costs seconds there
    code = (
        "import sys, client.app, server.app;"
        "print('opacus' in sys.modules);"
        "from common.learning.dp import epsilon;"
        "epsilon([(1.0, 0.01, 100)], 1e-5);"
        "print('opacus' in sys.modules)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    assert result.stdout.split() == ["False", "True"]
