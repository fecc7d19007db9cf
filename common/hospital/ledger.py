"""A hospital's privacy ledger: cumulative ε per model, kept on the hospital's disk.

One JSON file holds, per federation and per model, the accountant history (every DP
training call ever made for that federation), δ, the noise multiplier in use and one
line per round. The history is written *before* training with the planned steps (so a
crash mid-round counts as spent) and rewritten with the steps actually taken after it.
Writes are atomic (temp file + rename) under an exclusive lock, so concurrent processes
of one hospital cannot lose an entry.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from common.learning.dp import epsilon

FORMAT = 1


class PrivacyLedger:
    """Cumulative privacy spending of one hospital.

    Parameters
    ----------
    path : str or Path
        The ledger's JSON file (created on first write).
    federation : str
        Which federation's spending to read and extend; ε accumulates across every run
        and round of the same federation.
    """

    def __init__(self, path: str | Path, federation: str) -> None:
        self.path = Path(path)
        self.federation = federation

    def _read(self) -> dict:
        if not self.path.is_file():
            return {"format": FORMAT, "federations": {}}
        try:
            data = json.loads(self.path.read_text())
        except json.JSONDecodeError as exc:
            # a damaged ledger must stop training, never reset the spending to zero
            raise RuntimeError(f"{self.path}: privacy ledger is not valid JSON ({exc})") from exc
        if data.get("format") != FORMAT:
            raise RuntimeError(f"{self.path}: unknown privacy ledger format {data.get('format')}")
        return data

    @contextlib.contextmanager
    def _locked(self) -> Iterator[dict]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path.with_name(self.path.name + ".lock"), "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            data = self._read()
            yield data
            fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".ledger-")
            with os.fdopen(fd, "w") as f:
                json.dump(data, f, indent=2)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)

    def entry(self, model: str) -> dict:
        """Return the entry of ``model`` in this federation (empty if none)."""
        fed = self._read()["federations"].get(self.federation, {})
        return fed.get(
            model, {"history": [], "delta": None, "noise_multiplier": None, "rounds": []}
        )

    def history(self, model: str) -> list[tuple[float, float, int]]:
        """Accountant history of ``model`` to continue from."""
        return [tuple(h) for h in self.entry(model)["history"]]

    def spent(self, model: str) -> float:
        """Cumulative ε of ``model`` in this federation."""
        e = self.entry(model)
        return epsilon(e["history"], e["delta"]) if e["history"] else 0.0

    def record(
        self,
        model: str,
        history: list,
        delta: float,
        noise_multiplier: float,
        run: str,
        server_round: int,
        steps: int,
        final: bool,
    ) -> float:
        """Store ``model``'s history after (or, with ``final=False``, before) a round.

        Returns
        -------
        float
            Cumulative ε with this history.
        """
        eps = epsilon(history, delta)
        with self._locked() as data:
            fed = data["federations"].setdefault(self.federation, {})
            e = fed.setdefault(
                model, {"history": [], "delta": delta, "noise_multiplier": None, "rounds": []}
            )
            if e["delta"] is not None and abs(e["delta"] - delta) > 1e-15:
                raise RuntimeError(
                    f"{self.path}: δ changed for {model} in federation {self.federation} "
                    f"({e['delta']} → {delta}); ε across rounds needs one δ"
                )
            e.update(
                history=[list(h) for h in history], delta=delta, noise_multiplier=noise_multiplier
            )
            line = {
                "run": run,
                "round": server_round,
                "steps": steps,
                "epsilon": eps,
                "status": "done" if final else "planned",
                "time": time.time(),
            }
            rounds = e["rounds"]
            if (
                rounds
                and rounds[-1]["status"] == "planned"
                and (rounds[-1]["run"], rounds[-1]["round"]) == (run, server_round)
            ):
                rounds[-1] = line
            else:
                rounds.append(line)
        return eps
