"""The ``calcifl`` command line."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from rich.console import Console
from rich.logging import RichHandler
from rich.progress import Progress
from rich.table import Table

from common.dicom import ReadOptions
from common.errors import CalciflInputError

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
        "--spacing", type=float, default=0.1, metavar="MM",
        help="target pixel spacing of the canonical image (default: 0.1 mm)",
    )  # fmt: skip
    g.add_argument(
        "--fallback-spacing", type=float, default=None, metavar="MM",
        help="spacing to assume for files that give none (default: refuse them)",
    )  # fmt: skip
    g.add_argument(
        "--for-processing", choices=("refuse", "normalize"), default="refuse",
        help="FOR PROCESSING (raw) images: refuse (default) or window to percentiles",
    )  # fmt: skip
    g.add_argument("--any-modality", action="store_true", help="accept modalities other than MG")


def cmd_synth(args: argparse.Namespace) -> int:
    """Write a synthetic consortium."""
    from common.synth.generate import SynthConfig, synthesize

    config = SynthConfig(
        hospitals=args.hospitals,
        exams=args.exams,
        seed=args.seed,
        size=args.size,
        spacing_mm=args.vendor_spacing,
    )
    dirs = synthesize(args.out, config, progress=not args.quiet)
    console = Console()
    table = Table(title=f"synthetic consortium in {args.out}")
    for col in (
        "hospital", "vendor", "images", "normal images", "benign findings",
        "malignant findings", "JPEG 2000",
    ):  # fmt: skip
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
    from common.datasets import load_hospital
    from common.summary import summarize, to_markdown

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
                data, options, deep=args.deep, min_cell=args.min_cell,
                tick=lambda task=task, bar=bar: bar.advance(task),
            )  # fmt: skip
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
        "--size", choices=("small", "medium", "full"), default="small",
        help="field of view: small (CI, ~48x38 mm), medium, full (~300x240 mm)",
    )  # fmt: skip
    p.add_argument(
        "--vendor-spacing", type=float, default=None, metavar="MM",
        help="override every vendor's pixel spacing",
    )  # fmt: skip
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
        "--format", choices=("auto", "manifest", "cbis-ddsm"), default="auto",
        help="data format (default: detect)",
    )  # fmt: skip
    p.add_argument("--deep", action="store_true", help="decode every image (slower)")
    p.add_argument(
        "--min-cell", type=int, default=1, metavar="K",
        help="hide counts below K (default: 1, nothing hidden)",
    )  # fmt: skip
    p.add_argument("--json", metavar="FILE", help="also write the summary as JSON ('-': stdout)")
    p.add_argument("--md", metavar="FILE", help="also write the summary as Markdown")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    _add_read_options(p)
    p.set_defaults(func=cmd_inspect)
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
