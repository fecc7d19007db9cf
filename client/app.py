"""calcifl ClientApp: a hospital trains and evaluates the shared models on its own data.

Thin over ``common/``: the message's configuration is read as a :class:`RoundSpec`, the
arrays are loaded into the detector and classifier, and the work is done by
:func:`common.learning.material.train_models` /
:func:`common.evaluation.images.evaluate_images`. What goes back is the models' weights, ``num-examples`` and training metrics (train) or summable
evaluation statistics (evaluate) — counts and histograms, never a case. Every message
handled is written to the hospital's audit log; DP spending to its privacy ledger.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections import OrderedDict
from dataclasses import replace

import numpy as np
import torch
from flwr.app import (
    Array,
    ArrayRecord,
    ConfigRecord,
    Context,
    Error,
    Message,
    MetricRecord,
    RecordDict,
)
from flwr.clientapp import ClientApp
from flwr.clientapp.mod import fixedclipping_mod
from flwr.clientapp.typing import ClientAppCallable
from flwr.supercore.differential_privacy import KEY_CLIPPING_NORM

from common.data.cache import PreprocessCache
from common.data.problems import ProblemLog
from common.errors import CalciflInputError
from common.evaluation.images import EvalStats, evaluate_images
from common.evaluation.metrics import RocStats
from common.federation.rounds import RoundSpec
from common.hospital.audit import AuditLog
from common.hospital.ledger import PrivacyLedger
from common.hospital.settings import NodeSettings
from common.learning.dp import PrivacyBudgetError
from common.learning.material import (
    TASKS,
    SiteData,
    SiteSettings,
    plan_models,
    site_study_data,
    train_models,
    validation_split,
)
from common.learning.models import build, flat_state, load_flat_state
from common.learning.samples import ImageStore
from common.study.arms import StudyConfig
from common.study.local import breast_scores, scores_roc, site_study

logger = logging.getLogger("calcifl")

# Error codes of refusals (Flower's own codes are below 100)
BUDGET_EXCEEDED = 4001
BAD_REQUEST = 4002
NO_DATA = 4003
POLICY = 4004
FAILED = 4005

app = ClientApp()


def central_dp_clipping(msg: Message, context: Context, call_next: ClientAppCallable) -> Message:
    """Clip this hospital's update when the server runs central DP, else pass through.

    Flower's ``fixedclipping_mod`` needs the clipping norm the server's
    ``DifferentialPrivacyClientSideFixedClipping`` puts in the round's configuration; runs
    without central DP do not carry it.
    """
    configs = list(msg.content.config_records.values())
    if len(configs) == 1 and KEY_CLIPPING_NORM in configs[0]:
        return fixedclipping_mod(msg, context, call_next)
    return call_next(msg, context)


# A simulation reuses one process for many messages: keep a few sites' samples in memory
# (a real SuperNode starts a fresh process per message and relies on the disk cache)
_SITES: OrderedDict = OrderedDict()
_MAX_SITES = 4


class Refusal(Exception):
    """A request this hospital will not (or cannot) serve; becomes an error reply."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code


def _cached(key, make):
    if key in _SITES:
        _SITES.move_to_end(key)
        return _SITES[key]
    value = make()
    _SITES[key] = value
    while len(_SITES) > _MAX_SITES:
        _SITES.popitem(last=False)
    return value


def _records(node: NodeSettings, spec: RoundSpec):
    """(training, held-out, refused rows and files, reader reads) of this hospital."""

    def load():
        problems = ProblemLog(echo=False)
        train, test, reads = site_study_data(
            node.data_dir, node.partition, node.test_fraction, spec.seed, problems
        )
        if problems:
            # the detail (file names) stays in this hospital's log; counts may leave
            logger.warning(
                "%s: %d input(s) refused: %s", node.hospital_id, len(problems), problems.counts()
            )
        return train, test, problems, reads

    key = ("records", str(node.data_dir), repr(node.partition), node.test_fraction, spec.seed)
    return _cached(key, load)


def _site(node: NodeSettings, spec: RoundSpec) -> SiteData:
    models = spec.models()
    key = (
        "site",
        str(node.data_dir),
        repr(node.partition),
        node.test_fraction,
        spec.seed,
        spec.model_spec,
        spec.dp,
        spec.val_fraction,
        str(node.cache_dir),
    )
    settings = SiteSettings(
        detector=models.detector,
        classifier=models.classifier,
        read=models.read,
        val_fraction=spec.val_fraction,
        seed=spec.seed,
        cache_dir=node.cache_dir,
        dp=spec.dp,
    )
    return _cached(key, lambda: SiteData(_records(node, spec)[0], settings))


