"""``calcifl train-central``, ``evaluate``, ``calibrate`` and ``predict``: one machine's models."""

from __future__ import annotations

import argparse
import csv
import json
import logging
from dataclasses import asdict, replace
from pathlib import Path

from rich.console import Console
from rich.progress import Progress

from cli.options import add_read_options, read_options
from common.errors import CalciflInputError
from common.federation.rounds import LocalTraining
from common.learning.inference import CascadeConfig
from common.learning.models import PRECISIONS
from common.learning.weak import WEAK_TARGETS
from simulations.central import CentralConfig

logger = logging.getLogger("calcifl")

CENTRAL = CentralConfig()
LOCAL = LocalTraining()


def cmd_train_central(args: argparse.Namespace) -> int:
    """Train the centralised baseline on pooled hospital data."""
    from common.learning.models import ClassifierConfig
    from common.learning.recipes import classifier_arch, dp_config
    from common.learning.training import TrainConfig
    from simulations.central import train_central

    local = LocalTraining(
        dp=args.dp,
        dp_epsilon=args.epsilon,
        dp_noise=args.noise_multiplier or 0.0,
        dp_max_grad_norm=args.max_grad_norm,
        dp_delta=args.delta or 0.0,
    )
    if args.dp and (args.hard_negatives or args.verifier):
        logger.error("train-central: --hard-negatives and --verifier are not used with --dp")
        return 2
    dp = dp_config(local)
    # with --dp, CentralConfig derives both models' DP schedules from these
    config = CentralConfig(
        detector_train=TrainConfig(
            epochs=args.detector_epochs, seed=args.seed, progress=not args.quiet
        ),
        classifier=ClassifierConfig(arch=classifier_arch(args.classifier_arch, args.dp)),
        classifier_train=TrainConfig(
            epochs=args.classifier_epochs, patience=10, seed=args.seed, progress=not args.quiet
        ),
        read=read_options(args),
        dp=dp,
        seed=args.seed,
        cache_dir=args.cache,
        weak_targets=args.weak_targets,
        hard_negatives=args.hard_negatives,
        mining_epochs=args.mining_epochs,
        verifier=args.verifier,
    )
    summary = train_central(args.data, args.out, config)
    det, cls = summary["detector"], summary["classifier"]
    print(
        f"trained in {summary['seconds']} s on {summary['images']['train']} images; "
        f"models in {args.out}"
    )
    for name, part in (("detector", det), ("classifier", cls)):
        best = part["history"][part["best_epoch"] - 1] if part["best_epoch"] else {}
        eps = f", ε={part['privacy']['epsilon']:.2f}" if part["privacy"] else ""
        print(
            f"  {name}: best epoch {part['best_epoch']}, val loss "
            f"{best.get('val_loss', float('nan')):.4f}{eps}"
        )
    if "privacy" in summary:
        p = summary["privacy"]
        print(
            f"  both models composed: ε={p['composed_epsilon']:.2f} at δ={p['delta']:g} per "
            f"finding; a patient with up to {p['examples_per_patient']} examples: "
            f"ε={p['patient_epsilon']:.1f}, δ={p['patient_delta']:.2g} (group privacy)"
        )
    return 0


def _split_images(args: argparse.Namespace) -> list:
    """Return the hospital folder's images in ``args.split`` (saying so when there are none)."""
    from common.data.folders import load_hospital

    data = load_hospital(args.data)
    records = [im for im in data.images if args.split == "all" or im.split == args.split]
    if not records:
        logger.error("%s: no images in split '%s'", args.data, args.split)
    return records


