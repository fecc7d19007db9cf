"""The centralised baseline: all hospitals' training data pooled, both models trained."""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from common.data.folders import load_hospital
from common.data.records import ImageRecord
from common.evaluation.images import calibrate_marks
from common.evaluation.marks import marks_line
from common.imaging.reading import ReadOptions
from common.learning.dp import DPConfig, epsilon, group_privacy
from common.learning.inference import CascadeConfig
from common.learning.material import SiteData, SiteSettings, train_models
from common.learning.models import (
    ClassifierConfig,
    DetectorConfig,
    save_models,
    seeded_models,
)
from common.learning.recipes import (
    classifier_arch,
    dp_classifier_schedule,
    dp_detector_schedule,
)
from common.learning.training import TrainConfig, TrainResult
from common.learning.verification import fit_verifier

logger = logging.getLogger("calcifl")


@dataclass
class CentralConfig:
    """Settings of a centralised training run.

    ``classifier`` None picks the classifier by DP (:func:`common.learning.recipes.classifier_arch`:
    descriptors with DP-SGD, the CNN without); ``dp_classifier_train`` and
    ``dp_detector_train`` None pick the DP schedules (:func:`dp_classifier_schedule`,
    :func:`dp_detector_schedule`).

    ``hard_negatives`` > 0 (without DP): once trained, the detector's strongest false peaks
    (that many per image, :meth:`SiteData.mine`) join its patches, and it trains
    ``mining_epochs`` more epochs on them. ``verifier`` (without DP): a cluster verifier is
    fitted on the trained detector's clusters on the training images
    (:func:`common.learning.verification.fit_verifier`) and weighs every cluster's
    detection score, the operating point included.
    """

    detector: DetectorConfig = field(default_factory=DetectorConfig)
    classifier: ClassifierConfig | None = None
    detector_train: TrainConfig = field(default_factory=lambda: TrainConfig(epochs=15))
    classifier_train: TrainConfig = field(
        default_factory=lambda: TrainConfig(epochs=50, patience=10)
    )
    dp_classifier_train: TrainConfig | None = None
    dp_detector_train: TrainConfig | None = None
    read: ReadOptions = field(default_factory=ReadOptions)
    cascade: CascadeConfig = field(default_factory=CascadeConfig)
    dp: DPConfig | None = None
    val_fraction: float = 0.15
    seed: int = 0
    cache_dir: Path | None = None
    weak_targets: str = "mil"
    hard_negatives: int = 0
    mining_epochs: int = 2
    verifier: bool = False

    def classifier_config(self) -> ClassifierConfig:
        """Return the classifier in effect (automatic when ``classifier`` is None)."""
        if self.classifier is not None:
            return self.classifier
        return ClassifierConfig(arch=classifier_arch("auto", self.dp is not None))

    def detector_schedule(self) -> TrainConfig:
        """Return the detector's training settings in effect."""
        if self.dp is None:
            return self.detector_train
        return self.dp_detector_train or dp_detector_schedule(self.detector_train)

    def classifier_schedule(self) -> TrainConfig:
        """Return the classifier's training settings in effect."""
        if self.dp is None:
            return self.classifier_train
        return self.dp_classifier_train or dp_classifier_schedule(
            self.classifier_config().arch, self.classifier_train
        )


def training_records(data_dirs: list[Path]) -> list[ImageRecord]:
    """Images of the 'train' split (or with no split) of every hospital folder."""
    records = []
    for folder in data_dirs:
        data = load_hospital(folder)
        records += [im for im in data.images if (im.split or "train") == "train"]
    return records


def site_settings(config: CentralConfig) -> SiteSettings:
    """Return the sample-building settings of a training configuration."""
    return SiteSettings(
        detector=config.detector,
        classifier=config.classifier_config(),
        read=config.read,
        val_fraction=config.val_fraction,
        seed=config.seed,
        cache_dir=config.cache_dir,
        dp=config.dp is not None,
        weak_targets=config.weak_targets,
    )


