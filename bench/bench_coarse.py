"""Coarse calcifications benchmark: drawn popcorn and findings judged by their pixels.

Usage: python bench/bench_coarse.py [--seeds 7 1 13] [--draws 150] [--out bench_coarse.json]

For each seed, ``--draws`` large benign calcifications (the phantom's ``_mimic("coarse")``:
one to three lumps 2–5 mm across) and six times as many findings (``make_cluster``) are
each drawn at the middle of a phantom breast (``render_breast``, 70×56 mm at 0.1 mm) with
the film's artifacts and grain (``film_artifacts``). A popcorn's peaks lie along its
lumps' rims (``rim_peaks``), as a microcalcification detector's do; a finding's are those
of ``drawn_peaks``. Printed per seed: popcorn whose points all lie on a coarse
calcification (``coarse_points``) or leave fewer than a cluster's 3 beside it; findings
judged, those that lose any point to the rule and those left with fewer than 3; and the
rule's time per cluster. Synthetic images only.
"""

from __future__ import annotations

import argparse
import json
import time
from collections import Counter
from pathlib import Path

import numpy as np
from rich.progress import track

from common.learning.coarse import coarse_points
from common.learning.inference import CascadeConfig
from common.synth.artifacts import _mimic
from common.synth.calcs import drawn_peaks, make_cluster, rim_peaks
from common.synth.scenes import SCENE_SPACING_MM as SPACING
from common.synth.scenes import film_scene

#: A cluster's fewest points.
MIN_CALCS = CascadeConfig().min_calcs


def _judge(image: np.ndarray, points_px: np.ndarray, seconds: list[float]) -> int:
    """Return how many of the points lie on coarse calcifications; add the time taken."""
    t0 = time.perf_counter()
    found = coarse_points(image, np.ones(image.shape, dtype=bool), SPACING, points_px)
    seconds.append(time.perf_counter() - t0)
    return 0 if found is None else int(found.sum())


def run_seed(seed: int, draws: int) -> dict:
    """Draw and judge one seed's popcorn and findings."""
    rng = np.random.default_rng(seed)
    seconds: list[float] = []
    whole = cleared = 0
    for _ in track(range(draws), f"seed {seed}: popcorn", transient=True):
        popcorn = _mimic("coarse", rng)
        image, centre = film_scene(rng, popcorn)
        mm = rim_peaks(popcorn.calcs, rng)
        on = _judge(image, centre + mm / SPACING, seconds)
        whole += on == len(mm)
        cleared += len(mm) - on < MIN_CALCS
    judged, touched, lost = 0, Counter(), Counter()
    for i in track(range(6 * draws), f"seed {seed}: findings", transient=True):
        cluster = make_cluster(malignant=i % 3 != 0, subtlety=int(rng.integers(1, 6)), rng=rng)
        mm = drawn_peaks(cluster.calcs, rng, found=float(rng.uniform(0.5, 1.0)))
        if len(mm) < MIN_CALCS:
            continue
        image, centre = film_scene(rng, cluster)
        judged += 1
        on = _judge(image, centre + mm / SPACING, seconds)
        if on:
            touched[cluster.calc_type] += 1
        if len(mm) - on < MIN_CALCS:
            lost[cluster.calc_type] += 1
    return {
        "seed": seed,
        "popcorn": draws,
        "popcorn_whole": whole,
        "popcorn_cleared": cleared,
        "findings_judged": judged,
        "findings_touched": dict(touched),
        "findings_lost": dict(lost),
        "ms_per_cluster": 1000 * float(np.mean(seconds)),
    }


def main() -> None:
    """Run the benchmark."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[7, 1, 13])
    ap.add_argument("--draws", type=int, default=150)
    ap.add_argument("--out", type=Path, default=Path("bench_coarse.json"))
    args = ap.parse_args()
    rows = []
    print(
        "| seed | popcorn: all points on it / fewer than 3 left | findings judged "
        "| lose points | left with < 3 |"
    )
    print("|---|---|---|---|---|")
    for seed in args.seeds:
        r = run_seed(seed, args.draws)
        rows.append(r)
        print(
            f"| {seed} | {r['popcorn_whole']} / {r['popcorn_cleared']} of {r['popcorn']} "
            f"| {r['findings_judged']} | {sum(r['findings_touched'].values())} "
            f"{r['findings_touched']} | {sum(r['findings_lost'].values())} {r['findings_lost']} |",
            flush=True,
        )
    ms = float(np.mean([r["ms_per_cluster"] for r in rows]))
    print(f"ms per cluster: {ms:.1f}")
    args.out.write_text(json.dumps({"seeds": rows, "ms_per_cluster": ms}, indent=2))
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()
