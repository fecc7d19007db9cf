"""A hospital's own privacy statement: every release in its ledger, and what ε means.

Read from the state folder alone (the hospital's disk), so a hospital can check what
left without trusting the coordinator's report.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from common.hospital.ledger import PrivacyLedger

MEANING = (
    "ε is per training example of a model (a detector patch, a classifier crop) at the "
    "δ shown. Both models see the same findings, so per finding the two add up: the "
    "composed ε is the Rényi-DP composition of both models' releases (at most their sum). "
    "A patient contributing k examples is protected at k·ε (group privacy, with δ "
    "growing to k·e^((k-1)ε)·δ): a weak guarantee when k is large. Evaluation "
    "statistics carry no DP noise; they are counted here as releases and withheld below "
    "the minimum cell size."
)


def statement(state_dir: str | Path) -> dict:
    """Every account of the ledger in ``state_dir``: releases, ε per model and composed."""
    path = Path(state_dir) / "privacy_ledger.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no privacy ledger in this state folder")
    hospitals = json.loads(path.read_text()).get("hospitals")
    if hospitals is None:  # an older ledger: read through the migration
        hospitals = {"": None}
    out = {"ledger": str(path), "meaning": MEANING, "hospitals": {}}
    for name in hospitals:
        ledger = PrivacyLedger(path, name)
        releases = [
            {"model": m, **{k: v for k, v in r.items() if k != "id"}}
            for m in ledger.models()
            for r in ledger.releases(m)
        ]
        releases.sort(key=lambda r: r["time"])
        deltas = sorted({r["delta"] for r in releases})
        delta = deltas[-1] if deltas else None
        totals = {}
        if delta is not None:
            totals = {m: ledger.spent(m, delta) for m in ledger.models()}
            totals["composed"] = ledger.composed(delta)
        out["hospitals"][name] = {
            "delta": delta,
            "epsilon": totals,
            "releases": releases,
            "evaluations": ledger.evaluations(),
        }
    return out


def statement_markdown(report: dict) -> str:
    """Markdown of :func:`statement`."""
    lines = ["# Privacy statement", "", f"Ledger: `{report['ledger']}`", "", report["meaning"]]
    for name, h in report["hospitals"].items():
        lines += ["", f"## {name or '(unnamed)'}", ""]
        if h["delta"] is not None:
            eps = ", ".join(f"{m} ε {v:.3f}" for m, v in h["epsilon"].items())
            lines += [f"Total over every federation and run at δ {h['delta']:g}: {eps}.", ""]
        lines += [
            "| when | federation | run | round | model | status | steps | noise | ε after | "
            "δ | sent |",
            "|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for r in h["releases"]:
            sent = ", ".join(k for k in r.get("sent", {}))
            eps = r.get("epsilon")
            lines.append(
                f"| {_when(r['time'])} | {r['federation']} | {r['run']} | {r['round']} | "
                f"{r['model']} | {r['status']} | {r['steps']} | {r['noise_multiplier']:.3f} | "
                f"{'–' if eps is None else f'{eps:.3f}'} | {r['delta']:g} | {sent or '–'} |"
            )
        if h["evaluations"]:
            lines += [
                "",
                "Evaluation statistics released (no DP noise):",
                "",
                "| when | kind | federation | run | round | histograms | withheld |",
                "|---|---|---|---|---|---|---|",
            ]
            for e in h["evaluations"]:
                lines.append(
                    f"| {_when(e['time'])} | {e['kind']} | {e['federation']} | {e['run']} | "
                    f"{e['round']} | {e['tables']} | {', '.join(e['withheld']) or '–'} |"
                )
    return "\n".join(lines) + "\n"


def _when(t: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.gmtime(t)) if t else "–"
