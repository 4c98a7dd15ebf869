"""Decoded frames handed to users: conversion to numpy on request, with timestamps.

``VideoFrame`` wraps the decoded ``av.VideoFrame``; nothing is converted until asked.
``to_ndarray`` does colour conversion and resize in one ``reformat`` (one ``sws_scale`` on this
thread, :mod:`.scale`, which releases the GIL) into a frame of its own, and hands out that
frame's buffer as the array when its rows have no padding (the usual case: PyAV's FFmpeg pads
a row only when ``width * channels`` is not a multiple of 16 bytes): no copy, and the array
keeps the buffer alive. Padded rows are copied into a pooled buffer (a fresh large array
per frame costs ~3x more: page faults of a new mmap each time); a pooled buffer is reused only
when nothing but the pool references it (``sys.getrefcount``). Either way arrays handed out are
never overwritten under the user.

``AudioFrame`` is PCM already converted to the caller's rate/layout/format by
:class:`AudioRechunker` (``av.AudioResampler``, or plain numpy when only the channel count or
sample type changes, + sample counting: consecutive frames are
contiguous, gaps in the received stream are filled with silence, overlaps trimmed).
"""

from __future__ import annotations

import logging
import sys
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import av
import numpy as np
import numpy.typing as npt

from ..errors import ConfigurationError
from ..rtc.clock import ClockSource
from .formats import AudioFormat, PixelFormat, VideoFormat, check_size
from .scale import scale

if TYPE_CHECKING:
    from .decoder import DecodedFrame

__all__ = ["AudioFrame", "AudioRechunker", "VideoFrame"]

logger = logging.getLogger(__name__)

_CHANNELS: dict[str, int] = {"rgb24": 3, "bgr24": 3, "rgba": 4, "gray": 1}
_POOL_PER_SHAPE = 4


