"""Vessel walls benchmark: drawn vessels and findings judged by their pixels.

Usage: python bench/bench_walls.py [--seeds 7 1 13 21 29] [--draws 150] [--out bench_walls.json]

For each seed, ``--draws`` calcified vessels (the phantom's ``_mimic("vascular")``) and
six times as many findings (``make_cluster``) are each drawn at the middle of a phantom
breast (``render_breast``, 70×56 mm at 0.1 mm) with the film's artifacts and grain
(``film_artifacts``). Their peaks are those a detector would give (``drawn_peaks``); a
vessel's also get a row 0.4 mm beside 4 in 10 of them and 2–5 strays, as a real
detector's do, which keeps them from the point rule. Printed per seed: vessels found by
the point rule (``vessel_tracks``) and by the walls (``walled_tracks``), findings of at
least 20 points judged and set aside by the walls; and the time per cluster of the
cascade's rules (the point split, the walls where it finds nothing, the line rule) with
the tracks remembered per cluster, with nothing remembered, and without the walls and
nothing remembered (the rules before the walls). Synthetic images only.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from rich.progress import track

from common.learning import lines
from common.learning.lines import line_artifact, vessel_tracks
from common.learning.walls import walled_tracks
from common.synth.artifacts import _mimic
from common.synth.calcs import drawn_peaks, make_cluster
from common.synth.scenes import SCENE_SPACING_MM as SPACING
from common.synth.scenes import film_scene, with_rows_beside


def _rules(image, points_px, walls: bool):
    mm = points_px * SPACING
    split = vessel_tracks(mm)
    if walls and split is None:
        split = walled_tracks(image, SPACING, points_px)
    return split, line_artifact(mm)


def _timed(image, points_px, times):
    """Judge one cluster three ways; add each one's seconds to ``times``."""
    lines._placements.cache_clear()
    lines._grown_tracks.cache_clear()
    t0 = time.perf_counter()
    _rules(image, points_px, walls=True)
    t1 = time.perf_counter()
    remembered = lines._placements, lines._grown_tracks
    lines._placements, lines._grown_tracks = (f.__wrapped__ for f in remembered)
    try:
        _rules(image, points_px, walls=True)
        t2 = time.perf_counter()
        _rules(image, points_px, walls=False)
        t3 = time.perf_counter()
    finally:
        lines._placements, lines._grown_tracks = remembered
    times["remembered"] += t1 - t0
    times["plain"] += t2 - t1
    times["before"] += t3 - t2


def run_seed(seed: int, draws: int) -> dict:
    """Draw and judge one seed's vessels and findings."""
    rng = np.random.default_rng(seed)
    times = {"remembered": 0.0, "plain": 0.0, "before": 0.0}
    by_points = by_walls = timed = 0
    for _ in track(range(draws), f"seed {seed}: vessels", transient=True):
        vessel = _mimic("vascular", rng)
        image, centre = film_scene(rng, vessel)
        mm = with_rows_beside(drawn_peaks(vessel.calcs, rng), rng)
        by_points += vessel_tracks(mm) is not None
        by_walls += walled_tracks(image, SPACING, centre + mm / SPACING) is not None
        _timed(image, centre + mm / SPACING, times)
        timed += 1
    judged, walled = 0, []
    for i in track(range(6 * draws), f"seed {seed}: findings", transient=True):
        cluster = make_cluster(malignant=i % 3 != 0, subtlety=int(rng.integers(1, 6)), rng=rng)
        mm = drawn_peaks(cluster.calcs, rng, found=float(rng.uniform(0.5, 1.0)))
        if len(mm) < 20 or cluster.calc_type == "VASCULAR":
            continue
        image, centre = film_scene(rng, cluster)
        judged += 1
        if walled_tracks(image, SPACING, centre + mm / SPACING) is not None:
            walled.append([cluster.calc_type, cluster.distribution, len(mm)])
        _timed(image, centre + mm / SPACING, times)
        timed += 1
    return {
        "seed": seed,
        "vessels": draws,
        "vessels_by_points": by_points,
        "vessels_by_walls": by_walls,
        "findings_judged": judged,
        "findings_walled": walled,
        "ms_per_cluster": {k: 1000 * v / timed for k, v in times.items()},
    }


def main() -> None:
    """Run the benchmark."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[7, 1, 13, 21, 29])
    ap.add_argument("--draws", type=int, default=150)
    ap.add_argument("--out", type=Path, default=Path("bench_walls.json"))
    args = ap.parse_args()
    rows = []
    print("| seed | vessels by walls (by points) | findings judged | set aside by walls |")
    print("|---|---|---|---|")
    for seed in args.seeds:
        r = run_seed(seed, args.draws)
        rows.append(r)
        print(
            f"| {seed} | {r['vessels_by_walls']} of {r['vessels']} ({r['vessels_by_points']}) "
            f"| {r['findings_judged']} | {len(r['findings_walled'])} {r['findings_walled']} |",
            flush=True,
        )
    keys = rows[0]["ms_per_cluster"]
    ms = {k: float(np.mean([r["ms_per_cluster"][k] for r in rows])) for k in keys}
    print(
        f"ms per cluster: tracks remembered {ms['remembered']:.1f}, nothing remembered "
        f"{ms['plain']:.1f}, without the walls {ms['before']:.1f}"
    )
    args.out.write_text(json.dumps({"seeds": rows, "ms_per_cluster": ms}, indent=2))
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()
