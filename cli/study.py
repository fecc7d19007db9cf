"""``calcifl reader-study``: a trained model and the hospitals' readers."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from cli.options import add_read_options, add_study_args, read_options, study_config

logger = logging.getLogger("calcifl")


def cmd_reader_study(args: argparse.Namespace) -> int:
    """Run a reader-assist study of a model with the hospitals' readers."""
    from common.study.report import study_markdown
    from simulations.readerstudy import run_reader_study

    if args.plan:
        return _plan(args)
    if not (args.model and args.data):
        logger.error("reader-study needs --model and --data (or --plan PILOT)")
        return 2
    try:
        config = study_config(args)
    except ValueError as exc:
        logger.error("%s", exc)
        return 2
    out = args.out or Path(args.model) / "reader-study"
    try:
        from common.learning.models import load_run

        read = read_options(args, load_run(args.model)[1])
        result = run_reader_study(
            args.model,
            args.data,
            out,
            config,
            cache_dir=args.cache,
            progress=not args.quiet,
            read=read,
        )
    except ValueError as exc:
        logger.error("%s", exc)
        return 2
    if not args.quiet:
        print(study_markdown(result).split("\n## By ")[0])
    names = ", ".join(Path(p).name for p in result["paths"].values())
    print(f"written to {out}: {names}")
    return 0


def _plan(args: argparse.Namespace) -> int:
    from common.study.planning import write_plan

    out = args.out or Path("study-plan")
    try:
        result = write_plan(
            args.plan,
            out,
            args.effect,
            args.power,
            args.alpha,
            tuple(args.plan_readers),
            args.hospitals,
            args.panel,
        )
    except ValueError as exc:
        logger.error("%s", exc)
        return 2
    for row in result["table"]:
        print(f"{row['readers']:>4} readers: {row['cases'] or 'not reachable'} cases")
    print(f"written to {out}: study_plan.md, study_plan.json, study_plan.png")
    return 0


def cmd_mrmc(args: argparse.Namespace) -> int:
    """OR/DBM analysis of a long-form ratings CSV."""
    import json

    from common.study.fom import auc_covariances
    from common.study.mrmc import analyse
    from common.study.randomreaders import mrmc_markdown
    from common.study.ratings import load_ratings

    try:
        ratings = load_ratings(args.ratings)
    except (OSError, ValueError) as exc:
        logger.error("%s", exc)
        return 2
    for line in ratings.problems:
        logger.warning("refused %s", line)
    t, r, c = ratings.values.shape
    try:
        theta, covs = auc_covariances(ratings.values.reshape(t * r, c), ratings.truth)
    except ValueError as exc:
        logger.error("%s: %s", args.ratings, exc)
        return 2
    out = analyse(theta.reshape(t, r), covs, c, int((~ratings.truth).sum()))
    result = {
        "modalities": list(ratings.modalities),
        "readers": list(ratings.readers),
        "refused_rows": len(ratings.problems),
        "results": out,
    }
    text = mrmc_markdown(result)
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "mrmc.json").write_text(json.dumps(result, indent=2))
        (args.out / "mrmc.md").write_text(text)
    print(text)
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
    p.add_argument("--model", type=Path, default=None, help="run folder (model.json)")
    p.add_argument(
        "--data", type=Path, nargs="+", default=None, help="hospital folder(s), with reader reads"
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
    add_read_options(p, model=True)
    add_study_args(p)
    g = p.add_argument_group("study size (--plan)")
    g.add_argument(
        "--plan",
        type=Path,
        default=None,
        metavar="PILOT",
        help="size a study from a pilot: a reader_study.json (its random-reader section) or "
        "a long-form ratings CSV; writes study_plan.md/.json/.png (no --model/--data)",
    )
    g.add_argument(
        "--effect", type=float, default=None, help="Δ AUC to detect (default: the pilot's)"
    )
    g.add_argument("--power", type=float, default=0.8, help="target power (default 0.8)")
    g.add_argument("--alpha", type=float, default=0.05, help="significance level (default 0.05)")
    g.add_argument(
        "--plan-readers",
        type=int,
        nargs="+",
        default=[4, 6, 8, 10, 12, 16, 20],
        metavar="R",
        help="reader counts of the table",
    )
    g.add_argument(
        "--hospitals",
        type=int,
        default=1,
        help="hospitals with their own readers and cases (split-plot; default 1: crossed)",
    )
    g.add_argument("--panel", default=None, help="reader panel of a reader_study.json pilot")
    p.set_defaults(func=cmd_reader_study)

    m = sub.add_parser(
        "mrmc",
        help="OR/DBM random-reader analysis of a ratings CSV (modality,reader,case,truth,rating)",
        description=(
            "Obuchowski-Rockette (jackknife, DeLong and unbiased covariances; random readers "
            "and cases with Hillis df, fixed readers, fixed cases) and DBM analyses of a fully "
            "crossed study in long form, as iMRMC, RJafroc and MRMCaov export it."
        ),
    )
    m.add_argument("ratings", type=Path, help="CSV with columns modality,reader,case,truth,rating")
    m.add_argument("--out", type=Path, default=None, help="also write mrmc.json and mrmc.md here")
    m.set_defaults(func=cmd_mrmc)
