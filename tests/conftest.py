"""Shared fixtures: real DICOM files written by the tests themselves."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# Nothing phones home from any process a test starts
os.environ.setdefault("FLWR_TELEMETRY_ENABLED", "0")
os.environ.setdefault("FLWR_DISABLE_UPDATE_CHECK", "1")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

DATA = Path(__file__).resolve().parent / "data"
# Reference data sets whose licence keeps them out of the repository (pROC's aSAH is GPL-3)
# lie beside the checkout; CI has them, a user's clone may not
SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "fixtures"


@pytest.fixture(scope="session")
def cbis_dir() -> Path:
    """The real CBIS-DDSM calcification descriptor CSVs (CC BY 3.0, shipped as test data)."""
    return DATA / "cbis-ddsm"


def shared_fixture(name: str) -> Path:
    """A reference data set beside the checkout: skipped where absent, required in CI."""
    path = SHARED / name
    if not path.is_dir():
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"reference data {path} missing: CI must have ../shared/fixtures")
        pytest.skip(f"reference data '{name}' not beside this checkout (../shared/fixtures)")
    return path


@pytest.fixture(scope="session")
def asah_dir() -> Path:
    """pROC's aSAH data set with its published DeLong results (GPL-3: not shipped)."""
    return shared_fixture("proc-asah")


@pytest.fixture(scope="session")
def vandyke_dir() -> Path:
    """The Van Dyke and Franken reader studies with published OR/DBM results (GPL-3)."""
    return shared_fixture("mrmc-vandyke")


@pytest.fixture(scope="session")
def consortium(tmp_path_factory) -> Path:
    """A small synthetic consortium: 4 hospitals (every vendor), 6 exams each."""
    from common.synth.generate import SynthConfig, synthesize

    out = tmp_path_factory.mktemp("consortium")
    synthesize(out, SynthConfig(hospitals=4, exams=6, seed=7), progress=False)
    return out


@pytest.fixture
def flower_task():
    """Identify this process as a Flower task, as Flower's runtime does, so real
    ``Message`` objects can be built and answered outside a running SuperNode."""
    from flwr.supercore.task_identity import TaskIdentity

    saved = (TaskIdentity._run_id, TaskIdentity._node_id, TaskIdentity._task_id)
    TaskIdentity.run_id, TaskIdentity.node_id, TaskIdentity.task_id = 1, 0, 1
    yield
    TaskIdentity._run_id, TaskIdentity._node_id, TaskIdentity._task_id = saved


@pytest.fixture
def node(tmp_path, consortium) -> dict:
    """The node configuration of the consortium's first hospital, with its own state folder."""
    return {
        "data-dir": str(consortium / "hospital-1"),
        "hospital-id": "h1",
        "state-dir": str(tmp_path / "state"),
    }