def cmd_evaluate(args: argparse.Namespace) -> int:
    """Evaluate a trained model folder on a hospital folder's split."""
    from common.data.cache import PreprocessCache
    from common.evaluation.images import evaluate_images
    from common.evaluation.report import metrics_markdown, plot_froc, plot_roc
    from common.learning.models import load_run
    from common.learning.samples import ImageStore

    models, options, cascade, _ = load_run(args.model)
    options = read_options(args, options)
    cascade = with_precision(args, operating_point(args, cascade))
    out = args.out or Path(args.model) / f"eval-{Path(args.data).name}-{args.split}"
    out.mkdir(parents=True, exist_ok=True)
    records = _split_images(args)
    if not records:
        return 2
    store = ImageStore(PreprocessCache(args.cache, options))
    with Progress(transient=True, disable=args.quiet, console=Console(stderr=True)) as bar:
        task = bar.add_task(f"evaluating {len(records)} images", total=len(records))
        stats, _ = evaluate_images(models, records, store, cascade, tick=lambda: bar.advance(task))
    summary = stats.summary(operating_point=args.threshold, mark_threshold=cascade.mark_threshold)
    title = f"Evaluation on {Path(args.data).name} ({args.split})"
    (out / "metrics.json").write_text(
        json.dumps({"summary": summary, "statistics": stats.to_dict()}, indent=2)
    )
    markdown = metrics_markdown(summary, title)
    (out / "metrics.md").write_text(markdown)
    plot_roc(stats, out / "roc.png")
    plot_froc(stats, out / "froc.png", mark_threshold=cascade.mark_threshold)
    print(markdown)
    print(f"written to {out}")
    return 0


def operating_point(args: argparse.Namespace, cascade: CascadeConfig) -> CascadeConfig:
    """Return ``cascade`` with the operating point the command line gives.

    ``--mark-threshold`` or ``--operating-point`` (a ``calcifl calibrate`` file); the
    model's own without either. ``--keep-line-clusters`` turns off the setting aside of
    clusters strung along a scratch, a calcified vessel's tracks or the skin line, and
    of the peaks on a coarse calcification's rim.
    """
    if getattr(args, "keep_line_clusters", False):
        cascade = replace(cascade, line_artifacts=False)
    if getattr(args, "mark_threshold", None) is not None:
        return replace(cascade, mark_threshold=args.mark_threshold)
    if getattr(args, "operating_point", None) is not None:
        try:
            spec = json.loads(Path(args.operating_point).read_text())
            threshold, detector = float(spec["mark_threshold"]), spec["detector_sha256"]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise CalciflInputError(
                args.operating_point, f"not an operating point from 'calcifl calibrate' ({exc})"
            ) from exc
        if detector != _detector_digest(args.model):
            raise CalciflInputError(
                args.operating_point, f"calibrated for another detector than {args.model}'s"
            )
        # a point set with line clusters set aside marks more where they are judged
        lines = spec.get("line_artifacts", cascade.line_artifacts)
        if lines != cascade.line_artifacts:
            raise CalciflInputError(
                args.operating_point,
                "calibrated with clusters along lines "
                + (
                    "set aside; drop --keep-line-clusters"
                    if lines
                    else "judged; add --keep-line-clusters"
                )
                + " or calibrate again",
            )
        return replace(cascade, mark_threshold=threshold)
    return cascade


def _detector_digest(run_dir: Path) -> str:
    """SHA-256 of a run folder's detector weights: which model an operating point is for."""
    import hashlib

    return hashlib.sha256((Path(run_dir) / "detector.pt").read_bytes()).hexdigest()


