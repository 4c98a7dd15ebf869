"""``python -m avatar_rtc.cli``: the same as the ``avatar-rtc`` command."""

from __future__ import annotations

import sys

if __name__ == "__main__":
    try:
        # Importing the media stack takes a second or two: Ctrl-C then is no traceback.
        from .main import main
    except KeyboardInterrupt:
        sys.exit(130)
    sys.exit(main())
