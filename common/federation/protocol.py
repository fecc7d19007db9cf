"""The message protocol both sides speak: record names, keys, error codes and refusals.

The server writes, and the hospital reads, exactly these names; neither side types a key
as a literal. Flower-free: the adapters put these strings into Flower records.
"""

from __future__ import annotations

import re
from enum import IntEnum

# Message types beyond Flower's plain "train" / "evaluate"
MARK_CALIBRATE = "mark_calibrate"
READER_CALIBRATE = "reader_calibrate"
READER_STUDY = "reader_study"

# Record names in a message's content
ARRAYS = "arrays"
METRICS = "metrics"
CONFIG = "config"
SITE = "site"
STUDY = "study"

# Keys of the "site" ConfigRecord of a reply
HOSPITAL_ID = "hospital-id"
EVAL_STATS = "eval-stats"
STUDY_STATS = "study-stats"
VALIDATION_ROC = "validation-roc"
WITHHELD = "withheld"

# Keys of the "study" ConfigRecord of a request
STUDY_CONFIG = "study-config"
MODEL_THRESHOLD = "model-threshold"

# Keys of the round configuration besides the RoundSpec's own
SERVER_ROUND = "server-round"
PROXIMAL_MU = "proximal-mu"

# Metric keys of a reply
NUM_EXAMPLES = "num-examples"
REFUSED_INPUTS = "refused-inputs"
EXCLUDED = "excluded"
DP_DELTA = "dp-delta"
COMPOSED_EPSILON = "composed-epsilon"
PATIENT_EXAMPLES = "patient-examples"
PATIENT_EPSILON = "patient-epsilon"
PATIENT_DELTA = "patient-delta"
MODELS = ("detector", "classifier")
_SHORT = {"detector": "det", "classifier": "cls"}


def model_metric(model: str, what: str) -> str:
    """Key of a per-model metric, e.g. ``model_metric("detector", "steps")`` → ``det-steps``."""
    return f"{_SHORT[model]}-{what}"


def examples_key(model: str) -> str:
    """Key of the count of examples ``model`` trained on (``det-examples``, ``cls-examples``)."""
    return model_metric(model, "examples")


class Code(IntEnum):
    """Error codes of a hospital's refusals (Flower's own codes are below 100)."""

    BUDGET_EXCEEDED = 4001
    BAD_REQUEST = 4002
    NO_DATA = 4003
    POLICY = 4004
    FAILED = 4005


class Refusal(Exception):
    """A request a hospital will not (or cannot) serve; it becomes an error reply.

    Parameters
    ----------
    code : Code
        Why, as a code the server can act on.
    reason : str
        One line for the coordinator: never a path, a name or data.
    """

    def __init__(self, code: Code, reason: str) -> None:
        super().__init__(reason)
        self.code = Code(code)
        self.reason = reason


_SITE_PREFIX = re.compile(r"\[([^\]]+)\] ")


def refusal_reason(site: str | None, reason: str) -> str:
    """Return the reason a hospital sends: ``"[site] reason"`` (``reason`` if no site)."""
    return f"[{site}] {reason}" if site else reason


def refusing_site(reason: str | None) -> str | None:
    """Return the hospital a refusal names (``None``: not a hospital's refusal)."""
    match = _SITE_PREFIX.match(reason or "")
    return match.group(1) if match else None
