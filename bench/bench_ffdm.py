"""Paddle edges and skin folds: what a digital unit's own artifacts cost in false marks.

Usage: python bench/bench_ffdm.py [--run DIR] [--exams N] [--seed S] [--strength K]
                                 [--out FILE]

A screening-like digital site (the four digital units, 3 % of breasts with a finding,
never trained on) is written twice from one seed, without and with
``SynthConfig.ffdm_artifacts``: the breasts, findings and noise are the same, and only the
paddle edges and skin folds differ (``--strength`` scales their contrasts). A run's
cascade (``--run``; without it, one trained centrally on the default synthetic
consortium, 3 hospitals x 40 exams, seed 1) scores both at its own operating point.
Prints, from one run: FROC per full-field image, false marks
per full-field normal image with their count and 95 % interval, and the false marks that
are new with the artifacts (no false mark within 2 mm of them without), split by the
view of the image (a paddle edge on either view, a skin fold on oblique ones only).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

import numpy as np
import pydicom
from rich.progress import track

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_models import held_out  # noqa: E402

from common.data.cache import PreprocessCache  # noqa: E402
from common.data.folders import load_hospital  # noqa: E402
from common.imaging.roi import in_roi  # noqa: E402
from common.learning.inference import run_cascade  # noqa: E402
from common.learning.models import load_run  # noqa: E402
from common.learning.samples import ImageStore, prepare  # noqa: E402
from common.synth.generate import SynthConfig, synthesize  # noqa: E402
from simulations.central import CentralConfig, train_central  # noqa: E402


def false_marks(run: Path, site: Path, cache: Path) -> dict[str, list[tuple[float, float]]]:
    """Return each image's false marks (cluster centres) at the run's operating point."""
    models, read, cascade, _ = load_run(run)
    store = ImageStore(PreprocessCache(cache, read))
    out: dict[str, list[tuple[float, float]]] = {}
    records = load_hospital(site, echo=False).images
    for item in track(
        prepare(records, store), total=len(records), description=site.name, transient=True
    ):
        image = store.get(item.record)
        tolerance = 1.0 / image.spacing_mm[0]
        result = run_cascade(models, image, cascade)
        out[str(item.record.path.relative_to(site))] = [
            c.centre
            for c in result.clusters
            if c.detection_score >= cascade.mark_threshold
            and not any(
                in_roi(c.centre, f.box, f.centroid, tolerance)
                for f in item.findings
                if not f.vessel
            )
        ]
    return out


def changed_images(plain: Path, ffdm: Path, images: list[str]) -> dict[str, str]:
    """Return the view of each of ``images`` (paths in the sites) the artifacts changed."""
    out = {}
    for rel in images:
        x, y = pydicom.dcmread(plain / rel), pydicom.dcmread(ffdm / rel)
        if not np.array_equal(x.pixel_array, y.pixel_array):
            out[rel] = str(x.ViewPosition)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, help="a run folder (default: train one)")
    parser.add_argument("--exams", type=int, default=40, help="exams per unit")
    parser.add_argument("--seed", type=int, default=20)
    parser.add_argument(
        "--strength", type=float, default=1.0, help="scale the artifacts' contrasts"
    )
    parser.add_argument("--out", type=Path, default=Path("bench_ffdm.json"))
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="calcifl-ffdm-") as tmp:
        tmp = Path(tmp)
        run = args.run
        if run is None:
            print("training the default cascade on the default synthetic consortium...")
            sites = synthesize(tmp / "train", SynthConfig(), progress=False)
            run = tmp / "run"
            train_central(sites, run, CentralConfig(cache_dir=tmp / "cache"))
        config = SynthConfig(
            hospitals=4,
            exams=args.exams,
            seed=args.seed,
            finding_rate=0.03,
            ffdm_strength=args.strength,
        )
        result: dict = {
            "run": str(run),
            "seed": args.seed,
            "exams_per_unit": args.exams,
            "strength": args.strength,
        }
        marks, written = {}, {}
        for label, ffdm in (("without", False), ("with", True)):
            written[label] = synthesize(
                tmp / label, replace(config, ffdm_artifacts=ffdm), progress=False
            )
            cache = tmp / f"cache-{label}"
            scored = held_out(written[label], run, cache, split=None)
            full = scored["detection"]["full_field"]
            result[label] = {
                "froc_mean_per_full_field_image": full["mean_sensitivity"],
                "false_marks_per_full_field_normal_image": full[
                    "normal_false_marks_per_full_field_image"
                ],
                "false_marks": full["normal_false_marks"],
                "false_marks_95ci": full["normal_false_marks_95ci"],
                "normal_images": full["normal_images"],
                "normal_full_field_images": full["normal_full_field_images"],
                "mark_threshold": full["mark_threshold"],
            }
            marks[label] = {
                f"{site.name}/{k}": v
                for site in written[label]
                for k, v in false_marks(run, site, cache).items()
            }
        views = {}
        for a, b in zip(written["without"], written["with"], strict=True):
            images = [k.split("/", 1)[1] for k in marks["with"] if k.startswith(f"{a.name}/")]
            views.update({f"{a.name}/{k}": v for k, v in changed_images(a, b, images).items()})
        # a false mark is new where none lay within 2 mm (20 px at 0.1 mm) without them
        new = {"CC": 0, "MLO": 0, "unchanged image": 0}
        for key, centres in marks["with"].items():
            before = np.array(marks["without"].get(key, []), dtype=float).reshape(-1, 2)
            for centre in centres:
                if len(before) and np.hypot(*(before - np.array(centre)).T).min() <= 20:
                    continue
                new[views.get(key, "unchanged image")] += 1
        result["new_false_marks"] = new
        result["images_changed"] = {v: sum(x == v for x in views.values()) for v in ("CC", "MLO")}
        result["images"] = len(marks["with"])
        result["counts"] = [
            json.loads((site / "synth.json").read_text())["counts"] for site in written["with"]
        ]
    for label in ("without", "with"):
        r = result[label]
        print(
            f"{label:>7} paddle edges and skin folds: FROC per full-field image "
            f"{r['froc_mean_per_full_field_image']}; at {r['mark_threshold']:.3f}: "
            f"{r['false_marks_per_full_field_normal_image']:.2f} "
            f"[{r['false_marks_95ci'][0]:.2f}, {r['false_marks_95ci'][1]:.2f}] false marks per "
            f"full-field normal image ({r['false_marks']} on {r['normal_images']} images, "
            f"{r['normal_full_field_images']} full-field)"
        )
    paddles = sum(c.get("artifact_paddle_edge", 0) for c in result["counts"])
    folds = sum(c.get("artifact_skin_fold", 0) for c in result["counts"])
    print(
        f"{paddles} paddle edges and {folds} skin folds on {sum(result['images_changed'].values())}"
        f" of {result['images']} images (CC {result['images_changed']['CC']}, MLO "
        f"{result['images_changed']['MLO']}); false marks new with them, by view: "
        f"{result['new_false_marks']}"
    )
    args.out.write_text(json.dumps(result, indent=2))
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()
