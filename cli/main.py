"""The ``calcifl`` command line: one module per command group."""

from __future__ import annotations

import argparse
import logging
import sys

from cli import data, federation, models, privacy, study
from cli.options import setup_logging
from common.errors import CalciflInputError

logger = logging.getLogger("calcifl")


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

    for group in (data, models, study, federation, privacy):
        group.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the command line; return the exit status."""
    args = build_parser().parse_args(argv)
    setup_logging(args.verbose)
    try:
        return args.func(args)
    except CalciflInputError as exc:
        logger.error("%s", exc)
        return 2


if __name__ == "__main__":
    sys.exit(main())
