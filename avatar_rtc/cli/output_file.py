"""``record OUT``: is OUT usable? Checked before connecting, so a wrong path costs nothing."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from ..errors import ConfigurationError

__all__ = ["check_output_file"]


def check_output_file(path: str, *, force: bool) -> None:
    """``ConfigurationError`` unless a recording can be written to ``path``.

    An existing file is refused unless ``force`` (then it is overwritten); a directory always.
    Missing parent directories are fine (the recorder creates them) if the nearest existing
    one is a directory that takes a new file: tried by creating and deleting a temporary file,
    since ``os.access`` says yes to root even on ``/proc``.
    """
    out = Path(path)
    if out.is_dir():
        raise ConfigurationError(f"cannot record to {path!r}: it is a directory")
    if out.exists():
        if not force:
            raise ConfigurationError(f"{path!r} exists: use --force to overwrite it")
        if not os.access(out, os.W_OK):
            raise ConfigurationError(f"cannot overwrite {path!r}: permission denied")
    folder = out.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if not folder.is_dir():
        raise ConfigurationError(f"cannot record to {path!r}: {str(folder)!r} is not a directory")
    try:
        handle, probe = tempfile.mkstemp(prefix=".avatar-rtc-", dir=folder)
    except OSError as exc:
        raise ConfigurationError(
            f"cannot record to {path!r}: cannot create a file in {str(folder)!r} "
            f"({exc.strerror or exc})"
        ) from None
    os.close(handle)
    os.unlink(probe)
