"""Model-driven assistance: a better federated model gives the simulated readers better aided reads.

Runs ``calcifl simulate --synthetic --reader-study`` twice on the same synthetic
consortium (same seed, same hospitals, same simulated readers and their unaided reads),
once with few rounds and once with more. The aided reads are simulated from each run's own
federated model (``--assistance simulated-model``, the default), so the only difference
between the two studies' aided reads is the model. Prints, per run: the model's pooled
breast AUC, and per reader role the random-reader (split-plot OR) AUC unaided and aided,
the difference with its P-value, and the aided sensitivity and detection miss rate.

    python bench/bench_assist.py [--rounds 1 4] [--exams 40] [--hospitals 3] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path


def run(out: Path, rounds: int, args: argparse.Namespace) -> dict:
    """One simulation with the reader study; returns its reader_study.json and timing."""
    command = [
        sys.executable,
        "-m",
        "cli.main",
        "simulate",
        "--synthetic",
        "--hospitals",
        str(args.hospitals),
        "--exams",
        str(args.exams),
        "--rounds",
        str(rounds),
        "--detector-epochs",
        str(args.detector_epochs),
        "--classifier-epochs",
        str(args.classifier_epochs),
        "--set",
        "detector-width=8",
        "classifier-width=8",
        "--reader-study",
        "--out",
        str(out),
        "-q",
    ]
    t0 = time.perf_counter()
    subprocess.run(command, check=True)
    result = json.loads((out / "reader_study.json").read_text())
    result["seconds"] = time.perf_counter() - t0
    return result


def line(rounds: int, result: dict) -> list[str]:
    """Rows of the comparison table for one run."""
    arms = result["pooled"]["all"]["arms"]
    model = arms["model"]["auc"]["value"]
    rows = [f"rounds {rounds}: model AUC {model:.3f} ({result['seconds']:.0f} s)"]
    for name, s in result["random_readers"].items():
        if "unaided vs aided" not in name or "auc" not in s:
            continue
        role = name.split(":")[0]
        aided = [a for a in arms if a.startswith(role) and a.endswith(":aided") and "+" not in a]
        sens = sum(arms[a]["sensitivity"]["value"] for a in aided) / len(aided)
        det = sum(arms[a]["detection_miss_rate"]["value"] for a in aided) / len(aided)
        rr = s["analyses"]["random readers and cases (OR, Hillis df)"]
        rows.append(
            f"  {role:7s} AUC unaided {s['auc']['unaided']['value']:.3f}  aided "
            f"{s['auc']['aided']['value']:.3f}  Δ {s['difference']['value']:+.3f} "
            f"(P {rr['p']:.3f}, {s['readers']} readers)  aided sensitivity {sens:.3f}  "
            f"aided detection miss rate {det:.3f}"
        )
    return rows


def main() -> None:
    """Run both simulations and print the comparison."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, nargs=2, default=[1, 4])
    parser.add_argument("--hospitals", type=int, default=3)
    parser.add_argument("--exams", type=int, default=40)
    parser.add_argument("--detector-epochs", type=int, default=2)
    parser.add_argument("--classifier-epochs", type=int, default=6)
    parser.add_argument("--out", type=Path, default=Path("/tmp/calcifl-bench-assist"))
    args = parser.parse_args()
    results = {r: run(args.out / f"rounds-{r}", r, args) for r in args.rounds}
    print("\nsimulated readers, aided reads simulated from each run's own federated model")
    for rounds, result in results.items():
        print("\n".join(line(rounds, result)))


if __name__ == "__main__":
    main()
