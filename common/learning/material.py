"""One hospital's training material, and the local training of both models on it.

The centralised baseline (all hospitals pooled), the local-only baseline (one hospital
alone) and the federated client (one hospital, one round at a time) all train through
:func:`train_models` on a :class:`SiteData`, so the three differ only in whose data and
which starting weights.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import TensorDataset

from common.data.cache import PreprocessCache
from common.data.folders import load_hospital
from common.data.partition import PartitionSpec
from common.data.partition import partition as split_patients
from common.data.problems import ProblemLog
from common.data.records import ImageRecord, ReaderRead
from common.data.splits import split_by_patient
from common.imaging.reading import ReadOptions
from common.learning.dp import DPConfig, PrivacyBudgetError
from common.learning.inference import DEFAULT_CASCADE, CascadeConfig
from common.learning.mining import false_peaks
from common.learning.models import ClassifierConfig, DetectorConfig
from common.learning.samples import (
    ClassifierCrops,
    ImageStore,
    detector_patches,
    negative_patches,
    prepare,
)
from common.learning.training import DPPlan, TrainConfig, TrainResult, plan_private, train

logger = logging.getLogger("calcifl")

TASKS = ("detector", "classifier")


@dataclass(frozen=True)
class SiteSettings:
    """How a site's images become training material.

    Attributes
    ----------
    dp : bool
        DP-SGD will be used: each classifier crop then appears once per epoch (repeating
        a crop within an epoch would multiply its privacy cost).
    classifier_repeats : int
        Augmented views of each crop per epoch without DP.
    weak_targets : {"candidates", "centroid", "mil"}
        Detector targets of findings without points (:mod:`common.learning.weak`).
    """

    detector: DetectorConfig = field(default_factory=DetectorConfig)
    classifier: ClassifierConfig = field(default_factory=ClassifierConfig)
    read: ReadOptions = field(default_factory=ReadOptions)
    val_fraction: float = 0.15
    seed: int = 0
    cache_dir: Path | None = None
    dp: bool = False
    classifier_repeats: int = 6
    weak_targets: str = "mil"


class SiteData:
    """Training/validation samples of one site (or of pooled sites).

    Parameters
    ----------
    records : list of ImageRecord
        The images to train on; split into train/validation by patient.
    settings : SiteSettings
        Model geometry, reading options, seed.
    problems : ProblemLog, optional
        Collects images that cannot be read (they are skipped and counted).
    """

    def __init__(
        self,
        records: list[ImageRecord],
        settings: SiteSettings = SiteSettings(),
        problems: ProblemLog | None = None,
    ) -> None:
        self.settings = settings
        self.problems = problems if problems is not None else ProblemLog(echo=False)
        s = settings
        parts = validation_split(records, s.val_fraction, s.seed)
        self.store = ImageStore(PreprocessCache(s.cache_dir, s.read))
        weak = s.weak_targets
        self.train_images = prepare(parts["train"], self.store, self.problems, weak)
        self.val_images = prepare(parts["val"], self.store, self.problems, weak)
        rng = np.random.default_rng(s.seed)
        d, c = s.detector, s.classifier
        self.detector_train = detector_patches(
            self.train_images, self.store, d.patch, d.stride, d.sigma, rng
        )
        self.detector_val = detector_patches(
            self.val_images, self.store, d.patch, d.stride, d.sigma, rng
        )
        self._sampled = (self.detector_train, self.detector_val)
        self._minings = 0
        self._mined: dict[str, int] = {}
        repeats = 1 if s.dp else s.classifier_repeats
        self.classifier_train = ClassifierCrops(
            self.train_images, self.store, c.crop, augment=True, seed=s.seed, repeats=repeats
        )
        self.classifier_val = ClassifierCrops(self.val_images, self.store, c.crop)

    def datasets(self, task: str):
        """(train, validation) datasets of ``task``."""
        if task == "detector":
            return self.detector_train, self.detector_val
        return self.classifier_train, self.classifier_val

    def examples(self, task: str) -> int:
        """Distinct training examples of ``task`` (what DP-SGD protects)."""
        if task == "detector":
            return len(self.detector_train)
        return len(self.classifier_train.labels)

    def mine(
        self,
        detector: nn.Module,
        per_image: int,
        cascade: CascadeConfig = DEFAULT_CASCADE,
        progress: bool = False,
    ) -> dict[str, int]:
        """Add the detector's false peaks to its training and validation patches.

        At most ``per_image`` patches per image, cut where ``detector`` peaks and nothing is
        annotated (:mod:`common.learning.mining`); they replace what an earlier call mined.

        Returns
        -------
        dict
            Patches added to the training and validation sets, and images they come from.

        Raises
        ------
        ValueError
            With DP-SGD: the training set would depend on the model.
        """
        if self.settings.dp:
            raise ValueError("hard negatives are not mined with DP-SGD (common.learning.mining)")
        d = self.settings.detector
        self._minings += 1
        rng = np.random.default_rng([self.settings.seed, self._minings])
        counts, self._mined = {}, {}
        mined = []
        for name, images, sampled in (
            ("train", self.train_images, self._sampled[0]),
            ("val", self.val_images, self._sampled[1]),
        ):
            spots = false_peaks(
                detector, images, self.store, per_image, d.patch / 2, cascade, progress
            )
            extra = negative_patches(images, self.store, spots, d.patch, d.stride, d.sigma, rng)
            mined.append(
                TensorDataset(
                    *(torch.cat(pair) for pair in zip(sampled.tensors, extra.tensors, strict=True))
                )
            )
            counts[f"mined_{name}_patches"] = len(extra)
            counts[f"mined_{name}_images"] = sum(len(s) > 0 for s in spots)
            if name == "train":
                for item, s in zip(images, spots, strict=True):
                    pid = item.record.patient_id
                    self._mined[pid] = self._mined.get(pid, 0) + len(s)
        self.detector_train, self.detector_val = mined
        return counts

    def examples_per_patient(self) -> int:
        """Most training examples one patient contributes to the models together.

        Counted as the detector's positives and negatives per image (mined ones included)
        plus the patient's classifier crops (an upper bound: every sampled patch is
        counted as distinct).
        """
        per: dict[str, int] = dict(self._mined)
        for item in self.train_images:
            n = 4 * len(item.findings) + 3 + len(item.findings)
            per[item.record.patient_id] = per.get(item.record.patient_id, 0) + n
        return max(per.values(), default=0)

    def counts(self) -> dict[str, int]:
        """Sizes to report (counts only)."""
        return {
            "train_images": len(self.train_images),
            "val_images": len(self.val_images),
            "detector_patches": len(self.detector_train),
            "classifier_clusters": len(self.classifier_train.labels),
            "unreadable": len(self.problems),
        }


def plan_models(
    site: SiteData,
    configs: dict[str, TrainConfig],
    dp: DPConfig,
    histories: dict[str, list] | None = None,
    horizon_calls: int = 1,
    noise: dict[str, float] | None = None,
) -> dict[str, DPPlan]:
    """Plan DP training of every model, refusing before any is trained if one is over budget.

    Raises
    ------
    PrivacyBudgetError
        With ``task`` set to the model that would exceed the budget.
    """
    plans = {}
    for task, config in configs.items():
        model_dp = dp
        if noise and task in noise:
            model_dp = replace(dp, noise_multiplier=noise[task], target_epsilon=None)
        try:
            plans[task] = plan_private(
                site.examples(task), config, model_dp, (histories or {}).get(task), horizon_calls
            )
        except PrivacyBudgetError as exc:
            exc.task = task
            raise
    return plans


def train_models(
    models: dict[str, nn.Module],
    site: SiteData,
    configs: dict[str, TrainConfig],
    dp: DPConfig | None = None,
    plans: dict[str, DPPlan] | None = None,
    histories: dict[str, list] | None = None,
) -> dict[str, TrainResult]:
    """Train each model of ``configs`` in place on the site's data.

    With DP, each model trains with its plan's noise (see :func:`plan_models`) and its
    accountant history continues from ``histories``.
    """
    results = {}
    for task, config in configs.items():
        train_set, val_set = site.datasets(task)
        if task == "classifier":
            site.classifier_train.reseed(config.seed)
        if len(train_set) == 0:
            logger.warning("%s: no training samples at this site; left unchanged", task)
            results[task] = TrainResult()
            continue
        results[task] = train(
            models[task],
            train_set,
            val_set,
            task,
            config,
            dp=dp,
            accountant=(histories or {}).get(task),
            plan=plans[task] if plans and dp is not None else None,
        )
    return results


def validation_split(
    records: list[ImageRecord], val_fraction: float, seed: int
) -> dict[str, list[ImageRecord]]:
    """Split training images into 'train' and 'val' by patient.

    The validation patients serve early stopping and the reader study's operating point;
    they are the same for a seed wherever this is called.
    """
    return split_by_patient(records, {"train": 1 - val_fraction, "val": val_fraction}, seed)


def site_study_data(
    data_dir: Path,
    partition: tuple[int, PartitionSpec] | None = None,
    test_fraction: float = 0.25,
    seed: int = 0,
    problems: ProblemLog | None = None,
) -> tuple[list[ImageRecord], list[ImageRecord], list[ReaderRead]]:
    """Return a hospital's (training, held-out) images and its reader reads.

    The data's own split is used when present (e.g. the synthetic or CBIS-DDSM test
    split); otherwise ``test_fraction`` of the patients are held out by a seeded hash.
    With ``partition`` (index, spec) only that simulated hospital's patients are kept.
    """
    data = load_hospital(data_dir, echo=False)
    if problems is not None:
        problems.extend(data.problems)
    images = data.images
    if partition is not None:
        index, spec = partition
        images = split_patients(images, spec)[index]
    patients = {im.patient_id for im in images}
    reads = [r for r in data.reads if r.patient_id in patients]
    if any(im.split for im in images):
        train = [im for im in images if (im.split or "train") == "train"]
        test = [im for im in images if im.split == "test"]
        return train, test, reads
    parts = split_by_patient(images, {"train": 1 - test_fraction, "test": test_fraction}, seed)
    return parts["train"], parts["test"], reads


def site_records(
    data_dir: Path,
    partition: tuple[int, PartitionSpec] | None = None,
    test_fraction: float = 0.25,
    seed: int = 0,
    problems: ProblemLog | None = None,
) -> tuple[list[ImageRecord], list[ImageRecord]]:
    """Return a hospital's (training, held-out) images (see :func:`site_study_data`)."""
    train, test, _ = site_study_data(data_dir, partition, test_fraction, seed, problems)
    return train, test
