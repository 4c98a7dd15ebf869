"""Encoders: Annex-B H264 / VP8 / Opus packets stamped in RTP clock units, keyframes on demand."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
from aiortc.codecs.h264 import H264Encoder
from aiortc.codecs.opus import OpusEncoder
from aiortc.codecs.vpx import Vp8Encoder

from avatar_rtc.emulator.media.encoder import AudioEncoder, VideoEncoder
from avatar_rtc.emulator.media.face import FaceRenderer


@pytest.mark.parametrize("codec", ["H264", "VP8"])
def test_video_keyframes_only_when_asked(codec: str) -> None:
    renderer = FaceRenderer()
    enc = VideoEncoder(codec, 512, 512, 25)  # type: ignore[arg-type]
    keys = []
    for i in range(60):
        packets = enc.encode(renderer.render(i % 7 / 7), i, keyframe=i in (0, 40))
        assert len(packets) == 1
        assert packets[0].time_base == Fraction(1, 90000)
        assert packets[0].pts == i * 3600
        keys.append(packets[0].is_keyframe)
        if i == 0 and codec == "H264":
            # Annex-B with SPS first, as aiortc's pack() splits on start codes.
            assert bytes(packets[0])[:5] == b"\x00\x00\x00\x01\x67"
    assert [i for i, k in enumerate(keys) if k] == [0, 40]


@pytest.mark.parametrize(("codec", "packer"), [("H264", H264Encoder), ("VP8", Vp8Encoder)])
def test_aiortc_packs_our_packets(codec: str, packer: type) -> None:
    enc = VideoEncoder(codec, 512, 512, 30)  # type: ignore[arg-type]
    packet = enc.encode(FaceRenderer().render(0.5), 3, keyframe=True)[0]
    payloads, timestamp = packer().pack(packet)
    assert timestamp == 9000
    assert payloads and all(len(p) <= 1300 for p in payloads)


def test_opus_packets() -> None:
    enc = AudioEncoder()
    pcm = (0.3 * np.sin(np.arange(960) / 5)).astype(np.float32)
    for i in range(5):
        packets = enc.encode(pcm, i)
        assert len(packets) == 1
        payloads, timestamp = OpusEncoder().pack(packets[0])
        assert timestamp == i * 960
        assert len(payloads) == 1
