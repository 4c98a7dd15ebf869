"""``avatar-rtc``: one argparse subcommand per module.

Each subcommand module exposes ``register(subparsers)`` which adds its parser and sets
``handler`` (``args -> int``) as a default. Adding a subcommand: import it and add it to
:data:`SUBCOMMANDS`.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence
from types import ModuleType

from .. import __version__
from ..redact import install_log_redaction
from . import emulator_cmd, probe_cmd, qa_cmd, record_cmd

__all__ = ["SUBCOMMANDS", "build_parser", "main"]

SUBCOMMANDS: tuple[ModuleType, ...] = (emulator_cmd, probe_cmd, qa_cmd, record_cmd)

Handler = Callable[[argparse.Namespace], int]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="avatar-rtc",
        description="Headless WebRTC media client for the Kaltura Avatar real-time API.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument(
        "-v", "--verbose", action="count", default=0, help="more logging (-v info, -vv debug)"
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in SUBCOMMANDS:
        module.register(subparsers)
    return parser


def _configure_logging(verbosity: int) -> None:
    level = logging.WARNING if verbosity <= 0 else logging.INFO if verbosity == 1 else logging.DEBUG
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    install_log_redaction()


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; the process exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    _configure_logging(args.verbose)
    handler: Handler = args.handler
    try:
        return handler(args)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
