"""Encode path: decoded frames re-encoded to the codec, size and rate the user asked for.

Runs in the recorder's writer thread only. Video keeps the presentation times of its frames
(variable frame rate: a freeze stays a freeze); audio is made continuous, with silence in the
gaps, so the audio encoder always gets whole frames and audio stays on the shared clock.
"""

from __future__ import annotations

import logging
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import av.container
from av.audio.stream import AudioStream
from av.video.stream import VideoStream

from ..media.codecs import create_decoder
from ..media.scale import scale
from .errors import RecordError
from .options import ContainerSpec, EncodeOptions, RecordOptions, container_options
from .stats import StatsBook, StreamRoute
from .templates import VIDEO_TIME_BASE
from .timeline import StartGate, TickClock

__all__ = ["EncodeMuxer", "VideoTranscoder", "add_video_encoder", "resolve_codecs"]

log = logging.getLogger(__name__)

AUDIO_RATE = 48000
# A jump of the audio clock larger than this is a gap (filled with silence), not jitter.
_AUDIO_GAP_SECONDS = 0.03
_MAX_SILENCE_SECONDS = 600.0

_ENCODER_CODEC = {
    "libx264": "h264",
    "libvpx": "vp8",
    "libvpx-vp9": "vp9",
    "aac": "aac",
    "libopus": "opus",
}


def resolve_codecs(spec: ContainerSpec, opts: EncodeOptions) -> tuple[str, str]:
    """(video encoder, audio encoder) for ``spec``; raises when the container can't hold them."""
    webm = spec.format_name == "webm"
    video = opts.video_codec or ("libvpx" if webm else "libx264")
    audio = opts.audio_codec or ("aac" if spec.format_name == "mp4" else "libopus")
    if _ENCODER_CODEC[video] not in spec.video_codecs:
        raise RecordError(f"{spec.extension} cannot hold video encoded with {video}")
    if _ENCODER_CODEC[audio] not in spec.audio_codecs:
        raise RecordError(f"{spec.extension} cannot hold audio encoded with {audio}")
    return video, audio


def add_video_encoder(
    container: av.container.OutputContainer,
    codec: str,
    width: int,
    height: int,
    enc: EncodeOptions,
) -> VideoStream:
    """An opened video encoder stream in ``container``, fed frames with 90 kHz pts."""
    rate = Fraction(enc.fps or 25).limit_denominator(1001)
    stream = container.add_stream(codec, rate=rate)
    assert isinstance(stream, VideoStream)
    ctx = stream.codec_context
    ctx.width = width
    ctx.height = height
    ctx.pix_fmt = "yuv420p"
    # 90 kHz time base: frames keep their own presentation times (variable frame rate).
    ctx.time_base = VIDEO_TIME_BASE
    stream.time_base = VIDEO_TIME_BASE
    ctx.bit_rate = enc.video_bitrate
    ctx.gop_size = max(1, round(enc.gop_seconds * float(rate)))
    # libvpx's VP8 encoder spin-waits between its row threads: on a busy machine two threads
    # cost ~20x the CPU of one (6.7 s vs 0.3 s per 10 s of 512x512) and fall behind real time.
    ctx.thread_count = 1 if codec == "libvpx" else enc.threads
    # No B-frames: dts == pts, so fragmented MP4 (no edit list) keeps A/V start aligned,
    # and every frame reaches the file without reordering delay.
    ctx.max_b_frames = 0
    if codec == "libx264":
        ctx.options = {"preset": enc.preset}
    else:
        ctx.options = {"deadline": "realtime", "cpu-used": "8"}
    ctx.open()
    return stream


def _encode_route(stream: VideoStream | AudioStream | None) -> StreamRoute | None:
    if stream is None:
        return None
    ctx = stream.codec_context
    return StreamRoute("encode", None, ctx.codec.canonical_name, ctx.name)


