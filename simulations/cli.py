"""The ``calcifl`` command line."""

from __future__ import annotations

import argparse
import csv
import json
import logging
import sys
from pathlib import Path

from rich.console import Console
from rich.logging import RichHandler
from rich.progress import Progress
from rich.table import Table

from common.errors import CalciflInputError
from common.imaging.reading import ReadOptions

logger = logging.getLogger("calcifl")


def _setup_logging(verbose: bool) -> None:
    handler = RichHandler(console=Console(stderr=True), show_path=False, show_time=False)
    logging.basicConfig(level=logging.WARNING, handlers=[handler], format="%(message)s")
    logger.setLevel(logging.DEBUG if verbose else logging.INFO)


def _read_options(args: argparse.Namespace) -> ReadOptions:
    return ReadOptions(
        target_spacing_mm=args.spacing,
        fallback_spacing_mm=args.fallback_spacing,
        for_processing=args.for_processing,
        modalities=None if args.any_modality else ("MG",),
    )


def _add_read_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("image reading")
    g.add_argument(
        "--spacing",
        type=float,
        default=0.1,
        metavar="MM",
        help="target pixel spacing of the canonical image (default: 0.1 mm)",
    )
    g.add_argument(
        "--fallback-spacing",
        type=float,
        default=None,
        metavar="MM",
        help="spacing to assume for files that give none (default: refuse them)",
    )
    g.add_argument(
        "--for-processing",
        choices=("refuse", "normalize"),
        default="refuse",
        help="FOR PROCESSING (raw) images: refuse (default) or window to percentiles",
    )
    g.add_argument("--any-modality", action="store_true", help="accept modalities other than MG")


def cmd_synth(args: argparse.Namespace) -> int:
    """Write a synthetic consortium."""
    from common.synth.generate import SynthConfig, synthesize
    from common.synth.readers import DEFAULT_CAD, DEFAULT_READERS, load_profiles

    try:
        readers = load_profiles(args.readers) if args.readers else DEFAULT_READERS
    except ValueError as exc:
        logger.error("%s", exc)
        return 2
    config = SynthConfig(
        hospitals=args.hospitals,
        exams=args.exams,
        seed=args.seed,
        size=args.size,
        spacing_mm=args.vendor_spacing,
        readers=readers,
        cad=None if args.no_aided else DEFAULT_CAD,
    )
    dirs = synthesize(args.out, config, progress=not args.quiet)
    console = Console()
    table = Table(title=f"synthetic consortium in {args.out}")
    for col in (
        "hospital",
        "vendor",
        "images",
        "normal images",
        "benign findings",
        "malignant findings",
        "JPEG 2000",
    ):
        table.add_column(col)
    for d in dirs:
        info = json.loads((d / "synth.json").read_text())
        c = info["counts"]
        table.add_row(
            d.name,
            info["vendor"]["manufacturer"],
            str(c.get("images", 0)),
            str(c.get("normal_images", 0)),
            str(c.get("findings_benign", 0)),
            str(c.get("findings_malignant", 0)),
            str(c.get("jpeg2000", 0)),
        )
    console.print(table)
    return 0


def cmd_inspect(args: argparse.Namespace) -> int:
    """Summarise a hospital folder without revealing patients."""
    from common.data.folders import load_hospital
    from common.data.summary import summarize, to_markdown

    options = _read_options(args)
    status = 0
    for folder in args.data:
        try:
            data = load_hospital(folder, fmt=args.format)
        except CalciflInputError as exc:
            logger.error("%s", exc)
            status = 2
            continue
        with Progress(transient=True, disable=args.quiet, console=Console(stderr=True)) as bar:
            task = bar.add_task(f"checking {len(data.images)} images", total=len(data.images))
            summary = summarize(
                data,
                options,
                deep=args.deep,
                min_cell=args.min_cell,
                tick=lambda task=task, bar=bar: bar.advance(task),
            )
        markdown = to_markdown(summary, title=f"Data summary ({Path(folder).name})")
        if args.json:
            Path(args.json).write_text(json.dumps(summary, indent=2))
        if args.md:
            Path(args.md).write_text(markdown)
        if args.json == "-":
            print(json.dumps(summary, indent=2))
        else:
            print(markdown)
        refused = sum(summary["refused"].values())
        if refused:
            logger.warning("%d file(s) or row(s) refused; the lines above say why", refused)
    return status


