"""``avatar-rtc``: one argparse subcommand per module.

Each subcommand module exposes ``register(subparsers)`` which adds its parser (through
:func:`~.arguments.add_command`) and sets ``handler`` (``args -> int``) as a default. Adding a
subcommand: add its module to :func:`_subcommands`.

Start-up stays fast (``--help``, ``--version``): this module and the subcommand modules import
only the standard library and light parts of the package; the media stack a command runs on
(its ``imports`` default) is imported once its arguments parsed, with Ctrl-C held. A Ctrl-C
or a closed stdout at any point after this module loaded is an exit status, never a
traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from types import FrameType, ModuleType
from typing import NoReturn

from .. import __version__
from ..redact import redact, register_secret
from .arguments import VERBOSE_HELP, HelpFormatter, verbosity
from .exit_status import EXIT_SIGINT, exit_status_help, stdout_gone

__all__ = ["build_parser", "main"]

Handler = Callable[[argparse.Namespace], int]


def _subcommands() -> tuple[ModuleType, ...]:
    # Imported when the parser is built, inside main()'s Ctrl-C handling.
    from . import emulator_cmd, fleet_cmd, probe_cmd, qa_cmd, record_cmd

    return (emulator_cmd, fleet_cmd, probe_cmd, qa_cmd, record_cmd)


# Options whose value is a credential, in every command (their values are masked in the
# parser's own error messages too).
SECRET_OPTIONS = ("--ks", "--bearer", "--turn-username", "--turn-credential", "--turn-secret")
# Environment variables that hold one (of the client and of the emulator).
SECRET_ENVIRONMENT = (
    "AVATAR_KS",
    "AVATAR_BEARER",
    "AVATAR_TURN_CREDENTIAL",
    "AVATAR_EMULATOR_KS",
    "AVATAR_EMULATOR_TURN_SECRET",
)
# Options whose names begin secret ones': given in full they are themselves, not abbreviations
# (a TURN server's URL is no secret, and masking it hid which server failed).
NOT_SECRET_PREFIXES = ("--turn",)


class _Parser(argparse.ArgumentParser):
    """argparse repeats a refused value in its error ("invalid choice: 'VALUE'"): a KS given
    in the wrong place is masked there too (its subcommands' parsers are of this class)."""

    def error(self, message: str) -> NoReturn:
        super().error(redact(message))


def secret_arguments(argv: Sequence[str]) -> list[str]:
    """The values given to :data:`SECRET_OPTIONS` in ``argv`` (``--opt V``, ``--opt=V``, and
    the abbreviations argparse accepts, even ambiguous ones), wherever they stand."""
    values = []
    for i, token in enumerate(argv):
        name, eq, value = token.partition("=")
        if (
            len(name) > 2
            and name.startswith("--")
            and name not in NOT_SECRET_PREFIXES
            and any(o.startswith(name) for o in SECRET_OPTIONS)
        ):
            if eq:
                values.append(value)
            elif i + 1 < len(argv):
                values.append(argv[i + 1])
    return values


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="avatar-rtc",
        description="Headless WebRTC media client for the Kaltura Avatar real-time API.",
        epilog=f"{exit_status_help()}\n\n'avatar-rtc COMMAND --help' shows a command's options.",
        formatter_class=HelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument(
        "-v", "--verbose", action="count", default=0, help=f"{VERBOSE_HELP}; also after COMMAND"
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in _subcommands():
        module.register(subparsers)
    return parser


def _configure_logging(verbosity: int) -> None:
    from ..redact import install_log_redaction

    level = logging.WARNING if verbosity <= 0 else logging.INFO if verbosity == 1 else logging.DEBUG
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    install_log_redaction()


@contextlib.contextmanager
def _interrupt_held() -> Iterator[None]:
    """A Ctrl-C inside the block is raised when it ends: a C extension interrupted while it
    imports (numpy's, importing ``datetime``) swallows the KeyboardInterrupt and raises an
    ImportError instead. Only where Ctrl-C raises KeyboardInterrupt (not when ignored), and
    only in the main thread (the only one that may set a signal handler)."""
    if (
        threading.current_thread() is not threading.main_thread()
        or signal.getsignal(signal.SIGINT) is not signal.default_int_handler
    ):
        yield
        return
    interrupted = False

    def remember(signum: int, frame: FrameType | None) -> None:
        nonlocal interrupted
        interrupted = True

    signal.signal(signal.SIGINT, remember)
    try:
        yield
    finally:
        # Restored before the handler runs: asyncio.run() installs its own Ctrl-C handling
        # only over the default one.
        signal.signal(signal.SIGINT, signal.default_int_handler)
    if interrupted:
        raise KeyboardInterrupt


def _import_all(names: Sequence[str]) -> None:
    """The media stack a command runs on, imported with Ctrl-C held (seconds, the first time)."""
    with _interrupt_held():
        for name in names:
            # An extra not installed: the command says so its own way.
            with contextlib.suppress(ImportError):
                importlib.import_module(name)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; the process exit status (see ``avatar-rtc --help``)."""
    command = "avatar-rtc"
    try:
        try:
            for value in secret_arguments(sys.argv[1:] if argv is None else argv):
                register_secret(value)  # before parsing: its errors may quote them
            for name in SECRET_ENVIRONMENT:
                if os.environ.get(name):
                    register_secret(os.environ[name])  # also typed where it does not belong
            parser = build_parser()
            args = parser.parse_args(argv)
            command = f"avatar-rtc {args.command}"
            _configure_logging(verbosity(args))
            handler: Handler = args.handler
            _import_all(getattr(args, "imports", ()))
            return handler(args)
        finally:
            # A closed pipe shows on this flush (raised here), not in the flush at exit.
            sys.stdout.flush()
    except KeyboardInterrupt:  # before a command's own signal handling (e.g. while importing)
        print(f"{command}: interrupted", file=sys.stderr, flush=True)
        return EXIT_SIGINT
    except BrokenPipeError:
        return stdout_gone()


if __name__ == "__main__":
    sys.exit(main())
