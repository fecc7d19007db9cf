"""The cascade's operating point, set after the last round from the hospitals' validation images.

``evaluate.mark_calibrate``: each hospital runs the final models on its validation
patients and returns FROC counts (false clusters by detection score, breast area
searched) under its release rule; the server sums them and picks the lowest detection
threshold whose false marks stay within the target per full-field normal image.
"""

from __future__ import annotations

import json
import logging

from flwr.app import ArrayRecord, ConfigRecord, Message, RecordDict
from flwr.serverapp import Grid

from common.evaluation.images import EvalStats
from common.evaluation.marks import calibrate, marks_line
from common.federation import protocol as P
from common.federation.rounds import RoundSpec

logger = logging.getLogger("calcifl")


def run_mark_calibration(
    grid: Grid, arrays: ArrayRecord, spec: RoundSpec, max_false: float, timeout: float
) -> dict:
    """Ask every hospital for validation FROC counts; return :func:`calibrate`'s result.

    The result also names the hospitals that answered (``sites``) and those that did not
    (``failed``: code and reason).
    """
    messages = [
        Message(
            content=RecordDict({P.ARRAYS: arrays, P.CONFIG: ConfigRecord(spec.to_config())}),
            dst_node_id=node,
            message_type=f"evaluate.{P.MARK_CALIBRATE}",
        )
        for node in sorted(grid.get_node_ids())
    ]
    replies = list(grid.send_and_receive(messages, timeout=timeout))
    pooled, sites, failed = EvalStats(), [], []
    for m in replies:
        if m.has_error():
            failed.append({"code": m.error.code, "reason": m.error.reason})
            logger.warning("mark calibration: a hospital refused: %s", m.error.reason)
            continue
        site = m.content[P.SITE]
        pooled = pooled + EvalStats.from_dict(json.loads(str(site[P.EVAL_STATS])))
        sites.append(str(site[P.HOSPITAL_ID]))
    result = calibrate(pooled.froc, max_false)
    result.update(sites=sorted(sites), failed=failed)
    logger.info("%s", marks_line(result))
    return result
