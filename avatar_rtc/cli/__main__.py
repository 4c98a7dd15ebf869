"""``python -m avatar_rtc.cli`` and the ``avatar-rtc`` command (:func:`run`)."""

from __future__ import annotations

import sys
from typing import NoReturn


def run() -> NoReturn:
    """The console script: :func:`~.main.main`, its module imported with Ctrl-C caught.

    Importing the command's modules takes a few tens of milliseconds (the media stack is
    imported later, with Ctrl-C held): a Ctrl-C then is exit 130, not a traceback.
    """
    try:
        from .main import main
    except KeyboardInterrupt:
        sys.exit(130)
    sys.exit(main())


if __name__ == "__main__":
    run()
