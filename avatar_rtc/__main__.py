"""``python -m avatar_rtc``: the ``avatar-rtc`` command."""

from __future__ import annotations

from .cli.__main__ import run

if __name__ == "__main__":
    run()
