"""The federated reader study: hospitals send summable statistics, the server sums them.

Two exchanges with every connected hospital, after the last round:

1. ``evaluate.reader_calibrate`` — each hospital's model scores on its validation
   patients as ROC histograms; the server sums them and picks the model's operating point
   (skipped when the study gives one).
2. ``evaluate.reader_study`` — each hospital's :class:`~common.study.arms.StudyStats` (counts,
   joint histograms, paired tables) after its release policy; the server sums them into the
   pooled table, which equals the table of the union of the hospitals' cases.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from flwr.app import ArrayRecord, ConfigRecord, Message, RecordDict
from flwr.serverapp import Grid

from common.evaluation.metrics import RocStats
from common.federation import protocol as P
from common.federation.rounds import RoundSpec
from common.study.arms import StudyConfig, StudyStats, model_threshold
from common.study.report import study_result, study_setup, write_study

logger = logging.getLogger("calcifl")


def _send(
    grid: Grid, action: str, arrays: ArrayRecord, spec: RoundSpec, study: dict, timeout: float
) -> tuple[list[Message], list[Message]]:
    nodes = sorted(grid.get_node_ids())
    messages = [
        Message(
            content=RecordDict(
                {
                    P.ARRAYS: arrays,
                    P.CONFIG: ConfigRecord(spec.to_config()),
                    P.STUDY: ConfigRecord(study),
                }
            ),
            dst_node_id=node,
            message_type=f"evaluate.{action}",
        )
        for node in nodes
    ]
    replies = list(grid.send_and_receive(messages, timeout=timeout))
    ok = [m for m in replies if not m.has_error()]
    return ok, [m for m in replies if m.has_error()]


def _site(msg: Message) -> str:
    return str(msg.content[P.SITE][P.HOSPITAL_ID])


def _failures(failed: list[Message]) -> list[dict]:
    out = []
    for m in failed:
        out.append({"code": m.error.code, "reason": m.error.reason})
        logger.warning("reader study: a hospital refused (%s): %s", m.error.code, m.error.reason)
    return out


def run_study(
    grid: Grid,
    arrays: ArrayRecord,
    spec: RoundSpec,
    config: StudyConfig,
    run_dir: Path,
    timeout: float,
) -> dict:
    """Run the federated reader study; write its table and figure; return its summary."""
    study = {P.STUDY_CONFIG: config.to_json()}
    failed: list[dict] = []
    validation = None
    if config.model_threshold is None:
        ok, bad = _send(grid, P.READER_CALIBRATE, arrays, spec, study, timeout)
        failed += _failures(bad)
        validation = RocStats.empty(config.bins)
        for m in sorted(ok, key=_site):
            validation = validation + RocStats.from_dict(
                json.loads(str(m.content[P.SITE][P.VALIDATION_ROC]))
            )
    try:
        threshold = model_threshold(validation or RocStats.empty(config.bins), config)
    except ValueError as exc:
        logger.warning("reader study not run: %s", exc)
        return {"failed": failed, "sites": [], "error": str(exc)}
    study[P.MODEL_THRESHOLD] = float(threshold)
    ok, bad = _send(grid, P.READER_STUDY, arrays, spec, study, timeout)
    failed += _failures(bad)
    per_site = {
        _site(m): StudyStats.from_dict(json.loads(str(m.content[P.SITE][P.STUDY_STATS])))
        for m in sorted(ok, key=_site)
    }
    if not per_site:
        logger.warning("reader study: no hospital sent statistics")
        return {"failed": failed, "sites": []}
    result, pooled = study_result(per_site, study_setup(config, threshold, validation))
    result["failed"] = failed
    paths = write_study(run_dir, result, pooled)
    return {
        "sites": list(per_site),
        "failed": failed,
        "setup": result["setup"],
        "all": result["pooled"].get("all"),
        "files": [p.name for p in paths.values()],
    }
