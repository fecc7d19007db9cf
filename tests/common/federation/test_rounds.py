"""The round schema shared by server and client."""

import json

import pytest

from common.federation.rounds import ModelSpec, RoundSpec


def test_round_trip_through_scalars():
    spec = RoundSpec(federation="f", run="r", detector_epochs=2, dp=True, dp_epsilon=3.0)
    config = spec.to_config()
    assert all(isinstance(v, int | float | str | bool) for v in config.values())
    assert RoundSpec.received({**config, "server-round": 4}) == spec
    assert RoundSpec.received({**config, "dp-epsilon": 3}).dp_epsilon == 3.0  # int → float


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"lr": "fast"}, "'lr': expected float"),
        ({"dp": 1}, "'dp': expected bool"),
        ({"batch-size": 0}, "'batch-size' must be >= 1"),
        ({"classifier-batch-size": -1}, "'classifier-batch-size' must be >= 0"),
        ({"num-rounds": 0}, "'num-rounds' must be >= 1"),
        ({"model-spec": "{}"}, "model-spec"),
    ],
)
def test_bad_values_are_named(change, message):
    with pytest.raises(ValueError, match=message):
        RoundSpec.received({**RoundSpec().to_config(), **change})


def test_missing_key_is_named():
    config = RoundSpec().to_config()
    del config["seed"]
    with pytest.raises(ValueError, match="lacks 'seed'"):
        RoundSpec.received(config)


def test_seeds_differ_by_round_and_site_but_repeat():
    spec = RoundSpec()
    a = spec.train_configs(1, "h1")["detector"].seed
    assert a == spec.train_configs(1, "h1")["detector"].seed
    assert a != spec.train_configs(2, "h1")["detector"].seed
    assert a != spec.train_configs(1, "h2")["detector"].seed


def test_model_spec_json_round_trip():
    spec = ModelSpec()
    assert ModelSpec.from_json(spec.to_json()) == spec
    assert json.loads(spec.to_json())["read"]["modalities"] == ["MG"]


def test_dp_config_carries_the_hospital_budget():
    assert RoundSpec(dp=False).dp_config(5.0) is None
    dp = RoundSpec(dp=True, dp_epsilon=4.0).dp_config(5.0)
    assert dp.target_epsilon == 4.0 and dp.budget_epsilon == 5.0 and dp.noise_multiplier is None


def test_classifier_batch_is_small_without_dp_unless_set():
    assert RoundSpec().train_configs(1, "h1")["classifier"].batch_size == 4
    assert RoundSpec(dp=True).train_configs(1, "h1")["classifier"].batch_size == 32
    spec = RoundSpec(dp=True, classifier_batch_size=16)
    assert spec.train_configs(1, "h1")["classifier"].batch_size == 16
    assert RoundSpec(classifier_batch_size=16).train_configs(1, "h1")["classifier"].batch_size == 16


def test_classifier_rate_follows_the_architecture_unless_set():
    from common.federation.rounds import ModelSpec
    from common.learning.models import ClassifierConfig

    descriptors = ModelSpec(classifier=ClassifierConfig(arch="descriptors")).to_json()
    assert RoundSpec().train_configs(1, "h1")["classifier"].lr == 1e-3
    assert RoundSpec(model_spec=descriptors).train_configs(1, "h1")["classifier"].lr == 0.03
    spec = RoundSpec(model_spec=descriptors, classifier_lr=0.1)
    assert spec.train_configs(1, "h1")["classifier"].lr == 0.1
    with pytest.raises(ValueError, match="classifier-lr"):
        RoundSpec(classifier_lr=-1.0)


def test_dp_detector_keeps_its_stem_unless_told_otherwise():
    assert RoundSpec().train_configs(1, "h1")["detector"].frozen == ()
    assert RoundSpec(dp=True).train_configs(1, "h1")["detector"].frozen == ("stem.",)
    assert RoundSpec(dp=True).train_configs(1, "h1")["classifier"].frozen == ()
    assert RoundSpec(dp=True, dp_freeze_stem=False).train_configs(1, "h1")["detector"].frozen == ()
    # the prefix names real detector parameters
    from common.learning.models import build

    names = [n for n, _ in build("detector").named_parameters()]
    assert any(n.startswith("stem.") for n in names) and not all(
        n.startswith("stem.") for n in names
    )