def _models(spec: RoundSpec, msg: Message) -> dict:
    m = spec.models()
    models = {
        "detector": build("detector", vars(m.detector)),
        "classifier": build("classifier", vars(m.classifier)),
    }
    records = list(msg.content.array_records.values())
    if len(records) != 1:
        raise Refusal(BAD_REQUEST, f"expected one ArrayRecord, got {len(records)}")
    try:
        load_flat_state(models, records[0].to_torch_state_dict())
    except (ValueError, TypeError, RuntimeError) as exc:
        raise Refusal(BAD_REQUEST, str(exc)) from exc
    return models


def _node(node_config: dict, run_config: dict) -> NodeSettings:
    try:
        return NodeSettings.from_config(node_config, run_config)
    except ValueError as exc:
        raise Refusal(BAD_REQUEST, f"node configuration: {exc}") from exc


def _round(msg: Message) -> tuple[RoundSpec, int]:
    records = msg.content.config_records
    if "config" in records and set(records) <= {"config", "study"}:
        config = dict(records["config"])  # a reader-study message also carries "study"
    elif len(records) == 1:
        config = dict(next(iter(records.values())))
    else:
        raise Refusal(BAD_REQUEST, f"expected one ConfigRecord, got {len(records)}")
    try:
        spec = RoundSpec.received(config)
        server_round = int(config.get("server-round", 0))
    except (ValueError, TypeError) as exc:
        raise Refusal(BAD_REQUEST, str(exc)) from exc
    if "proximal-mu" in config:  # FedProx sends its own μ
        spec = replace(spec, proximal_mu=float(config["proximal-mu"]))
    return spec, server_round


def _refuse(msg: Message, exc: Exception, event: dict, site: str | None) -> Message:
    """Error reply "[site] reason"; never a path or data (those stay in the local log)."""
    if isinstance(exc, Refusal):
        code, reason = exc.code, str(exc)
    elif isinstance(exc, CalciflInputError):
        code, reason = NO_DATA, f"data unusable at this hospital ({exc.kind}); see its log"
    else:
        code, reason = FAILED, f"{type(exc).__name__} at this hospital; see its log"
    logger.warning("%s refused: %s", event.get("message"), exc, exc_info=code == FAILED)
    event.update(status="refused", code=code, reason=reason, local_detail=str(exc))
    if site:
        reason = f"[{site}] {reason}"
    return Message(Error(code=code, reason=reason), reply_to=msg)


def _arrays_summary(record: ArrayRecord) -> dict:
    return {k: list(a.shape) for k, a in record.items()}


@app.train(mods=[central_dp_clipping])
def train(msg: Message, context: Context) -> Message:
    """Train both models locally from the received weights; reply with the new weights."""
    return handle_train(msg, dict(context.node_config), dict(context.run_config))


@app.evaluate()
def evaluate(msg: Message, context: Context) -> Message:
    """Run the cascade on the held-out images; reply with summable statistics."""
    return handle_evaluate(msg, dict(context.node_config), dict(context.run_config))


@app.evaluate("reader_calibrate")
def reader_calibrate(msg: Message, context: Context) -> Message:
    """Reader study, step 1: the model's scores on validation breasts (ROC histograms)."""
    return handle_reader_calibrate(msg, dict(context.node_config), dict(context.run_config))


@app.evaluate("reader_study")
def reader_study(msg: Message, context: Context) -> Message:
    """Reader study, step 2: this hospital's summable reader-study statistics."""
    return handle_reader_study(msg, dict(context.node_config), dict(context.run_config))


def parse_attack(text: str) -> float:
    """Read a simulated attack: ``sign-flip:K`` (update × -K) or ``scale:K`` (update × K)."""
    kind, _, value = text.partition(":")
    try:
        factor = float(value or 1.0)
    except ValueError:
        raise ValueError(f"attack '{text}': K must be a number") from None
    if kind == "sign-flip":
        return -factor
    if kind == "scale":
        return factor
    raise ValueError(f"attack '{text}': use sign-flip:K or scale:K")


