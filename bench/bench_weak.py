"""Weak supervision benchmark: what the detector learns from masks instead of points.

Usage: python bench/bench_weak.py [--exams 40] [--detector-epochs 6] [--classifier-epochs 15]

On one synthetic consortium (3 hospitals, CBIS-DDSM layout and calcifl manifest side by
side, seed 1), the centralised cascade is trained three times on the same training
images (those the CBIS-DDSM folder lists), differing only in what the detector is taught
for each finding:

- ``points``: the generator's per-calcification points (the manifest; the ceiling);
- ``centroid``: the CBIS-DDSM folder alone (ROI masks, no points), one peak per ROI at its
  centroid;
- ``candidates``: the CBIS-DDSM folder alone, candidate calcifications found in each ROI
  (:mod:`common.learning.weak`);
- ``mil``: the CBIS-DDSM folder alone, each ROI (box + 1 mm) a multiple-instance bag:
  nothing in it is a negative and its most probable cell is taught as a peak.

Each is scored on the held-out split against the generator's truth, which training never
sees in the last two: cluster FROC (mean sensitivity over 0.25–2 false clusters per image;
sensitivity at 1), the same per **full-field image** (false clusters per cm² of breast
searched, scaled to the 375 cm² of a full-field breast), false marks per full-field
normal image at the operating point the run calibrated on its validation images (target
0.5), and point-level precision and recall of the detections (within 1 mm of a true
calcification). Also printed: how well the candidate rule alone recovers the true
calcifications of the training ROIs. Results go to stdout and, as JSON, to --out.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
from bench_models import held_out  # the held-out scoring of the model benchmark
from scipy.spatial import cKDTree

from common.data.cache import PreprocessCache
from common.data.folders import load_hospital
from common.imaging.reading import ReadOptions
from common.learning.samples import ImageStore
from common.learning.training import TrainConfig
from common.learning.weak import candidate_points
from common.synth.generate import SynthConfig, synthesize
from simulations.central import CentralConfig, train_central


def candidate_recovery(sites, cache: Path) -> dict:
    """Precision and recall (0.5 mm) of the candidate rule against the true points."""
    store = ImageStore(PreprocessCache(cache, ReadOptions()))
    found = wrong = missed = truth_total = 0
    for site in sites:
        for record in load_hospital(site, echo=False).images:
            if record.split != "train" or not record.findings:
                continue
            m = store.get(record)
            for f in record.findings:
                if f.points is None or f.box is None:
                    continue
                truth = m.geometry.map_points(f.points)
                corners = m.geometry.map_points([[f.box[0], f.box[1]], [f.box[2], f.box[3]]])
                (r0, r1), (c0, c1) = np.sort(corners[:, 0]), np.sort(corners[:, 1])
                centre = m.geometry.map_points([f.centroid])[0]
                cand = candidate_points(m.pixels, (r0, c0, r1, c1), centre, m.spacing_mm[0], m.mask)
                radius = 0.5 / m.spacing_mm[0]
                near = cKDTree(truth).query(cand)[0] <= radius
                found, wrong = found + int(near.sum()), wrong + int((~near).sum())
                missed += int((cKDTree(cand).query(truth)[0] > radius).sum())
                truth_total += len(truth)
    return {
        "precision": found / max(1, found + wrong),
        "recall": 1 - missed / max(1, truth_total),
        "true_points": truth_total,
    }


def main() -> None:
    """Run the three trainings and print the comparison."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--exams", type=int, default=40)
    ap.add_argument("--detector-epochs", type=int, default=6)
    ap.add_argument("--classifier-epochs", type=int, default=15)
    ap.add_argument("--out", type=Path, default=Path("bench_weak.json"))
    ap.add_argument(
        "--variants",
        nargs="+",
        default=["points", "centroid", "candidates", "mil"],
        help="which to train",
    )
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="calcifl-weak-"))
    sites = synthesize(work / "data", SynthConfig(hospitals=3, exams=args.exams, seed=1))
    cache = work / "cache"
    results = {"candidate_rule": candidate_recovery(sites, cache)}
    rule = results["candidate_rule"]
    print(
        f"candidate rule on training ROIs: precision {rule['precision']:.3f}, "
        f"recall {rule['recall']:.3f} of {rule['true_points']} calcifications"
    )
    variants = {
        "points": ("manifest", "candidates"),
        "centroid": ("cbis-ddsm", "centroid"),
        "candidates": ("cbis-ddsm", "candidates"),
        "mil": ("cbis-ddsm", "mil"),
    }
    # the images a CBIS-DDSM folder lists (those with findings): every variant trains on them
    listed = {
        im.path
        for site in sites
        for im in load_hospital(site, fmt="cbis-ddsm", echo=False).images
        if (im.split or "train") == "train"
    }
    for name in args.variants:
        fmt, weak = variants[name]
        records = []
        for site in sites:
            images = load_hospital(site, fmt=fmt, echo=False).images
            records += [im for im in images if im.path in listed]
        if fmt == "cbis-ddsm":  # the folder alone: no points may reach training
            assert all(f.points is None for im in records for f in im.findings)
        config = CentralConfig(
            detector_train=TrainConfig(epochs=args.detector_epochs, seed=0, progress=True),
            classifier_train=TrainConfig(
                epochs=args.classifier_epochs, patience=10, seed=0, progress=True
            ),
            cache_dir=cache,
            weak_targets=weak,
        )
        start = time.perf_counter()
        train_central(sites, work / name, config, records=records)
        seconds = time.perf_counter() - start
        summary = held_out(sites, work / name, cache)
        det = summary["detection"]
        full = det["full_field"]
        results[name] = {
            "full_field": full,
            "training_images": len(records),
            "seconds": round(seconds, 1),
            "froc_mean_sensitivity": det["mean_sensitivity"],
            "sensitivity_at_1_fp": det["sens@1fp"],
            "point_precision": det["point_precision"],
            "point_recall": det["point_recall"],
            "cluster_auc": summary["classification"]["auc"],
            "breast_auc": summary["breast"]["auc"],
        }
        r = results[name]
        print(
            f"{name:>10}: {r['training_images']} training images, {r['seconds']:.0f} s; "
            f"FROC mean {r['froc_mean_sensitivity']:.3f}, sens@1FP "
            f"{r['sensitivity_at_1_fp']:.3f}; marks: precision {r['point_precision']:.3f}, "
            f"recall {r['point_recall']:.3f}; cluster AUC {r['cluster_auc']:.3f}, "
            f"breast AUC {r['breast_auc']:.3f}"
        )
        fp = full["normal_false_marks_per_full_field_image"]
        print(
            f"{'':>10}  per full-field image: FROC mean {full['mean_sensitivity']:.3f}, "
            f"sens@0.5FP {full['sens@0.5fp']:.3f}, sens@1FP {full['sens@1fp']:.3f}; "
            f"operating point {full['mark_threshold']:.3f}: "
            f"{'–' if fp is None else f'{fp:.2f}'} false marks per full-field normal image "
            f"({full['normal_images']} normal images), cluster sensitivity "
            f"{full['mark_sensitivity']:.3f}"
        )
    args.out.write_text(json.dumps(results, indent=2))
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()
