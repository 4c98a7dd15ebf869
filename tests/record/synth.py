"""Realistic recorder input made with PyAV: compressed frames as the receive pipeline hands them.

Video: libx264 (baseline, Annex-B, SPS/PPS in-band on every IDR) or libvpx VP8, 512x512, 25 fps,
GOP 25; a dark moving picture with one all-white frame at ``mark``. Audio: libopus, 48 kHz
stereo, 20 ms packets; quiet noise with a 1 kHz beep from ``mark``. Presentation times are on a
session clock that does not start at 0; audio starts before video (trimmed by the recorder).
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction

import av
import numpy as np

from avatar_rtc.rtc.encoded_frame import EncodedFrame

SIZE = 512
FPS = 25
CLOCK_BASE = 1000.0  # presentation times are on the session clock, not from 0
BEEP_SECONDS = 0.2


@dataclass(frozen=True)
class Scenario:
    duration: float = 4.0  # seconds of video from its first keyframe
    video_codec: str = "H264"  # or "VP8"
    mark: float | None = None  # seconds after video start: white frame + beep
    video_gap: tuple[float, float] | None = None  # no video frames here (freeze, valid stream)
    audio_gap: tuple[float, float] | None = None  # audio packets lost here
    jitter: float = 0.0  # +- seconds of noise on video presentation times
    audio_lead: float = 0.3  # audio starts this long before the video
    video_lag: float = 0.03  # video arrives this much later than audio of the same time


def video_frames(sc: Scenario) -> list[tuple[float, bytes, bool]]:
    """(seconds from video start, encoded bytes, keyframe) per frame."""
    if sc.video_codec == "H264":
        enc = av.CodecContext.create("libx264", "w")
        enc.options = {
            "profile": "baseline",
            "preset": "ultrafast",
            "tune": "zerolatency",
            "x264-params": "keyint=25:min-keyint=25:scenecut=0:repeat-headers=1",
        }
    else:
        enc = av.CodecContext.create("libvpx", "w")
        enc.options = {"deadline": "realtime", "cpu-used": "8", "lag-in-frames": "0"}
        enc.bit_rate = 800_000
    enc.width = enc.height = SIZE
    enc.pix_fmt = "yuv420p"
    enc.time_base = Fraction(1, FPS)
    enc.framerate = Fraction(FPS)
    enc.gop_size = FPS
    enc.thread_count = 1
    out: list[tuple[float, bytes, bool]] = []
    total = round(sc.duration * FPS)
    mark_index = None if sc.mark is None else round(sc.mark * FPS)
    yy, xx = np.mgrid[0:SIZE, 0:SIZE]
    for i in range(total):
        t = i / FPS
        if sc.video_gap and sc.video_gap[0] <= t < sc.video_gap[1]:
            continue
        if i == mark_index:
            y = np.full((SIZE, SIZE), 235, np.uint8)
        else:
            y = (40 + ((xx + yy + 4 * i) % 64)).astype(np.uint8)
        frame = av.VideoFrame(SIZE, SIZE, "yuv420p")
        frame.planes[0].update(y.tobytes())
        frame.planes[1].update(bytes([128]) * frame.planes[1].buffer_size)
        frame.planes[2].update(bytes([128]) * frame.planes[2].buffer_size)
        frame.pts = i
        for packet in enc.encode(frame):
            assert packet.pts is not None
            out.append((packet.pts / FPS, bytes(packet), packet.is_keyframe))
    for packet in enc.encode(None):
        assert packet.pts is not None
        out.append((packet.pts / FPS, bytes(packet), packet.is_keyframe))
    return out


def audio_packets(sc: Scenario) -> list[tuple[float, bytes]]:
    """(seconds from video start, Opus packet) per 20 ms packet, from -audio_lead."""
    enc = av.CodecContext.create("libopus", "w")
    enc.sample_rate = 48000
    enc.layout = "stereo"
    enc.format = "s16"
    enc.bit_rate = 64000
    enc.time_base = Fraction(1, 48000)
    rng = np.random.default_rng(1)
    count = round((sc.duration + sc.audio_lead) / 0.02)
    out: list[tuple[float, bytes]] = []
    raw: list[bytes] = []
    for n in range(count):
        t0 = -sc.audio_lead + n * 0.02
        t = t0 + np.arange(960) / 48000
        x = rng.normal(0, 30, 960)
        if sc.mark is not None:
            on = (t >= sc.mark) & (t < sc.mark + BEEP_SECONDS)
            x = x + on * 12000 * np.sin(2 * np.pi * 1000 * t)
        pcm = np.repeat(x.astype(np.int16)[:, None], 2, axis=1).reshape(1, -1)
        frame = av.AudioFrame.from_ndarray(pcm, format="s16", layout="stereo")
        frame.sample_rate = 48000
        frame.pts = n * 960
        raw.extend(bytes(p) for p in enc.encode(frame))
    raw.extend(bytes(p) for p in enc.encode(None))
    # Packet k carries the audio captured at packet k's slot (as an RTP timestamp would say).
    for k, data in enumerate(raw[:count]):
        t0 = -sc.audio_lead + k * 0.02
        if sc.audio_gap and sc.audio_gap[0] <= t0 < sc.audio_gap[1]:
            continue
        out.append((t0, data))
    return out


def encoded_frames(sc: Scenario, seed: int = 7) -> list[EncodedFrame]:
    """Both tracks as EncodedFrames, in arrival order."""
    rng = random.Random(seed)
    frames: list[tuple[float, EncodedFrame]] = []
    for index, (t, data, key) in enumerate(video_frames(sc)):
        pt = CLOCK_BASE + t + (rng.uniform(-sc.jitter, sc.jitter) if sc.jitter else 0.0)
        frames.append(
            (
                pt + sc.video_lag,
                EncodedFrame(
                    kind="video",
                    codec=sc.video_codec,
                    data=data,
                    rtp_timestamp=round(t * 90000),
                    clock_rate=90000,
                    keyframe=key,
                    presentation_time=pt,
                    clock_source="rtcp-sr",
                    arrival_time=pt + sc.video_lag,
                    index=index,
                ),
            )
        )
    for index, (t, data) in enumerate(audio_packets(sc)):
        pt = CLOCK_BASE + t
        frames.append(
            (
                pt,
                EncodedFrame(
                    kind="audio",
                    codec="opus",
                    data=data,
                    rtp_timestamp=round((t + sc.audio_lead) * 48000),
                    clock_rate=48000,
                    keyframe=True,
                    presentation_time=pt,
                    clock_source="rtcp-sr",
                    arrival_time=pt,
                    index=index,
                ),
            )
        )
    frames.sort(key=lambda item: item[0])
    return [frame for _, frame in frames]


def decoded_frames(
    sc: Scenario,
) -> Iterator[tuple[str, av.VideoFrame | av.AudioFrame, float]]:
    """The same media decoded, as the media layer would hand it to encode mode."""
    vdec = av.CodecContext.create("h264" if sc.video_codec == "H264" else "vp8", "r")
    adec = av.CodecContext.create("opus", "r")
    for ef in encoded_frames(sc):
        if ef.kind == "video":
            for vf in vdec.decode(av.Packet(ef.data)):
                yield "video", vf, ef.presentation_time
        else:
            for af in adec.decode(av.Packet(ef.data)):
                yield "audio", af, ef.presentation_time
