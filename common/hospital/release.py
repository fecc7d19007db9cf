"""A hospital's release policy for evaluation statistics: small sets are withheld.

Every histogram set whose positives or negatives (lesions or images for the FROC; normal
images for the FROC's normal-image part) number fewer than ``min-cell`` is withheld. The
parts released are not sums of one another, so withholding one part cannot be undone by
subtracting the others.
"""

from __future__ import annotations

import numpy as np

from common.evaluation.images import EvalStats
from common.evaluation.metrics import PointStats


def _small(min_cell: int, *counts: int) -> bool:
    return any(0 < n < min_cell for n in counts)


def release_eval(stats: EvalStats, min_cell: int) -> tuple[EvalStats, list[str]]:
    """Withhold statistics with fewer than ``min_cell`` positives or negatives.

    Returns the statistics as released and the names of the parts withheld.
    """
    withheld = []
    empty = EvalStats()
    for name in ("finding_roc", "breast_roc"):
        roc = getattr(stats, name)
        if _small(min_cell, roc.n_pos, roc.n_neg):
            setattr(stats, name, getattr(empty, name))
            withheld.append(name)
            if name == "finding_roc":
                stats.finding_calibration = empty.finding_calibration
                stats.finding_units = empty.finding_units
    froc = stats.froc
    lesions = int(froc.lesion_best.sum()) + froc.missed
    if _small(min_cell, lesions, froc.images):
        # the point-level counts describe the same lesions
        stats.froc, stats.points = type(froc).empty(len(froc.fp)), PointStats()
        withheld.append("froc")
    elif _small(min_cell, froc.normal_images):
        # false clusters of too few normal images: every image's still count
        froc.normal_fp = np.zeros_like(froc.normal_fp)
        froc.normal_images, froc.normal_area_cm2 = 0, 0.0
        withheld.append("froc_normal")
    return stats, withheld


def released_tables(payload) -> int:
    """Count the histograms in released statistics (for the ledger).

    A histogram is a list of numbers, or a sparse one: a mapping from bin numbers (or
    pairs of them) to counts.
    """
    if isinstance(payload, dict):
        if payload and all(k.replace(",", "").isdigit() for k in payload):
            return 1
        return sum(released_tables(v) for v in payload.values())
    if isinstance(payload, list):
        if payload and all(isinstance(v, (int, float)) for v in payload):
            return 1
        return sum(released_tables(v) for v in payload)
    return 0
