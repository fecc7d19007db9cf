"""A hospital's node configuration."""

from pathlib import Path

import pytest

from common.hospital.settings import NodeSettings
from common.imaging.reading import ReadOptions


def test_defaults_and_paths(tmp_path, monkeypatch):
    monkeypatch.setenv("CALCIFL_HOME", str(tmp_path / "home"))
    s = NodeSettings.from_config({"data-dir": str(tmp_path / "export")})
    # no name of its own: the hospital answers under a pseudonym (see test_identity)
    assert s.hospital_id is None and s.privacy_budget is None and not s.require_dp
    assert (s.dp_delta, s.privacy_total_budget, s.share_reader_ids) == (1e-5, 20.0, False)
    assert s.state_dir.parent == tmp_path / "home" and s.state_dir.name.startswith("export-")
    other = NodeSettings.from_config({"data-dir": str(tmp_path / "elsewhere" / "export")})
    assert other.state_dir != s.state_dir  # same folder name, another hospital's state
    assert s.ledger_path == s.state_dir / "privacy_ledger.json"
    assert s.audit_path.name == "audit.jsonl"


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("dp-delta", 0.0, "dp-delta"),
        ("dp-delta", 1.5, "dp-delta"),
        ("privacy-total-budget", 0, "positive"),
        ("privacy-budget", -1, "positive"),
    ],
)
def test_privacy_limits_are_checked(key, value, message):
    with pytest.raises(ValueError, match=message):
        NodeSettings.from_config({"data-dir": "/d", key: value})


def test_full_configuration():
    s = NodeSettings.from_config(
        {
            "data-dir": "/d",
            "hospital-id": "north",
            "state-dir": "/s",
            "privacy-budget": 8,
            "require-dp": True,
            "min-cell": 5,
            "partition": "1/3",
            "partition-scheme": "dirichlet:0.5",
            "partition-seed": 2,
        }
    )
    assert (s.hospital_id, s.state_dir, s.privacy_budget) == ("north", Path("/s"), 8.0)
    assert s.require_dp and s.min_cell == 5
    index, spec = s.partition
    assert index == 1 and spec.hospitals == 3 and spec.alpha == 0.5 and spec.seed == 2


def test_flwr_run_maps_node_numbers_to_hospital_folders():
    s = NodeSettings.from_config({"partition-id": 1, "num-partitions": 3}, {"data-root": "/data"})
    assert s.data_dir == Path("/data/hospital-2")


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({}, "needs 'data-dir'"),
        ({"data-dir": "/d", "data_dir": "/d"}, "unknown node-config key"),
        ({"data-dir": "/d", "partition": "3/3"}, "I must be in"),
        ({"data-dir": "/d", "partition": "a/b"}, "expected 'I/N'"),
        ({"data-dir": "/d", "fallback-spacing": 5}, "fallback-spacing 5 mm"),
        ({"data-dir": "/d", "for-processing": "keep"}, "'refuse' or 'normalize'"),
    ],
)
def test_bad_configuration_is_named(config, message):
    with pytest.raises(ValueError, match=message):
        NodeSettings.from_config(config)


def test_the_hospital_says_how_its_own_files_are_read():
    node = {"data-dir": "/d", "fallback-spacing": 0.05, "for-processing": "normalize"}
    settings = NodeSettings.from_config({**node, "any-modality": "true"})
    # what a round asks for (a coordinator's choice) cannot change how these files are read
    asked = ReadOptions(target_spacing_mm=0.07, fallback_spacing_mm=0.2, modalities=("MG",))
    read = settings.reading(asked)
    assert read.target_spacing_mm == 0.07 and read.fallback_spacing_mm == 0.05
    assert read.for_processing == "normalize" and read.modalities is None
    lax = ReadOptions(fallback_spacing_mm=0.2, for_processing="normalize", modalities=None)
    plain = NodeSettings.from_config({"data-dir": "/d"}).reading(lax)
    assert plain.fallback_spacing_mm is None and plain.for_processing == "refuse"
    assert plain.modalities == ("MG",)
