"""Per-round checkpoints of a federated run, and resuming from the last one.

A checkpoint is a folder ``checkpoints/round-NNNN`` with the global arrays of both
models (``arrays.npz``), the strategy's array state (``strategy.npz``) and ``state.json``
(round, settings, metric history). It is written to a temporary folder and renamed, then
``checkpoints/latest.json`` is replaced atomically: a run killed at any moment leaves the
previous checkpoint intact.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

LATEST = "latest.json"


@dataclass
class Checkpoint:
    """What a run needs to continue after ``round``."""

    round: int
    arrays: dict[str, np.ndarray]
    strategy: dict[str, np.ndarray] = field(default_factory=dict)
    state: dict = field(default_factory=dict)


def save(run_dir: Path, ckpt: Checkpoint) -> Path:
    """Write ``ckpt`` under ``run_dir/checkpoints`` and point ``latest.json`` at it."""
    root = Path(run_dir) / "checkpoints"
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"round-{ckpt.round:04d}"
    tmp = Path(tempfile.mkdtemp(dir=root, prefix=".tmp-"))
    np.savez(tmp / "arrays.npz", **ckpt.arrays)
    np.savez(tmp / "strategy.npz", **ckpt.strategy)
    (tmp / "state.json").write_text(json.dumps({"round": ckpt.round, **ckpt.state}, indent=1))
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    pointer = root / f".{LATEST}.tmp"
    pointer.write_text(json.dumps({"round": ckpt.round, "folder": final.name}))
    os.replace(pointer, root / LATEST)
    return final


def load_latest(run_dir: Path) -> Checkpoint | None:
    """Return the last complete checkpoint of ``run_dir`` (None if there is none)."""
    root = Path(run_dir) / "checkpoints"
    pointer = root / LATEST
    if not pointer.is_file():
        return None
    folder = root / json.loads(pointer.read_text())["folder"]
    state = json.loads((folder / "state.json").read_text())
    with np.load(folder / "arrays.npz") as z:
        arrays = {k: z[k] for k in z.files}
    with np.load(folder / "strategy.npz") as z:
        strategy = {k: z[k] for k in z.files}
    return Checkpoint(state.pop("round"), arrays, strategy, state)
