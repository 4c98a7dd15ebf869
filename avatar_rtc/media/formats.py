"""What a stream hands out: the one home of the video and audio format parameters and defaults.

``VideoFormat`` / ``AudioFormat`` are taken by :class:`~.streams.VideoStream` /
:class:`~.streams.AudioStream`, by the session's ``video()`` / ``audio()`` and by the blocking
iterators; how many frames a stream holds (``capacity``) and what it drops (``policy``) stay
arguments of the stream itself.
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass
from typing import Literal, get_args

from ..errors import ConfigurationError

__all__ = ["AudioFormat", "PixelFormat", "SampleFormat", "VideoFormat", "check_size"]

PixelFormat = Literal["rgb24", "bgr24", "rgba", "gray"]
SampleFormat = Literal["int16", "float32"]

# What ``frame.array`` gives when the stream does not convert (``pixel_format=None``).
_ARRAY_DEFAULT: PixelFormat = "rgb24"


def check_size(size: object) -> None:
    """ConfigurationError unless ``size`` is (width, height): two whole numbers > 0."""
    if not (isinstance(size, tuple) and len(size) == 2 and all(_is_int(n) and n > 0 for n in size)):
        raise ConfigurationError(f"size {size!r}: (width, height), two whole numbers > 0")


@dataclass(frozen=True, slots=True)
class VideoFormat:
    """Video frames as numpy arrays: ``pixel_format`` and ``size`` (width, height) of
    ``frame.array``.

    ``size=None`` keeps the decoded size. ``pixel_format=None``: the stream converts nothing
    (use ``frame.yuv_planes()`` or ``frame.av_frame``; ``frame.array`` then converts to rgb24
    when asked).
    """

    pixel_format: PixelFormat | None = _ARRAY_DEFAULT
    size: tuple[int, int] | None = None

    def __post_init__(self) -> None:
        if self.pixel_format is not None and self.pixel_format not in get_args(PixelFormat):
            raise ConfigurationError(
                f"pixel_format {self.pixel_format!r}: one of {get_args(PixelFormat)} or None"
            )
        # Checked here: a bad size would only fail on the decoder thread, frame by frame.
        if self.size is not None:
            check_size(self.size)

    @property
    def array_format(self) -> PixelFormat:
        """The pixel format ``frame.array`` converts to."""
        return self.pixel_format or _ARRAY_DEFAULT


@dataclass(frozen=True, slots=True)
class AudioFormat:
    """PCM frames of ``frame_ms`` milliseconds each, shape (samples, channels), ``dtype``.

    A frame holds whole samples: ``sample_rate * frame_ms // 1000`` of them
    (:attr:`frame_samples`; 22050 Hz at 10 ms: 220, 9.977 ms).
    """

    sample_rate: int = 48000
    channels: int = 1
    frame_ms: int = 20
    dtype: SampleFormat = "int16"

    def __post_init__(self) -> None:
        if not _is_int(self.sample_rate) or self.sample_rate <= 0:
            raise ConfigurationError(f"sample_rate {self.sample_rate!r}: a whole number > 0")
        if not _is_int(self.frame_ms) or self.frame_ms <= 0:
            raise ConfigurationError(f"frame_ms {self.frame_ms!r}: a whole number > 0")
        if self.channels not in (1, 2):
            raise ConfigurationError("channels must be 1 or 2")
        if self.dtype not in get_args(SampleFormat):
            raise ConfigurationError("dtype must be 'int16' or 'float32'")
        if self.frame_samples <= 0:
            raise ConfigurationError(f"frame_ms {self.frame_ms!r} too small")

    @property
    def frame_samples(self) -> int:
        """Samples per channel in one frame."""
        return self.sample_rate * self.frame_ms // 1000


def _is_int(value: object) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)  # numpy's too
