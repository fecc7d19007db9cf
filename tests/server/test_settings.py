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


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"num-rounds": 3}, "run-config: unknown key"),
        ({"strategy": "fedsgd"}, "choose one of"),
        ({"dp": "yes"}, "expected bool"),
        ({"eval-every": 0}, ">= 1"),
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


def test_run_dir_default_and_explicit(tmp_path):
    assert RunSettings(out_dir=str(tmp_path)).run_dir(5) == tmp_path
    assert RunSettings().run_dir(5).name == "run-5"
