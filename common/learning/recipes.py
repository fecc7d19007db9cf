"""Training recipes: how settings become training and DP configurations, in one place.

The automatic classifier architecture, the classifier's batch size and learning rate, the
detector's frozen stem under DP and the centralised DP schedules are chosen here, and
:func:`local_train_configs` / :func:`dp_config` turn a hospital's round settings into the
:class:`~common.learning.training.TrainConfig` and :class:`~common.learning.dp.DPConfig`
that training takes. The federated client, the baselines and ``train-central`` all call
these; the measurements behind each choice are in ``docs/results.md``.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from common.learning.dp import DEFAULT_DELTA, DPConfig
from common.learning.models import ARCHES
from common.learning.training import TrainConfig

if TYPE_CHECKING:
    from common.federation.rounds import LocalTraining

# The detector's parameters that DP-SGD leaves at their initial (random) weights: the
# full-resolution stem. Fewer noisy weights and a cheaper DP step (no per-sample work at
# full resolution); held-out breast AUC at ε = 8 rose on each synthetic consortium tried
# (see :func:`dp_detector_schedule`).
DP_FROZEN_DETECTOR = ("stem.",)


def classifier_arch(arch: str, dp: bool) -> str:
    """Resolve ``"auto"``: descriptors with DP-SGD, the CNN without.

    DP-SGD's noise grows with the number of trained weights: with a few hundred clusters
    the CNN drowns in it while the 15-weight descriptor model keeps most of its accuracy
    (``docs/results.md``, "DP recipes").
    """
    if arch == "auto":
        return "descriptors" if dp else "cnn"
    if arch not in ARCHES:
        raise ValueError(f"classifier arch {arch!r}: expected 'auto' or one of {ARCHES}")
    return arch


def classifier_batch(batch_size: int, dp: bool) -> int:
    """Classifier batch size in effect: ``batch_size``, or 0 for 4 without DP, 32 with DP.

    A hospital holds a few dozen clusters and FedAvg's averaged update moves about as far
    as one hospital's local steps, so small batches close most of the gap to pooled
    training; DP-SGD's noise is relative to the batch, so with DP the default stays at 32.
    """
    if batch_size:
        return batch_size
    return 32 if dp else 4


def classifier_rate(lr: float, arch: str) -> float:
    """Classifier learning rate in effect: ``lr``, or 0 for 1e-3 (CNN) / 0.03 (descriptors)."""
    if lr:
        return lr
    return 0.03 if arch == "descriptors" else 1e-3


def detector_frozen(dp: bool, freeze_stem: bool) -> tuple[str, ...]:
    """Detector parameter prefixes kept fixed in local training (the stem, with DP)."""
    return DP_FROZEN_DETECTOR if dp and freeze_stem else ()


def local_train_configs(
    local: LocalTraining,
    arch: str,
    seed: int,
    rounds: int = 1,
    progress: bool = False,
    **overrides,
) -> dict[str, TrainConfig]:
    """Per-model :class:`TrainConfig` of a hospital's local training.

    Parameters
    ----------
    local : LocalTraining
        The round's settings (epochs, rates, batch sizes, DP, patience).
    arch : str
        The classifier's architecture in effect.
    seed : int
        Seed of sampling and augmentation.
    rounds : int
        Epochs are multiplied by this (the centralised baseline mirrors a whole run).
    overrides
        Further :class:`TrainConfig` fields for both models (e.g. ``proximal_mu``).
    """
    common = {
        "patience": local.patience,
        "seed": seed,
        "progress": progress,
        "restore_best": local.restore_best,
        **overrides,
    }
    return {
        "detector": TrainConfig(
            epochs=rounds * local.detector_epochs,
            batch_size=local.batch_size,
            lr=local.lr,
            frozen=detector_frozen(local.dp, local.dp_freeze_stem),
            **common,
        ),
        "classifier": TrainConfig(
            epochs=rounds * local.classifier_epochs,
            lr=classifier_rate(local.classifier_lr, arch),
            batch_size=classifier_batch(local.classifier_batch_size, local.dp),
            **common,
        ),
    }


def dp_config(local: LocalTraining, budget: float | None = None) -> DPConfig | None:
    """DP-SGD settings of ``local`` (None without DP), capped at the hospital's ``budget``."""
    if not local.dp:
        return None
    return DPConfig(
        noise_multiplier=local.dp_noise or None,
        target_epsilon=local.dp_epsilon,
        max_grad_norm=local.dp_max_grad_norm,
        delta=local.dp_delta or DEFAULT_DELTA,
        budget_epsilon=budget,
    )


def dp_detector_schedule(base: TrainConfig | None = None) -> TrainConfig:
    """DP-SGD training settings of the detector (epochs, seed and progress from ``base``).

    A fixed schedule keeping the last weights, in batches of 128 at lr 1e-2, with the
    full-resolution stem frozen (:data:`DP_FROZEN_DETECTOR`): a noisy validation loss stops
    early stopping too soon, and fewer noisy weights take a higher rate
    (``docs/results.md``, "DP recipes").
    """
    base = base or TrainConfig()
    return replace(
        base, batch_size=128, lr=1e-2, patience=0, restore_best=False, frozen=DP_FROZEN_DETECTOR
    )


def dp_classifier_schedule(arch: str, base: TrainConfig | None = None) -> TrainConfig:
    """DP-SGD training settings of the classifier (seed and progress taken from ``base``).

    A fixed schedule and the last weights: a ~20-cluster validation set cannot rank noisy
    DP epochs. The CNN does best with large batches at a low rate, the descriptor model's
    15 weights with large batches at a high rate (``docs/results.md``, "DP recipes").
    """
    base = base or TrainConfig()
    epochs = min(base.epochs, 30)
    if arch == "descriptors":
        return replace(base, epochs=epochs, batch_size=64, lr=0.3, patience=0, restore_best=False)
    return replace(base, epochs=epochs, batch_size=64, lr=3e-3, patience=0, restore_best=False)
