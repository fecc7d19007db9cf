"""Evaluate the cascade on a hospital's images as poolable statistics.

:func:`evaluate_images` returns :class:`EvalStats` (histograms and counts only: safe to
send and to sum across hospitals) and, separately, the local per-breast scores that stay
at the hospital unless its policy allows them out.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import numpy as np
import torch

from common.data.records import ImageRecord
from common.evaluation.clustered import ClusteredRoc
from common.evaluation.marks import calibrate, full_field_summary
from common.evaluation.metrics import (
    CalibrationStats,
    FrocStats,
    PointStats,
    RocStats,
    auc_ci,
)
from common.imaging.roi import in_roi
from common.learning.inference import (
    DEFAULT_CASCADE,
    CascadeConfig,
    ClusterResult,
    aggregate_scores,
    classify,
    run_cascade,
)
from common.learning.samples import CanonFinding, ImageStore, prepare


@dataclass(frozen=True)
class BreastScore:
    """The cascade's output for one breast (local: stays at the hospital).

    Attributes
    ----------
    score : float
        Malignancy suspicion, the maximum over the breast's views.
    detection : float
        Best cluster detection score over the views (0 when no cluster was found).
    malignant : bool
        Ground truth.
    """

    score: float
    detection: float
    malignant: bool


@dataclass
class EvalStats:
    """Summable evaluation statistics of one or more hospitals."""

    froc: FrocStats = field(default_factory=FrocStats.empty)
    points: PointStats = field(default_factory=PointStats)
    finding_roc: RocStats = field(default_factory=RocStats.empty)
    finding_calibration: CalibrationStats = field(
        default_factory=lambda: CalibrationStats.from_scores([], [])
    )
    breast_roc: RocStats = field(default_factory=RocStats.empty)
    #: the findings' scores again, with pairs of findings of the same breast (clustered CI)
    finding_units: ClusteredRoc = field(default_factory=ClusteredRoc.empty)

    def __add__(self, other: EvalStats) -> EvalStats:
        return EvalStats(
            self.froc + other.froc,
            self.points + other.points,
            self.finding_roc + other.finding_roc,
            self.finding_calibration + other.finding_calibration,
            self.breast_roc + other.breast_roc,
            self.finding_units + other.finding_units,
        )

    def to_dict(self) -> dict:
        """JSON-ready statistics (counts only)."""
        return {
            "froc": self.froc.to_dict(),
            "points": vars(self.points),
            "finding_roc": self.finding_roc.to_dict(),
            "finding_calibration": self.finding_calibration.to_dict(),
            "breast_roc": self.breast_roc.to_dict(),
            "finding_units": self.finding_units.to_dict(),
        }

    @classmethod
    def from_dict(cls, d: dict) -> EvalStats:
        """Inverse of :meth:`to_dict`."""
        return cls(
            FrocStats.from_dict(d["froc"]),
            PointStats(**d["points"]),
            RocStats.from_dict(d["finding_roc"]),
            CalibrationStats.from_dict(d["finding_calibration"]),
            RocStats.from_dict(d["breast_roc"]),
            ClusteredRoc.from_dict(d["finding_units"])
            if "finding_units" in d
            else ClusteredRoc.empty(),
        )

    def summary(self, operating_point: float = 0.5, mark_threshold: float | None = None) -> dict:
        """Turn (summed) statistics into the reported metrics.

        ``operating_point`` is the malignancy threshold; ``mark_threshold`` the cascade's
        detection operating point, at which false marks per full-field normal image are
        reported.
        """

        def roc(stats: RocStats) -> dict:
            auc, var = stats.delong()
            lo, hi = stats.auc_ci()
            return {
                "auc": auc,
                "auc_ci95": [lo, hi],
                "auc_var": var,
                "positives": stats.n_pos,
                "negatives": stats.n_neg,
                "operating_point": stats.at_threshold(operating_point),
            }

        return {
            "detection": {
                **self.froc.summary(),
                "point_precision": self.points.precision(),
                "point_recall": self.points.recall(),
                "full_field": full_field_summary(self.froc, mark_threshold),
            },
            "classification": {
                **roc(self.finding_roc),
                **self._clustered(),
                "ece": self.finding_calibration.ece(),
            },
            "breast": roc(self.breast_roc),
        }

    def _clustered(self) -> dict:
        """Return the findings' AUC CI with the breast as unit (Obuchowski 1997).

        A lesion's CC and MLO findings are correlated, so this CI replaces DeLong's, which
        treats them as independent (kept as ``auc_ci95_views_independent``).
        """
        auc, var = self.finding_units.variance()
        naive = list(self.finding_roc.auc_ci())
        if not np.isfinite(var):
            return {"auc_ci95_views_independent": naive, "auc_ci_unit": "finding"}
        return {
            "auc_ci95": list(auc_ci(auc, var)),
            "auc_var": var,
            "auc_ci95_views_independent": naive,
            "auc_ci_unit": f"breast ({self.finding_units.units} breasts, clustered)",
        }


def _hit(centre, finding, tolerance: float) -> bool:
    return in_roi(centre, finding.box, finding.centroid, tolerance)


def match_clusters(
    clusters: list[ClusterResult],
    findings: list[CanonFinding],
    tolerance: float,
    vessels_aside: bool = True,
) -> tuple[list[float | None], list[float], int]:
    """Match an image's clusters to its findings.

    A cluster hits a finding when its centre lies in the finding's ROI, ``tolerance``
    pixels around it. Where the cascade sets calcified vessels aside (``vessels_aside``),
    a finding that is a calcified vessel alone is no lesion to mark: a cluster on it is a
    false mark when marked, and it is counted apart.

    Returns
    -------
    hits : list
        Each lesion's best hitting detection score, None where none hits.
    false : list
        The detection scores of the clusters hitting no lesion.
    vessels : int
        Findings left out as calcified vessels.
    """
    hits: list[float | None] = []
    used = np.zeros(len(clusters), dtype=bool)
    lesions = [f for f in findings if not (vessels_aside and f.vessel)]
    for f in lesions:
        hit = np.array([_hit(c.centre, f, tolerance) for c in clusters], dtype=bool)
        used |= hit
        scores = [c.detection_score for c, h in zip(clusters, hit, strict=True) if h]
        hits.append(max(scores) if scores else None)
    false = [c.detection_score for i, c in enumerate(clusters) if not used[i]]
    return hits, false, len(findings) - len(lesions)


@torch.no_grad()
def evaluate_images(
    models: dict[str, torch.nn.Module],
    records: list[ImageRecord],
    store: ImageStore,
    config: CascadeConfig = DEFAULT_CASCADE,
    point_radius_mm: float = 1.0,
    tick: Callable[[], None] | None = None,
) -> tuple[EvalStats, dict]:
    """Run the cascade on ``records`` and collect statistics.

    ``models`` without a classifier collect the detection statistics only.

    Returns
    -------
    stats : EvalStats
        Poolable statistics.
    breasts : dict
        (patient, exam, laterality) → :class:`BreastScore`: local only.
    """
    stats = EvalStats()
    image_scores: list[tuple[tuple, float]] = []
    detections: dict[tuple, float] = defaultdict(float)
    breast_labels: dict[tuple, bool] = defaultdict(bool)
    finding_labels, finding_probs, finding_breasts = [], [], []
    for item in prepare(records, store):
        image = store.get(item.record)
        result = run_cascade(models, image, config)
        tolerance = 1.0 / image.spacing_mm[0]  # 1 mm around the annotated ROI
        hits, fp, vessels = match_clusters(
            result.clusters, item.findings, tolerance, config.line_artifacts
        )
        stats.froc.add_image(hits, fp, result.search_cm2, normal=not item.findings, vessels=vessels)
        annotated = [f.points for f in item.findings if len(f.points) > 1]
        if annotated or not item.findings:
            truth = np.concatenate(annotated) if annotated else np.zeros((0, 2))
            stats.points = stats.points + PointStats.match(
                result.points, truth, point_radius_mm / image.spacing_mm[0]
            )
        labelled = [f for f in item.findings if f.malignant is not None]
        if labelled and "classifier" in models:
            centres = [f.centroid for f in labelled]
            probs = classify(models["classifier"], image.pixels, centres, config.tta)
            finding_probs.extend(probs.tolist())
            finding_labels.extend(float(f.malignant) for f in labelled)
            finding_breasts.extend([item.record.breast_key] * len(labelled))
        key = item.record.breast_key
        image_scores.append((key, result.score))
        best = max((c.detection_score for c in result.clusters), default=0.0)
        detections[key] = max(detections[key], float(best))
        breast_labels[key] |= item.record.label == "malignant"
        if tick:
            tick()
    if finding_labels:
        stats.finding_roc = RocStats.from_scores(finding_probs, finding_labels)
        stats.finding_calibration = CalibrationStats.from_scores(finding_probs, finding_labels)
        stats.finding_units = ClusteredRoc.from_scores(
            finding_probs, finding_labels, finding_breasts
        )
    breast_scores, _ = aggregate_scores(image_scores)
    keys = list(breast_scores)
    if keys:
        stats.breast_roc = RocStats.from_scores(
            [breast_scores[k] for k in keys], [breast_labels[k] for k in keys]
        )
    breasts = {k: BreastScore(breast_scores[k], detections[k], breast_labels[k]) for k in keys}
    return stats, breasts


def detection_stats(
    models: dict[str, torch.nn.Module],
    records: list[ImageRecord],
    store: ImageStore,
    config: CascadeConfig = DEFAULT_CASCADE,
    tick: Callable[[], None] | None = None,
) -> EvalStats:
    """Return the detection statistics of the detector (and verifier), no classifier run.

    Every cluster counts, whatever ``config.mark_threshold``: FROC statistics never
    depend on the operating point. ``tick`` is called after each image.
    """
    detector = {k: models[k] for k in ("detector", "verifier") if k in models}
    return evaluate_images(detector, records, store, config, tick=tick)[0]


def calibrate_marks(
    models: dict[str, torch.nn.Module],
    records: list[ImageRecord],
    store: ImageStore,
    config: CascadeConfig = DEFAULT_CASCADE,
    tick: Callable[[], None] | None = None,
) -> tuple[CascadeConfig, dict]:
    """Set the cascade's operating point on validation ``records`` (``tick`` per image).

    Returns
    -------
    cascade : CascadeConfig
        ``config`` with ``mark_threshold`` meeting ``config.max_false_marks`` (unchanged
        when the records give no breast area).
    calibration : dict
        What :func:`common.evaluation.marks.calibrate` found.
    """
    stats = detection_stats(models, records, store, config, tick)
    result = calibrate(stats.froc, config.max_false_marks)
    if result["threshold"] is None:
        return config, result
    return replace(config, mark_threshold=result["threshold"]), result
