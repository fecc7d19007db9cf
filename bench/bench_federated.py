"""Federated benchmark: simulation time, federated vs baselines, overhead, bytes, scale.

Usage: python bench/bench_federated.py [--out DIR] [--cpus-per-client N] [--skip-scale]
                                       [--seeds K]

Prints, from one run on this machine:
- wall time of `calcifl simulate` with 3 hospitals x 3 rounds on the default synthetic data
  (target <= 15 min), evaluation after the last round; the data are written and the
  preprocessing cache warmed beforehand, untimed, for both arms;
- pooled breast and cluster AUC of the federated model, the centralised baseline (same
  samples, same total epochs) and each hospital's local-only model (targets: federated >=
  centralised - 0.03 and >= the smallest hospital's local-only AUC);
- overhead: federated wall time / (centralised training + its final evaluation)
  (target <= 1.15);
- bytes sent to and received from each hospital per round / fp32 parameter bytes
  (target <= 1.05);
- 20 hospitals (tiny data each) completing a round: wall time and peak memory of the whole
  process tree (driver, Ray, hospital workers);
- with ``--seeds K``: the federated and centralised AUCs again for run seeds 1..K-1 (each
  seed draws its own held-out patients, sampling and initial weights; both arms share
  them), and the mean and spread of federated - centralised over all K seeds: with a few
  dozen held-out clusters one run's difference moves by several hundredths.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from common.data.cache import PreprocessCache
from common.data.folders import load_hospital
from common.evaluation.images import EvalStats
from common.imaging.reading import ReadOptions
from common.learning.samples import ImageStore, prepare
from common.synth.generate import SynthConfig, synthesize
from server.settings import RunSettings
from simulations.baselines import evaluate_sites, run_baselines, site_splits
from simulations.simulate import hospital_nodes

PAGE = os.sysconf("SC_PAGE_SIZE")


def tree_rss(root: int) -> int:
    """Resident bytes of ``root`` and all its descendants (from /proc)."""
    parent, rss = {}, {}
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            fields = (d / "stat").read_text().rsplit(")", 1)[1].split()
            parent[int(d.name)] = int(fields[1])
            rss[int(d.name)] = int((d / "statm").read_text().split()[1]) * PAGE
        except (OSError, IndexError, ValueError):
            continue
    tree, frontier = {root}, [root]
    while frontier:
        p = frontier.pop()
        kids = [c for c, pp in parent.items() if pp == p and c not in tree]
        tree.update(kids)
        frontier += kids
    return sum(rss.get(p, 0) for p in tree)


def timed(cmd: list[str]) -> tuple[float, int]:
    """Run ``cmd``; return (seconds, peak resident bytes of its process tree)."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    peak = [0]

    def sample():
        while proc.poll() is None:
            peak[0] = max(peak[0], tree_rss(proc.pid))
            time.sleep(0.5)

    watcher = threading.Thread(target=sample, daemon=True)
    watcher.start()
    _, err = proc.communicate()
    watcher.join()
    if proc.returncode:
        sys.exit(f"{' '.join(cmd)} failed:\n{err[-3000:]}")
    return time.perf_counter() - t0, peak[0]


def simulate(*args) -> list[str]:
    return [sys.executable, "-m", "cli.main", "simulate", "-q", *args]


def pooled_auc(per_site: dict) -> tuple[float, float]:
    pooled = EvalStats()
    for stats in per_site.values():
        pooled = pooled + stats
    return pooled.breast_roc.auc(), pooled.finding_roc.auc()