class _BufferPool:
    """Reuses numpy buffers that nobody but the pool references any more."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pools: dict[tuple[int, ...], list[npt.NDArray[np.uint8]]] = {}

    def get(self, shape: tuple[int, ...]) -> npt.NDArray[np.uint8]:
        with self._lock:
            pool = self._pools.get(shape)
            if pool is None:
                if len(self._pools) >= 8:
                    # Many sizes in use (resizes): drop the pools of the old ones rather than
                    # hoard their buffers (arrays handed out stay valid).
                    self._pools.clear()
                pool = self._pools[shape] = []
            for i in range(len(pool)):
                # references: the list slot + getrefcount's argument
                if sys.getrefcount(pool[i]) <= 2:
                    return pool[i]
            arr = np.empty(shape, dtype=np.uint8)
            if len(pool) < _POOL_PER_SHAPE:
                pool.append(arr)
            return arr


_POOL = _BufferPool()


def _plane_array(plane: Any, height: int, row_bytes: int) -> npt.NDArray[np.uint8]:
    """A (height, row_bytes) view of one plane, without the line padding."""
    buf = np.frombuffer(plane, dtype=np.uint8)
    return buf.reshape(-1, plane.line_size)[:height, :row_bytes]


class VideoFrame:
    """A decoded video frame plus its timing.

    - ``rtp_timestamp``: sender RTP timestamp (90 kHz, unwrapped; a new sender after a
      reconnect starts a time line of its own: compare ``presentation_time`` across it)
    - ``presentation_time``: seconds on the session's A/V clock; ``clock_source`` says how
    - ``arrival_time``: ``time.monotonic()`` when its last packet arrived
    - ``index``: the track's count of encoded frames (not the stream's: a stream opened later
      starts where the track is, and a gap is a frame the stream dropped)
    - ``keyframe``: decoded from a keyframe
    - ``concealed``: decoded without its reference pictures (released after a loss before the
      keyframe came, see ``SessionOptions.keyframe_wait``): may show artefacts
    - ``format``: what ``array`` converts to (the stream's :class:`VideoFormat`)
    """

    __slots__ = (
        "_cache",
        "_lock",
        "arrival_time",
        "av_frame",
        "clock_source",
        "concealed",
        "decoded_time",
        "format",
        "index",
        "keyframe",
        "presentation_time",
        "rtp_timestamp",
    )

    def __init__(
        self,
        av_frame: av.VideoFrame,
        *,
        rtp_timestamp: int,
        presentation_time: float,
        clock_source: ClockSource,
        arrival_time: float,
        index: int,
        keyframe: bool = False,
        concealed: bool = False,
        decoded_time: float = 0.0,
        format: VideoFormat | None = None,
    ) -> None:
        self.av_frame = av_frame
        self.rtp_timestamp = rtp_timestamp
        self.presentation_time = presentation_time
        self.clock_source: ClockSource = clock_source
        self.arrival_time = arrival_time
        self.index = index
        self.keyframe = keyframe
        self.concealed = concealed
        self.decoded_time = decoded_time
        self.format = format if format is not None else VideoFormat()
        self._cache: tuple[str, tuple[int, int] | None, npt.NDArray[np.uint8]] | None = None
        self._lock = threading.Lock()

    @classmethod
    def from_decoded(
        cls,
        decoded: DecodedFrame,
        format: VideoFormat | None = None,
    ) -> VideoFrame:
        """A frame of the decoder's output, stamped with its encoded frame's timestamps."""
        enc = decoded.encoded
        return cls(
            decoded.frame,
            rtp_timestamp=enc.rtp_timestamp,
            presentation_time=enc.presentation_time,
            clock_source=enc.clock_source,
            arrival_time=enc.arrival_time,
            index=enc.index,
            keyframe=enc.keyframe,
            concealed=enc.concealed,
            decoded_time=decoded.decoded_time,
            format=format,
        )

    @property
    def width(self) -> int:
        return int(self.av_frame.width)

    @property
    def height(self) -> int:
        return int(self.av_frame.height)

    @property
    def array(self) -> npt.NDArray[np.uint8]:
        """``to_ndarray()`` in the stream's format and size (cached)."""
        return self.to_ndarray()

    def to_ndarray(
        self, format: PixelFormat | None = None, size: tuple[int, int] | None = None
    ) -> npt.NDArray[np.uint8]:
        """HxWx3 (rgb24/bgr24), HxWx4 (rgba) or HxW (gray) ``uint8``; ``size`` is (w, h).

        No argument: the stream's format and size (:attr:`array`). ``format`` alone: that
        format at the decoded size; ``size`` alone: the stream's pixel format at that size.
        The result of the last call is cached; don't write into it if you call again.
        """
        fmt: PixelFormat = format or self.format.array_format
        if size is not None:
            check_size(size)
        elif format is None:
            size = self.format.size
        if fmt not in _CHANNELS:
            raise ConfigurationError(f"unsupported format {fmt!r}; one of {sorted(_CHANNELS)}")
        with self._lock:
            cached = self._cache
            if cached is not None and cached[0] == fmt and cached[1] == size:
                return cached[2]
            width, height = size if size is not None else (self.width, self.height)
            try:
                out_frame = scale(self.av_frame, width=width, height=height, format=fmt)
            except av.FFmpegError as exc:  # e.g. beyond what swscale takes
                raise ConfigurationError(
                    f"cannot convert to {fmt} at {width}x{height}: {exc}"
                ) from exc
            channels = _CHANNELS[fmt]
            shape = (height, width) if channels == 1 else (height, width, channels)
            plane: Any = out_frame.planes[0]
            row_bytes = width * channels
            arr: npt.NDArray[np.uint8]
            if plane.line_size == row_bytes and out_frame is not self.av_frame:
                # A frame of our own (reformat returns its input when there is nothing to do,
                # and the decoder's frame may be shared by other sinks): its buffer, no copy.
                arr = np.frombuffer(plane, dtype=np.uint8, count=height * row_bytes)
                arr = arr.reshape(shape)
            else:
                arr = _POOL.get(shape)
                np.copyto(arr.reshape(height, row_bytes), _plane_array(plane, height, row_bytes))
            self._cache = (fmt, size, arr)
            return arr

    def is_converted(self) -> bool:
        """True when ``to_ndarray()`` with the defaults is already cached."""
        cached = self._cache
        return (
            cached is not None
            and cached[0] == self.format.array_format
            and cached[1] == self.format.size
        )

    def yuv_planes(
        self,
    ) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.uint8], npt.NDArray[np.uint8]]:
        """(Y, U, V) planes of a yuv420p frame, copied without colour conversion."""
        frame = self.av_frame
        if frame.format.name not in ("yuv420p", "yuvj420p"):
            frame = scale(frame, format="yuv420p")
        w, h = int(frame.width), int(frame.height)
        cw, ch = (w + 1) // 2, (h + 1) // 2
        y = _plane_array(frame.planes[0], h, w).copy()
        u = _plane_array(frame.planes[1], ch, cw).copy()
        v = _plane_array(frame.planes[2], ch, cw).copy()
        return y, u, v

    def __repr__(self) -> str:
        return (
            f"VideoFrame({self.width}x{self.height}, index={self.index}, "
            f"pts={self.presentation_time:.3f}s/{self.clock_source})"
        )