def cmd_train_central(args: argparse.Namespace) -> int:
    """Train the centralised baseline on pooled hospital data."""
    from common.learning.dp import DPConfig
    from common.learning.models import ClassifierConfig, classifier_arch
    from common.learning.training import TrainConfig
    from simulations.central import CentralConfig, train_central

    dp = None
    if args.dp:
        dp = DPConfig(
            target_epsilon=args.epsilon,
            noise_multiplier=args.noise_multiplier,
            max_grad_norm=args.max_grad_norm,
            delta=args.delta,
        )
    # with --dp, CentralConfig derives both models' DP schedules from these
    config = CentralConfig(
        detector_train=TrainConfig(
            epochs=args.detector_epochs, seed=args.seed, progress=not args.quiet
        ),
        classifier=ClassifierConfig(arch=classifier_arch(args.classifier_arch, args.dp)),
        classifier_train=TrainConfig(
            epochs=args.classifier_epochs, patience=10, seed=args.seed, progress=not args.quiet
        ),
        read=_read_options(args),
        dp=dp,
        seed=args.seed,
        cache_dir=args.cache,
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
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    """Evaluate a trained model folder on a hospital folder's split."""
    from common.data.cache import PreprocessCache
    from common.data.folders import load_hospital
    from common.evaluation.images import evaluate_images
    from common.evaluation.report import metrics_markdown, plot_froc, plot_roc
    from common.learning.models import load_run
    from common.learning.samples import ImageStore

    models, options, cascade, _ = load_run(args.model)
    out = args.out or Path(args.model) / f"eval-{Path(args.data).name}-{args.split}"
    out.mkdir(parents=True, exist_ok=True)
    data = load_hospital(args.data)
    records = [im for im in data.images if args.split == "all" or im.split == args.split]
    if not records:
        logger.error("%s: no images in split '%s'", args.data, args.split)
        return 2
    store = ImageStore(PreprocessCache(args.cache, options))
    with Progress(transient=True, disable=args.quiet, console=Console(stderr=True)) as bar:
        task = bar.add_task(f"evaluating {len(records)} images", total=len(records))
        stats, _ = evaluate_images(models, records, store, cascade, tick=lambda: bar.advance(task))
    summary = stats.summary(operating_point=args.threshold)
    title = f"Evaluation on {Path(args.data).name} ({args.split})"
    (out / "metrics.json").write_text(
        json.dumps({"summary": summary, "statistics": stats.to_dict()}, indent=2)
    )
    markdown = metrics_markdown(summary, title)
    (out / "metrics.md").write_text(markdown)
    plot_roc(stats, out / "roc.png")
    plot_froc(stats, out / "froc.png")
    print(markdown)
    print(f"written to {out}")
    return 0


def _study_config(args: argparse.Namespace):
    """Build the StudyConfig of ``--study FILE`` overridden by the command line."""
    from dataclasses import replace

    from common.study.arms import StudyConfig

    config = StudyConfig.load(args.study) if args.study else StudyConfig()
    changes = {
        "arms": tuple(args.arms) if args.arms else None,
        "comparisons": tuple(args.compare) if args.compare else None,
        "model_threshold": args.model_threshold,
        "target_sensitivity": args.target_sensitivity,
        "recall_from": args.recall_from,
        "reader_score": args.reader_score,
        "consensus": args.consensus,
        "unit": args.unit,
        "min_cell": getattr(args, "min_cell", None),
    }
    return replace(config, **{k: v for k, v in changes.items() if v is not None})


def _add_study_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("reader study")
    g.add_argument(
        "--study",
        type=Path,
        default=None,
        metavar="JSON",
        help="study definition (arms, comparisons, settings) as JSON",
    )
    g.add_argument(
        "--arms",
        nargs="+",
        default=None,
        metavar="ARM",
        help="arms, e.g. model senior-1 junior-1:aided senior-1+junior-1 junior-1+model "
        "(default: every reader alone, aided, in pairs and with the model)",
    )
    g.add_argument(
        "--compare",
        nargs="+",
        default=None,
        metavar="'A vs B'",
        help="paired comparisons (default: each reading vs its aided and "
        "model-as-second-reader versions, the model vs each reader)",
    )
    g.add_argument(
        "--model-threshold",
        type=float,
        default=None,
        help="model operating point (default: chosen on validation patients)",
    )
    g.add_argument(
        "--target-sensitivity",
        type=float,
        default=None,
        help="sensitivity the chosen operating point reaches (default 0.9)",
    )
    g.add_argument(
        "--recall-from",
        type=int,
        default=None,
        choices=(2, 3, 4, 5),
        help="BI-RADS at and above which a read is a recall (default 4; 0 too)",
    )
    g.add_argument(
        "--reader-score",
        choices=("birads", "suspicion"),
        default=None,
        help="readers' ROC score (default: BI-RADS as an ordinal scale)",
    )
    g.add_argument(
        "--unit",
        choices=("breast", "exam"),
        default=None,
        help="study unit: breast (default) or exam (recalled when either breast is)",
    )
    g.add_argument(
        "--consensus",
        choices=("max", "min"),
        default=None,
        help="double reading: recall if either (max, default) or both (min)",
    )


def cmd_deploy(args: argparse.Namespace) -> int:
    """Make the certificates and keys of a real federation (offline)."""
    from common.federation.pki import init_ca, node_key, server_cert

    try:
        if args.action == "init-ca":
            paths = init_ca(args.out, args.name)
        elif args.action == "server-cert":
            paths = server_cert(args.ca, args.out, args.host)
        else:
            paths = node_key(args.out)
    except (FileExistsError, ValueError) as exc:
        logger.error("%s", exc)
        return 2
    for path in paths:
        print(path)
    return 0


def cmd_reader_study(args: argparse.Namespace) -> int:
    """Run a reader-assist study of a model with the hospitals' readers."""
    from common.study.report import study_markdown
    from simulations.readerstudy import run_reader_study

    try:
        config = _study_config(args)
    except ValueError as exc:
        logger.error("%s", exc)
        return 2
    out = args.out or Path(args.model) / "reader-study"
    try:
        result = run_reader_study(
            args.model, args.data, out, config, cache_dir=args.cache, progress=not args.quiet
        )
    except ValueError as exc:
        logger.error("%s", exc)
        return 2
    if not args.quiet:
        print(study_markdown(result).split("\n## By ")[0])
    print(f"written to {out}: reader_study.md, reader_study.json, reader_study_roc.png")
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    """Run the cascade on DICOM files: JSON and an overlay PNG per image."""
    from common.evaluation.overlay import draw_overlay
    from common.imaging.reading import read_mammogram
    from common.learning.inference import result_to_json, run_cascade
    from common.learning.models import load_run

    models, options, cascade, _ = load_run(args.model)
    args.out.mkdir(parents=True, exist_ok=True)
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
        print(
            f"{path}: score {result.score:.3f}, {len(result.clusters)} cluster(s), "
            f"{len(result.points)} point(s) -> {stem}.json/.png"
        )
    # which output belongs to which input file: local to the site, like the inputs
    with (args.out / "index.csv").open("w", newline="") as f:
        csv.writer(f).writerows([("file", "output", "image_score"), *index])
    if failed:
        logger.warning("%d of %d file(s) could not be read", failed, len(args.images))
    return 1 if failed else 0


def _run_config(pairs: list[str]) -> dict:
    """Parse KEY=VALUE pairs (TOML values: numbers, true/false, quoted strings)."""
    import tomllib

    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise SystemExit(f"--set {pair}: expected KEY=VALUE")
        try:
            out[key.strip()] = tomllib.loads(f"v = {value}")["v"]
        except tomllib.TOMLDecodeError:
            out[key.strip()] = value  # a bare string
    return out


def cmd_simulate(args: argparse.Namespace) -> int:
    """Simulate a consortium with Flower; optionally train and compare the baselines."""
    from server.settings import RunSettings
    from simulations.simulate import (
        SimulationSetup,
        hospital_nodes,
        partition_nodes,
        run_simulation,
    )

    out = args.out.resolve()
    if args.resume and not (out / "checkpoints").is_dir():
        logger.error("%s: no checkpoints to resume from", out)
        return 2
    cache = args.cache or out / "cache"
    state = out / "hospital-state"
    extra = {"min-cell": args.min_cell}
    if args.privacy_budget:
        extra["privacy-budget"] = args.privacy_budget
    if args.data and len(args.data) == 1 and args.partition:
        nodes = partition_nodes(
            args.data[0], args.hospitals, args.partition, args.seed, state, cache, **extra
        )
    elif args.data:
        if args.partition:
            logger.error("--partition needs exactly one pooled --data folder")
            return 2
        nodes = hospital_nodes(args.data, state, cache, **extra)
    else:
        from common.synth.generate import SynthConfig, synthesize

        data_root = out / "data"
        if not (data_root / f"hospital-{args.hospitals}").is_dir():
            synthesize(
                data_root,
                SynthConfig(hospitals=args.hospitals, exams=args.exams, seed=args.seed + 1),
                progress=not args.quiet,
            )
        nodes = hospital_nodes(
            sorted(data_root.glob("hospital-*"))[: args.hospitals], state, cache, **extra
        )
    config = {
        "num-server-rounds": args.rounds,
        "strategy": args.strategy,
        "detector-epochs": args.detector_epochs,
        "classifier-epochs": args.classifier_epochs,
        "out-dir": str(out),
        "resume": args.resume,
        "seed": args.seed,
        "min-available-nodes": len(nodes),
        # Flower samples from the nodes connected at that moment: without a minimum, a
        # hospital still starting up would silently miss round 1
        "min-train-nodes": args.min_nodes or max(1, round(args.fraction * len(nodes))),
        "min-evaluate-nodes": args.min_nodes or len(nodes),
        "fraction-train": args.fraction,
        "dp": args.dp,
        "dp-epsilon": args.epsilon,
        "central-dp": args.central_dp,
        "central-dp-clip": args.central_dp_clip,
        "central-dp-noise": args.central_dp_noise,
        "central-dp-epsilon": args.central_dp_epsilon,
        "central-dp-delta": args.central_dp_delta,
        "federation": args.federation or out.name,
        **_run_config(args.set or []),
    }
    if args.reader_study:
        try:
            study = _study_config(args)
        except ValueError as exc:
            logger.error("%s", exc)
            return 2
        config.update({"reader-study": True, "reader-study-config": study.to_json()})
    try:
        settings = RunSettings.from_config(config)
    except ValueError as exc:
        logger.error("%s", exc)
        return 2
    setup = SimulationSetup(
        nodes, cpus_per_client=args.cpus_per_client, ray_address=args.ray_address
    )
    report = run_simulation(settings, setup, progress=not args.quiet, verbose=args.verbose)
    if args.baselines:
        from simulations.baselines import run_baselines
        from simulations.comparison import add_to_report, compare

        which = ("centralised", "local-only") if args.baselines == "all" else (args.baselines,)
        baselines = run_baselines(
            settings, nodes, out / "baselines", which, cache, progress=not args.quiet
        )
        add_to_report(out, compare(report, baselines))
    print((out / "report.md").read_text())
    print(f"run folder: {out} (report.md, report.json, PNG plots, final models)")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """Return the ``calcifl`` argument parser."""
    parser = argparse.ArgumentParser(
        prog="calcifl",
        description=(
            "Federated learning for mammography calcification detection and malignancy "
            "classification, with reader-assist studies."
        ),
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="more log output")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser(
        "synth",
        help="write a synthetic multi-vendor consortium as real DICOM files",
        description=(
            "Write N hospitals of synthetic mammograms (CBIS-DDSM layout, calcifl manifest, "
            "reader reads), each from a different simulated vendor. Deterministic for a seed."
        ),
    )
    p.add_argument("--out", required=True, type=Path, help="output folder")
    p.add_argument("--hospitals", type=int, default=3, help="number of sites (default: 3)")
    p.add_argument("--exams", type=int, default=40, help="mean exams per site (default: 40)")
    p.add_argument("--seed", type=int, default=1, help="random seed (default: 1)")
    p.add_argument(
        "--size",
        choices=("small", "medium", "full"),
        default="small",
        help="field of view: small (CI, ~48x38 mm), medium, full (~300x240 mm)",
    )
    p.add_argument(
        "--vendor-spacing",
        type=float,
        default=None,
        metavar="MM",
        help="override every vendor's pixel spacing",
    )
    p.add_argument(
        "--readers",
        type=Path,
        default=None,
        metavar="JSON",
        help="simulated readers' skill: a JSON list of profiles (reader_id, role, d_prime, "
        "benign_shift, miss_base, miss_per_subtlety, miss_per_density, recovery, "
        "reliance); default: one senior and two juniors",
    )
    p.add_argument(
        "--no-aided",
        action="store_true",
        help="write unaided reads only (no simulated CAD-aided reading)",
    )
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_synth)

    p = sub.add_parser(
        "inspect",
        help="privacy-safe summary of a hospital data folder",
        description=(
            "Load a hospital folder (calcifl manifest or CBIS-DDSM layout), check every "
            "image, and print counts a hospital can share: no IDs, no paths. Refused files "
            "and rows are logged one line each (locally) and counted by reason."
        ),
    )
    p.add_argument("data", nargs="+", type=Path, help="hospital data folder(s)")
    p.add_argument(
        "--format",
        choices=("auto", "manifest", "cbis-ddsm"),
        default="auto",
        help="data format (default: detect)",
    )
    p.add_argument("--deep", action="store_true", help="decode every image (slower)")
    p.add_argument(
        "--min-cell",
        type=int,
        default=1,
        metavar="K",
        help="hide counts below K (default: 1, nothing hidden)",
    )
    p.add_argument("--json", metavar="FILE", help="also write the summary as JSON ('-': stdout)")
    p.add_argument("--md", metavar="FILE", help="also write the summary as Markdown")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    _add_read_options(p)
    p.set_defaults(func=cmd_inspect)

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
        default=15,
        help="most detector epochs (early stopping, patience 3; with --dp: a fixed N; default 15)",
    )
    p.add_argument(
        "--classifier-epochs",
        type=int,
        default=50,
        help="most classifier epochs (patience 10; with --dp: a fixed min(N, 30); default 50)",
    )
    p.add_argument(
        "--classifier-arch",
        choices=("auto", "cnn", "descriptors"),
        default="auto",
        help="malignancy classifier: a CNN on the crop, or a logistic model on fixed cluster "
        "descriptors (fits DP-SGD on few clusters); auto: descriptors with --dp, else cnn",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of splits, sampling, training")
    p.add_argument("--cache", type=Path, default=None, help="preprocessing cache folder")
    g = p.add_argument_group("differential privacy (DP-SGD)")
    g.add_argument("--dp", action="store_true", help="train with DP-SGD (Opacus)")
    g.add_argument(
        "--epsilon",
        type=float,
        default=8.0,
        help="target ε per model (default 8; unused with --noise-multiplier)",
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
        default=1.0,
        help="per-example gradient clipping bound (default 1.0)",
    )
    g.add_argument("--delta", type=float, default=None, help="δ (default 1/(10 n))")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    _add_read_options(p)
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
    p.set_defaults(func=cmd_evaluate)

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
    p.set_defaults(func=cmd_predict)
    p = sub.add_parser(
        "deploy",
        help="certificates and keys for a real federation (CA, SuperLink, hospitals)",
        description=(
            "Offline, with the cryptography package: init-ca makes the consortium's CA "
            "(ca.crt, ca.key); server-cert makes the SuperLink's TLS certificate for its host "
            "names/addresses (server.pem, server.key); node-key makes a hospital's SuperNode "
            "key pair (OpenSSH ECDSA P-384: FILE and FILE.pub; send only the .pub). "
            "Private keys are mode 0600 and never overwritten."
        ),
    )
    dsub = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    d = dsub.add_parser("init-ca", help="create the consortium CA")
    d.add_argument("--out", type=Path, required=True, help="folder for ca.crt and ca.key")
    d.add_argument("--name", default="calcifl consortium CA", help="CA common name")
    d = dsub.add_parser("server-cert", help="create the SuperLink's TLS certificate")
    d.add_argument("--ca", type=Path, required=True, help="folder holding ca.crt and ca.key")
    d.add_argument("--out", type=Path, required=True, help="folder for server.pem/.key")
    d.add_argument(
        "--host",
        action="append",
        required=True,
        help="host name or IP address clients use (repeat for several)",
    )
    d = dsub.add_parser("node-key", help="create a hospital's SuperNode key pair")
    d.add_argument("--out", type=Path, required=True, help="private key file (FILE.pub too)")
    p.set_defaults(func=cmd_deploy)

    p = sub.add_parser(
        "reader-study",
        help="reader-assist study: readers alone vs with the model (table + ROC figure)",
        description=(
            "Compare reading arms on each hospital's held-out breasts: each reader alone, "
            "aided, in double reading, the model alone and as second reader. Miss rate, "
            "sensitivity, specificity, recall rate, detection miss rate and AUC with 95% CIs; "
            "paired McNemar and DeLong P-values; per hospital, pooled, and by pathology, "
            "density and calcification type."
        ),
    )
    p.add_argument("--model", type=Path, required=True, help="run folder (model.json)")
    p.add_argument(
        "--data", type=Path, nargs="+", required=True, help="hospital folder(s), with reader reads"
    )
    p.add_argument(
        "--out", type=Path, default=None, help="output folder (default: MODEL/reader-study)"
    )
    p.add_argument(
        "--min-cell",
        type=int,
        default=None,
        help="withhold strata with fewer breasts of a class than this",
    )
    p.add_argument("--cache", type=Path, default=None, help="preprocessing cache folder")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars or table")
    _add_study_args(p)
    p.set_defaults(func=cmd_reader_study)

    p = sub.add_parser(
        "simulate",
        help="simulate a federation of hospitals with Flower (+ baselines, report)",
        description=(
            "Run a federated training of the detector and classifier with Flower's simulation "
            "engine, one SuperNode per hospital: synthetic hospitals (default), one folder per "
            "hospital (--data A B C), or one pooled folder split by patient (--data POOL "
            "--partition dirichlet:0.5). Writes RUN_DIR: checkpoints every round, final models "
            "(usable by 'calcifl evaluate/predict'), report.json/.md and PNG plots."
        ),
    )
    p.add_argument("--out", type=Path, required=True, help="run folder")
    p.add_argument(
        "--data",
        nargs="+",
        type=Path,
        default=None,
        help="hospital folders, or one pooled folder with --partition",
    )
    p.add_argument(
        "--synthetic",
        action="store_true",
        help="generate synthetic hospitals in RUN_DIR/data (the default)",
    )
    p.add_argument("--hospitals", type=int, default=3, help="hospitals (default 3)")
    p.add_argument("--exams", type=int, default=40, help="synthetic exams per hospital")
    p.add_argument(
        "--partition",
        default=None,
        metavar="SCHEME",
        help="split a pooled folder: iid, dirichlet:ALPHA, sizes:W1,W2,... (joined by '+')",
    )
    p.add_argument("--rounds", type=int, default=3, help="federated rounds (default 3)")
    p.add_argument(
        "--strategy",
        default="fedavg",
        choices=("fedavg", "fedavgm", "fedprox", "fedadam", "fedtrimmedavg", "krum", "bulyan"),
    )
    p.add_argument("--detector-epochs", type=int, default=5, help="local epochs per round")
    p.add_argument("--classifier-epochs", type=int, default=15, help="local epochs per round")
    p.add_argument("--fraction", type=float, default=1.0, help="fraction of hospitals per round")
    p.add_argument(
        "--min-nodes",
        type=int,
        default=None,
        help="fewest hospitals per round (default: fraction × hospitals; all for evaluation)",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--federation",
        default=None,
        help="federation name for the hospitals' privacy ledgers (default: RUN_DIR name)",
    )
    p.add_argument("--resume", action="store_true", help="continue from RUN_DIR's last checkpoint")
    p.add_argument(
        "--baselines",
        nargs="?",
        const="all",
        default=None,
        choices=("all", "centralised", "local-only"),
        help="also train the centralised and local-only baselines and compare",
    )
    p.add_argument(
        "--reader-study",
        action="store_true",
        help="after the last round, run the reader-assist study across the hospitals "
        "(reader_study.md/.json/_roc.png; study options below)",
    )
    g = p.add_argument_group("differential privacy (DP-SGD at each hospital)")
    g.add_argument(
        "--dp", action="store_true", help="local DP-SGD (Opacus), ε accounted per hospital"
    )
    g.add_argument("--epsilon", type=float, default=8.0, help="target ε over the run (default 8)")
    g.add_argument(
        "--privacy-budget",
        type=float,
        default=None,
        help="every hospital's cap on cumulative ε per model (refuses rounds beyond)",
    )
    g = p.add_argument_group("central differential privacy (hospital-level)")
    g.add_argument(
        "--central-dp",
        action="store_true",
        help="hospitals clip their update, the server adds Gaussian noise to the average "
        "(Flower's client-side fixed clipping; fedavg/fedprox)",
    )
    g.add_argument("--central-dp-clip", type=float, default=1.0, help="update clipping norm")
    g.add_argument(
        "--central-dp-noise",
        type=float,
        default=0.0,
        help="noise multiplier (0: derived from --central-dp-epsilon)",
    )
    g.add_argument(
        "--central-dp-epsilon",
        type=float,
        default=0.0,
        help="ε budget of the run (0: none; needs --central-dp-noise)",
    )
    g.add_argument("--central-dp-delta", type=float, default=1e-5, help="δ (default 1e-5)")
    p.add_argument(
        "--min-cell",
        type=int,
        default=0,
        help="hospitals withhold ROC statistics with fewer positives/negatives",
    )
    p.add_argument(
        "--set",
        nargs="*",
        metavar="KEY=VALUE",
        help="any other run-config key (see server/settings.py), e.g. lr=5e-4",
    )
    g = p.add_argument_group("simulation engine (Ray)")
    g.add_argument(
        "--cpus-per-client",
        type=float,
        default=None,
        help="Ray CPUs (torch threads) per hospital process (default: the cores shared out, "
        "or all of them one hospital at a time when there are more hospitals than cores)",
    )
    g.add_argument(
        "--ray-address",
        default=None,
        help="attach to an existing Ray cluster (e.g. 'auto' or 'HOST:6379')",
    )
    p.add_argument("--cache", type=Path, default=None, help="preprocessing cache folder")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    _add_study_args(p)
    p.set_defaults(func=cmd_simulate)

    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the command line; return the exit status."""
    args = build_parser().parse_args(argv)
    _setup_logging(args.verbose)
    try:
        return args.func(args)
    except CalciflInputError as exc:
        logger.error("%s", exc)
        return 2


if __name__ == "__main__":
    sys.exit(main())
