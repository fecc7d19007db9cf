"""A hospital's release policy for evaluation statistics: small sets are withheld."""

from __future__ import annotations

from common.evaluation.images import EvalStats


def release_eval(stats: EvalStats, min_cell: int) -> tuple[EvalStats, list[str]]:
    """Withhold ROC statistics with fewer than ``min_cell`` positives or negatives.

    Returns the statistics as released and the names of the parts withheld.
    """
    withheld = []
    empty = EvalStats()
    for name in ("finding_roc", "breast_roc"):
        roc = getattr(stats, name)
        if any(0 < n < min_cell for n in (roc.n_pos, roc.n_neg)):
            setattr(stats, name, getattr(empty, name))
            withheld.append(name)
            if name == "finding_roc":
                stats.finding_calibration = empty.finding_calibration
    return stats, withheld
