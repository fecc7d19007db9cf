"""A hospital's node configuration."""

from pathlib import Path

import pytest

from common.hospital.settings import NodeSettings


def test_defaults_and_paths(tmp_path, monkeypatch):
    monkeypatch.setenv("CALCIFL_HOME", str(tmp_path / "home"))
    s = NodeSettings.from_config({"data-dir": str(tmp_path / "export")})
    assert s.hospital_id == "export" and s.privacy_budget is None and not s.require_dp
    assert s.ledger_path == tmp_path / "home" / "export" / "privacy_ledger.json"
    assert s.audit_path.name == "audit.jsonl"


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
    ],
)
def test_bad_configuration_is_named(config, message):
    with pytest.raises(ValueError, match=message):
        NodeSettings.from_config(config)
