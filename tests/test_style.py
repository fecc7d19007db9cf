"""The code base passes its own linters (ruff: E, F, W, B, D, UP, I; ruff format)."""

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("command", [["check", "."], ["format", "--check", "."]])
def test_ruff(command):
    ruff = shutil.which("ruff")
    assert ruff, "ruff is part of the test extra"
    result = subprocess.run([ruff, *command], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_common_does_not_import_flower():
    offenders = [
        str(p.relative_to(ROOT))
        for p in (ROOT / "common").rglob("*.py")
        if "import flwr" in p.read_text() or "from flwr" in p.read_text()
    ]
    assert offenders == []
