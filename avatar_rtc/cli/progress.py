"""Progress display of a recording on stderr: while connecting, then while recording.

On a terminal: one line rewritten in place a few times a second. Otherwise (logs, CI, pipes):
one full line every ``interval`` seconds (while connecting: one per phase), so a log file
does not fill with carriage returns.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import TextIO

__all__ = [
    "Progress",
    "ProgressSample",
    "connecting_line",
    "format_bitrate",
    "format_duration",
    "format_size",
    "progress_line",
]


@dataclass(frozen=True, slots=True)
class ProgressSample:
    """Cumulative counters at one moment (``at`` in ``time.monotonic()`` seconds)."""

    at: float
    elapsed: float  # seconds since the command started receiving
    media_seconds: float  # duration written to the file so far
    video_frames: int
    total_bytes: int  # compressed bytes written (audio + video)
    dropped: int
    limit: float | None = None  # --duration: the media_seconds that end the recording


def format_duration(seconds: float) -> str:
    """``mm:ss.s`` (``h:mm:ss`` past an hour)."""
    seconds = max(0.0, seconds)
    if seconds >= 3600:
        hours, whole = divmod(int(seconds), 3600)
        mins, secs = divmod(whole, 60)
        return f"{hours}:{mins:02d}:{secs:02d}"
    minutes, rest = divmod(seconds, 60.0)
    return f"{int(minutes):02d}:{rest:04.1f}"


def format_bitrate(bits_per_second: float) -> str:
    if bits_per_second >= 1_000_000:
        return f"{bits_per_second / 1_000_000:.2f} Mbit/s"
    return f"{bits_per_second / 1000:.0f} kbit/s"


def format_size(nbytes: int) -> str:
    size = float(nbytes)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")


def progress_line(previous: ProgressSample | None, current: ProgressSample) -> str:
    """``rec 00:04.2  media 00:03.9/00:10.0  25.0 fps  1.02 Mbit/s  dropped 0`` (rates since
    ``previous``, zero for the first sample; ``/limit`` with a ``--duration``)."""
    fps = bitrate = 0.0
    if previous is not None and current.at > previous.at:
        span = current.at - previous.at
        fps = (current.video_frames - previous.video_frames) / span
        bitrate = 8 * (current.total_bytes - previous.total_bytes) / span
    media = format_duration(current.media_seconds)
    if current.limit is not None:
        media += f"/{format_duration(current.limit)}"
    return (
        f"rec {format_duration(current.elapsed)}  media {media}"
        f"  {fps:4.1f} fps  {format_bitrate(bitrate)}  dropped {current.dropped}"
    )


def connecting_line(target: str, phase: str, elapsed: float) -> str:
    """``connecting to the embedded emulator: ICE/DTLS  00:00.4`` (``target``: the
    ``Target.describe()`` of it)."""
    return f"connecting to the {target}: {phase}  {format_duration(elapsed)}"


class Progress:
    """Prints :func:`progress_line` for samples handed to :meth:`update`, throttled.

    ``tty`` defaults to ``stream.isatty()``; the interval to 0.5 s on a TTY, 5 s otherwise.
    Rates are computed over the last printed interval (a forced line: over the whole run).
    """

    def __init__(
        self,
        stream: TextIO | None = None,
        *,
        tty: bool | None = None,
        interval: float | None = None,
    ) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.tty = self.stream.isatty() if tty is None else tty
        self.interval = interval if interval is not None else (0.5 if self.tty else 5.0)
        self._first: ProgressSample | None = None
        self._previous: ProgressSample | None = None
        self._last_print: float | None = None
        self._width = 0  # length of the line on screen (TTY), to blank leftovers
        self._phase: str | None = None  # the last connecting phase shown

    def connecting(self, target: str, phase: str, elapsed: float) -> bool:
        """Show the start-up phase under way: on a TTY each call, in a log once per phase."""
        if not self.tty and phase == self._phase:
            return False
        self._phase = phase
        self._write(connecting_line(target, phase, elapsed))
        return True

    def update(self, sample: ProgressSample, *, force: bool = False) -> bool:
        """Print if the interval has passed (or ``force``); True when printed."""
        if self._previous is None:
            # Rates need two samples: the first one only starts the clock.
            self._first = self._previous = sample
            self._last_print = sample.at
            if not force:
                return False
        assert self._last_print is not None
        if not force and sample.at - self._last_print < self.interval:
            return False
        # A forced (final) line shows the averages of the whole run, not of a short tail.
        line = progress_line(self._first if force else self._previous, sample)
        self._previous = sample
        self._last_print = sample.at
        self._write(line)
        return True

    def _write(self, line: str) -> None:
        if self.tty:
            pad = max(0, self._width - len(line))
            self.stream.write("\r" + line + " " * pad)
            self._width = len(line)
        else:
            self.stream.write(line + "\n")
        self.stream.flush()

    def finish(self) -> None:
        """End the in-place line (TTY) so the summary starts on a fresh line."""
        if self.tty and self._width:
            self.stream.write("\n")
            self.stream.flush()
            self._width = 0
