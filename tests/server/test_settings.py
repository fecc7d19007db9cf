"""Run settings from the run configuration."""

from pathlib import Path

import pytest
import tomllib

from server.settings import RunSettings

ROOT = Path(__file__).resolve().parents[2]


def test_pyproject_run_config_is_valid():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["flwr"]["app"]["config"]
    settings = RunSettings.from_config(config)
    assert settings.num_server_rounds >= 1
    assert RunSettings.from_config(settings.to_config()) == settings


def test_pyproject_run_config_states_exactly_the_settings_defaults():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["flwr"]["app"]["config"]
    defaults = RunSettings().to_config()
    assert sorted(config) == sorted(defaults)
    for key, value in defaults.items():
        assert config[key] == value and type(config[key]) is type(value), key


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"num-rounds": 3}, "run-config: unknown key"),
        ({"strategy": "fedsgd"}, "choose one of"),
        ({"dp": "yes"}, "expected bool"),
        ({"eval-every": 0}, ">= 1"),
        ({"classifier-arch": "resnet"}, "classifier arch 'resnet'"),
        ({"central-dp": True, "strategy": "krum", "central-dp-noise": 1.0}, "not 'krum'"),
        ({"central-dp": True}, "central-dp-noise or central-dp-epsilon"),
        ({"central-dp": True, "central-dp-noise": 1.0, "central-dp-clip": 0}, "positive"),
        ({"central-dp": True, "central-dp-noise": 1.0, "central-dp-delta": 1.0}, "(0, 1)"),
    ],
)
def test_bad_settings_are_refused(config, message):
    with pytest.raises(ValueError, match=message):
        RunSettings.from_config(config)


def test_round_spec_follows_settings():
    s = RunSettings(detector_epochs=2, dp=True, dp_epsilon=4.0, detector_width=8)
    spec = s.round_spec("r1")
    assert spec.detector_epochs == 2 and spec.dp and spec.run == "r1"
    assert spec.models().detector.width == 8
    # DP picks the descriptor classifier unless told otherwise
    assert spec.models().classifier.arch == "descriptors"
    assert RunSettings().model_spec().classifier.arch == "cnn"
    assert RunSettings(dp=True, classifier_arch="cnn").model_spec().classifier.arch == "cnn"


def test_run_dir_default_and_explicit(tmp_path):
    assert RunSettings(out_dir=str(tmp_path)).run_dir(5) == tmp_path
    assert RunSettings().run_dir(5).name == "run-5"


def test_central_dp_wraps_the_strategy_and_derives_noise_from_the_budget():
    from flwr.serverapp.strategy import DifferentialPrivacyClientSideFixedClipping, FedProx

    from common.learning.dp import epsilon
    from server.strategies import base_strategy, make_strategy

    s = RunSettings(
        strategy="fedprox",
        central_dp=True,
        central_dp_epsilon=6.0,
        central_dp_clip=0.5,
        num_server_rounds=4,
    )
    z = s.central_dp_noise_multiplier()
    assert epsilon([(z, 1.0, 4)], 1e-5) == pytest.approx(6.0, abs=1e-4)  # σ to a relative 1e-4
    assert epsilon([(z * 0.99, 1.0, 4)], 1e-5) > 6.0  # the smallest noise within budget
    strategy = make_strategy(s)
    assert isinstance(strategy, DifferentialPrivacyClientSideFixedClipping)
    assert strategy.clipping_norm == 0.5 and strategy.noise_multiplier == z
    assert isinstance(base_strategy(strategy), FedProx)
    assert base_strategy(strategy).weighted_by_key == "unit-weight"
    assert base_strategy(make_strategy(RunSettings())).weighted_by_key == "num-examples"