def cmd_calibrate(args: argparse.Namespace) -> int:
    """Calibrate a model's operating point on a hospital's own images."""
    from common.data.cache import PreprocessCache
    from common.evaluation.images import calibrate_marks
    from common.evaluation.marks import marks_line
    from common.learning.models import load_run
    from common.learning.samples import ImageStore

    models, options, cascade, _ = load_run(args.model)
    options = read_options(args, options)
    records = _split_images(args)
    if not records:
        return 2
    store = ImageStore(PreprocessCache(args.cache, options))
    target = replace(with_precision(args, cascade), max_false_marks=args.max_false_marks)
    if args.keep_line_clusters:
        target = replace(target, line_artifacts=False)
    with Progress(transient=True, disable=args.quiet, console=Console(stderr=True)) as bar:
        task = bar.add_task(f"detecting on {len(records)} images", total=len(records))
        calibrated, calibration = calibrate_marks(
            models, records, store, target, tick=lambda: bar.advance(task)
        )
    print(
        f"{Path(args.data).name} ({args.split}, {len(records)} images): " + marks_line(calibration)
    )
    if calibrated.mark_threshold is None:
        return 2
    model_point = cascade.mark_threshold
    spec = {
        "mark_threshold": calibrated.mark_threshold,
        "detector_sha256": _detector_digest(args.model),
        "max_false_marks": args.max_false_marks,
        "model_mark_threshold": model_point,
        "line_artifacts": target.line_artifacts,
        "split": args.split,
        "images": len(records),
        "calibration": calibration,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(spec, indent=2))
    print(
        f"operating point {calibrated.mark_threshold:.3f} (the model's: "
        + ("none" if model_point is None else f"{model_point:.3f}")
        + f") written to {args.out}; use it with --operating-point {args.out}"
    )
    return 0


def _add_operating_point(p: argparse.ArgumentParser) -> None:
    """Add the options replacing the model's operating point."""
    g = p.add_argument_group("operating point (default: the model's, from model.json)")
    x = g.add_mutually_exclusive_group()
    x.add_argument(
        "--operating-point",
        type=Path,
        default=None,
        metavar="JSON",
        help="a hospital's own operating point, written by 'calcifl calibrate'",
    )
    x.add_argument(
        "--mark-threshold",
        type=float,
        default=None,
        metavar="SCORE",
        help="clusters with a detection score at or above this are marks",
    )
    _add_keep_line_clusters(g)


def _add_keep_line_clusters(p: argparse._ActionsContainer) -> None:
    """Add ``--keep-line-clusters`` to a parser or argument group."""
    p.add_argument(
        "--keep-line-clusters",
        action="store_true",
        help=(
            "judge clusters strung along one straight line (a scratch), two parallel or "
            "concentric ones (a calcified vessel) or the skin line, and the peaks on a "
            "coarse calcification's rim, like any other "
            "(default: set aside, never marked, and a finding that is a calcified vessel "
            "alone is no lesion; an --operating-point file says which it was calibrated "
            "with)"
        ),
    )


def _add_precision(p: argparse.ArgumentParser) -> None:
    """Add the detector's arithmetic option."""
    p.add_argument(
        "--precision",
        choices=PRECISIONS,
        default=None,
        help=(
            "the detector's arithmetic: bfloat16 after the first layer (probabilities "
            "within about 0.006), auto: bfloat16 where the CPU multiplies it natively and "
            "it measures at least 10%% faster at start-up, else float32; or float32 "
            "everywhere (default: the model's, from model.json: float32)"
        ),
    )


def with_precision(args: argparse.Namespace, cascade: CascadeConfig) -> CascadeConfig:
    """Return ``cascade`` with the command line's ``--precision``, if it gives one."""
    precision = getattr(args, "precision", None)
    return cascade if precision is None else replace(cascade, precision=precision)


