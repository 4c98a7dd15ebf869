"""``record OUT``, ``--json``, ``--plot``: usable paths? Checked before connecting, so a wrong
path costs nothing (not a session's worth of work lost at the end)."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path

from ..errors import ConfigurationError

__all__ = ["PLOT_SUFFIXES", "check_output_file", "check_report_files", "write_report_files"]

# What --plot writes (matplotlib picks the format by the suffix).
PLOT_SUFFIXES = (".png", ".svg", ".pdf")


def check_report_files(json_path: str | None, plot_path: str | None) -> None:
    """``--json`` / ``--plot``: ``ConfigurationError`` unless each can be written (an existing
    file is replaced; missing folders are made when it is written)."""
    if json_path:
        check_output_file(json_path, force=True, what="write --json to")
    if plot_path:
        if Path(plot_path).suffix.lower() not in PLOT_SUFFIXES:
            raise ConfigurationError(
                f"--plot {plot_path!r}: a {', '.join(PLOT_SUFFIXES)} file (by its suffix)"
            )
        check_output_file(plot_path, force=True, what="write --plot to")


def write_report_files(
    json_path: str | None, text: str, plot_path: str | None, plot: Callable[[Path], None]
) -> None:
    """Write ``--json`` (``text``) and ``--plot`` (``plot(path)``), making their folders."""
    if json_path:
        path = Path(json_path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text + "\n", encoding="utf-8")
    if plot_path:
        path = Path(plot_path)
        path.parent.mkdir(parents=True, exist_ok=True)
        plot(path)


def check_output_file(path: str, *, force: bool | None, what: str = "record to") -> None:
    """``ConfigurationError`` unless a file can be written to ``path`` (``what``: "record to").

    An existing file is refused unless ``force`` (then it is overwritten; ``None``: a command
    without ``--force``, whose message asks for another name); a directory always, and a
    link to nowhere. Missing parent directories are fine (the recorder creates them) if the
    nearest existing one is a directory that takes a new file: tried by creating and deleting
    a temporary file, since ``os.access`` says yes to root even on ``/proc``.
    """
    try:
        _check_output_file(path, force=force, what=what)
    except OSError as exc:  # e.g. ENAMETOOLONG from the checks themselves
        raise ConfigurationError(f"cannot {what} {path!r}: {exc.strerror or exc}") from None


def _check_output_file(path: str, *, force: bool | None, what: str) -> None:
    out = Path(path)
    if out.is_symlink() and not out.exists():
        raise ConfigurationError(f"cannot {what} {path!r}: a link to nothing")
    if out.is_dir() or path.endswith((os.sep, "/")):  # (Path drops a trailing separator)
        raise ConfigurationError(f"cannot {what} {path!r}: it is a directory")
    if out.exists():
        if force is None:
            raise ConfigurationError(f"{path!r} exists: give another name")
        if not force:
            raise ConfigurationError(f"{path!r} exists: use --force to overwrite it")
        if not os.access(out, os.W_OK):
            raise ConfigurationError(f"cannot overwrite {path!r}: permission denied")
    folder = out.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if not folder.is_dir():
        raise ConfigurationError(f"cannot {what} {path!r}: {str(folder)!r} is not a directory")
    try:
        handle, probe = tempfile.mkstemp(prefix=".avatar-rtc-", dir=folder)
    except OSError as exc:
        raise ConfigurationError(
            f"cannot {what} {path!r}: cannot create a file in {str(folder)!r} "
            f"({exc.strerror or exc})"
        ) from None
    os.close(handle)
    os.unlink(probe)
