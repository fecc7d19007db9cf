"""Differential-privacy accounting that is cumulative across training calls.

Opacus' RDP accountant keeps a history of (noise multiplier, sample rate, steps); we
export it after each call and import it before the next, so ε accumulates over every
round of a federation, and we refuse a call whose steps would exceed the budget.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

DEFAULT_DELTA = 1e-5

# A call that needs more noise than this (σ relative to the clipping norm) to fit what is
# left of its budget would learn nothing: it is refused as over budget instead.
MAX_NOISE = 64.0


class PrivacyBudgetError(RuntimeError):
    """Training would spend more ε than the budget allows.

    ``task`` names the model concerned when a caller planned several.
    """

    task: str | None = None

    def __init__(self, spent: float, would_reach: float, budget: float, allowed_steps: int):
        self.spent = spent
        self.would_reach = would_reach
        self.budget = budget
        self.allowed_steps = allowed_steps
        super().__init__(
            f"privacy budget exceeded: ε spent so far {spent:.3f}, this training would reach "
            f"{would_reach:.3f} > budget {budget:.3f} (at most {allowed_steps} more steps fit)"
        )


@dataclass(frozen=True)
class DPConfig:
    """DP-SGD settings.

    Attributes
    ----------
    noise_multiplier : float or None
        σ of the Gaussian noise relative to ``max_grad_norm``; computed from
        ``target_epsilon`` when None.
    target_epsilon : float or None
        Cumulative ε this call should end at (with earlier history included).
    max_grad_norm : float
        Per-sample gradient clipping bound.
    delta : float
        δ (a hospital's setting, not a function of its data); never above 1/n.
    budget_epsilon : float or None
        Hard cap: a call that would push cumulative ε above it is refused.
    secure_mode : bool
        Opacus secure RNG for the noise (needs ``torchcsprng``).
    per_sample : {"fast", "opacus"}
        How per-sample gradients are computed: ``fast`` (:mod:`common.learning.persample`, one
        backward pass without the batch gradient) or Opacus' own hooks. Clipping, noise
        and accounting are Opacus' in both.
    """

    noise_multiplier: float | None = None
    target_epsilon: float | None = None
    max_grad_norm: float = 1.0
    delta: float = DEFAULT_DELTA
    budget_epsilon: float | None = None
    secure_mode: bool = False
    per_sample: str = "fast"

    def __post_init__(self) -> None:
        """Require a way to set the noise."""
        if self.per_sample not in ("fast", "opacus"):
            raise ValueError("per_sample must be 'fast' or 'opacus'")
        if self.noise_multiplier is None and self.target_epsilon is None:
            raise ValueError("DP needs noise_multiplier or target_epsilon")
        if self.max_grad_norm <= 0:
            raise ValueError("max_grad_norm must be positive")

    def delta_for(self, n: int) -> float:
        """δ for a data set of ``n`` examples (refused above 1/n, which protects no one)."""
        if self.delta * max(n, 1) > 1:
            raise ValueError(f"δ {self.delta:g} is above 1/n for n = {n} examples")
        return self.delta


History = list[tuple[float, float, int]]


def epsilon(history: History, delta: float) -> float:
    """Cumulative ε of an accountant history at ``delta`` (0 for no history)."""
    if not history:
        return 0.0
    from opacus.accountants import RDPAccountant  # opacus costs seconds to import

    accountant = RDPAccountant()
    accountant.history = [tuple(h) for h in history]
    return float(accountant.get_epsilon(delta))


def public_size(n: int, up: bool = False) -> int:
    """``n`` rounded down (or ``up``) to a power of two: a size that reveals only its scale.

    DP-SGD samples at a rate set by this size, not by n, so that neither the accountant
    (ε after a coordinator's noise and batch size) nor the counts a hospital reports give
    away more than the power of two.
    """
    if n <= 0:
        return 0
    low = 1 << (int(n).bit_length() - 1)
    return low * 2 if up and low < n else low


def group_privacy(eps: float, delta: float, k: int) -> tuple[float, float]:
    """(ε, δ) protecting a group of ``k`` examples (e.g. one patient's), by group privacy.

    An (ε, δ)-DP release is (kε, k·e^((k-1)ε)·δ)-DP for groups of k; δ is capped at 1,
    where it no longer promises anything.
    """
    if k <= 0:
        return 0.0, 0.0
    log_delta = math.log(k) + (k - 1) * eps + math.log(delta)
    return k * eps, 1.0 if log_delta >= 0 else math.exp(log_delta)


def with_steps(history: History, noise: float, sample_rate: float, steps: int) -> History:
    """History after ``steps`` more steps at (noise, sample_rate)."""
    return [*map(tuple, history), (float(noise), float(sample_rate), int(steps))]


def allowed_steps(
    history: History, noise: float, sample_rate: float, delta: float, budget: float
) -> int:
    """Most further steps at (noise, sample_rate) that keep ε ≤ budget (binary search)."""
    if epsilon(with_steps(history, noise, sample_rate, 1), delta) > budget:
        return 0
    lo, hi = 1, 2
    while epsilon(with_steps(history, noise, sample_rate, hi), delta) <= budget:
        lo, hi = hi, hi * 2
        if hi > 10**8:
            return hi
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if epsilon(with_steps(history, noise, sample_rate, mid), delta) <= budget:
            lo = mid
        else:
            hi = mid
    return lo


def noise_for_target(
    history: History, sample_rate: float, steps: int, delta: float, target: float
) -> float:
    """Smallest noise multiplier whose ``steps`` more steps keep cumulative ε ≤ target."""
    if epsilon(history, delta) >= target:
        raise PrivacyBudgetError(epsilon(history, delta), float("inf"), target, 0)
    lo, hi = 0.3, 1.0
    while epsilon(with_steps(history, hi, sample_rate, steps), delta) > target:
        lo, hi = hi, hi * 2
        if hi > MAX_NOISE:
            raise PrivacyBudgetError(epsilon(history, delta), float("inf"), target, 0)
    # an ε is costly to evaluate at high sample rates: a noise within 1e-4 (relative) is enough
    while hi - lo > 1e-4 * hi:
        mid = (lo + hi) / 2
        if epsilon(with_steps(history, mid, sample_rate, steps), delta) > target:
            lo = mid
        else:
            hi = mid
    return hi