def cmd_predict(args: argparse.Namespace) -> int:
    """Run the cascade on DICOM files: JSON and an overlay PNG per image."""
    from common.evaluation.overlay import draw_overlay
    from common.imaging.reading import read_mammogram
    from common.learning.inference import result_to_json, run_cascade
    from common.learning.models import load_run

    models, options, cascade, _ = load_run(args.model)
    options = read_options(args, options)
    cascade = with_precision(args, operating_point(args, cascade))
    if cascade.mark_threshold is None:
        logger.warning(
            "%s: no calibrated operating point; every cluster is drawn as a mark", args.model
        )
    args.out.mkdir(parents=True, exist_ok=True)
    # what the outputs were read with, beside them
    reading = {k: v for k, v in asdict(options).items() if k != "key_salt"}
    (args.out / "reading.json").write_text(json.dumps(reading, indent=2))
    failed = 0
    index: list[tuple[str, str, str]] = []
    for path in args.images:
        try:
            image = read_mammogram(path, options)
        except CalciflInputError as exc:
            logger.error("%s", exc)
            failed += 1
            continue
        result = run_cascade(models, image, cascade)
        # named by the de-identified key: CBIS-style trees reuse file names (000000.dcm)
        stem = image.image_key
        (args.out / f"{stem}.json").write_text(json.dumps(result_to_json(result, image), indent=2))
        draw_overlay(image, result, args.out / f"{stem}.png")
        index.append((str(path), stem, f"{result.score:.4f}"))
        hidden = len(result.clusters) - len(result.marks)
        print(
            f"{path}: score {result.score:.3f}, {len(result.marks)} mark(s)"
            + (f" ({hidden} cluster(s) below the operating point)" if hidden else "")
            + f", {len(result.points)} point(s) -> {stem}.json/.png"
        )
    # which output belongs to which input file: local to the site, like the inputs
    with (args.out / "index.csv").open("w", newline="") as f:
        csv.writer(f).writerows([("file", "output", "image_score"), *index])
    if failed:
        logger.warning("%d of %d file(s) could not be read", failed, len(args.images))
    return 1 if failed else 0