@dataclass(frozen=True, slots=True)
class AudioFrame:
    """PCM of shape (samples, channels), ``int16`` or ``float32``.

    ``presentation_time`` is the time of the first sample on the session's A/V clock; the next
    frame starts exactly ``samples / sample_rate`` later (after a reconnect, while the A/V clock
    slews the new sender onto the session's time line, up to ``slew_rate``, 10 %, more or
    less). ``index`` counts the stream's frames from 0.
    """

    data: npt.NDArray[Any]
    sample_rate: int
    presentation_time: float
    clock_source: ClockSource
    arrival_time: float
    index: int

    @property
    def samples(self) -> int:
        return int(self.data.shape[0])

    @property
    def channels(self) -> int:
        return int(self.data.shape[1])

    @property
    def duration(self) -> float:
        return self.samples / self.sample_rate

    @property
    def array(self) -> npt.NDArray[Any]:
        return self.data

    def to_ndarray(self) -> npt.NDArray[Any]:
        """The PCM (``data``), as a video frame's ``to_ndarray()``: already in the stream's
        ``AudioFormat``, nothing is converted."""
        return self.data


# Sample formats mixed and converted in numpy at the same rate: our libopus decoder's s16,
# FFmpeg's own Opus decoder's fltp (PyAV's default, e.g. for a file), packed float.
_DIRECT_FORMATS = frozenset({"s16", "flt", "fltp"})


