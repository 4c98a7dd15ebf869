"""Exit statuses of ``avatar-rtc``, and how an error ends a command (one line on stderr).

The codes of errors are the ``exit_code`` of their class (:mod:`avatar_rtc.errors`, the one
source); :data:`EXIT_STATUSES` only says what each one means, for ``--help`` and the README.
Light on purpose: imported to build the parsers, so by ``--help`` and ``--version``.
"""

from __future__ import annotations

import contextlib
import os
import sys
from typing import TextIO

from ..errors import (
    AuthenticationError,
    AvatarRTCError,
    ConfigurationError,
    ConnectError,
    NoMediaError,
    ThresholdError,
    TransportError,
)
from ..redact import redact

__all__ = [
    "EXIT_BROKEN_PIPE",
    "EXIT_SIGINT",
    "EXIT_SIGTERM",
    "EXIT_STATUSES",
    "error_line",
    "exit_code_of",
    "exit_status_help",
    "print_error",
    "stdout_gone",
]

EXIT_SIGINT = 130  # 128 + SIGINT; a signal's status is always 128 + its number
EXIT_SIGTERM = 143  # 128 + SIGTERM
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE, what `cmd | head` gives for any Unix tool

EXIT_STATUSES: tuple[tuple[int, str], ...] = tuple(
    sorted(
        [
            (0, "success"),
            (
                AvatarRTCError.exit_code,
                "any other error (e.g. the service answered 4xx/5xx, the recorder failed)",
            ),
            (
                ConfigurationError.exit_code,
                "usage: a bad or inconsistent option, an unusable output file",
            ),
            (NoMediaError.exit_code, "connected, but no media arrived (or it stopped arriving)"),
            (ThresholdError.exit_code, "qa: a threshold was breached"),
            (
                AuthenticationError.exit_code,
                "the KS or the session token was refused (HTTP 401/403)",
            ),
            (TransportError.exit_code, "network: no HTTP answer (refused, DNS, TLS, timeout)"),
            (ConnectError.exit_code, "the media connection failed (ICE/DTLS, WHEP, codecs)"),
            (EXIT_SIGINT, "interrupted by Ctrl-C (SIGINT)"),
            (EXIT_BROKEN_PIPE, "stdout was closed early (e.g. by `head`)"),
            (EXIT_SIGTERM, "stopped by SIGTERM"),
        ]
    )
)


def exit_status_help() -> str:
    """The exit-status table of ``--help`` (an epilog, laid out already)."""
    rows = "\n".join(f"  {code:<4} {meaning}" for code, meaning in EXIT_STATUSES)
    return f"exit status:\n{rows}"


def exit_code_of(exc: BaseException) -> int:
    """The exit status for ``exc``: its class's ``exit_code``, else that of any other error."""
    return exc.exit_code if isinstance(exc, AvatarRTCError) else AvatarRTCError.exit_code


def error_line(command: str, exc: BaseException) -> str:
    """One line for an error, credentials masked: ``avatar-rtc probe: ConnectTimeoutError: ...``
    (its notes after it: why the call was made, e.g. the catalog asked for a default avatar)."""
    message = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    notes = [str(note).strip() for note in getattr(exc, "__notes__", ()) if str(note).strip()]
    message = " ".join([message, *(note.splitlines()[0] for note in notes)]).strip()
    text = f"{type(exc).__name__}: {message}" if message else type(exc).__name__
    return redact(f"avatar-rtc {command}: {text}")


def print_error(command: str, exc: BaseException, stream: TextIO | None = None) -> None:
    print(error_line(command, exc), file=stream or sys.stderr, flush=True)


def stdout_gone() -> int:
    """The reader of stdout went away: exit quietly with :data:`EXIT_BROKEN_PIPE`.

    Python flushes stdout once more at exit, which would fail again and print "Exception
    ignored ... BrokenPipeError": point the descriptor at /dev/null first (the recipe of the
    ``signal`` module's documentation).
    """
    with contextlib.suppress(OSError, ValueError, AttributeError):  # no real fd (tests)
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    return EXIT_BROKEN_PIPE