def _poison(reply: Message, received: Message, factor: float) -> Message:
    """Replace a reply's weights by global + factor × (local - global)."""
    if reply.has_error():
        return reply
    sent = next(iter(received.content.array_records.values()))
    local = reply.content["arrays"]
    poisoned = {
        k: Array(np.asarray(sent[k].numpy() + factor * (local[k].numpy() - sent[k].numpy())))
        for k in local
    }
    reply.content["arrays"] = ArrayRecord(poisoned)
    return reply


def make_client_app(node_configs: list[dict]) -> ClientApp:
    """Return a ClientApp for simulations: node ``partition-id`` i gets ``node_configs[i]``.

    For robustness studies a node's configuration may carry ``simulate-attack``
    (:func:`parse_attack`): that simulated hospital then sends poisoned updates. It exists
    only in this simulation factory, never in the deployed ClientApp.
    """
    sim = ClientApp()

    def config_of(context: Context) -> dict:
        node = dict(context.node_config)
        config = {**node, **node_configs[int(node["partition-id"])]}
        config.pop("simulate-attack", None)
        return config

    @sim.train(mods=[central_dp_clipping])
    def _train_sim(msg: Message, context: Context) -> Message:
        reply = handle_train(msg, config_of(context), dict(context.run_config))
        attack = node_configs[int(context.node_config["partition-id"])].get("simulate-attack")
        return _poison(reply, msg, parse_attack(str(attack))) if attack else reply

    @sim.evaluate()
    def _evaluate_sim(msg: Message, context: Context) -> Message:
        return handle_evaluate(msg, config_of(context), dict(context.run_config))

    @sim.evaluate("reader_calibrate")
    def _calibrate_sim(msg: Message, context: Context) -> Message:
        return handle_reader_calibrate(msg, config_of(context), dict(context.run_config))

    @sim.evaluate("reader_study")
    def _study_sim(msg: Message, context: Context) -> Message:
        return handle_reader_study(msg, config_of(context), dict(context.run_config))

    return sim


def _serve(kind: str, msg: Message, node_config: dict, run_config: dict, work) -> Message:
    """Run ``work(msg, node, spec, round)`` → (reply, audit fields); audit and refuse."""
    started = time.perf_counter()
    audit, event, site = AuditLog(None), {"message": kind}, None
    try:
        node = _node(node_config, run_config)
        site, audit = node.hospital_id, AuditLog(node.audit_path)
        spec, server_round = _round(msg)
        event.update(
            round=server_round,
            run=spec.run,
            federation=spec.federation,
            config_received=spec.to_config(),
        )
        reply, sent = work(msg, node, spec, server_round)
        event.update(sent)
    except Exception as exc:  # noqa: BLE001 - every failure becomes a reply, never a crash
        reply = _refuse(msg, exc, event, site)
    event["seconds"] = round(time.perf_counter() - started, 3)
    event["threads"] = torch.get_num_threads()
    audit.write(event)
    return reply


def handle_train(msg: Message, node_config: dict, run_config: dict) -> Message:
    """Serve a train message with this node's configuration."""
    return _serve("train", msg, node_config, run_config, _train)


def handle_evaluate(msg: Message, node_config: dict, run_config: dict) -> Message:
    """Serve an evaluate message with this node's configuration."""
    return _serve("evaluate", msg, node_config, run_config, _evaluate)


def handle_reader_calibrate(msg: Message, node_config: dict, run_config: dict) -> Message:
    """Serve a reader-study calibration message with this node's configuration."""
    return _serve("reader-calibrate", msg, node_config, run_config, _reader_calibrate)


def handle_reader_study(msg: Message, node_config: dict, run_config: dict) -> Message:
    """Serve a reader-study message with this node's configuration."""
    return _serve("reader-study", msg, node_config, run_config, _reader_study)


