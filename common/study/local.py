"""A hospital's part of a reader study: model scores, its cases, its released statistics.

Shared by the federated client (one hospital answering the server) and the standalone
``calcifl reader-study`` (one or more hospitals on one machine), so both compute exactly
the same statistics.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from common.data.records import ImageRecord, ReaderRead
from common.evaluation.images import BreastScore, evaluate_images
from common.evaluation.metrics import RocStats
from common.learning.inference import CascadeConfig
from common.learning.samples import ImageStore
from common.study.arms import StudyConfig, StudyStats, build_cases, study_stats


def breast_scores(
    models: dict[str, torch.nn.Module],
    records: list[ImageRecord],
    store: ImageStore,
    cascade: CascadeConfig,
    tick: Callable[[], None] | None = None,
) -> dict[tuple, BreastScore]:
    """Run the cascade on ``records``: breast → model scores (local only)."""
    if not records:
        return {}
    return evaluate_images(models, records, store, cascade, tick=tick)[1]


def scores_roc(scores: dict[tuple, BreastScore], bins: int) -> RocStats:
    """ROC histograms (malignant vs other breasts) of the model's breast scores."""
    values = list(scores.values())
    if not values:
        return RocStats.empty(bins)
    return RocStats.from_scores([v.score for v in values], [v.malignant for v in values], bins)


def site_study(
    scores: dict[tuple, BreastScore],
    test: list[ImageRecord],
    reads: list[ReaderRead],
    config: StudyConfig,
    threshold: float,
    spacing: Callable[[ImageRecord], tuple[float, float]] | None = None,
) -> StudyStats:
    """Return the hospital's study statistics after its release policy (``min_cell``).

    ``spacing`` (an image's stored pixel spacing in mm) lets readers' marks be localised.
    """
    if not reads:
        raise ValueError("no reader reads (reader_reads.csv or read columns of the manifest)")
    cases = build_cases(test, reads, scores, spacing)
    if not any(c.reads for c in cases.values()):
        raise ValueError("no reader read refers to a held-out breast")
    return study_stats(cases, config, threshold).release(config.min_cell)
