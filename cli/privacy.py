"""``calcifl privacy``: a hospital reads its own privacy ledger."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from common.hospital.statement import statement, statement_markdown


def cmd_privacy(args: argparse.Namespace) -> int:
    """Print every release of the ledger in a state folder."""
    try:
        report = statement(args.state_dir)
    except FileNotFoundError as exc:
        print(f"calcifl privacy: {exc}", file=sys.stderr)
        return 2
    text = statement_markdown(report)
    print(text, end="")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))
    if args.md:
        Path(args.md).write_text(text)
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``privacy`` command."""
    p = sub.add_parser(
        "privacy",
        help="print a hospital's privacy ledger: every release, its ε and δ, what was sent",
        description=(
            "Read the privacy ledger in a hospital's state folder (its node config's "
            "state-dir) and print, per federation, run, round and model, every DP release "
            "with its steps, noise, cumulative ε and δ and what the reply carried, then the "
            "evaluation statistics released. Reads the hospital's disk only."
        ),
    )
    p.add_argument("state_dir", type=Path, metavar="STATE_DIR", help="the hospital's state folder")
    p.add_argument("--json", metavar="FILE", help="also write the statement as JSON")
    p.add_argument("--md", metavar="FILE", help="also write the statement as Markdown")
    p.set_defaults(func=cmd_privacy)