def _train(msg: Message, node: NodeSettings, spec: RoundSpec, server_round: int):
    if node.require_dp and not spec.dp:
        raise Refusal(POLICY, "this hospital trains only with DP-SGD (require-dp)")
    models = _models(spec, msg)
    site = _site(node, spec)
    if site.examples("detector") == 0:
        raise Refusal(NO_DATA, "no usable training images")
    configs = spec.train_configs(server_round, node.hospital_id)
    dp = spec.dp_config(node.privacy_budget)
    ledger = PrivacyLedger(node.ledger_path, spec.federation)
    plans, histories = None, None
    if dp is not None:
        histories = {t: ledger.history(t) for t in TASKS}
        noise = {
            t: ledger.entry(t)["noise_multiplier"]
            for t in TASKS
            if ledger.entry(t)["noise_multiplier"] and not spec.dp_noise
        }
        remaining = max(1, spec.num_rounds - server_round + 1)
        try:
            plans = plan_models(site, configs, dp, histories, remaining, noise)
        except PrivacyBudgetError as exc:
            raise Refusal(
                BUDGET_EXCEEDED, f"round {server_round} refused: {exc.task} {exc}"
            ) from exc
        for t, plan in plans.items():  # count the planned spending before any step
            planned = [*histories[t], (plan.noise_multiplier, plan.sample_rate, plan.steps)]
            ledger.record(
                t,
                planned,
                plan.delta,
                plan.noise_multiplier,
                spec.run,
                server_round,
                plan.steps,
                final=False,
            )
    results = train_models(models, site, configs, dp=dp, plans=plans, histories=histories)
    epsilons = {}
    for t in TASKS:
        privacy = results[t].privacy
        if privacy is not None:
            epsilons[t] = ledger.record(
                t,
                privacy["accountant"],
                privacy["delta"],
                privacy["noise_multiplier"],
                spec.run,
                server_round,
                results[t].steps,
                final=True,
            )
    metrics = {
        "num-examples": len(site.train_images),
        "det-examples": site.examples("detector"),
        "cls-examples": site.examples("classifier"),
        "refused-inputs": len(_records(node, spec)[2]) + len(site.problems),
    }
    for t, short in (("detector", "det"), ("classifier", "cls")):
        m = results[t].metrics
        metrics[f"{short}-train-loss"] = float(m.get("train_loss", 0.0))
        metrics[f"{short}-val-loss"] = float(m.get("val_loss", 0.0))
        metrics[f"{short}-steps"] = results[t].steps
        metrics[f"{short}-epsilon"] = float(epsilons.get(t, 0.0))
    arrays = ArrayRecord(flat_state(models))
    content = RecordDict(
        {
            "arrays": arrays,
            "metrics": MetricRecord(metrics),
            "site": ConfigRecord({"hospital-id": node.hospital_id}),
        }
    )
    sent = {
        "status": "trained",
        "arrays_sent": _arrays_summary(arrays),
        "metrics_sent": metrics,
        "epsilon": epsilons,
    }
    clip = next(iter(msg.content.config_records.values())).get(KEY_CLIPPING_NORM)
    if clip is not None:  # the mod around this handler clips the weights on their way out
        sent["central_dp_clip"] = float(clip)
    return Message(content=content, reply_to=msg), sent


def _evaluate(msg: Message, node: NodeSettings, spec: RoundSpec, server_round: int):
    models = _models(spec, msg)
    test = _records(node, spec)[1]
    if not test:
        raise Refusal(NO_DATA, "no held-out images to evaluate")
    stats, breasts = evaluate_images(models, test, _store(node, spec), spec.models().cascade)
    _cached(_scores_key(msg, node, spec, "test"), lambda: breasts)
    stats, withheld = _release(stats, node.min_cell)
    metrics = {"num-examples": len(test), "withheld": len(withheld.split(",")) if withheld else 0}
    return _statistics_reply(
        msg, node, metrics, "eval-stats", stats.to_dict(), withheld, "evaluated"
    )


def _statistics_reply(
    msg: Message, node: NodeSettings, metrics: dict, key: str, stats: dict, withheld, status: str
) -> tuple[Message, dict]:
    """Reply with counts-only statistics (JSON in the "site" ConfigRecord) and audit them."""
    payload = json.dumps(stats)
    site = {"hospital-id": node.hospital_id, key: payload}
    if isinstance(withheld, str):
        site["withheld"] = withheld
    content = RecordDict({"metrics": MetricRecord(metrics), "site": ConfigRecord(site)})
    sent = {
        "status": status,
        "metrics_sent": metrics,
        "withheld": withheld,
        "stats_bytes": len(payload),
    }
    return Message(content=content, reply_to=msg), sent