def seed_gap(out: Path, sites: list[Path], cache: Path, seed: int, cpus: list[str]):
    """Federated and centralised pooled AUCs for one run seed; returns the differences."""
    run = out / f"fed-3x3-seed{seed}"
    subprocess.run(
        simulate(
            "--out",
            str(run),
            "--data",
            *map(str, sites),
            "--rounds",
            "3",
            "--cache",
            str(cache),
            "--seed",
            str(seed),
            "--set",
            "eval-every=3",
            *cpus,
        ),
        check=True,
    )
    report = json.loads((run / "report.json").read_text())
    fed = {k: EvalStats.from_dict(v["statistics"]) for k, v in report["final"]["per_site"].items()}
    settings = RunSettings.from_config(report["settings"])
    nodes = hospital_nodes(sites, out / f"state-seed{seed}", cache)
    central = run_baselines(
        settings, nodes, out / f"baselines-seed{seed}", ("centralised",), cache, progress=False
    )["centralised"]
    (fb, fc), (cb, cc) = pooled_auc(fed), pooled_auc(central["per_site"])
    print(
        f"  seed {seed}: federated {fb:.3f} / {fc:.3f}, centralised {cb:.3f} / {cc:.3f} "
        f"(breast / cluster; differences {fb - cb:+.3f} / {fc - cc:+.3f})"
    )
    return fb - cb, fc - cc


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--cpus-per-client", default=None)
    parser.add_argument("--skip-scale", action="store_true")
    parser.add_argument("--seeds", type=int, default=1, help="run seeds for the AUC gap")
    args = parser.parse_args()
    out = args.out or Path(tempfile.mkdtemp(prefix="calcifl-bench-fed-"))
    cpus = ["--cpus-per-client", args.cpus_per_client] if args.cpus_per_client else []
    run = out / "fed-3x3"
    # untimed set-up shared by both arms: the data, and a warm preprocessing cache
    sites = synthesize(out / "data", SynthConfig(hospitals=3, seed=1), progress=False)
    cache = out / "cache"
    for site in sites:
        store = ImageStore(PreprocessCache(cache, ReadOptions()))
        prepare(load_hospital(site, echo=False).images, store)
    seconds, peak = timed(
        simulate(
            "--out",
            str(run),
            "--data",
            *map(str, sites),
            "--rounds",
            "3",
            "--cache",
            str(cache),
            "--set",
            "eval-every=3",
            *cpus,
        )
    )
    report = json.loads((run / "report.json").read_text())
    fed = {k: EvalStats.from_dict(v["statistics"]) for k, v in report["final"]["per_site"].items()}
    fed_breast, fed_cluster = pooled_auc(fed)
    print(
        f"simulation 3 hospitals x 3 rounds: {seconds / 60:.1f} min (target <= 15), "
        f"peak memory {peak / 2**30:.2f} GiB"
    )
    fp32 = report["parameter_bytes_fp32"]
    sent = max(r["bytes_sent_to_site"] for r in report["rounds"])
    received = max(b for r in report["rounds"] for b in r["bytes_received_per_site"].values())
    print(
        f"bytes per hospital per round: sent {sent} / fp32 {fp32} = {sent / fp32:.4f}, "
        f"received {received / fp32:.4f} (target <= 1.05)"
    )

    settings = RunSettings.from_config(report["settings"])
    nodes = hospital_nodes(sites, out / "state", cache)
    t0 = time.perf_counter()
    base = run_baselines(
        settings, nodes, out / "baselines", ("centralised",), cache, progress=False
    )
    central_wall = time.perf_counter() - t0
    central = base["centralised"]
    c_breast, c_cluster = pooled_auc(central["per_site"])
    print(
        f"centralised: trained in {central['train_seconds']:.0f} s, train+evaluate "
        f"{central_wall:.0f} s; overhead federated / centralised = "
        f"{seconds / central_wall:.2f} (target <= 1.15)"
    )
    local = run_baselines(
        settings, nodes, out / "baselines", ("local-only",), cache, progress=False
    )["local-only"]
    print("pooled AUC          breast   cluster")
    print(f"  federated         {fed_breast:.3f}    {fed_cluster:.3f}")
    print(
        f"  centralised       {c_breast:.3f}    {c_cluster:.3f}   "
        f"(federated - centralised: {fed_breast - c_breast:+.3f} / "
        f"{fed_cluster - c_cluster:+.3f}; target >= -0.03)"
    )
    for site, stats in sorted(local["per_site"].items()):
        f = fed[site]
        print(
            f"  {site} own held-out: local-only {stats.breast_roc.auc():.3f} / "
            f"{stats.finding_roc.auc():.3f}, federated {f.breast_roc.auc():.3f} / "
            f"{f.finding_roc.auc():.3f} ({stats.breast_roc.n_pos} malignant)"
        )
    sizes = report["rounds"][0]["per_site"]
    smallest = min(sizes, key=lambda s: sizes[s]["num-examples"])
    splits = site_splits(nodes, settings.seed)
    small_all = evaluate_sites(out / "baselines" / "local-only" / smallest, splits, cache)
    s_breast, s_cluster = pooled_auc(small_all)
    print(
        f"  smallest hospital ({smallest}) local-only model on all held-out sets: "
        f"{s_breast:.3f} / {s_cluster:.3f} (federated - it: {fed_breast - s_breast:+.3f} / "
        f"{fed_cluster - s_cluster:+.3f}; target >= 0)"
    )

    gaps = [(fed_breast - c_breast, fed_cluster - c_cluster)]
    for seed in range(1, args.seeds):
        gaps.append(seed_gap(out, sites, cache, seed, cpus))
    if args.seeds > 1:
        g = np.array(gaps)
        print(
            f"federated - centralised over {len(gaps)} seeds: breast {g[:, 0].mean():+.3f} "
            f"(sd {g[:, 0].std(ddof=1):.3f}), cluster {g[:, 1].mean():+.3f} "
            f"(sd {g[:, 1].std(ddof=1):.3f}); target >= -0.03"
        )

    if not args.skip_scale:
        seconds, peak = timed(
            simulate(
                "--out",
                str(out / "fed-20"),
                "--hospitals",
                "20",
                "--exams",
                "6",
                "--rounds",
                "1",
                "--detector-epochs",
                "1",
                "--classifier-epochs",
                "1",
                *cpus,
            )
        )
        r20 = json.loads((out / "fed-20" / "report.json").read_text())
        trained = len(r20["rounds"][0]["trained"])
        print(
            f"20 hospitals, 1 round: {trained} trained, {seconds:.0f} s, peak memory "
            f"{peak / 2**30:.2f} GiB (process tree)"
        )
    print(f"outputs in {out}")


if __name__ == "__main__":
    main()
