"""Encoders of one session: H264 (libx264) or VP8 (libvpx) video and Opus audio.

Encoding happens once per frame, whatever the number of viewers; the resulting ``av.Packet``s
carry ``pts``/``time_base`` in RTP clock units (90 kHz video, 48 kHz audio), which is what
aiortc's ``Encoder.pack()`` converts to RTP timestamps. libx264 writes Annex-B with SPS/PPS
repeated before every IDR (no global header), which aiortc's H264 ``pack()`` splits on start
codes. Blocking: call from the session's worker thread only.
"""

from __future__ import annotations

import fractions
from typing import TYPE_CHECKING, Any, TypeAlias

import av
import numpy as np
import numpy.typing as npt
from av.video.frame import PictureType

from avatar_rtc.emulator.media.audio_decode import SAMPLE_RATE
from avatar_rtc.emulator.media.envelope import Samples
from avatar_rtc.emulator.media.options import VideoCodec

if TYPE_CHECKING:
    EncodedPacket: TypeAlias = av.Packet[Any]
else:
    EncodedPacket = av.Packet

VIDEO_CLOCK = 90_000
AUDIO_CLOCK = SAMPLE_RATE
AUDIO_FRAME = 960  # 20 ms at 48 kHz
# Samples libopus delays the sound by (its lookahead): a receiver decoding a packet stamped t
# hears its first sample at t + CODEC_DELAY / 48000 (no pre-skip is signalled over RTP).
CODEC_DELAY = 312
VIDEO_TIME_BASE = fractions.Fraction(1, VIDEO_CLOCK)
AUDIO_TIME_BASE = fractions.Fraction(1, AUDIO_CLOCK)


class VideoEncoder:
    def __init__(
        self,
        codec: VideoCodec,
        width: int,
        height: int,
        fps: int,
        *,
        bitrate: int = 1_000_000,
        threads: int = 1,
    ) -> None:
        self.codec_name = codec
        self.width, self.height, self.fps = width, height, fps
        ctx: av.VideoCodecContext = (
            av.CodecContext.create("libx264", "w")
            if codec == "H264"
            else av.CodecContext.create("libvpx", "w")
        )
        ctx.width, ctx.height = width, height
        ctx.pix_fmt = "yuv420p"
        ctx.time_base = fractions.Fraction(1, fps)
        ctx.framerate = fractions.Fraction(fps, 1)
        ctx.bit_rate = bitrate
        # Keyframes are decided by AvatarMedia (periodic + PLI): keep the encoder from adding any.
        ctx.gop_size = 1 << 20
        ctx.thread_count = threads  # explicit: FFmpeg defaults spawn one thread per core
        if codec == "H264":
            ctx.options = {
                "preset": "ultrafast",
                "tune": "zerolatency",
                "profile": "baseline",
                "level": "3.1",
                "forced-idr": "1",
                "x264-params": "scenecut=0:repeat-headers=1:aud=0",
            }
        else:
            ctx.options = {
                "deadline": "realtime",
                "cpu-used": "8",
                "lag-in-frames": "0",
                "error-resilient": "1",
                "static-thresh": "1",
                "undershoot-pct": "95",
                "max-intra-rate": "300",
            }
        ctx.open()
        self._ctx = ctx

    def encode(self, yuv: npt.NDArray[np.uint8], index: int, keyframe: bool) -> list[EncodedPacket]:
        """Frame number ``index`` (yuv420p as one ``(h*3/2, w)`` array) -> packets (usually 1)."""
        frame = av.VideoFrame.from_ndarray(yuv, format="yuv420p")
        frame.pts = index
        frame.time_base = self._ctx.time_base
        frame.pict_type = PictureType.I if keyframe else PictureType.NONE
        packets: list[EncodedPacket] = list(self._ctx.encode(frame))
        for packet in packets:
            packet.pts = video_pts(int(packet.pts if packet.pts is not None else index), self.fps)
            packet.dts = packet.pts
            packet.time_base = VIDEO_TIME_BASE
        return packets


def video_pts(index: int, fps: int) -> int:
    """RTP (90 kHz) time of video frame ``index``."""
    return round(index * VIDEO_CLOCK / fps)


class AudioEncoder:
    """Opus, 48 kHz stereo, one 20 ms packet per 20 ms frame."""

    def __init__(self, bitrate: int = 48_000) -> None:
        ctx: av.AudioCodecContext = av.CodecContext.create("libopus", "w")
        ctx.sample_rate = SAMPLE_RATE
        ctx.layout = "stereo"
        ctx.format = "s16"
        ctx.bit_rate = bitrate
        ctx.time_base = AUDIO_TIME_BASE
        # compression_level 5: about half the CPU of the default 10, same quality for speech.
        ctx.options = {"application": "audio", "frame_duration": "20", "compression_level": "5"}
        ctx.open()
        self._ctx = ctx
        self._stereo = np.empty((1, AUDIO_FRAME * 2), dtype=np.int16)

    def encode(self, pcm: Samples, index: int) -> list[EncodedPacket]:
        """Mono float samples of audio frame ``index`` (960 of them) -> Opus packets."""
        s16 = np.clip(pcm * 32767.0, -32768, 32767).astype(np.int16)
        self._stereo[0, 0::2] = s16
        self._stereo[0, 1::2] = s16
        frame = av.AudioFrame.from_ndarray(self._stereo, format="s16", layout="stereo")
        frame.sample_rate = SAMPLE_RATE
        frame.pts = index * AUDIO_FRAME
        frame.time_base = AUDIO_TIME_BASE
        packets: list[EncodedPacket] = list(self._ctx.encode(frame))
        # libopus shifts pts by its pre-skip; one packet per frame, so stamp our own clock.
        for packet in packets:
            packet.pts = index * AUDIO_FRAME
            packet.dts = packet.pts
            packet.time_base = AUDIO_TIME_BASE
        return packets