class AudioRechunker:
    """Resample decoded audio and cut it into fixed-size, gapless frames.

    Feed decoded ``av.AudioFrame``s with their presentation time; get ``AudioFrame``s of exactly
    ``format.frame_ms`` each. Samples are counted: when an input's timestamp runs ahead of the
    count by more than ``tolerance`` (lost packets, DTX) the gap is filled with silence (up to
    ``max_gap``; beyond that the timeline just restarts); when it runs behind, the overlap is
    trimmed. Within the tolerance nothing is inserted or cut; each output frame's timestamp is
    that of its first sample on the A/V clock. The default, 10 ms, is under one lost 20 ms
    packet (filled) and over the A/V clock's slew on one packet (10 % of 20-60 ms).
    """

    def __init__(
        self,
        format: AudioFormat | None = None,
        *,
        tolerance: float = 0.01,
        max_gap: float = 1.0,
    ) -> None:
        self.format = format if format is not None else AudioFormat()
        # Read on every frame: plain attributes.
        self.sample_rate = self.format.sample_rate
        self.channels = self.format.channels
        self.frame_samples = self.format.frame_samples
        self.dtype = self.format.dtype
        self._np_dtype = np.int16 if self.dtype == "int16" else np.float32
        self._tolerance = tolerance
        self._max_gap = max_gap
        # Made for the first frame that needs it: it keeps that frame's channels (mono, else
        # stereo) and we mix to ours (swresample's downmix adds two channels at -3 dB each,
        # 1.41x a centred signal, past full scale in float; its upmix takes mono to -3 dB).
        self._resampler: av.AudioResampler | None = None
        self._resampled_channels = 2
        self._resampler_used = False  # once used, keep it (it holds delayed samples)
        self._pending: list[npt.NDArray[Any]] = []
        self._pending_samples = 0
        self._next_time: float | None = None  # expected time of the next input sample
        self._res_in = 0.0  # seconds fed to the resampler
        self._res_out = 0  # samples it returned
        self._pending_start = 0.0  # presentation time of the first pending sample
        self._last_time: float | None = None
        self._clock_source: ClockSource = "arrival"
        self._arrival = 0.0
        self._index = 0
        self.gaps_filled = 0
        self.samples_trimmed = 0

    def push(
        self,
        frame: av.AudioFrame,
        presentation_time: float,
        clock_source: ClockSource,
        arrival_time: float,
    ) -> list[AudioFrame]:
        in_duration = frame.samples / frame.sample_rate
        pcm = self._resample(frame)
        self._clock_source = clock_source
        self._arrival = arrival_time
        next_input = self._next_time
        self._next_time = presentation_time + in_duration
        if pcm.shape[0] == 0:
            return []
        # The resampler holds back its last ``delay`` samples: the output ends that much
        # before the end of this input frame.
        delay = self._res_in * self.sample_rate - self._res_out
        first_time = presentation_time + in_duration - (delay + pcm.shape[0]) / self.sample_rate
        if next_input is not None:
            drift = presentation_time - next_input
            if drift > self._max_gap or drift < -self._max_gap:
                logger.info("audio: %.3f s discontinuity in the input timestamps", drift)
            elif drift > self._tolerance:
                n = round(drift * self.sample_rate)
                self._append(np.zeros((n, self.channels), dtype=self._np_dtype))
                self.gaps_filled += 1
            elif drift < -self._tolerance:
                n = min(pcm.shape[0], round(-drift * self.sample_rate))
                pcm = pcm[n:]
                first_time += n / self.sample_rate
                self.samples_trimmed += n
        # Samples stay contiguous; timestamps follow the A/V clock (re-anchored on every
        # input frame, so they track AvClock's slewed corrections instead of drifting off).
        self._pending_start = first_time - self._pending_samples / self.sample_rate
        self._append(pcm)
        return self._drain()

    def _resample(self, frame: av.AudioFrame) -> npt.NDArray[Any]:
        if (
            self._resampler_used is False
            and frame.sample_rate == self.sample_rate
            and frame.format.name in _DIRECT_FORMATS
            and frame.layout.nb_channels in (1, 2)
        ):
            return self._direct(frame)  # same rate: numpy is cheaper than swresample
        self._resampler_used = True
        if self._resampler is None:
            self._resampled_channels = 1 if frame.layout.nb_channels == 1 else 2
            self._resampler = av.AudioResampler(
                format="s16" if self.dtype == "int16" else "flt",
                layout="mono" if self._resampled_channels == 1 else "stereo",
                rate=self.sample_rate,
            )
        self._res_in += frame.samples / frame.sample_rate
        frame.pts = None  # we count samples ourselves; avoid resampler pts bookkeeping
        chunks = [self._to_array(f) for f in self._resampler.resample(frame)]
        self._res_out += sum(c.shape[0] for c in chunks)
        if not chunks:
            return np.zeros((0, self.channels), dtype=self._np_dtype)
        return chunks[0] if len(chunks) == 1 else np.concatenate(chunks)

    def _direct(self, frame: av.AudioFrame) -> npt.NDArray[Any]:
        """Same rate: mix and convert in numpy (swresample cost FFmpeg's Opus decoder's
        planar-float frames as much as their decoding). Returns an array of our own, never
        the decoder's buffer."""
        n = frame.samples
        src_ch = frame.layout.nb_channels
        planes: Any = frame.planes
        own = False
        pcm: npt.NDArray[Any]
        if frame.format.name == "fltp":
            # Planar: one buffer per channel (PyAV's to_ndarray stacks them, ~5 µs).
            if src_ch == 1:
                pcm = np.frombuffer(planes[0], dtype=np.float32, count=n).reshape(-1, 1)
            elif self.channels == 1:  # the mean of the two: one pass fewer for int16
                both = np.frombuffer(planes[0], dtype=np.float32, count=n).reshape(-1, 1)
                both = both + np.frombuffer(planes[1], dtype=np.float32, count=n).reshape(-1, 1)
                if self.dtype == "int16":
                    return _float_to_int16(both, gain=0.5)
                both *= np.float32(0.5)
                return both
            else:
                pcm = np.stack([np.frombuffer(pl, dtype=np.float32, count=n) for pl in planes], 1)
                own = True
        else:
            # Packed (s16, flt): one plane, read in place.
            dtype = np.int16 if frame.format.name == "s16" else np.float32
            pcm = np.frombuffer(planes[0], dtype=dtype, count=n * src_ch).reshape(-1, src_ch)
        if pcm.shape[1] == 2 and self.channels == 1:
            pcm, own = _mean_of_channels(pcm), True
        elif pcm.shape[1] == 1 and self.channels == 2:
            pcm, own = np.repeat(pcm, 2, axis=1), True
        if pcm.dtype == self._np_dtype:
            return pcm if own else pcm.copy()  # the frames we hand out own their buffers
        if self.dtype == "float32":
            return pcm.astype(np.float32) / np.float32(32768.0)
        return _float_to_int16(pcm)

    def _to_array(self, frame: av.AudioFrame) -> npt.NDArray[Any]:
        arr: npt.NDArray[Any] = frame.to_ndarray()  # packed: (1, samples * channels)
        pcm = arr.reshape(-1, self._resampled_channels).astype(self._np_dtype, copy=False)
        if pcm.shape[1] == self.channels:
            return pcm
        return _mean_of_channels(pcm) if self.channels == 1 else np.repeat(pcm, 2, axis=1)

    def _append(self, pcm: npt.NDArray[Any]) -> None:
        if pcm.shape[0]:
            self._pending.append(pcm)
            self._pending_samples += pcm.shape[0]

    def _drain(self) -> list[AudioFrame]:
        out: list[AudioFrame] = []
        n = self.frame_samples
        if self._pending_samples < n:
            return out
        buf = np.concatenate(self._pending) if len(self._pending) > 1 else self._pending[0]
        pos = 0
        while self._pending_samples - pos >= n:
            t = self._pending_start + pos / self.sample_rate
            if self._last_time is not None and t <= self._last_time:
                t = self._last_time + 1e-6  # never backwards
            self._last_time = t
            out.append(
                AudioFrame(
                    data=np.ascontiguousarray(buf[pos : pos + n]),
                    sample_rate=self.sample_rate,
                    presentation_time=t,
                    clock_source=self._clock_source,
                    arrival_time=self._arrival,
                    index=self._index,
                )
            )
            self._index += 1
            pos += n
        rest = buf[pos:]
        self._pending = [rest] if rest.shape[0] else []
        self._pending_samples = int(rest.shape[0])
        self._pending_start += pos / self.sample_rate
        return out


def _float_to_int16(pcm: npt.NDArray[Any], gain: float = 1.0) -> npt.NDArray[Any]:
    """Float samples in [-1, 1] (times ``gain``) to int16 as swresample converts them:
    x * 32768 rounded to the nearest (even), clipped. (np.minimum/maximum: np.clip costs
    more than the rest together on a 20 ms frame.)"""
    scaled: npt.NDArray[Any] = pcm * np.float32(32768.0 * gain)
    np.rint(scaled, out=scaled)
    np.minimum(scaled, 32767.0, out=scaled)
    np.maximum(scaled, -32768.0, out=scaled)
    return scaled.astype(np.int16)


def _mean_of_channels(pcm: npt.NDArray[Any]) -> npt.NDArray[Any]:
    """(samples, 2) -> (samples, 1): the channels' mean (a centred signal keeps its level)."""
    if pcm.dtype == np.int16:
        # Halves first: the sum stays in int16 (no int32 temporaries); off by at most 1 LSB.
        return (pcm[:, 0:1] >> 1) + (pcm[:, 1:2] >> 1)
    mono: npt.NDArray[Any] = (pcm[:, 0:1] + pcm[:, 1:2]) * np.float32(0.5)
    return mono
