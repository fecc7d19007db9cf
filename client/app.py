"""calcifl ClientApp: Flower messages in, calls of the hospital's own service out.

Each handler reads the message (weights, round configuration, study request), hands it to
:func:`common.hospital.service.serve` with this node's configuration, and turns the
:class:`~common.hospital.service.Outcome` (or refusal) into a reply. All of a hospital's
logic — data, ledger, audit, release policy — lives in :mod:`common.hospital`; one handler
table serves both the deployed app and the simulation's.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
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

from common.federation import protocol as P
from common.federation.protocol import Code, Refusal
from common.federation.rounds import RoundSpec
from common.hospital.service import Hospital, Outcome, serve
from common.study.arms import StudyConfig

# Refusal codes, under the names the tests and operators know
BUDGET_EXCEEDED, BAD_REQUEST, NO_DATA, POLICY, FAILED = (
    Code.BUDGET_EXCEEDED,
    Code.BAD_REQUEST,
    Code.NO_DATA,
    Code.POLICY,
    Code.FAILED,
)


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


def _config(msg: Message) -> dict:
    """Return the round configuration of a message (a reader-study message also has "study")."""
    records = msg.content.config_records
    if P.CONFIG in records and set(records) <= {P.CONFIG, P.STUDY}:
        return dict(records[P.CONFIG])
    if len(records) == 1:
        return dict(next(iter(records.values())))
    raise Refusal(Code.BAD_REQUEST, f"expected one ConfigRecord, got {len(records)}")


def _weights(msg: Message) -> dict:
    records = list(msg.content.array_records.values())
    if len(records) != 1:
        raise Refusal(Code.BAD_REQUEST, f"expected one ArrayRecord, got {len(records)}")
    return records[0].to_torch_state_dict()


def _study(msg: Message, threshold: bool = False) -> tuple[StudyConfig, float | None]:
    record = msg.content.config_records.get(P.STUDY)
    if record is None or P.STUDY_CONFIG not in record:
        raise Refusal(Code.BAD_REQUEST, "reader-study message without a 'study' ConfigRecord")
    try:
        study = StudyConfig.from_json(str(record[P.STUDY_CONFIG]))
    except (ValueError, TypeError) as exc:
        raise Refusal(Code.BAD_REQUEST, f"study configuration: {exc}") from exc
    if not threshold:
        return study, None
    try:
        return study, float(record[P.MODEL_THRESHOLD])
    except (KeyError, TypeError, ValueError) as exc:
        raise Refusal(Code.BAD_REQUEST, "reader-study message without 'model-threshold'") from exc


# What each message type asks of the hospital: (hospital, spec, round, message) → Outcome
WORK: dict[str, Callable[[Hospital, RoundSpec, int, Message], Outcome]] = {
    "train": lambda h, spec, r, msg: h.train(_weights(msg), spec, r),
    "evaluate": lambda h, spec, r, msg: h.evaluate(_weights(msg), spec),
    P.MARK_CALIBRATE: lambda h, spec, r, msg: h.calibrate_marks(_weights(msg), spec),
    P.READER_CALIBRATE: lambda h, spec, r, msg: h.calibrate(_weights(msg), spec, _study(msg)[0]),
    P.READER_STUDY: lambda h, spec, r, msg: h.reader_study(
        _weights(msg), spec, *_study(msg, threshold=True)
    ),
}


def handle(kind: str, msg: Message, node_config: dict, run_config: dict) -> Message:
    """Serve a message of type ``kind`` with this node's configuration; return the reply."""
    audit = {}

    def read_config() -> dict:
        config = _config(msg)
        if kind == "train" and KEY_CLIPPING_NORM in config:
            audit["central_dp_clip"] = float(config[KEY_CLIPPING_NORM])  # the mod clips
        return config

    hospital, result = serve(
        kind.replace("_", "-"),
        node_config,
        run_config,
        read_config,
        lambda h, s, r: WORK[kind](h, s, r, msg),
        audit,
    )
    if not isinstance(result, Outcome):
        return Message(Error(code=int(result.code), reason=result.reason), reply_to=msg)
    content = RecordDict(
        {
            P.METRICS: MetricRecord(result.metrics),
            P.SITE: ConfigRecord({P.HOSPITAL_ID: hospital.name, **result.site}),
        }
    )
    if result.weights is not None:
        content[P.ARRAYS] = ArrayRecord(result.weights)
    return Message(content=content, reply_to=msg)


def handle_train(msg: Message, node_config: dict, run_config: dict) -> Message:
    """Serve a train message with this node's configuration."""
    return handle("train", msg, node_config, run_config)


def handle_evaluate(msg: Message, node_config: dict, run_config: dict) -> Message:
    """Serve an evaluate message with this node's configuration."""
    return handle("evaluate", msg, node_config, run_config)


def handle_reader_calibrate(msg: Message, node_config: dict, run_config: dict) -> Message:
    """Serve a reader-study calibration message with this node's configuration."""
    return handle(P.READER_CALIBRATE, msg, node_config, run_config)


def handle_reader_study(msg: Message, node_config: dict, run_config: dict) -> Message:
    """Serve a reader-study message with this node's configuration."""
    return handle(P.READER_STUDY, msg, node_config, run_config)


def build_app(config_of: Callable[[Context], dict], after_train=None) -> ClientApp:
    """Return a ClientApp whose handlers serve every message type with ``config_of(context)``.

    ``after_train(reply, msg, context)`` may rewrite a train reply (simulated attacks).
    """
    client = ClientApp()

    @client.train(mods=[central_dp_clipping])
    def _train(msg: Message, context: Context) -> Message:
        reply = handle("train", msg, config_of(context), dict(context.run_config))
        return after_train(reply, msg, context) if after_train else reply

    for kind in ("evaluate", P.MARK_CALIBRATE, P.READER_CALIBRATE, P.READER_STUDY):
        register = client.evaluate() if kind == "evaluate" else client.evaluate(kind)

        def _serve(msg: Message, context: Context, kind: str = kind) -> Message:
            return handle(kind, msg, config_of(context), dict(context.run_config))

        register(_serve)
    return client


app = build_app(lambda context: dict(context.node_config))


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
    local = reply.content[P.ARRAYS]
    reply.content[P.ARRAYS] = ArrayRecord(
        {
            k: Array(np.asarray(sent[k].numpy() + factor * (local[k].numpy() - sent[k].numpy())))
            for k in local
        }
    )
    return reply


def make_client_app(node_configs: list[dict]) -> ClientApp:
    """Return a ClientApp for simulations: node ``partition-id`` i gets ``node_configs[i]``.

    For robustness studies a node's configuration may carry ``simulate-attack``
    (:func:`parse_attack`): that simulated hospital then sends poisoned updates. It exists
    only in this simulation factory, never in the deployed ClientApp.
    """

    def own(context: Context) -> dict:
        return node_configs[int(context.node_config["partition-id"])]

    def config_of(context: Context) -> dict:
        config = {**dict(context.node_config), **own(context)}
        config.pop("simulate-attack", None)
        return config

    def attack(reply: Message, msg: Message, context: Context) -> Message:
        text = own(context).get("simulate-attack")
        return _poison(reply, msg, parse_attack(str(text))) if text else reply

    return build_app(config_of, attack)
