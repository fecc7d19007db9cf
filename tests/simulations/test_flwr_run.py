"""`flwr run .` as the README documents it (slow: a managed SuperLink and Ray start)."""

import json
import os
import subprocess
from pathlib import Path

import pytest

from common.federation.environment import PRIVATE_ENV

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_flwr_run_simulation_writes_the_report(tmp_path, consortium):
    env = {**os.environ, **PRIVATE_ENV, "FLWR_HOME": str(tmp_path / "flwr-home")}
    out = tmp_path / "run"
    run_config = (
        f'data-root="{consortium}" out-dir="{out}" num-server-rounds=1 '
        "detector-epochs=1 classifier-epochs=1 min-available-nodes=2 min-train-nodes=2 "
        "min-evaluate-nodes=2"
    )
    try:
        subprocess.run(
            [
                "flwr",
                "federation",
                "simulation-config",
                "@none/default",
                "local",
                "--num-supernodes",
                "2",
                "--client-resources-num-cpus",
                "1",
            ],
            cwd=ROOT,
            env=env,
            check=True,
            timeout=300,
        )
        subprocess.run(
            ["flwr", "run", ".", "--stream", "--run-config", run_config],
            cwd=ROOT,
            env=env,
            check=True,
            timeout=600,
        )
    finally:
        subprocess.run(["pkill", "-f", f"flower-superlink.*{tmp_path / 'flwr-home'}"])
    report = json.loads((out / "report.json").read_text())
    assert sorted(report["rounds"][0]["trained"]) == ["hospital-1", "hospital-2"]
    assert (out / "model.json").is_file()