def train_central(
    data_dirs: list[Path], out_dir: Path, config: CentralConfig, records=None
) -> dict:
    """Train detector and classifier on the pooled training splits; save to ``out_dir``.

    ``records`` overrides the images to train on (default: the folders' training splits).
    """
    start = time.perf_counter()
    if config.dp is not None and (config.hard_negatives > 0 or config.verifier):
        raise ValueError(
            "hard negatives and the cluster verifier are not used with DP-SGD: what they add "
            "to the training would depend on the patients' images outside the accounting"
        )
    if records is None:
        records = training_records(data_dirs)
    site = SiteData(records, site_settings(config))
    counts = site.counts()
    logger.info(
        "training on %d images (%d patches, %d clusters); validating on %d images",
        counts["train_images"],
        counts["detector_patches"],
        counts["classifier_clusters"],
        counts["val_images"],
    )
    models = seeded_models(
        {"detector": asdict(config.detector), "classifier": asdict(config.classifier_config())},
        config.seed,
    )
    cls_config = config.classifier_schedule()
    det_config = config.detector_schedule()
    results = train_models(
        models,
        site,
        {"detector": det_config, "classifier": cls_config},
        dp=config.dp,
    )
    mining = None
    if config.hard_negatives > 0 and config.mining_epochs > 0:
        mining = site.mine(
            models["detector"], config.hard_negatives, config.cascade, det_config.progress
        )
        logger.info(
            "mined %d false peaks on %d of %d training images as negatives (%d validation)",
            mining["mined_train_patches"],
            mining["mined_train_images"],
            counts["train_images"],
            mining["mined_val_patches"],
        )
        tune = replace(det_config, epochs=config.mining_epochs, seed=det_config.seed + 1)
        tuned = train_models(models, site, {"detector": tune})["detector"]
        results["detector"] = _joined(results["detector"], tuned)
    verifying = None
    if config.verifier:
        verifier, verifying = fit_verifier(
            models["detector"], site.train_images, site.store, config.cascade, det_config.progress
        )
        if verifier is None:
            logger.warning("no cluster verifier: %s", verifying["skipped"])
        else:
            models["verifier"] = verifier
            logger.info(
                "cluster verifier fitted on %d finding and %d false clusters",
                verifying["findings"],
                verifying["false_clusters"],
            )
    det_result, cls_result = results["detector"], results["classifier"]
    # the operating point: false marks per full-field normal image on the validation images
    cascade, marks = calibrate_marks(
        models, [item.record for item in site.val_images], site.store, config.cascade
    )
    logger.info("%s", marks_line(marks))
    summary = {
        "images": {"train": counts["train_images"], "val": counts["val_images"]},
        "detector": {
            "best_epoch": det_result.best_epoch,
            "history": det_result.history,
            "privacy": _public(det_result.privacy),
        },
        "classifier": {
            "best_epoch": cls_result.best_epoch,
            "history": cls_result.history,
            "privacy": _public(cls_result.privacy),
        },
        "marks": marks,
        "hard_negatives": mining,
        "verifier": verifying,
        "seconds": round(time.perf_counter() - start, 1),
    }
    if config.dp is not None:
        summary["privacy"] = _composed(results, site, config.dp.delta)
    meta = {
        "preprocessing": asdict(config.read),
        "cascade": asdict(cascade),
        "trained_by": "train-central",
        "dp": asdict(config.dp) if config.dp else None,
        "seed": config.seed,
        "val_fraction": config.val_fraction,
    }
    save_models(out_dir, models, meta)
    (Path(out_dir) / "train.json").write_text(json.dumps(summary, indent=2))
    return summary


def _joined(first: TrainResult, second: TrainResult) -> TrainResult:
    """One detector result of training and the fine-tuning after mining (epochs numbered on)."""
    offset = len(first.history)
    later = [
        {**row, "epoch": row.get("epoch", 0) + offset, "mined": True} for row in second.history
    ]
    return replace(
        second,
        best_epoch=second.best_epoch + offset if second.best_epoch else 0,
        history=[*first.history, *later],
        steps=first.steps + second.steps,
    )


def _composed(results: dict, site: SiteData, delta: float) -> dict:
    """ε of both models together (they see the same findings) and per patient."""
    history = [h for r in results.values() if r.privacy for h in r.privacy["accountant"]]
    composed = epsilon(history, delta)
    k = site.examples_per_patient()
    patient_eps, patient_delta = group_privacy(composed, delta, k)
    return {
        "delta": delta,
        "composed_epsilon": composed,
        "examples_per_patient": k,
        "patient_epsilon": patient_eps,
        "patient_delta": patient_delta,
    }


def _public(privacy: dict | None) -> dict | None:
    if privacy is None:
        return None
    return {k: v for k, v in privacy.items() if k != "accountant"}
