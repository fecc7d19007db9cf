"""Flower strategies by name, configured from :class:`RunSettings`."""

from __future__ import annotations

import numpy as np
from flwr.app import Array, ArrayRecord
from flwr.serverapp.strategy import (
    Bulyan,
    DifferentialPrivacyClientSideFixedClipping,
    FedAdam,
    FedAvg,
    FedAvgM,
    FedProx,
    FedTrimmedAvg,
    Krum,
    Strategy,
)

from server.settings import RunSettings

# Central DP averages hospitals uniformly (the noise is calibrated to one hospital's share
# of the mean); the server sets this metric to 1 in every reply before aggregating
UNIT_WEIGHT = "unit-weight"


def make_strategy(settings: RunSettings) -> Strategy:
    """Build the run's strategy (Flower's own implementations).

    With ``central-dp`` the FedAvg/FedProx strategy is wrapped in Flower's
    ``DifferentialPrivacyClientSideFixedClipping`` (hospitals clip, the server adds noise).
    """
    strategy = _base_strategy(settings)
    if not settings.central_dp:
        return strategy
    return DifferentialPrivacyClientSideFixedClipping(
        strategy,
        noise_multiplier=settings.central_dp_noise_multiplier(),
        clipping_norm=settings.central_dp_clip,
        num_sampled_clients=max(1, settings.min_train_nodes),  # set to the replies per round
    )


def base_strategy(strategy: Strategy) -> Strategy:
    """Return the aggregation strategy inside a DP wrapper (or the strategy itself)."""
    return getattr(strategy, "strategy", strategy)


def _base_strategy(settings: RunSettings) -> Strategy:
    common = {
        "fraction_train": settings.fraction_train,
        "fraction_evaluate": settings.fraction_evaluate,
        "min_train_nodes": settings.min_train_nodes,
        "min_evaluate_nodes": settings.min_evaluate_nodes,
        "min_available_nodes": settings.min_available_nodes,
    }
    if settings.central_dp:
        common["weighted_by_key"] = UNIT_WEIGHT
    name = settings.strategy
    if name == "fedavg":
        return FedAvg(**common)
    if name == "fedavgm":  # server learning rate 1: momentum over the averaged updates
        return FedAvgM(**common, server_momentum=settings.server_momentum)
    if name == "fedprox":
        return FedProx(**common, proximal_mu=settings.proximal_mu)
    if name == "fedadam":
        return FedAdam(**common, eta=settings.server_lr, eta_l=settings.lr)
    if name == "fedtrimmedavg":
        return FedTrimmedAvg(**common, beta=settings.trim_beta)
    if name == "krum":
        return Krum(**common, num_malicious_nodes=settings.num_malicious_nodes)
    if name == "bulyan":  # needs at least 4 f + 3 hospitals
        return Bulyan(**common, num_malicious_nodes=settings.num_malicious_nodes)
    raise ValueError(f"unknown strategy '{name}'")


def strategy_state(strategy: Strategy) -> dict[str, np.ndarray]:
    """Arrays a strategy keeps between rounds (e.g. FedAdam's moments), flattened.

    Scalars are settings and come back from the run configuration; only array state
    (ndarrays, dicts of ndarrays, ArrayRecords) needs a checkpoint.
    """
    out: dict[str, np.ndarray] = {}
    for name, value in vars(strategy).items():
        if isinstance(value, ArrayRecord):
            out.update({f"{name}/record/{k}": a.numpy() for k, a in value.items()})
        elif isinstance(value, dict) and value and all(
            isinstance(v, np.ndarray) for v in value.values()
        ):  # fmt: skip
            out.update({f"{name}/dict/{k}": v for k, v in value.items()})
        elif isinstance(value, np.ndarray):
            out[f"{name}/array/"] = value
        elif isinstance(value, list) and value and all(isinstance(v, np.ndarray) for v in value):
            out.update({f"{name}/list/{i:06d}": v for i, v in enumerate(value)})  # FedAvgM
    return out


def restore_strategy_state(strategy: Strategy, state: dict[str, np.ndarray]) -> None:
    """Inverse of :func:`strategy_state`."""
    grouped: dict[tuple[str, str], dict[str, np.ndarray]] = {}
    for key, value in state.items():
        name, kind, sub = key.split("/", 2)
        grouped.setdefault((name, kind), {})[sub] = value
    for (name, kind), values in grouped.items():
        if kind == "record":
            setattr(strategy, name, ArrayRecord({k: Array(v) for k, v in values.items()}))
        elif kind == "dict":
            setattr(strategy, name, dict(values))
        elif kind == "list":
            setattr(strategy, name, [values[k] for k in sorted(values)])
        else:
            setattr(strategy, name, values[""])
