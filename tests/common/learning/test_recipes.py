"""Training recipes: automatic architecture, batch and rate, frozen stem, DP schedules."""

import pytest

from common.federation.rounds import LocalTraining
from common.learning.models import ClassifierConfig
from common.learning.recipes import (
    DP_FROZEN_DETECTOR,
    classifier_arch,
    dp_config,
    local_train_configs,
)


def test_classifier_arch_resolution():
    assert classifier_arch("auto", dp=True) == "descriptors"
    assert classifier_arch("auto", dp=False) == "cnn"
    assert classifier_arch("cnn", dp=True) == "cnn"
    with pytest.raises(ValueError, match="resnet"):
        classifier_arch("resnet", dp=False)
    with pytest.raises(ValueError, match="arch"):
        ClassifierConfig(arch="auto")  # a saved model names what it is


def test_local_configs_follow_the_settings_and_dp():
    plain = local_train_configs(LocalTraining(), "cnn", seed=3, rounds=2)
    assert plain["detector"].epochs == 10 and plain["classifier"].epochs == 30
    assert plain["classifier"].batch_size == 4 and plain["classifier"].lr == 1e-3
    assert plain["detector"].frozen == () and plain["detector"].seed == 3
    dp = local_train_configs(LocalTraining(dp=True), "descriptors", seed=3)
    assert dp["classifier"].batch_size == 32 and dp["classifier"].lr == 0.03
    assert dp["detector"].frozen == DP_FROZEN_DETECTOR
    free = local_train_configs(LocalTraining(dp=True, dp_freeze_stem=False), "cnn", seed=0)
    assert free["detector"].frozen == ()
    assert dp_config(LocalTraining()) is None
    capped = dp_config(LocalTraining(dp=True, dp_epsilon=4.0, dp_delta=1e-6), budget=6.0)
    assert (capped.target_epsilon, capped.delta, capped.budget_epsilon) == (4.0, 1e-6, 6.0)
