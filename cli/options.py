"""Options several commands share: logging, image reading, the reader study, run settings."""

from __future__ import annotations

import argparse
import logging
from dataclasses import replace
from pathlib import Path

from rich.console import Console
from rich.logging import RichHandler

from common.imaging.reading import ReadOptions

logger = logging.getLogger("calcifl")


def setup_logging(verbose: bool) -> None:
    """Log through rich to stderr (INFO, or DEBUG with ``verbose``)."""
    handler = RichHandler(console=Console(stderr=True), show_path=False, show_time=False)
    logging.basicConfig(level=logging.WARNING, handlers=[handler], format="%(message)s")
    logger.setLevel(logging.DEBUG if verbose else logging.INFO)


def read_options(args: argparse.Namespace, model: ReadOptions | None = None) -> ReadOptions:
    """Return the reading options given on the line over ``model``'s (or the defaults)."""
    base = model or ReadOptions()
    spacing = args.spacing if args.spacing is not None else base.target_spacing_mm
    if model is not None and spacing != base.target_spacing_mm:
        logger.warning(
            "--spacing %g mm: the model was trained at %g mm", spacing, base.target_spacing_mm
        )
    return replace(
        base,
        target_spacing_mm=spacing,
        fallback_spacing_mm=(
            args.fallback_spacing if args.fallback_spacing is not None else base.fallback_spacing_mm
        ),
        for_processing=args.for_processing or base.for_processing,
        modalities=None if args.any_modality else base.modalities,
    )


def node_reading(args: argparse.Namespace) -> dict:
    """Return the node-config keys of the file-reading options given on the line."""
    keys = {}
    if args.fallback_spacing is not None:
        keys["fallback-spacing"] = args.fallback_spacing
    if args.for_processing:
        keys["for-processing"] = args.for_processing
    if args.any_modality:
        keys["any-modality"] = True
    return keys


def add_read_options(p: argparse.ArgumentParser, model: bool = False) -> None:
    """Add the image-reading options to a command (``model``: defaults from the model)."""
    g = p.add_argument_group("image reading")
    default = ReadOptions()
    g.add_argument(
        "--spacing",
        type=float,
        default=None,
        metavar="MM",
        help="target pixel spacing of the canonical image (default: "
        + ("the model's)" if model else f"{default.target_spacing_mm} mm)"),
    )
    g.add_argument(
        "--fallback-spacing",
        type=float,
        default=None,
        metavar="MM",
        help="spacing to assume for files that give none, e.g. digitised film at 0.05 "
        "(default: refuse them)",
    )
    g.add_argument(
        "--for-processing",
        choices=("refuse", "normalize"),
        default=None,
        help="FOR PROCESSING (raw) images: refuse (default) or window to percentiles",
    )
    g.add_argument("--any-modality", action="store_true", help="accept modalities other than MG")


def add_synth_options(p: argparse.ArgumentParser) -> None:
    """Add the options choosing a synthetic consortium's vendors, findings and mimics."""
    from common.synth.vendors import BY_NAME

    p.add_argument(
        "--vendors",
        nargs="+",
        choices=sorted(BY_NAME),
        default=None,
        metavar="NAME",
        help="vendors, cycled over the hospitals (default: the four digital units in turn; "
        "'halide' is a CBIS-DDSM-like film digitiser: 0.05 mm, no spacing tag, RLE, film "
        f"artifacts). Known: {', '.join(sorted(BY_NAME))}",
    )
    p.add_argument(
        "--finding-rate",
        type=float,
        default=None,
        metavar="F",
        help="share of breasts with a calcification finding (default: 0.35-0.55 per site, "
        "an enriched set like CBIS-DDSM; a screening population is about 0.03)",
    )
    p.add_argument(
        "--mimics",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="draw unannotated calcification mimics: skin specks, noise spikes, vascular "
        "and popcorn calcifications (default: on film only)",
    )
    p.add_argument(
        "--ffdm-artifacts",
        action="store_true",
        help="draw paddle edges and skin folds on the digital units' images (default: off)",
    )


def synth_choices(args: argparse.Namespace) -> dict:
    """Return the SynthConfig fields :func:`add_synth_options` set."""
    return {
        "vendors": tuple(args.vendors or ()),
        "finding_rate": args.finding_rate,
        "mimics": args.mimics,
        "ffdm_artifacts": args.ffdm_artifacts,
    }


def study_config(args: argparse.Namespace):
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
        "assistance": args.assistance,
    }
    return replace(config, **{k: v for k, v in changes.items() if v is not None})


def add_study_args(p: argparse.ArgumentParser) -> None:
    """Add the reader-study options to a command."""
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
        "--assistance",
        choices=("recorded", "simulated-model"),
        default=None,
        help="aided reads: as recorded (default), or, for simulated readers, simulated from "
        "the model's own marks and scores on each breast (the default of simulate "
        "--synthetic --reader-study)",
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


def run_config(pairs: list[str]) -> dict:
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
