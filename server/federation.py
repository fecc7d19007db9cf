"""The federated run: rounds of training and pooled evaluation, checkpointed each round.

Flower's ``Strategy.start`` has no checkpoint or resume, and averages evaluation means;
this loop drives the same strategy objects (their ``configure_*``/``aggregate_train``) and
adds what a multicentre study needs: a checkpoint after every round, resume to the same
result (replies are aggregated in hospital order, training is seeded per round and
hospital), evaluation pooled from summed statistics (overall and per hospital), and a
record of every refusal and dropout.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable

import numpy as np
import torch
from flwr.app import Array, ArrayRecord, ConfigRecord, Message
from flwr.common.constant import ErrorCode
from flwr.serverapp import Grid

from common.evaluation.images import EvalStats
from common.federation import protocol as P
from common.learning.dp import epsilon
from common.learning.models import (
    flat_state,
    load_flat_state,
    parameter_bytes,
    save_models,
    seeded_models,
)
from server import checkpoint
from server.marks import run_mark_calibration
from server.report import write_report
from server.settings import RunSettings
from server.strategies import (
    UNIT_WEIGHT,
    base_strategy,
    make_strategy,
    restore_strategy_state,
    strategy_state,
)
from server.study import run_study

logger = logging.getLogger("calcifl")

RoundCallback = Callable[[int, int, dict], None]


def bound_updates(
    replies: list[Message], global_arrays: dict[str, np.ndarray], bound: float, median_factor: float
) -> dict:
    """Scale down each reply's update (weights - global) whose L2 norm is too large.

    The limit is ``bound`` and/or ``median_factor`` times the median norm of the round's
    updates (so one hospital's scaled or sign-flipped update cannot dominate the average).
    Replies are changed in place; returns the norms and who was bounded, for the report.
    """
    norms = {}
    for m in replies:
        local = from_record(m.content[P.ARRAYS])
        norms[_site(m)] = float(
            np.sqrt(
                sum(
                    float(np.sum((local[k].astype(np.float64) - global_arrays[k]) ** 2))
                    for k in local
                )
            )
        )
    limits = [
        x
        for x in (
            bound,
            median_factor * float(np.median(list(norms.values())))
            if median_factor > 0 and norms
            else 0.0,
        )
        if x > 0
    ]
    if not limits:
        return {"update_norms": norms}
    limit = min(limits)
    bounded = []
    for m in replies:
        norm = norms[_site(m)]
        if norm > limit:
            scale = limit / norm
            local = from_record(m.content[P.ARRAYS])
            m.content[P.ARRAYS] = to_record(
                {
                    k: (global_arrays[k] + scale * (v - global_arrays[k])).astype(v.dtype)
                    for k, v in local.items()
                }
            )
            if norm > limit * 1.001:  # not float rounding of an update clipped at the limit
                bounded.append(_site(m))
    return {"update_norms": norms, "update_norm_limit": limit, "bounded": bounded}


class RunStopped(RuntimeError):
    """The run cannot go on; the reason goes into the report."""


class NotEnoughNodes(RunStopped):
    """Fewer hospitals connected than a round needs, after the bounded wait."""


class CentralBudgetSpent(RunStopped):
    """The next round would take central DP past its ε budget."""


def initial_models(settings: RunSettings) -> dict[str, torch.nn.Module]:
    """Return the seeded starting models of a run."""
    spec = settings.model_spec()
    return seeded_models(
        {"detector": vars(spec.detector), "classifier": vars(spec.classifier)}, settings.seed
    )


def to_record(arrays: dict[str, np.ndarray]) -> ArrayRecord:
    """ArrayRecord of named numpy arrays (order kept)."""
    return ArrayRecord({k: Array(np.ascontiguousarray(v)) for k, v in arrays.items()})


def from_record(record: ArrayRecord) -> dict[str, np.ndarray]:
    """Named numpy arrays of an ArrayRecord."""
    return {k: a.numpy() for k, a in record.items()}


def _site(msg: Message) -> str:
    site = msg.content.config_records.get(P.SITE)
    return (
        str(site[P.HOSPITAL_ID])
        if site and P.HOSPITAL_ID in site
        else f"node-{msg.metadata.src_node_id}"
    )


def _origin(msg: Message, origins: dict[str, int]) -> int:
    """Return the node a reply is about (the SuperLink answers for a lost node itself)."""
    return origins.get(msg.metadata.reply_to_message_id, msg.metadata.src_node_id)


def _origins(messages: list[Message]) -> dict[str, int]:
    """Message id → destination node (the grid sets the ids when it sends)."""
    return {m.metadata.message_id: m.metadata.dst_node_id for m in messages}


def _refused_by_hospital(msg: Message) -> bool:
    """Tell a hospital's refusal from a lost node or a timeout.

    Our ClientApp's error replies start with "[hospital] "; a SuperNode that pins apps
    (``--trusted-entities``) answers an unverified app with Flower's ``INVALID_FAB``.
    """
    if msg.error.code == ErrorCode.INVALID_FAB:
        return True
    return P.refusing_site(msg.error.reason) is not None


def _error_site(
    msg: Message,
    known: dict[int, str],
    origins: dict[str, int] | None = None,
) -> str:
    site = P.refusing_site(msg.error.reason)
    if site:
        return site
    node = _origin(msg, origins or {})
    return known.get(node, f"node-{node}")


def _split(replies) -> tuple[list[Message], list[Message]]:
    replies = list(replies)
    ok = sorted((m for m in replies if not m.has_error()), key=_site)
    failed = sorted((m for m in replies if m.has_error()), key=lambda m: m.metadata.src_node_id)
    return ok, failed


def _at_operating_point(evaluation: dict | None, threshold: float) -> dict | None:
    """Re-summarise an evaluation's summed statistics at the cascade's operating point."""
    if not evaluation:
        return evaluation
    out = dict(evaluation)

    def at(part: dict) -> dict:
        stats = EvalStats.from_dict(part["statistics"])
        return {**part, "summary": stats.summary(mark_threshold=threshold)}

    out["pooled"] = at(evaluation["pooled"])
    out["per_site"] = {site: at(part) for site, part in evaluation.get("per_site", {}).items()}
    return out


def _payload_bytes(record: ArrayRecord) -> int:
    return sum(len(a.data) for a in record.values())


class Federation:
    """One federated run on a Flower ``Grid``.

    Parameters
    ----------
    grid : Grid
        Flower's grid (simulation or deployment).
    settings : RunSettings
        The coordinator's choices.
    run_id : str
        Identifies this run in the hospitals' ledgers and audit logs.
    on_round : callable, optional
        Called as ``on_round(round, num_rounds, record)`` after each round (progress).
    """

    def __init__(
        self, grid: Grid, settings: RunSettings, run_id: str, on_round: RoundCallback | None = None
    ) -> None:
        self.grid = grid
        self.settings = settings
        self.run_id = run_id
        self.on_round = on_round
        self.run_dir = settings.run_dir(run_id)
        self.strategy = make_strategy(settings)
        self.node_sites: dict[int, str] = {}
        self.central_releases = 0  # noised aggregates released so far (central DP)

    def run(self) -> dict:
        """Run (or resume) every round; write final models and the report. Returns it."""
        s = self.settings
        self.run_dir.mkdir(parents=True, exist_ok=True)
        models = initial_models(s)
        arrays = {k: v.numpy() for k, v in flat_state(models).items()}
        history: list[dict] = []
        start_round, resumed_from = 1, None
        if s.resume:
            ckpt = checkpoint.load_latest(self.run_dir)
            if ckpt is None:
                logger.warning(
                    "%s: no checkpoint to resume from; starting at round 1", self.run_dir
                )
            else:
                self._check_compatible(ckpt.state.get("settings", {}))
                arrays, history = ckpt.arrays, ckpt.state.get("history", [])
                restore_strategy_state(self.strategy, ckpt.strategy)
                self.central_releases = sum("central_dp" in h for h in history)
                start_round, resumed_from = ckpt.round + 1, ckpt.round
                logger.info("resuming %s after round %d", self.run_dir, ckpt.round)
        spec = s.round_spec(self.run_id)
        last_eval = None
        for past in reversed(history):
            if past.get("evaluation"):
                last_eval = past["evaluation"]
                break
        stopped = None
        for r in range(start_round, s.num_server_rounds + 1):
            t0 = time.perf_counter()
            record = {"round": r, "run": self.run_id}
            try:
                arrays, train_info = self._train_round(r, arrays, spec)
                record.update(train_info)
                if r % s.eval_every == 0 or r == s.num_server_rounds:
                    record["evaluation"] = self._evaluate_round(r, arrays, spec)
                    last_eval = record["evaluation"]
            except RunStopped as exc:
                logger.error("stopping the run: %s", exc)
                stopped = str(exc)
                break
            record["seconds"] = round(time.perf_counter() - t0, 2)
            history.append(record)
            checkpoint.save(
                self.run_dir,
                checkpoint.Checkpoint(
                    r,
                    arrays,
                    strategy_state(self.strategy),
                    {"settings": s.to_config(), "history": history, "run": self.run_id},
                ),
            )
            if self.on_round:
                self.on_round(r, s.num_server_rounds, record)
        load_flat_state(models, {k: torch.from_numpy(np.asarray(v)) for k, v in arrays.items()})
        model_meta = s.model_spec().meta()
        marks = None
        if not stopped:
            cascade = s.model_spec().cascade
            marks = run_mark_calibration(
                self.grid, to_record(arrays), spec, cascade.max_false_marks, s.round_timeout
            )
            if marks["threshold"] is not None:
                model_meta["cascade"]["mark_threshold"] = marks["threshold"]
                last_eval = _at_operating_point(last_eval, marks["threshold"])
        meta = {
            **model_meta,
            "trained_by": "federated",
            "strategy": s.strategy,
            "rounds": s.num_server_rounds,
            "dp": s.dp,
            "seed": s.seed,
            "val_fraction": s.val_fraction,
        }
        save_models(self.run_dir, models, meta)  # loadable by calcifl evaluate/predict
        if s.reader_study and not stopped:
            logger.info("reader study on the final models")
            study = run_study(
                self.grid, to_record(arrays), spec, s.study_config(), self.run_dir, s.round_timeout
            )
        report = {
            "run": self.run_id,
            "settings": s.to_config(),
            "resumed_from_round": resumed_from,
            "parameter_bytes_fp32": parameter_bytes(models),
            "rounds": history,
            "final": last_eval,
            "marks": marks,
        }
        if stopped:
            report["stopped"] = stopped
        if s.reader_study and not stopped:
            report["reader_study"] = study
        write_report(self.run_dir, report)
        return report

    def _check_compatible(self, saved: dict) -> None:
        now = self.settings.to_config()
        keys = (
            "strategy",
            "seed",
            "detector-width",
            "classifier-width",
            "classifier-arch",
            "spacing-mm",
            "dp",
            "federation",
            "central-dp",
            "central-dp-clip",
            "central-dp-noise",
            "central-dp-epsilon",
            "central-dp-delta",
        )
        changed = [k for k in keys if k in saved and saved[k] != now[k]]
        if changed:
            raise ValueError(
                f"{self.run_dir}: cannot resume with changed settings: "
                + ", ".join(f"{k} {saved[k]!r} → {now[k]!r}" for k in changed)
            )

    def _available(self, floor: int, r: int) -> int:
        """Wait (bounded) for the strategy's minimum of connected hospitals.

        Flower's sampling waits for ``min_available_nodes`` without a bound. Wait at most
        ``node-wait-timeout``; then, with at least ``floor`` hospitals, lower the strategy's
        minimum to those connected for this round (a lost hospital must not stall the
        federation); with fewer, raise :class:`NotEnoughNodes`.
        """
        s = self.settings
        needed = max(s.min_available_nodes, floor)
        deadline = time.monotonic() + s.node_wait_timeout
        while (count := len(list(self.grid.get_node_ids()))) < needed:
            if time.monotonic() >= deadline:
                break
            time.sleep(1.0)
        if count < floor:
            raise NotEnoughNodes(
                f"round {r}: {count} hospital(s) connected after "
                f"{s.node_wait_timeout:.0f} s; {floor} needed"
            )
        base_strategy(self.strategy).min_available_nodes = min(s.min_available_nodes, count)
        if count < needed:
            logger.warning(
                "round %d: %d of %d hospitals connected after %.0f s; going on",
                r,
                count,
                needed,
                s.node_wait_timeout,
            )
        return count

    def _central_epsilon(self, releases: int) -> float:
        # the DP wrapper holds the noise multiplier (derived once from the budget if unset)
        z = self.strategy.noise_multiplier
        return epsilon([(z, 1.0, releases)], self.settings.central_dp_delta)

    def _check_central_budget(self, r: int) -> None:
        s = self.settings
        if not (s.central_dp and s.central_dp_epsilon > 0):
            return
        after = self._central_epsilon(self.central_releases + 1)
        if after > s.central_dp_epsilon * (1 + 1e-9):
            raise CentralBudgetSpent(
                f"round {r}: central DP would reach ε {after:.3f} > budget "
                f"{s.central_dp_epsilon:g} (δ {s.central_dp_delta:g}); the run stops here"
            )

    def _prepare_central(self, ok: list[Message], arrays: dict) -> dict:
        """Bound every update to the clipping norm, weigh hospitals equally.

        Hospitals clip their own update (``fixedclipping_mod``); bounding again here keeps
        the guarantee for a hospital whose client does not (it is listed as unclipped).
        """
        s = self.settings
        limits = [x for x in (s.update_norm_bound, s.central_dp_clip) if x > 0]
        info = bound_updates(ok, arrays, min(limits), s.update_norm_median)
        for m in ok:
            m.content[P.METRICS][UNIT_WEIGHT] = 1.0
        self.strategy.num_sampled_clients = len(ok)  # noise for the mean of these replies
        info["unclipped"] = [
            k for k, v in info["update_norms"].items() if v > s.central_dp_clip * 1.001
        ]
        return info

    def _train_round(self, r: int, arrays: dict, spec) -> tuple[dict, dict]:
        s = self.settings
        record = to_record(arrays)
        self._check_central_budget(r)
        connected = self._available(s.min_train_nodes, r)
        messages = list(
            self.strategy.configure_train(r, record, ConfigRecord(spec.to_config()), self.grid)
        )
        sent_to = [m.metadata.dst_node_id for m in messages]
        replies = self.grid.send_and_receive(messages, timeout=s.round_timeout)
        origins = _origins(messages)
        ok, failed = _split(replies)
        for m in ok:
            self.node_sites[_origin(m, origins)] = _site(m)
        refused = [m for m in failed if _refused_by_hospital(m)]
        lost = [m for m in failed if not _refused_by_hospital(m)]
        # a hospital that never answered, or that Flower reports as lost, dropped out
        answered = {_origin(m, origins) for m in [*ok, *refused]}
        info = {
            "connected": connected,
            "sampled": len(sent_to),
            "trained": [_site(m) for m in ok],
            "refused": [
                {
                    "site": _error_site(m, self.node_sites, origins),
                    "code": m.error.code,
                    "reason": m.error.reason,
                }
                for m in refused
            ],
            "dropped": [self.node_sites.get(n, f"node-{n}") for n in sent_to if n not in answered],
            "lost": [
                {
                    "site": _error_site(m, self.node_sites, origins),
                    "code": m.error.code,
                    "reason": m.error.reason,
                }
                for m in lost
            ],
            "per_site": {_site(m): dict(m.content[P.METRICS]) for m in ok},
            "bytes_sent_to_site": _payload_bytes(record),
            "bytes_received_per_site": {_site(m): _payload_bytes(m.content[P.ARRAYS]) for m in ok},
        }
        for item in info["refused"]:
            logger.warning(
                "round %d: %s refused (%s): %s", r, item["site"], item["code"], item["reason"]
            )
        for site in info["dropped"]:
            logger.warning("round %d: no reply from %s (dropped)", r, site)
        if not ok:
            logger.warning("round %d: no hospital trained; global model unchanged", r)
            return arrays, info
        if s.central_dp:
            info.update(self._prepare_central(ok, arrays))
        else:
            info.update(bound_updates(ok, arrays, s.update_norm_bound, s.update_norm_median))
        new, metrics = self.strategy.aggregate_train(r, ok)
        if new is None:
            logger.warning("round %d: aggregation failed; global model unchanged", r)
            return arrays, info
        if s.central_dp:
            self.central_releases += 1
            z = self.strategy.noise_multiplier
            info["central_dp"] = {
                "hospitals": len(ok),
                "clip": s.central_dp_clip,
                "noise_multiplier": z,
                "noise_stdev": z * s.central_dp_clip / len(ok),
                "releases": self.central_releases,
                "epsilon": self._central_epsilon(self.central_releases),
                "delta": s.central_dp_delta,
            }
            logger.info(
                "round %d: central DP ε %.3f (δ %g) after %d noised aggregate(s)",
                r,
                info["central_dp"]["epsilon"],
                s.central_dp_delta,
                self.central_releases,
            )
        info["aggregated_train_metrics"] = dict(metrics) if metrics is not None else {}
        return from_record(new), info

    def _evaluate_round(self, r: int, arrays: dict, spec) -> dict:
        s = self.settings
        self._available(s.min_evaluate_nodes, r)
        messages = list(
            self.strategy.configure_evaluate(
                r, to_record(arrays), ConfigRecord(spec.to_config()), self.grid
            )
        )
        replies = self.grid.send_and_receive(messages, timeout=s.round_timeout)
        origins = _origins(messages)
        ok, failed = _split(replies)
        pooled = EvalStats()
        per_site, withheld = {}, {}
        for m in ok:
            site = m.content[P.SITE]
            stats = EvalStats.from_dict(json.loads(str(site[P.EVAL_STATS])))
            pooled = pooled + stats
            per_site[_site(m)] = {"statistics": stats.to_dict(), "summary": stats.summary()}
            if site.get(P.WITHHELD):
                withheld[_site(m)] = str(site[P.WITHHELD]).split(",")
        return {
            "pooled": {"statistics": pooled.to_dict(), "summary": pooled.summary()},
            "per_site": per_site,
            "withheld": withheld,
            "failed": [
                {"site": _error_site(m, self.node_sites, origins), "reason": m.error.reason}
                for m in failed
            ],
        }


def run_federation(
    grid: Grid, settings: RunSettings, run_id: str, on_round: RoundCallback | None = None
) -> dict:
    """Run a federation and return its report (see :class:`Federation`)."""
    return Federation(grid, settings, run_id, on_round).run()
