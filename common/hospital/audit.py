"""A hospital-side audit log: one JSON line per message handled.

It records what came in (the configuration received) and what went out (array names and
shapes, metric names and values, ε spent), so a hospital can show exactly what it
released. It holds no patient data; it stays on the hospital's disk.
"""

from __future__ import annotations

import fcntl
import json
import time
from pathlib import Path


class AuditLog:
    """Append-only JSONL file (``None`` path: a no-op log)."""

    def __init__(self, path: str | Path | None) -> None:
        self.path = Path(path) if path else None

    def write(self, event: dict) -> None:
        """Append ``event`` with a timestamp, as one line, under a lock."""
        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        line = json.dumps({"time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), **event}, default=str)
        with open(self.path, "a") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            f.write(line + "\n")

    def read(self) -> list[dict]:
        """Every event so far."""
        if self.path is None or not self.path.is_file():
            return []
        return [json.loads(x) for x in self.path.read_text().splitlines() if x.strip()]
