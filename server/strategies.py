"""Flower strategies by name, configured from :class:`RunSettings`."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
from flwr.app import Array, ArrayRecord, Message, MetricRecord, RecordDict
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
from flwr.serverapp.strategy.strategy_utils import aggregate_arrayrecords

from common.federation import protocol as P
from server.settings import RunSettings

# Central DP averages hospitals uniformly (the noise is calibrated to one hospital's share
# of the mean); the server sets this metric to 1 in every reply before aggregating
UNIT_WEIGHT = "unit-weight"

# each model's arrays (named "<model>.*") and the reply metric that weighs them
MODEL_WEIGHTS = {model: P.examples_key(model) for model in P.MODELS}


class PerModelWeights(FedAvg):
    """FedAvg's weighted mean with each model weighted by the examples it trained on.

    Flower weighs a whole reply by one metric; a hospital's images say little about how
    many calcification clusters its classifier saw. Arrays of a model in
    :data:`MODEL_WEIGHTS` are averaged with that model's metric when every reply carries
    it and their sum is positive (a hospital that trained on none of a model's examples
    then leaves that model out); the other arrays with ``weighted_by_key``. Strategies
    that build on FedAvg's mean (FedProx, FedAvgM, FedAdam) inherit it when this class
    comes after them in the bases.
    """

    def aggregate_train(
        self, server_round: int, replies: Iterable[Message]
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        """Aggregate the replies' arrays (per-model weights) and metrics."""
        valid, _ = self._check_and_log_replies(replies, is_train=True)
        if not valid:
            return None, None
        contents = [m.content for m in valid]
        metrics = [next(iter(c.metric_records.values())) for c in contents]
        records = [next(iter(c.array_records.values())) for c in contents]
        usable = {
            f"{model}.": key
            for model, key in MODEL_WEIGHTS.items()
            if all(key in m for m in metrics) and sum(m[key] for m in metrics) > 0
        }
        names: dict[str, list[str]] = {}  # weighting metric -> array names it weighs
        for name in records[0].keys():
            key = next((k for p, k in usable.items() if name.startswith(p)), self.weighted_by_key)
            names.setdefault(key, []).append(name)
        merged: dict[str, Array] = {}
        for key, own in names.items():  # Flower's weighted mean, one model at a time
            parts = [
                RecordDict({P.ARRAYS: ArrayRecord({n: r[n] for n in own}), P.METRICS: m})
                for r, m in zip(records, metrics, strict=True)
            ]
            merged.update(aggregate_arrayrecords(parts, key).items())
        arrays = ArrayRecord({n: merged[n] for n in records[0].keys()})
        return arrays, self.train_metrics_aggr_fn(contents, self.weighted_by_key)


class PerModelFedProx(FedProx, PerModelWeights):
    """FedProx with per-model weights."""


class PerModelFedAvgM(FedAvgM, PerModelWeights):
    """FedAvgM with per-model weights."""


class PerModelFedAdam(FedAdam, PerModelWeights):
    """FedAdam with per-model weights."""


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
    per_model = settings.per_model_weights and not settings.central_dp
    if name == "fedavg":
        return (PerModelWeights if per_model else FedAvg)(**common)
    if name == "fedavgm":  # server learning rate 1: momentum over the averaged updates
        return (PerModelFedAvgM if per_model else FedAvgM)(
            **common, server_momentum=settings.server_momentum
        )
    if name == "fedprox":
        return (PerModelFedProx if per_model else FedProx)(
            **common, proximal_mu=settings.proximal_mu
        )
    if name == "fedadam":
        return (PerModelFedAdam if per_model else FedAdam)(
            **common, eta=settings.server_lr, eta_l=settings.lr
        )
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
        elif (
            isinstance(value, dict)
            and value
            and all(isinstance(v, np.ndarray) for v in value.values())
        ):
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
