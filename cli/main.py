"""The ``calcifl`` command line: one module per command group."""

from __future__ import annotations

import argparse
import logging
import sys

logger = logging.getLogger("calcifl")


def build_parser() -> argparse.ArgumentParser:
    """Return the ``calcifl`` argument parser."""
    # imported here, not at the top: worker processes that a command spawns re-import this
    # module, and should not pay for torch, Flower and Opacus
    from cli import data, federation, models, privacy, study

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
    from cli.options import setup_logging
    from common.errors import CalciflInputError

    args = build_parser().parse_args(argv)
    setup_logging(args.verbose)
    try:
        return args.func(args)
    except CalciflInputError as exc:
        logger.error("%s", exc)
        return 2


if __name__ == "__main__":
    sys.exit(main())