def register(sub: argparse._SubParsersAction) -> None:
    """Add the model commands."""
    p = sub.add_parser(
        "train-central",
        help="train detector + classifier on pooled data (the centralised baseline)",
        description=(
            "Pool the 'train' split of every hospital folder, hold out a patient-level "
            "validation split for early stopping, train the detector and the classifier, "
            "and write RUN_DIR (state_dicts + model.json + train.json)."
        ),
    )
    p.add_argument("--data", nargs="+", type=Path, required=True, help="hospital folders")
    p.add_argument("--out", type=Path, required=True, help="run folder to write")
    p.add_argument(
        "--detector-epochs",
        type=int,
        default=CENTRAL.detector_train.epochs,
        help="most detector epochs (early stopping, patience 3; with --dp: a fixed N; "
        "default %(default)s)",
    )
    p.add_argument(
        "--classifier-epochs",
        type=int,
        default=CENTRAL.classifier_train.epochs,
        help="most classifier epochs (patience 10; with --dp: a fixed min(N, 30); "
        "default %(default)s)",
    )
    p.add_argument(
        "--classifier-arch",
        choices=("auto", "cnn", "descriptors"),
        default="auto",
        help="malignancy classifier: a CNN on the crop, or a logistic model on fixed cluster "
        "descriptors (fits DP-SGD on few clusters); auto: descriptors with --dp, else cnn",
    )
    p.add_argument(
        "--seed", type=int, default=CENTRAL.seed, help="seed of splits, sampling, training"
    )
    p.add_argument("--cache", type=Path, default=None, help="preprocessing cache folder")
    p.add_argument(
        "--weak-targets",
        choices=WEAK_TARGETS,
        default=CENTRAL.weak_targets,
        help="detector targets of findings with a mask, box or centroid but no points: "
        "candidate calcifications found in the region, one peak at the centroid, or the "
        "region as a multiple-instance bag (mil) (default %(default)s)",
    )
    p.add_argument(
        "--hard-negatives",
        type=int,
        default=CENTRAL.hard_negatives,
        metavar="N",
        help="without --dp: once the detector is trained, add its N strongest false peaks "
        "per image (away from every annotation) to its patches and train it "
        "--mining-epochs more; 0: none (default %(default)s)",
    )
    p.add_argument(
        "--mining-epochs",
        type=int,
        default=CENTRAL.mining_epochs,
        metavar="E",
        help="detector epochs on the mined negatives (default %(default)s)",
    )
    p.add_argument(
        "--verifier",
        action="store_true",
        help="without --dp: fit a cluster verifier on the trained detector's clusters "
        "(shape and pixels; P(finding) weighs each cluster's detection score)",
    )
    g = p.add_argument_group("differential privacy (DP-SGD)")
    g.add_argument("--dp", action="store_true", help="train with DP-SGD (Opacus)")
    g.add_argument(
        "--epsilon",
        type=float,
        default=LOCAL.dp_epsilon,
        help="target ε per model (default %(default)s; unused with --noise-multiplier)",
    )
    g.add_argument(
        "--noise-multiplier",
        type=float,
        default=None,
        help="fixed noise multiplier instead of a target ε",
    )
    g.add_argument(
        "--max-grad-norm",
        type=float,
        default=LOCAL.dp_max_grad_norm,
        help="per-example gradient clipping bound (default %(default)s)",
    )
    g.add_argument("--delta", type=float, default=None, help="δ (default 1e-5; refused above 1/n)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    add_read_options(p)
    p.set_defaults(func=cmd_train_central)

    p = sub.add_parser(
        "evaluate",
        help="metrics (FROC, AUC with DeLong CI, ECE) + Markdown + ROC/FROC PNGs",
        description="Evaluate a run folder's models on a hospital folder's split.",
    )
    p.add_argument("--model", type=Path, required=True, help="run folder (model.json)")
    p.add_argument("--data", type=Path, required=True, help="hospital folder")
    p.add_argument("--split", default="test", help="split to evaluate, or 'all'")
    p.add_argument("--out", type=Path, default=None, help="output folder")
    p.add_argument("--threshold", type=float, default=0.5, help="operating point")
    p.add_argument("--cache", type=Path, default=None, help="preprocessing cache folder")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    add_read_options(p, model=True)
    _add_operating_point(p)
    _add_precision(p)
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser(
        "calibrate",
        help="a hospital's own operating point: false marks per full-field normal image",
        description=(
            "Run the detector on a hospital folder's images and pick the lowest detection "
            "score at which its false clusters stay at or under --max-false-marks per "
            "full-field normal image (the normal images' when they hold two full-field "
            "images of breast, else every image's). Use images the model did not train on. "
            "Writes a JSON file for predict/evaluate --operating-point; model.json is not "
            "changed."
        ),
    )
    p.add_argument("--model", type=Path, required=True, help="run folder (model.json)")
    p.add_argument("--data", type=Path, required=True, help="hospital folder")
    p.add_argument("--split", default="all", help="split to calibrate on, or 'all' (default)")
    p.add_argument("--out", type=Path, required=True, help="operating point JSON to write")
    p.add_argument(
        "--max-false-marks",
        type=float,
        default=0.5,
        help="target false marks per full-field normal image (default 0.5)",
    )
    p.add_argument("--cache", type=Path, default=None, help="preprocessing cache folder")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    _add_keep_line_clusters(p)
    add_read_options(p, model=True)
    _add_precision(p)
    p.set_defaults(func=cmd_calibrate)

    p = sub.add_parser(
        "predict",
        help="points, clusters and malignancy for DICOM files (JSON + overlay PNG)",
        description=(
            "For each image: calcification points, clusters (box, malignancy probability) "
            "and the image score, in canonical and stored-DICOM pixel coordinates, and a PNG "
            "overlay, named by the de-identified image key (index.csv maps files to outputs). "
            "Unreadable files are reported and skipped (exit status 1)."
        ),
    )
    p.add_argument("--model", type=Path, required=True, help="run folder (model.json)")
    p.add_argument("images", nargs="+", type=Path, help="DICOM files")
    p.add_argument("--out", type=Path, required=True, help="output folder")
    add_read_options(p, model=True)
    _add_operating_point(p)
    _add_precision(p)
    p.set_defaults(func=cmd_predict)