class VideoTranscoder:
    """Copy-path fallback: compressed video the container cannot hold, decoded and re-encoded.

    Used when e.g. H264 arrives for a ``.webm`` file: the video becomes VP8, audio is still
    copied. Frames keep their presentation times (the decoder passes pts through).
    """

    def __init__(
        self,
        container: av.container.OutputContainer,
        source_codec: str,
        target_codec: str,
        keyframe: bytes,
        enc: EncodeOptions,
    ) -> None:
        # A throwaway decoder learns the picture size; the real one starts clean.
        self._decoder = self._new_decoder(source_codec)
        first = self._decode(keyframe)
        self._decoder = self._new_decoder(source_codec)
        if not first:
            raise RecordError(f"cannot decode the first {source_codec} keyframe to transcode it")
        frame = first[0]
        self.stream = add_video_encoder(
            container, target_codec, enc.width or frame.width, enc.height or frame.height, enc
        )

    @staticmethod
    def _new_decoder(codec: str) -> av.VideoCodecContext:
        decoder = create_decoder(codec)  # one thread: no frame-threading delay
        assert isinstance(decoder, av.VideoCodecContext)
        return decoder

    def _decode(self, data: bytes, pts: int | None = None) -> list[av.VideoFrame]:
        packet = av.Packet(data)
        packet.pts = packet.dts = pts
        packet.time_base = VIDEO_TIME_BASE
        frames = self._decoder.decode(packet)
        return [f for f in frames if isinstance(f, av.VideoFrame)]

    def transcode(self, data: bytes, ticks: int) -> list[av.Packet[Any]]:
        """Encoded packets for one received frame (usually one, none while the encoder buffers)."""
        ctx = self.stream.codec_context
        out: list[av.Packet[Any]] = []
        for frame in self._decode(data, ticks):
            image = scale(frame, width=ctx.width, height=ctx.height, format="yuv420p")
            image.pts = frame.pts if frame.pts is not None else ticks
            image.time_base = VIDEO_TIME_BASE
            out.extend(self.stream.encode(image))
        return out

    def flush(self) -> list[av.Packet[Any]]:
        return list(self.stream.encode(None))


