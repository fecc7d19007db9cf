"""The centralised baseline: all hospitals' training data pooled, both models trained."""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from common.datasets import load_hospital
from common.dicom import ReadOptions
from common.inference import CascadeConfig
from common.models import ClassifierConfig, DetectorConfig, save_models, seeded_models
from common.privacy import DPConfig
from common.records import ImageRecord
from common.site import SiteData, SiteSettings, train_models
from common.training import TrainConfig

logger = logging.getLogger("calcifl")


@dataclass
class CentralConfig:
    """Settings of a centralised training run."""

    detector: DetectorConfig = field(default_factory=DetectorConfig)
    classifier: ClassifierConfig = field(default_factory=ClassifierConfig)
    detector_train: TrainConfig = field(default_factory=lambda: TrainConfig(epochs=15))
    classifier_train: TrainConfig = field(
        default_factory=lambda: TrainConfig(epochs=50, patience=10)
    )
    # DP noise is relative to the batch: larger batches, fewer steps and a higher rate did
    # best at ε = 8 on the default synthetic data (AUC 0.69–0.71 vs 0.54 at batch 32), with
    # a fixed schedule: a ~20-cluster validation set cannot rank noisy DP epochs
    dp_classifier_train: TrainConfig = field(
        default_factory=lambda: TrainConfig(
            epochs=30, batch_size=64, lr=3e-3, patience=0, restore_best=False
        )  # fmt: skip
    )
    read: ReadOptions = field(default_factory=ReadOptions)
    cascade: CascadeConfig = field(default_factory=CascadeConfig)
    dp: DPConfig | None = None
    val_fraction: float = 0.15
    seed: int = 0
    cache_dir: Path | None = None


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
        detector=config.detector, classifier=config.classifier, read=config.read,
        val_fraction=config.val_fraction, seed=config.seed, cache_dir=config.cache_dir,
        dp=config.dp is not None,
    )  # fmt: skip


def train_central(
    data_dirs: list[Path], out_dir: Path, config: CentralConfig, records=None
) -> dict:
    """Train detector and classifier on the pooled training splits; save to ``out_dir``.

    ``records`` overrides the images to train on (default: the folders' training splits).
    """
    start = time.perf_counter()
    if records is None:
        records = training_records(data_dirs)
    site = SiteData(records, site_settings(config))
    counts = site.counts()
    logger.info(
        "training on %d images (%d patches, %d clusters); validating on %d images",
        counts["train_images"], counts["detector_patches"], counts["classifier_clusters"],
        counts["val_images"],
    )  # fmt: skip
    models = seeded_models(
        {"detector": asdict(config.detector), "classifier": asdict(config.classifier)},
        config.seed,
    )
    cls_config = config.dp_classifier_train if config.dp else config.classifier_train
    results = train_models(models, site, {"detector": config.detector_train,
                                          "classifier": cls_config}, dp=config.dp)  # fmt: skip
    det_result, cls_result = results["detector"], results["classifier"]
    summary = {
        "images": {"train": counts["train_images"], "val": counts["val_images"]},
        "detector": {"best_epoch": det_result.best_epoch, "history": det_result.history,
                     "privacy": _public(det_result.privacy)},
        "classifier": {"best_epoch": cls_result.best_epoch, "history": cls_result.history,
                       "privacy": _public(cls_result.privacy)},
        "seconds": round(time.perf_counter() - start, 1),
    }  # fmt: skip
    meta = {
        "preprocessing": asdict(config.read),
        "cascade": asdict(config.cascade),
        "trained_by": "train-central",
        "dp": asdict(config.dp) if config.dp else None,
        "seed": config.seed,
        "val_fraction": config.val_fraction,
    }
    save_models(out_dir, models, meta)
    (Path(out_dir) / "train.json").write_text(json.dumps(summary, indent=2))
    return summary


def _public(privacy: dict | None) -> dict | None:
    if privacy is None:
        return None
    return {k: v for k, v in privacy.items() if k != "accountant"}
