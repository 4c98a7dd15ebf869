"""Copy path: received compressed frames into the container, never decoded or re-encoded.

Runs in the recorder's writer thread only.

Codec parameters that change mid-recording (after a reconnect the new connection may
negotiate another codec, or its encoder another resolution or profile): H264 parameter sets
stay in-band (every keyframe keeps the SPS/PPS it came with; one that came without gets the
latest ones in front), but a file's header describes one set (mp4 ``avcC``, Matroska
``CodecPrivate``, the stream's size), and players trust it. So at the first keyframe whose
codec, H264 SPS/PPS or VP8 size differ from the file's, the file is finished (trailer
written, playable on its own) and the recording continues in ``OUT.part2.ext`` (then
``part3``...), logged and listed in ``RecorderStats.parts``; no video frame is lost. Each
part is a file of its own: it starts at 0 on its first keyframe (audio trimmed to it, as
for the first file); ``RecorderStats.part_starts`` says where on the recording's timeline
(seconds from the first file's start), and the counters and ``duration`` cover all parts.
Frames of the new parameters before their first keyframe cannot be decoded: they are
skipped (counted in ``skipped_before_start``).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import av
import av.container
import av.stream

from ..rtc.encoded_frame import EncodedFrame
from .bitstream import annexb, h264_parameter_sets, opus_packet_samples, vp8_keyframe_size
from .encoder import VideoTranscoder
from .errors import RecordError
from .options import ContainerSpec, RecordOptions, container_options
from .stats import StatsBook, StreamRoute
from .templates import AUDIO_TIME_BASE, VIDEO_TIME_BASE, add_copy_stream
from .timeline import StartGate, TickClock

__all__ = ["CopyMuxer"]

log = logging.getLogger(__name__)

# A small valid Opus packet (CELT 20 ms, stereo, silence): the audio template when the first
# keyframe comes before any audio, and the filler for holes in the audio.
_OPUS_SILENCE = b"\xfc\xff\xfe"
_OPUS_FRAME_TICKS = 960  # 20 ms at 48 kHz, what WebRTC senders packetize
_MAX_FILL_PACKETS = 50 * 600  # at most 10 minutes of silence per hole
_CODEC_NAMES = {"h264": "h264", "vp8": "vp8", "vp9": "vp9", "opus": "opus"}


def _codec_name(frame: EncodedFrame) -> str:
    name = _CODEC_NAMES.get(frame.codec.lower())
    if name is None:
        raise RecordError(f"copy mode cannot record {frame.kind} codec {frame.codec!r}")
    return name


def _describe(route: StreamRoute | None) -> str:
    if route is None:
        return "none"
    if route.action == "copy":
        return f"{route.output} copy"
    return f"{route.source} transcoded to {route.output} with {route.encoder}"


class CopyMuxer:
    """Writes :class:`EncodedFrame` s to one file, starting at the first video keyframe."""

    def __init__(
        self, path: Path, spec: ContainerSpec, options: RecordOptions, stats: StatsBook
    ) -> None:
        self._path = path
        self._spec = spec
        self._options = options
        self._stats = stats
        self._gate: StartGate[EncodedFrame] = StartGate(options.pre_start_audio_seconds, stats)
        self._container: av.container.OutputContainer | None = None
        self._video: av.stream.Stream | None = None
        self._audio: av.stream.Stream | None = None
        self._video_clock = TickClock(90000, stats)
        self._audio_clock = TickClock(48000, stats)
        self._audio_end: int | None = None  # end of the last audio packet, 48 kHz ticks
        self._pending_video: av.Packet[Any] | None = None
        self._pending_video_time = 0.0
        self._last_video_interval = 3000  # 1/30 s until we have measured one
        self._sps: list[bytes] = []
        self._pps: list[bytes] = []
        self._checked: set[str] = set()
        self._video_codec: str | None = None
        self._transcode = False
        self._transcoder: VideoTranscoder | None = None
        self._last_transcoded: int | None = None
        self._params: tuple[bytes, ...] = ()  # the file's: H264 SPS+PPS, or VP8 size
        self._parts: list[Path] = []  # files after the first (parameter changes)
        self._offset = 0.0  # seconds from the first file's start to the current one's

    # -- input ------------------------------------------------------------------------------
    def write(self, frame: EncodedFrame) -> None:
        if frame.kind == "video":
            if self._options.video:
                self._write_video(frame)
        elif self._options.audio:
            self._write_audio(frame)

    def _check_codec(self, frame: EncodedFrame) -> str:
        codec = _codec_name(frame)
        if codec not in self._checked:
            allowed = self._spec.video_codecs if frame.kind == "video" else self._spec.audio_codecs
            if codec not in allowed:
                if frame.kind == "video" and self._options.incompatible_video == "transcode":
                    log.warning(
                        "%s cannot hold %s: re-encoding the video with %s (audio is copied); "
                        "record to .mkv to keep the original",
                        self._spec.extension,
                        frame.codec,
                        self._spec.video_encoder,
                    )
                    self._transcode = True
                else:
                    raise RecordError(
                        f"{self._spec.extension} cannot hold {frame.codec} without re-encoding: "
                        f"record to .mkv, or use mode='encode'"
                    )
            self._checked.add(codec)
        return codec

    def _write_video(self, frame: EncodedFrame) -> None:
        codec = self._check_codec(frame)
        data = frame.data
        if codec == "h264":
            sps, pps = h264_parameter_sets(data)
            if sps:
                self._sps = sps
            if pps:
                self._pps = pps
        if self._container is None:
            if not frame.keyframe or (codec == "h264" and not (self._sps and self._pps)):
                self._stats.skip_before_start()
                return
            if codec == "h264" and not sps:
                # Parameter sets came in an earlier frame: put them in front of the keyframe.
                data = annexb(self._sps + self._pps) + data
            try:
                self._open(frame, codec, data)
            except OSError:  # (PyAV's are FFmpegErrors too): no file to wait for
                raise
            except av.FFmpegError as exc:
                # A keyframe FFmpeg cannot parse (corrupt, truncated): wait for the next one.
                log.warning("cannot start recording on this keyframe (%s); waiting", exc)
                self._stats.skip_before_start()
                return
        elif self._changed(codec, frame.keyframe, data):
            if not frame.keyframe or (codec == "h264" and not (self._sps and self._pps)):
                self._stats.skip_before_start()  # undecodable until the new keyframe
                return
            if codec == "h264" and not sps:
                data = annexb(self._sps + self._pps) + data
            self._next_part(frame, codec, data)
            return
        self._mux_video(frame, data)

    def _changed(self, codec: str, keyframe: bool, data: bytes) -> bool:
        """Does this frame differ from the file in what its header fixes (see the module doc)?"""
        if codec != self._video_codec:
            return True
        return keyframe and self._params_of(codec, data) not in ((), self._params)

    def _params_of(self, codec: str, keyframe: bytes) -> tuple[bytes, ...]:
        """What a file's header fixes: H264 SPS+PPS (latest seen), VP8 keyframe size."""
        if codec == "h264":
            return (*self._sps, *self._pps)
        size = vp8_keyframe_size(keyframe) if codec == "vp8" else None
        return () if size is None else (b"%dx%d" % size,)

    def _next_part(self, frame: EncodedFrame, codec: str, keyframe: bytes) -> None:
        """Finish this file; continue in the next part, opened on ``keyframe``."""
        finished = self._parts[-1] if self._parts else self._path
        what = f"{self._video_codec} -> {codec}" if codec != self._video_codec else codec
        self._finish()
        self._video = self._audio = self._transcoder = None
        self._transcode = False
        self._last_transcoded = None
        self._checked.clear()
        # A fresh timeline, starting at this keyframe.
        self._offset = frame.presentation_time - self._origin() + self._offset
        self._gate = StartGate(self._options.pre_start_audio_seconds, self._stats)
        self._video_clock = TickClock(90000, self._stats)
        self._audio_clock = TickClock(48000, self._stats)
        self._audio_end = None
        self._check_codec(frame)
        number = len(self._parts) + 2
        self._parts.append(
            self._path.with_name(f"{self._path.stem}.part{number}{self._path.suffix}")
        )
        log.warning(
            "video parameters changed (%s: new codec, parameter sets or size): %s finished, "
            "the recording continues in %s",
            what,
            finished,
            self._parts[-1],
        )
        with self._stats.lock:
            self._stats.parts.append(str(self._parts[-1]))
            self._stats.part_starts.append(self._offset)
        try:
            self._open(frame, codec, keyframe)
        except OSError:  # the disk, not the keyframe: the recording fails
            raise
        except av.FFmpegError as exc:  # as for the first file: the next keyframe tries again
            log.warning("cannot start %s on this keyframe (%s); waiting", self._parts[-1], exc)
            self._stats.skip_before_start()
            return
        self._mux_video(frame, keyframe)

    def _write_audio(self, frame: EncodedFrame) -> None:
        self._check_codec(frame)
        if self._container is None:
            if self._options.video:
                self._gate.hold(frame, frame.presentation_time)
                return
            self._open(frame, None, b"")
        if self._gate.is_before_start(frame.presentation_time):
            self._stats.skip_before_start()
            return
        self._mux_audio(frame)

    # -- file -------------------------------------------------------------------------------
    def _open(self, first: EncodedFrame, video_codec: str | None, keyframe: bytes) -> None:
        early_audio = self._gate.peek(first.presentation_time)
        path = self._parts[-1] if self._parts else self._path
        container = av.open(
            str(path),
            mode="w",
            format=self._spec.format_name,
            options=container_options(self._spec, self._options),
        )
        try:
            if video_codec is not None and self._transcode:
                self._transcoder = VideoTranscoder(
                    container,
                    video_codec,
                    self._spec.video_encoder,
                    keyframe,
                    self._options.encode,
                )
                self._video = self._transcoder.stream
            elif video_codec is not None:
                extradata = None
                width = height = 0
                if video_codec == "h264":
                    extradata = annexb(self._sps + self._pps)
                elif video_codec == "vp8":
                    width, height = vp8_keyframe_size(keyframe) or (0, 0)
                self._video = add_copy_stream(
                    container,
                    video_codec,
                    keyframe,
                    extradata=extradata,
                    width=width,
                    height=height,
                )
            if self._options.audio:
                sample = early_audio[0].data if early_audio else _OPUS_SILENCE
                if first.kind == "audio":
                    sample = first.data
                self._audio = add_copy_stream(container, "opus", sample)
            container.start_encoding()
            if self._video is not None and self._video.time_base is not None:
                self._video_clock.set_resolution(self._video.time_base)
            if self._audio is not None and self._audio.time_base is not None:
                self._audio_clock.set_resolution(self._audio.time_base)
        except BaseException:
            self._video = self._audio = self._transcoder = None
            container.close()
            raise
        self._container = container
        self._video_codec = video_codec
        self._params = self._params_of(video_codec, keyframe) if video_codec else ()
        held = self._gate.open(first.presentation_time)
        video_route = self._video_route(video_codec)
        with self._stats.lock:
            self._stats.started = True
            self._stats.video.codec = video_codec
            if self._transcoder is not None:
                self._stats.video.codec = self._transcoder.stream.codec_context.name
                self._stats.transcoded_video = True
            self._stats.video_route = video_route
            self._stats.audio.codec = "opus" if self._audio is not None else None
            if self._audio is not None:
                self._stats.audio_route = StreamRoute("copy", "opus", "opus")
        log.info(
            "recording %s to %s (video %s, audio %s; origin %.3f s)",
            self._spec.format_name,
            path,
            _describe(video_route),
            "opus copy" if self._audio is not None else "none",
            first.presentation_time,
        )
        for frame, _ in held:
            self._mux_audio(frame)

    def _video_route(self, received: str | None) -> StreamRoute | None:
        if received is None:
            return None
        if self._transcoder is None:
            return StreamRoute("copy", received, received)
        ctx = self._transcoder.stream.codec_context
        return StreamRoute("transcode", received, ctx.codec.canonical_name, ctx.name)

    def _origin(self) -> float:
        origin = self._gate.origin
        assert origin is not None
        return origin

    def _mux_video(self, frame: EncodedFrame, data: bytes) -> None:
        assert self._container is not None and self._video is not None
        ticks = self._video_clock.ticks(frame.presentation_time, self._origin())
        if self._transcoder is not None:
            self._mux_transcoded(self._transcoder.transcode(data, ticks), ticks)
            return
        packet = av.Packet(data)
        packet.stream = self._video
        packet.time_base = VIDEO_TIME_BASE
        packet.pts = packet.dts = ticks  # WebRTC H264/VP8 has no B-frames: dts == pts
        packet.is_keyframe = frame.keyframe
        # Held back one frame so its duration is known (the gap to the next frame).
        if self._pending_video is not None:
            self._flush_pending_video(ticks)
        self._pending_video = packet
        self._pending_video_time = ticks / 90000

    def _mux_transcoded(self, packets: list[av.Packet[Any]], ticks: int | None) -> None:
        assert self._container is not None
        nbytes = sum(packet.size for packet in packets)
        self._container.mux(packets)
        if ticks is not None:
            if self._last_transcoded is not None:
                self._last_video_interval = max(1, ticks - self._last_transcoded)
            self._last_transcoded = ticks
            start = self._offset + ticks / 90000
            self._stats.add("video", start, start + self._last_video_interval / 90000, nbytes)
        else:
            self._stats.add_bytes("video", nbytes)

    def _flush_pending_video(self, next_ticks: int | None) -> None:
        packet = self._pending_video
        if packet is None or self._container is None:
            return
        self._pending_video = None
        assert packet.pts is not None
        if next_ticks is not None:
            self._last_video_interval = max(1, next_ticks - packet.pts)
        packet.duration = duration = self._last_video_interval
        size = packet.size
        self._container.mux(packet)  # rescales the packet in place: use the saved values
        start = self._offset + self._pending_video_time
        self._stats.add("video", start, start + duration / 90000, size)

    def _mux_audio(self, frame: EncodedFrame) -> None:
        assert self._container is not None and self._audio is not None
        ticks = round((frame.presentation_time - self._origin()) * 48000)
        end = self._audio_end
        ahead = 0 if end is None else ticks - end  # > 0: a hole before it; < 0: an overlap
        if ahead < -(_OPUS_FRAME_TICKS // 2):
            with self._stats.lock:
                self._stats.audio_overlap_drops += 1
            return
        if end is None and self._options.fill_audio_gaps:
            # The audio track starts at the origin: what comes before its first packet (up to
            # a packet when the keyframe came first; seconds from a sender silent until it
            # speaks) is a hole like any other. A fragmented MP4 has no edit list to start a
            # track later: it put the first packet at 0, and everything after it played early
            # (15-20 ms in the emulator's recordings, the lip-sync offset 20-26 ms against
            # 4-6 ms in Matroska).
            end, ahead = 0, ticks
        if end is None or (ahead > 0 and not self._options.fill_audio_gaps):
            ticks = self._audio_clock.ticks(frame.presentation_time, self._origin())
        else:
            # Back to back: players that play audio so (ignoring timestamps), a WAV export,
            # QA count samples. A hole (loss, DTX, a reconnect; the clock's slew after one
            # spaces packets 22 ms) becomes the nearest whole number of silence packets and
            # the packet follows them: within 10 ms of its time, and no drift that adds up
            # (holes of under 30 ms were skipped, longer ones rounded down: 355 ms of audio
            # missing after six reconnects).
            filled = self._fill_audio_hole(end, ahead)
            # (a hole longer than the fill's cap: the packet at its own time after all)
            if filled is None:
                ticks = self._audio_clock.ticks(frame.presentation_time, self._origin())
            else:
                ticks = filled
        self._mux_audio_packet(frame.data, ticks)

    def _fill_audio_hole(self, end: int, ahead: int) -> int | None:
        """Silence packets from ``end`` for a hole of ``ahead`` ticks; where the next goes
        (``None`` when the hole is longer than ``_MAX_FILL_PACKETS``: not all filled)."""
        wanted = max(round(ahead / _OPUS_FRAME_TICKS), 0)
        count = min(wanted, _MAX_FILL_PACKETS)
        for k in range(count):
            self._mux_audio_packet(_OPUS_SILENCE, end + k * _OPUS_FRAME_TICKS, filler=True)
        if count:
            with self._stats.lock:
                self._stats.audio_fill_packets += count
        return end + count * _OPUS_FRAME_TICKS if count == wanted else None

    def _mux_audio_packet(self, data: bytes, ticks: int, filler: bool = False) -> None:
        assert self._container is not None and self._audio is not None
        samples = opus_packet_samples(data) or 960
        packet = av.Packet(data)
        packet.stream = self._audio
        packet.time_base = AUDIO_TIME_BASE
        packet.pts = packet.dts = ticks
        packet.duration = samples
        packet.is_keyframe = True
        self._container.mux(packet)
        # The next packet cannot start inside this one.
        self._audio_clock.last = max(ticks, ticks + samples - 1)
        self._audio_end = ticks + samples
        start = self._offset + ticks / 48000
        self._stats.add("audio", start, start + samples / 48000, len(data), 0 if filler else 1)

    def close(self) -> None:
        """Write what is held back and the trailer."""
        if self._container is None:  # (nothing started it: the recorder's stop says so)
            return
        self._finish()

    def _finish(self) -> None:
        """Write what is held back and the trailer of the current file."""
        container = self._container
        assert container is not None
        try:
            self._flush_pending_video(None)
            if self._transcoder is not None:
                self._mux_transcoded(self._transcoder.flush(), None)
        finally:
            self._container = None
            container.close()
