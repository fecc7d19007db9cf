"""Film benchmark: does the cascade stay quiet on digitised film?

Usage: python bench/bench_film.py [--exams 40] [--film-exams 30] [--screen-exams 40]
                                  [--detector-epochs 6] [--classifier-epochs 15]
                                  [--hard-negatives 2] [--verifier]
                                  [--out bench_film.json]
                                  [--rescore WORK]

Two centralised cascades, each scored on the held-out split of a film hospital (the
``halide`` vendor: CBIS-DDSM-like film at 0.05 mm, no spacing tag, borders, lead label,
grain, cassette dust, scratches and unannotated calcification mimics), read with
``fallback_spacing_mm=0.05``:

- ``digital``: trained on three digital hospitals only (3 vendors, seed 1), as the README's
  main command trains;
- ``with-film``: the same three plus the film hospital's training split.

For each: cluster FROC per full-field image, false marks per full-field normal image at
the run's calibrated operating point (target 0.5) with their count and exact Poisson 95 %
interval, and the breast AUC, on film and on the digital hospitals' held-out images. A
second film site of screening-like exams (3 % of breasts with a finding, never trained on)
adds normal film: a rate near 0.5 per full-field image needs several full-field images of
normal breast before its interval says anything. That site also calibrates a hospital's
own operating point (what ``calcifl calibrate`` does), at which the held-out film and
digital images are scored again. ``--hard-negatives N`` trains both cascades with N mined
false peaks per image (``calcifl train-central --hard-negatives``), ``--verifier`` with
a cluster verifier (``--verifier``). Results go to stdout and, as JSON, to --out.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from bench_models import held_out

from common.data.cache import PreprocessCache
from common.data.folders import load_hospital
from common.evaluation.images import calibrate_marks
from common.evaluation.marks import marks_line
from common.imaging.reading import ReadOptions
from common.learning.models import load_run
from common.learning.samples import ImageStore
from common.learning.training import TrainConfig
from common.synth.generate import SynthConfig, synthesize
from simulations.central import CentralConfig, train_central

FILM = ReadOptions(fallback_spacing_mm=0.05)


def _row(summary: dict) -> dict:
    full = summary["detection"]["full_field"]
    return {
        "froc_full_field_mean": full["mean_sensitivity"],
        "sens@1fp_full_field": full["sens@1fp"],
        "mark_threshold": full["mark_threshold"],
        "false_marks_per_full_field_normal_image": full["normal_false_marks_per_full_field_image"],
        "normal_images": full["normal_images"],
        "normal_false_marks": full["normal_false_marks"],
        "normal_full_field_images": full["normal_full_field_images"],
        "normal_false_marks_95ci": full["normal_false_marks_95ci"],
        "mark_sensitivity": full["mark_sensitivity"],
        "breast_auc": summary["breast"]["auc"],
    }


def main() -> None:
    """Train both cascades and print how each reads film."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--exams", type=int, default=40)
    ap.add_argument("--film-exams", type=int, default=30)
    ap.add_argument("--screen-exams", type=int, default=40)
    ap.add_argument("--detector-epochs", type=int, default=6)
    ap.add_argument("--classifier-epochs", type=int, default=15)
    ap.add_argument(
        "--hard-negatives",
        type=int,
        default=CentralConfig.hard_negatives,
        help="false peaks per image mined after the detector's epochs, then "
        f"{CentralConfig.mining_epochs} epochs more (0: none)",
    )
    ap.add_argument(
        "--verifier",
        action="store_true",
        help="fit a cluster verifier on each trained detector's clusters",
    )
    ap.add_argument("--out", type=Path, default=Path("bench_film.json"))
    ap.add_argument(
        "--rescore",
        type=Path,
        metavar="WORK",
        help="score the models and data of an earlier run's folder again with this code "
        "(a fresh preprocessing cache, so a changed breast mask applies), without training",
    )
    args = ap.parse_args()
    if args.rescore:
        work = args.rescore
        digital = sorted((work / "digital").glob("hospital-*"))
        film, screen = work / "film" / "hospital-1", work / "screen" / "hospital-1"
        cache = Path(tempfile.mkdtemp(prefix="calcifl-film-cache-"))
    else:
        work = Path(tempfile.mkdtemp(prefix="calcifl-film-"))
        print(f"work folder (models and data): {work}")
        digital = synthesize(work / "digital", SynthConfig(hospitals=3, exams=args.exams, seed=1))
        (film,) = synthesize(
            work / "film",
            SynthConfig(hospitals=1, exams=args.film_exams, seed=9, vendors=("halide",)),
        )
        (screen,) = synthesize(
            work / "screen",
            SynthConfig(
                hospitals=1,
                exams=args.screen_exams,
                seed=10,
                vendors=("halide",),
                finding_rate=0.03,
            ),
        )
        cache = work / "cache"
    results: dict = {
        "film_site": json.loads((film / "synth.json").read_text())["counts"],
        "screening_film_site": json.loads((screen / "synth.json").read_text())["counts"],
    }
    for name, sites in (("digital", digital), ("with-film", [*digital, film])):
        records = [
            im
            for site in sites
            for im in load_hospital(site, echo=False).images
            if (im.split or "train") == "train"
        ]
        config = CentralConfig(
            detector_train=TrainConfig(epochs=args.detector_epochs, seed=0, progress=True),
            classifier_train=TrainConfig(
                epochs=args.classifier_epochs, patience=10, seed=0, progress=True
            ),
            read=FILM,  # the film site's spacing; the digital files carry their own
            cache_dir=cache,
            hard_negatives=args.hard_negatives,
            verifier=args.verifier,
        )
        start = time.perf_counter()
        if args.rescore:
            trained = json.loads((work / name / "train.json").read_text())
        else:
            trained = train_central(sites, work / name, config, records=records)
        marks = trained["marks"]
        results[name] = {
            "seconds": round(time.perf_counter() - start, 1),
            "calibration": marks,
            "verifier_fit": trained.get("verifier"),
            "hard_negatives": args.hard_negatives,
            "verifier": args.verifier,
            "film": _row(held_out([film], work / name, cache, FILM)),
            "screening film": _row(held_out([screen], work / name, cache, FILM, split=None)),
            "digital": _row(held_out(digital, work / name, cache, FILM)),
        }
        # the hospital's own operating point: calibrated on the screening film site's
        # images (never trained on), scored on the other sites' held-out images
        models, _, cascade, _ = load_run(work / name)
        store = ImageStore(PreprocessCache(cache, FILM))
        screen_images = load_hospital(screen, echo=False).images
        _, calibration = calibrate_marks(models, screen_images, store, cascade)
        point = calibration["threshold"]
        results[name]["screening calibration"] = calibration
        results[name]["film at the screening point"] = _row(
            held_out([film], work / name, cache, FILM, mark_threshold=point)
        )
        results[name]["digital at the screening point"] = _row(
            held_out(digital, work / name, cache, FILM, mark_threshold=point)
        )
        print(f"{name:>9}: calibrated on the screening film site: {marks_line(calibration)}")
        for where in (
            "film",
            "screening film",
            "digital",
            "film at the screening point",
            "digital at the screening point",
        ):
            r = results[name][where]
            fp, ci = r["false_marks_per_full_field_normal_image"], r["normal_false_marks_95ci"]
            rate = "–" if fp is None else f"{fp:.2f} [{ci[0]:.2f}, {ci[1]:.2f}]"
            print(
                f"{name:>9} on {where:>30}: FROC per full-field image mean "
                f"{r['froc_full_field_mean']:.3f} (sens@1FP {r['sens@1fp_full_field']:.3f}); "
                f"operating point {r['mark_threshold']:.3f}: {rate} false marks per full-field "
                f"normal image ({r['normal_false_marks']} on {r['normal_images']} normal images,"
                f" {r['normal_full_field_images']:.2f} full-field), cluster sensitivity "
                f"{r['mark_sensitivity']:.3f}; breast AUC {r['breast_auc']:.3f}"
            )
    args.out.write_text(json.dumps(results, indent=2))
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()
