"""``calcifl reader-study``: a trained model and the hospitals' readers."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from cli.options import add_study_args, study_config

logger = logging.getLogger("calcifl")


def cmd_reader_study(args: argparse.Namespace) -> int:
    """Run a reader-assist study of a model with the hospitals' readers."""
    from common.study.report import study_markdown
    from simulations.readerstudy import run_reader_study

    try:
        config = study_config(args)
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


def register(sub: argparse._SubParsersAction) -> None:
    """Add the reader-study command."""
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
    add_study_args(p)
    p.set_defaults(func=cmd_reader_study)