def _store(node: NodeSettings, spec: RoundSpec) -> ImageStore:
    m = spec.models()
    return _cached(
        ("store", str(node.cache_dir), m.read.cache_token()),
        lambda: ImageStore(PreprocessCache(node.cache_dir, m.read)),
    )


def _study(msg: Message, node: NodeSettings) -> tuple[StudyConfig, ConfigRecord]:
    """Read the study the server asks for, under this hospital's policy (its min-cell wins)."""
    if not node.reader_study:
        raise Refusal(POLICY, "this hospital does not take part in reader studies")
    record = msg.content.config_records.get("study")
    if record is None or "study-config" not in record:
        raise Refusal(BAD_REQUEST, "reader-study message without a 'study' ConfigRecord")
    try:
        config = StudyConfig.from_json(str(record["study-config"]))
    except (ValueError, TypeError) as exc:
        raise Refusal(BAD_REQUEST, f"study configuration: {exc}") from exc
    return replace(config, min_cell=max(config.min_cell, node.min_cell)), record


def _scores_key(msg: Message, node: NodeSettings, spec: RoundSpec, which: str) -> tuple:
    digest = hashlib.sha256()
    for record in msg.content.array_records.values():
        for name, array in record.items():
            digest.update(name.encode() + array.data)
    return (
        "scores",
        which,
        str(node.data_dir),
        repr(node.partition),
        node.test_fraction,
        spec.seed,
        spec.val_fraction,
        spec.model_spec,
        digest.hexdigest(),
    )


def _scores(models: dict, msg: Message, node: NodeSettings, spec: RoundSpec, which: str):
    """Return the model's breast scores on the held-out ("test") or validation images.

    Kept in memory by the weights' digest: the reader study after the last round reuses
    the scores that round's evaluation computed.
    """
    train, test, _, _ = _records(node, spec)
    key = _scores_key(msg, node, spec, which)
    cascade = spec.models().cascade
    if which == "test":
        images = test
    else:
        images = validation_split(train, spec.val_fraction, spec.seed)["val"]
    return _cached(key, lambda: breast_scores(models, images, _store(node, spec), cascade))


def _reader_calibrate(msg: Message, node: NodeSettings, spec: RoundSpec, server_round: int):
    study, _ = _study(msg, node)
    models = _models(spec, msg)
    roc = scores_roc(_scores(models, msg, node, spec, "val"), study.bins)
    withheld = ""
    if any(0 < n < study.min_cell for n in (roc.n_pos, roc.n_neg)):
        roc, withheld = RocStats.empty(study.bins), "validation"
    metrics = {"num-examples": roc.n_pos + roc.n_neg}
    return _statistics_reply(
        msg, node, metrics, "validation-roc", roc.to_dict(), withheld, "calibrated"
    )


def _reader_study(msg: Message, node: NodeSettings, spec: RoundSpec, server_round: int):
    study, record = _study(msg, node)
    try:
        threshold = float(record["model-threshold"])
    except (KeyError, TypeError, ValueError) as exc:
        raise Refusal(BAD_REQUEST, "reader-study message without 'model-threshold'") from exc
    models = _models(spec, msg)
    _, test, _, reads = _records(node, spec)
    if not test:
        raise Refusal(NO_DATA, "no held-out images for the reader study")
    scores = _scores(models, msg, node, spec, "test")
    try:
        stats = site_study(scores, test, reads, study, threshold)
    except ValueError as exc:
        raise Refusal(NO_DATA, str(exc)) from exc
    cases = stats.strata["all"]["cases"] if "all" in stats.strata else 0
    metrics = {
        "num-examples": cases,
        "withheld": len(stats.withheld),
        "excluded": sum(stats.excluded.values()),
    }
    return _statistics_reply(
        msg, node, metrics, "study-stats", stats.to_dict(), stats.withheld, "reader-study"
    )


def _release(stats: EvalStats, min_cell: int) -> tuple[EvalStats, str]:
    """Withhold ROC statistics with fewer than ``min_cell`` positives or negatives."""
    withheld = []
    empty = EvalStats()
    for name in ("finding_roc", "breast_roc"):
        roc = getattr(stats, name)
        if any(0 < n < min_cell for n in (roc.n_pos, roc.n_neg)):
            setattr(stats, name, getattr(empty, name))
            withheld.append(name)
            if name == "finding_roc":
                stats.finding_calibration = empty.finding_calibration
    return stats, ",".join(withheld)