class EncodeMuxer:
    """Encodes av frames into one file, starting at the first video frame."""

    def __init__(
        self, path: Path, spec: ContainerSpec, options: RecordOptions, stats: StatsBook
    ) -> None:
        self._path = path
        self._spec = spec
        self._options = options
        self._enc = options.encode
        self._stats = stats
        self._video_codec, self._audio_codec = resolve_codecs(spec, options.encode)
        self._gate: StartGate[av.AudioFrame] = StartGate(options.pre_start_audio_seconds, stats)
        self._container: av.container.OutputContainer | None = None
        self._video: VideoStream | None = None
        self._audio: AudioStream | None = None
        self._video_clock = TickClock(90000, stats)
        self._last_slot: int | None = None
        self._last_video_ticks: int | None = None
        self._resampler: av.AudioResampler | None = None
        self._audio_next: int | None = None  # next output sample position (48 kHz)
        self._audio_shape: tuple[str, str, int] | None = None  # format, layout, rate of input

    # -- input ------------------------------------------------------------------------------
    def write_video(self, frame: av.VideoFrame, t: float) -> None:
        if not self._options.video:
            return
        if self._container is None:
            self._open(t, frame)
        self._encode_video(frame, t)

    def write_audio(self, frame: av.AudioFrame, t: float) -> None:
        if not self._options.audio:
            return
        if self._container is None:
            if self._options.video:
                self._gate.hold(frame, t)
                return
            self._open(t, None)
        if self._gate.is_before_start(t):
            self._stats.skip_before_start()
            return
        self._encode_audio(frame, t)

    # -- file -------------------------------------------------------------------------------
    def _open(self, origin: float, first_video: av.VideoFrame | None) -> None:
        held = self._gate.open(origin)
        enc = self._enc
        container = av.open(
            str(self._path),
            mode="w",
            format=self._spec.format_name,
            options=container_options(self._spec, self._options),
        )
        try:
            if first_video is not None:
                self._video = self._add_video(container, first_video, enc)
            if self._options.audio:
                self._audio = self._add_audio(container, enc)
            container.start_encoding()
        except BaseException:
            container.close()
            raise
        self._container = container
        with self._stats.lock:
            self._stats.started = True
            self._stats.video.codec = self._video.codec_context.name if self._video else None
            self._stats.audio.codec = self._audio.codec_context.name if self._audio else None
            self._stats.video_route = _encode_route(self._video)
            self._stats.audio_route = _encode_route(self._audio)
        log.info(
            "recording %s to %s (encode: %s %s)",
            self._spec.format_name,
            self._path,
            self._video_codec,
            self._audio_codec,
        )
        for frame, t in held:
            self._encode_audio(frame, t)

    def _add_video(
        self, container: av.container.OutputContainer, first: av.VideoFrame, enc: EncodeOptions
    ) -> VideoStream:
        return add_video_encoder(
            container,
            self._video_codec,
            enc.width or first.width,
            enc.height or first.height,
            enc,
        )

    def _add_audio(
        self, container: av.container.OutputContainer, enc: EncodeOptions
    ) -> AudioStream:
        stream = container.add_stream(self._audio_codec, rate=AUDIO_RATE)
        assert isinstance(stream, AudioStream)
        ctx = stream.codec_context
        ctx.layout = "stereo"
        ctx.bit_rate = enc.audio_bitrate
        ctx.time_base = Fraction(1, AUDIO_RATE)
        stream.time_base = Fraction(1, AUDIO_RATE)
        ctx.open()
        self._audio = stream
        self._resampler = self._new_resampler()
        return stream

    def _new_resampler(self) -> av.AudioResampler:
        assert self._audio is not None
        ctx = self._audio.codec_context
        return av.AudioResampler(
            format=ctx.format, layout="stereo", rate=AUDIO_RATE, frame_size=ctx.frame_size or None
        )

    def _origin(self) -> float:
        origin = self._gate.origin
        assert origin is not None
        return origin

    # -- video ------------------------------------------------------------------------------
    def _encode_video(self, frame: av.VideoFrame, t: float) -> None:
        assert self._container is not None and self._video is not None
        origin = self._origin()
        if self._enc.fps:
            # Cap the rate: at most one frame per 1/fps slot (no duplication on freezes).
            slot = round((t - origin) * self._enc.fps)
            if self._last_slot is not None and slot <= self._last_slot:
                with self._stats.lock:
                    self._stats.skipped_rate += 1
                return
            self._last_slot = slot
        ctx = self._video.codec_context
        out = scale(frame, width=ctx.width, height=ctx.height, format="yuv420p")
        ticks = self._video_clock.ticks(t, origin)
        out.pts = ticks
        out.time_base = VIDEO_TIME_BASE
        nbytes = 0
        for packet in self._video.encode(out):
            nbytes += packet.size
            self._container.mux(packet)
        interval = 3600 if self._last_video_ticks is None else ticks - self._last_video_ticks
        self._last_video_ticks = ticks
        start = ticks / 90000
        self._stats.add("video", start, start + max(interval, 1) / 90000, nbytes)

    # -- audio ------------------------------------------------------------------------------
    def _encode_audio(self, frame: av.AudioFrame, t: float) -> None:
        assert self._container is not None and self._audio is not None
        position = round((t - self._origin()) * AUDIO_RATE)
        if self._audio_next is None:
            self._audio_next = max(0, position)
        gap = position - self._audio_next
        if gap > _AUDIO_GAP_SECONDS * AUDIO_RATE:
            self._silence(min(gap, int(_MAX_SILENCE_SECONDS * AUDIO_RATE)))
        elif gap < -_AUDIO_GAP_SECONDS * AUDIO_RATE:
            log.warning("audio clock stepped back %.0f ms; continuing", -gap * 1000 / AUDIO_RATE)
        shape = (frame.format.name, frame.layout.name, frame.sample_rate)
        if self._audio_shape is not None and shape != self._audio_shape:
            # The resampler is set up by its first frame; a new input format needs a new one.
            log.warning("audio input changed from %s to %s", self._audio_shape, shape)
            self._resampler = self._new_resampler()
        self._audio_shape = shape
        frame.pts = None
        self._resample_and_encode(frame)
        end = position + round(frame.samples * AUDIO_RATE / (frame.sample_rate or AUDIO_RATE))
        with self._stats.lock:
            book = self._stats.audio
            book.frames += 1
            if book.start is None:
                book.start = max(0, position) / AUDIO_RATE
            book.end = max(book.end or 0.0, end / AUDIO_RATE)

    def _silence(self, samples: int) -> None:
        assert self._audio is not None
        fmt, layout, rate = self._audio_shape or ("s16", "stereo", AUDIO_RATE)
        # Same format as the real input: the resampler accepts only what it was set up with.
        samples = round(samples * rate / AUDIO_RATE)
        chunk = rate // 10
        while samples > 0:
            n = min(chunk, samples)
            silent = av.AudioFrame(format=fmt, layout=layout, samples=n)
            silent.sample_rate = rate
            for plane in silent.planes:
                plane.update(bytes(plane.buffer_size))
            self._resample_and_encode(silent)
            samples -= n

    def _resample_and_encode(self, frame: av.AudioFrame | None) -> None:
        assert self._container is not None and self._audio is not None
        assert self._resampler is not None and self._audio_next is not None
        for out in self._resampler.resample(frame):
            out.pts = self._audio_next
            out.time_base = Fraction(1, AUDIO_RATE)
            self._audio_next += out.samples
            self._mux_audio(out)

    def _mux_audio(self, frame: av.AudioFrame | None) -> None:
        assert self._container is not None and self._audio is not None
        nbytes = 0
        for packet in self._audio.encode(frame):
            nbytes += packet.size
            self._container.mux(packet)
        if nbytes:
            self._stats.add_bytes("audio", nbytes)

    # -- end --------------------------------------------------------------------------------
    def close(self) -> None:
        """Flush the encoders, write the trailer."""
        container = self._container
        if container is None:
            if self._options.video:
                log.warning("no video frame was received: nothing recorded to %s", self._path)
            return
        try:
            if self._audio is not None and self._resampler is not None:
                if self._audio_next is not None:
                    self._resample_and_encode(None)
                self._mux_audio(None)
            if self._video is not None:
                for packet in self._video.encode(None):
                    self._stats.add_bytes("video", packet.size)
                    container.mux(packet)
        finally:
            self._container = None
            container.close()
