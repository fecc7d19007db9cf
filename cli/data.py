"""``calcifl synth`` and ``calcifl inspect``: synthetic consortia and data summaries."""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from cli.options import add_read_options, add_synth_options, read_options, synth_choices
from common.errors import CalciflInputError
from common.synth.generate import SynthConfig

logger = logging.getLogger("calcifl")

SYNTH = SynthConfig()


def cmd_synth(args: argparse.Namespace) -> int:
    """Write a synthetic consortium."""
    from common.synth.generate import synthesize
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
        **synth_choices(args),
    )
    dirs = synthesize(args.out, config, progress=not args.quiet, workers=0)
    console = Console()
    table = Table(title=f"synthetic consortium in {args.out}")
    for col in (
        "hospital",
        "vendor",
        "images",
        "normal images",
        "benign findings",
        "malignant findings",
        "compressed",
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
            _compressed(c.get("compressed", 0), info["vendor"].get("syntax", "")),
        )
    console.print(table)
    return 0


def _compressed(count: int, syntax: str) -> str:
    from pydicom.uid import UID

    return f"{count} ({UID(syntax).keyword})" if count else "0"


def cmd_inspect(args: argparse.Namespace) -> int:
    """Summarise a hospital folder without revealing patients."""
    from common.data.folders import load_hospital
    from common.data.summary import summarize, to_markdown

    options = read_options(args)
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


def register(sub: argparse._SubParsersAction) -> None:
    """Add the data commands."""
    p = sub.add_parser(
        "synth",
        help="write a synthetic multi-vendor consortium as real DICOM files",
        description=(
            "Write N hospitals of synthetic mammograms (CBIS-DDSM layout, calcifl manifest, "
            "reader reads), each from a different simulated vendor. Deterministic for a seed."
        ),
    )
    p.add_argument("--out", required=True, type=Path, help="output folder")
    p.add_argument(
        "--hospitals",
        type=int,
        default=SYNTH.hospitals,
        help="sites (default %(default)s)",
    )
    p.add_argument(
        "--exams", type=int, default=SYNTH.exams, help="mean exams per site (default %(default)s)"
    )
    p.add_argument("--seed", type=int, default=SYNTH.seed, help="random seed (default %(default)s)")
    p.add_argument(
        "--size",
        choices=("small", "medium", "full"),
        default=SYNTH.size,
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
    add_synth_options(p)
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
    add_read_options(p)
    p.set_defaults(func=cmd_inspect)
