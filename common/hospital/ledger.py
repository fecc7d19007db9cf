"""A hospital's privacy ledger: every release, and the ε it spent, kept on its own disk.

The ledger is keyed by the hospital and the model, never by a name the coordinator
sends: every federation and run a hospital joins spends from the same account, so a new
federation name gives no fresh budget. Each DP training call is one *release* line
(federation, run, round, noise, sample rate, steps, what was sent); the accountant
history of a model is the list of its releases. A line is written *before* training with
the planned steps (a crash mid-round counts as spent) and settled with the steps taken
after it. Evaluation statistics leave without DP noise, but they leave: each is counted
as a release too.

Reading the history, planning against the caps and appending happen in one
:meth:`PrivacyLedger.book` transaction under an exclusive lock, and the file is replaced
atomically, so two processes of one hospital can neither both pass a cap nor lose a step.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

from common.learning.dp import History, epsilon

FORMAT = 2


def _empty() -> dict:
    return {"format": FORMAT, "hospitals": {}}


def _accounts_of(data: dict, hospital: str) -> dict:
    return data["hospitals"].setdefault(hospital, {"models": {}, "evaluations": []})


def _migrate(data: dict, hospital: str) -> dict:
    """Format 1 (keyed by federation) → 2: every federation's spending counts."""
    out = _empty()
    book = _accounts_of(out, hospital)
    for federation, models in data.get("federations", {}).items():
        for model, entry in models.items():
            releases = book["models"].setdefault(model, [])
            for noise, rate, steps in entry.get("history", []):
                releases.append(
                    {
                        "id": uuid.uuid4().hex,
                        "federation": federation,
                        "run": "(format 1)",
                        "round": 0,
                        "noise_multiplier": noise,
                        "sample_rate": rate,
                        "steps": steps,
                        "planned_steps": steps,
                        "status": "done",
                        "time": 0.0,
                        "delta": entry.get("delta") or 1e-5,
                        "sent": {},
                    }
                )
    return out


class Book:
    """One hospital's accounts inside a locked ledger transaction."""

    def __init__(self, accounts: dict) -> None:
        self._accounts = accounts

    def releases(self, model: str) -> list[dict]:
        """Every DP release of ``model``, oldest first."""
        return self._accounts["models"].get(model, [])

    def history(self, model: str) -> History:
        """Accountant history of ``model`` (planned and settled steps)."""
        return _history(self.releases(model))

    @property
    def evaluations(self) -> list[dict]:
        """Released evaluation statistics (appendable)."""
        return self._accounts["evaluations"]

    def noise(self, model: str, federation: str, run: str) -> float | None:
        """Noise multiplier ``model`` used earlier in this run (kept for the run's rounds)."""
        for r in reversed(self.releases(model)):
            if (r["federation"], r["run"]) == (federation, run):
                return float(r["noise_multiplier"])
        return None

    def plan(
        self,
        model: str,
        federation: str,
        run: str,
        server_round: int,
        noise: float,
        sample_rate: float,
        steps: int,
        delta: float,
    ) -> str:
        """Append a planned release of ``steps`` steps at ``delta``; return its id (to settle)."""
        rid = uuid.uuid4().hex
        self._accounts["models"].setdefault(model, []).append(
            {
                "id": rid,
                "federation": federation,
                "run": run,
                "round": int(server_round),
                "noise_multiplier": float(noise),
                "sample_rate": float(sample_rate),
                "steps": int(steps),
                "planned_steps": int(steps),
                "delta": float(delta),
                "status": "planned",
                "time": time.time(),
                "sent": {},
            }
        )
        return rid


def _history(releases: list[dict]) -> History:
    return [
        (float(r["noise_multiplier"]), float(r["sample_rate"]), int(r["steps"]))
        for r in releases
        if r["steps"] > 0
    ]


class PrivacyLedger:
    """Privacy spending and releases of one hospital.

    Parameters
    ----------
    path : str or Path
        The ledger's JSON file, in the hospital's state folder (created on first write).
    hospital : str
        The hospital's account (its id as it appears in replies).
    """

    def __init__(self, path: str | Path, hospital: str) -> None:
        self.path = Path(path)
        self.hospital = hospital

    def _read(self) -> dict:
        if not self.path.is_file():
            return _empty()
        try:
            data = json.loads(self.path.read_text())
        except json.JSONDecodeError as exc:
            # a damaged ledger must stop training, never reset the spending to zero
            raise RuntimeError(f"{self.path}: privacy ledger is not valid JSON ({exc})") from exc
        if data.get("format") == 1:
            data = _migrate(data, self.hospital)
        if data.get("format") != FORMAT:
            raise RuntimeError(f"{self.path}: unknown privacy ledger format {data.get('format')}")
        return data

    @contextlib.contextmanager
    def book(self) -> Iterator[Book]:
        """Read, change and write the hospital's accounts under one exclusive lock.

        Nothing is written if the block raises.
        """
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path.with_name(self.path.name + ".lock"), "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            data = self._read()
            yield Book(_accounts_of(data, self.hospital))
            fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".ledger-")
            with os.fdopen(fd, "w") as f:
                json.dump(data, f, indent=2)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)

    def _snapshot(self) -> dict:
        return _accounts_of(self._read(), self.hospital)

    def releases(self, model: str) -> list[dict]:
        """Every DP release of ``model`` (a read-only snapshot)."""
        return self._snapshot()["models"].get(model, [])

    def models(self) -> list[str]:
        """Models with any release."""
        return sorted(self._snapshot()["models"])

    def evaluations(self) -> list[dict]:
        """Every evaluation statistic released."""
        return self._snapshot()["evaluations"]

    def history(self, model: str) -> History:
        """Accountant history of ``model``."""
        return _history(self.releases(model))

    def spent(self, model: str, delta: float) -> float:
        """Cumulative ε of ``model`` at ``delta``, over every federation and run."""
        return epsilon(self.history(model), delta)

    def composed(self, delta: float) -> float:
        """ε of all models together at ``delta`` (they see the same findings)."""
        return epsilon([h for m in self.models() for h in self.history(m)], delta)

    def settle(self, done: dict[str, tuple[str, int]], sent: dict) -> None:
        """Replace planned steps by those taken: ``done`` is model → (release id, steps).

        ``sent`` is what the reply carried besides the weights (its metrics), and the
        cumulative ε each model reached is stored with it.
        """
        with self.book() as book:
            for model, (rid, steps) in done.items():
                for r in book.releases(model):
                    if r["id"] == rid:
                        r.update(steps=int(steps), status="done", sent=dict(sent))
                        r["epsilon"] = epsilon(book.history(model), r["delta"])
                        break
                else:
                    raise RuntimeError(f"{self.path}: no planned release {rid} of {model}")

    def record_evaluation(
        self,
        kind: str,
        federation: str,
        run: str,
        server_round: int,
        tables: int,
        withheld: list[str],
        sent: list[str],
    ) -> None:
        """Count a released evaluation (``tables`` histograms or count tables, no DP noise)."""
        with self.book() as book:
            book.evaluations.append(
                {
                    "kind": kind,
                    "federation": federation,
                    "run": run,
                    "round": int(server_round),
                    "tables": int(tables),
                    "withheld": list(withheld),
                    "sent": list(sent),
                    "time": time.time(),
                }
            )
