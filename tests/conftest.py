"""Shared fixtures: real DICOM files written by the tests themselves."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# Nothing phones home from any process a test starts
os.environ.setdefault("FLWR_TELEMETRY_ENABLED", "0")
os.environ.setdefault("FLWR_DISABLE_UPDATE_CHECK", "1")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

FIXTURES = Path(__file__).resolve().parents[1].parent / "shared" / "fixtures"


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    """The read-only shared fixtures beside the checkout."""
    if not FIXTURES.is_dir():
        pytest.fail(f"shared fixtures not found at {FIXTURES}")
    return FIXTURES


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
