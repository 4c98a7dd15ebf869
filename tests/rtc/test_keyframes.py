"""Keyframes as real encoders shape them: the jitter buffer releases the FIRST frame.

Streams come from real encoders (PyAV's libx264 and libvpx, GStreamer's openh264enc) and are
packetized by aiortc's own H264 packetizer (STAP-A + FU-A) or by the small packetizers here
(single NAL units, VP8 payload descriptors with and without extensions). Every released stream
is decoded with PyAV: a frame counted as a keyframe must really start a decodable stream.
"""

from __future__ import annotations

import base64
import contextlib
import fractions
import subprocess
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Literal

import av
import numpy as np
import pytest
from aiortc.codecs.h264 import H264Encoder

from avatar_rtc.rtc.encoded_frame import EncodedFrame
from avatar_rtc.rtc.h264 import carries_idr, has_parameter_sets, with_parameter_sets
from avatar_rtc.rtc.jitter_buffer import AssembledFrame, VideoJitterBuffer
from tests.rtc.detached_pipeline import detached_pipeline, feed_rtp, h264_codec
from tests.rtc.test_receiver_units import feed
from tests.support import require, require_tool

Packet = tuple[int, int, bool, bytes]  # (seq, rtp timestamp, marker, payload)

W, H = 160, 120
FRAMES = 6
SEQ0 = 65000  # the stream wraps its 16-bit sequence numbers on the way
AUD = b"\x09\xf0"
NAL_SEI, NAL_SPS, NAL_PPS, NAL_IDR, NAL_AUD = 6, 7, 8, 5, 9
FU_MAX = 1200  # single-NAL packetizer: larger NAL units go out as FU-A


# -- encoders ------------------------------------------------------------------------------
def pictures(n: int, noise: bool) -> list[av.VideoFrame]:
    """Noise makes the IDR span many FU-A packets; a flat picture fits in one packet."""
    rng = np.random.default_rng(7)
    out = []
    for i in range(n):
        if noise:
            rgb = rng.integers(0, 256, (H, W, 3), dtype=np.uint8)
        else:
            rgb = np.full((H, W, 3), 40 + 10 * i, dtype=np.uint8)
        frame = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format="yuv420p")
        frame.pts = i
        out.append(frame)
    return out


def x264(
    n: int = FRAMES, *, noise: bool = True, slices: int = 1, idr_at: tuple[int, ...] = ()
) -> list[bytes]:
    """Access units (Annex-B) from PyAV's libx264, one per picture."""
    enc = av.CodecContext.create("libx264", "w")
    enc.width, enc.height, enc.pix_fmt = W, H, "yuv420p"
    enc.time_base = fractions.Fraction(1, 30)
    enc.options = {
        "preset": "ultrafast",
        "tune": "zerolatency",
        "threads": "1",
        "x264-params": f"slices={slices}",
    }
    out: list[bytes] = []
    for i, picture in enumerate(pictures(n, noise)):
        if i in idr_at:
            picture.pict_type = av.video.frame.PictureType.I
        out += [bytes(p) for p in enc.encode(picture)]
    out += [bytes(p) for p in enc.encode(None)]
    assert len(out) == n
    return out


def vp8(n: int = FRAMES, key_at: tuple[int, ...] = ()) -> list[bytes]:
    enc = av.CodecContext.create("libvpx", "w")
    enc.width, enc.height, enc.pix_fmt = W, H, "yuv420p"
    enc.time_base = fractions.Fraction(1, 30)
    enc.options = {"deadline": "realtime", "cpu-used": "8", "lag-in-frames": "0"}
    out: list[bytes] = []
    for i, picture in enumerate(pictures(n, noise=True)):
        if i in key_at:
            picture.pict_type = av.video.frame.PictureType.I
        out += [bytes(p) for p in enc.encode(picture)]
    out += [bytes(p) for p in enc.encode(None)]
    assert len(out) == n
    return out


@pytest.fixture(scope="module")
def openh264(tmp_path_factory: pytest.TempPathFactory) -> Callable[[bool], list[bytes]]:
    """GStreamer's openh264enc, run to a file; access units split by FFmpeg's H264 parser."""
    cache: dict[bool, list[bytes]] = {}

    def encode(noise: bool) -> list[bytes]:
        if noise not in cache:
            launch = require_tool("gst-launch-1.0")
            inspect = require_tool("gst-inspect-1.0")
            found = subprocess.run([inspect, "openh264enc"], capture_output=True, check=False)
            require(found.returncode == 0, "GStreamer element openh264enc")
            path: Path = tmp_path_factory.mktemp("openh264") / "out.h264"
            pattern = "snow" if noise else "solid-color"
            caps = f"video/x-raw,width={W},height={H},framerate=30/1"
            pipeline = f"videotestsrc pattern={pattern} num-buffers={FRAMES} ! {caps} ! "
            pipeline += "openh264enc ! video/x-h264,stream-format=byte-stream,alignment=au ! "
            pipeline += f"filesink location={path}"
            subprocess.run([launch, "-q", *pipeline.split()], check=True, timeout=60)
            parser = av.CodecContext.create("h264", "r")
            data = path.read_bytes()
            cache[noise] = [bytes(p) for p in [*parser.parse(data), *parser.parse(None)]]
            assert len(cache[noise]) == FRAMES
        return cache[noise]

    return encode


# -- H264 bitstream and packetizers --------------------------------------------------------
def nal_units(access_unit: bytes) -> list[bytes]:
    return list(H264Encoder._split_bitstream(access_unit))


def annexb(nals: Iterable[bytes]) -> bytes:
    return b"".join(b"\x00\x00\x00\x01" + n for n in nals)


def nal_type(nal: bytes) -> int:
    return nal[0] & 0x1F


def reorder(nals: list[bytes], order: str) -> list[bytes]:
    """Parameter sets and SEI in the order under test (x264 itself writes SPS, PPS, SEI)."""
    if order == "as-encoded":
        return nals
    if order == "sei-first":
        return sorted(nals, key=lambda n: {NAL_SEI: 0, NAL_SPS: 1, NAL_PPS: 2}.get(nal_type(n), 3))
    if order == "aud-first":
        return [AUD, *nals]
    raise AssertionError(order)


def packetize_h264(nals: list[bytes], mode: str) -> list[bytes]:
    if mode == "aiortc":  # STAP-A for runs of small NAL units, FU-A for large ones
        return H264Encoder._packetize(nals)
    out: list[bytes] = []  # one NAL unit per packet (FU-A when it does not fit)
    for nal in nals:
        out += H264Encoder._packetize_fu_a(nal) if len(nal) > FU_MAX else [nal]
    return out


def vp8_descriptor(start: bool, picture_id: int, extensions: str) -> bytes:
    """RFC 7741 payload descriptor with PID=0; ``extensions`` picks the X/I/L/T/K fields."""
    s = 0x10 if start else 0
    if extensions == "none":
        return bytes([s])
    if extensions == "picture-id-7":
        return bytes([0x80 | s, 0x80, picture_id & 0x7F])
    long_id = bytes([0x80 | (picture_id >> 8) & 0x7F, picture_id & 0xFF])
    if extensions == "picture-id-15":
        return bytes([0x80 | s, 0x80]) + long_id
    if extensions == "all":  # I (15-bit), L (TL0PICIDX), T (TID=1, Y=1), K (KEYIDX=5)
        return bytes([0x80 | s, 0xF0]) + long_id + bytes([picture_id & 0xFF, 0x60 | 5])
    raise AssertionError(extensions)


def packetize_vp8(frame: bytes, picture_id: int, extensions: str, size: int = 400) -> list[bytes]:
    chunks = [frame[i : i + size] for i in range(0, len(frame), size)]
    return [vp8_descriptor(i == 0, picture_id, extensions) + c for i, c in enumerate(chunks)]


def rtp(frames: list[list[bytes]], seq0: int = SEQ0) -> list[Packet]:
    """Consecutive sequence numbers, 3000 ticks per frame, marker on each frame's last packet."""
    out: list[Packet] = []
    for i, payloads in enumerate(frames):
        for j, payload in enumerate(payloads):
            out.append((seq0 + len(out), 3000 * i, j == len(payloads) - 1, payload))
    return out


def h264_stream(access_units: list[bytes], order: str, mode: str) -> list[Packet]:
    return rtp([packetize_h264(reorder(nal_units(au), order), mode) for au in access_units])


# -- decoding --------------------------------------------------------------------------------
def decoded(codec: Literal["h264", "vp8"], frames: Iterable[bytes]) -> int:
    """Pictures PyAV decodes from these frames (errors count nothing)."""
    ctx = av.CodecContext.create(codec, "r")
    count = 0
    for data in [*frames, None]:
        with contextlib.suppress(av.error.FFmpegError):
            count += len(ctx.decode(None if data is None else av.Packet(data)))
    return count


def assert_all_released(frames: list[AssembledFrame], packets: list[Packet], n: int) -> None:
    assert len(frames) == n, f"{len(frames)} of {n} frames released"
    assert frames[0].keyframe and frames[0].first_seq == packets[0][0]
    assert [f.keyframe for f in frames[1:]] == [False] * (n - 1)
    assert [f.rtp_timestamp for f in frames] == [3000 * i for i in range(n)]


# -- H264 ------------------------------------------------------------------------------------
# x264 writes SPS, PPS, SEI, IDR; openh264 writes SPS, PPS, IDR (no SEI to move first).
# "small": a flat picture, whose IDR fits in the STAP-A with the parameter sets.
H264_CASES = [
    pytest.param(encoder, order, mode, id=f"{encoder}-{order}-{mode}")
    for encoder in ("x264", "x264-small", "x264-3-slices", "openh264", "openh264-small")
    for order in ("as-encoded", "sei-first", "aud-first")
    for mode in ("aiortc", "single-nal")
    if not (encoder.startswith("openh264") and order == "sei-first")
]


@pytest.mark.parametrize(("encoder", "order", "mode"), H264_CASES)
def test_h264_first_keyframe_is_released_and_decodes(
    encoder: str, order: str, mode: str, openh264: Callable[[bool], list[bytes]]
) -> None:
    noise = not encoder.endswith("-small")
    if encoder.startswith("openh264"):
        units = openh264(noise)
    else:
        units = x264(noise=noise, slices=3 if encoder == "x264-3-slices" else 1)
    packets = h264_stream(units, order, mode)

    # The keyframe shape under test really is on the wire.
    first = nal_type(packets[0][3])
    key_payloads = [p for _, ts, _, p in packets if ts == 0 and carries_idr(p)]
    if mode == "single-nal":
        expected_first = {"as-encoded": NAL_SPS, "sei-first": NAL_SEI, "aud-first": NAL_AUD}
        assert first == expected_first[order]
        assert nal_type(key_payloads[0]) != 24  # the IDR is not aggregated with the SPS
    else:
        assert first == 24  # STAP-A
    if not noise and mode == "aiortc":
        assert key_payloads[0] is packets[0][3]  # IDR inside the STAP-A with the SPS/PPS
    elif noise:
        assert all(nal_type(p) == 28 for p in key_payloads)  # IDR slices start FU-As
        assert len(key_payloads) == (3 if encoder == "x264-3-slices" else 1)

    frames = feed(VideoJitterBuffer("H264"), packets)
    assert_all_released(frames, packets, FRAMES)
    assert has_parameter_sets(frames[0].data)
    assert decoded("h264", (f.data for f in frames)) == FRAMES


def test_p_frames_keep_flowing_after_the_keyframe() -> None:
    n = 60
    packets = h264_stream(x264(n), "as-encoded", "aiortc")
    jb = VideoJitterBuffer("H264")
    frames = feed(jb, packets)
    assert_all_released(frames, packets, n)
    assert len(jb) == 0 and jb.frames_dropped == 0
    assert decoded("h264", (f.data for f in frames)) == n


def test_sender_without_marker_bits() -> None:
    # Frames end where the timestamp changes; the first is still found as a keyframe.
    packets = [(s, ts, False, p) for s, ts, _, p in h264_stream(x264(), "sei-first", "aiortc")]
    frames = feed(VideoJitterBuffer("H264"), packets)
    assert [f.keyframe for f in frames] == [True] + [False] * (FRAMES - 2)  # last one pending
    assert decoded("h264", (f.data for f in frames)) == FRAMES - 1


def test_reordered_start_of_the_first_keyframe() -> None:
    # The IDR's first fragment overtakes the STAP-A with SPS/PPS/SEI at stream start.
    packets = h264_stream(x264(), "as-encoded", "aiortc")
    assert not carries_idr(packets[0][3]) and carries_idr(packets[1][3])
    frames = feed(VideoJitterBuffer("H264"), [packets[1], packets[0], *packets[2:]])
    assert_all_released(frames, packets, FRAMES)
    assert decoded("h264", (f.data for f in frames)) == FRAMES


def test_parameter_sets_only_out_of_band() -> None:
    units = x264()
    nals = nal_units(units[0])
    params = [n for n in nals if nal_type(n) in (NAL_SPS, NAL_PPS)]
    sprop = ",".join(base64.b64encode(n).decode() for n in params)
    units[0] = annexb([AUD] + [n for n in nals if n not in params])  # SEI + IDR in band
    packets = h264_stream(units, "as-encoded", "single-nal")

    frames = feed(VideoJitterBuffer("H264"), packets)
    assert_all_released(frames, packets, FRAMES)
    assert decoded("h264", (f.data for f in frames)) == 0  # no SPS/PPS: nothing decodes

    fixed = with_parameter_sets(frames[0].data, sprop)
    assert [nal_type(n) for n in nal_units(fixed)][:4] == [NAL_AUD, NAL_SPS, NAL_PPS, NAL_SEI]
    assert with_parameter_sets(fixed, sprop) == fixed  # in band now: nothing added twice
    assert decoded("h264", [fixed, *(f.data for f in frames[1:])]) == FRAMES


def test_undecodable_sprop_leaves_the_frame_alone() -> None:
    idr = annexb([b"\x65\x88\x84\x00"])
    assert with_parameter_sets(idr, "Z0LAH9o*,aM48gA==") == idr


@pytest.mark.parametrize("via", ["codec", "remote-description"])
async def test_pipeline_prepends_sprop_parameter_sets(via: str) -> None:
    """Through ReceivePipeline: sprop-parameter-sets reach the frame, from the negotiated codec
    or from the server's SDP (aiortc's negotiated codecs lose the remote fmtp)."""
    units = x264()
    nals = nal_units(units[0])
    params = [n for n in nals if nal_type(n) in (NAL_SPS, NAL_PPS)]
    units[0] = annexb(n for n in nals if n not in params)
    # Unpadded base64, as some senders write it.
    sprop = ",".join(base64.b64encode(n).decode().rstrip("=") for n in params)
    codec = h264_codec()
    if via == "codec":
        codec.parameters["sprop-parameter-sets"] = sprop
    receiver, pipeline = detached_pipeline(codec)
    got: list[EncodedFrame] = []
    pipeline.subscribe(got.append)
    if via == "remote-description":
        pipeline.use_remote_description(
            f"m=video 9 UDP/TLS/RTP/SAVPF 102\r\n"
            f"a=fmtp:102 packetization-mode=1;sprop-parameter-sets={sprop}\r\n"
        )
    try:
        await feed_rtp(receiver, h264_stream(units, "as-encoded", "aiortc"))
    finally:
        pipeline.close()
    assert len(got) == FRAMES and got[0].keyframe
    assert not has_parameter_sets(annexb(nal_units(units[0])))
    assert has_parameter_sets(got[0].data)
    assert not any(has_parameter_sets(f.data) for f in got[1:])  # P-frames left alone
    assert decoded("h264", (f.data for f in got)) == FRAMES


@pytest.mark.parametrize("lost", ["first", "middle", "second-slice"])
def test_lost_packet_inside_a_keyframe_is_not_released_as_a_keyframe(lost: str) -> None:
    # Three GOPs; the second keyframe loses a packet. Three IDR slices: key packets follow
    # any hole inside it.
    units = x264(3 * FRAMES, slices=3, idr_at=(FRAMES, 2 * FRAMES))
    packets = h264_stream(units, "as-encoded", "aiortc")
    broken_ts = 3000 * FRAMES
    key = [i for i, (_, ts, _, p) in enumerate(packets) if ts == broken_ts and carries_idr(p)]
    drop = {"first": key[0] - 1, "middle": key[0] + 1, "second-slice": key[1]}[lost]
    assert packets[drop][1] == broken_ts and packets[drop + 1][1] == broken_ts
    jb = VideoJitterBuffer("H264", max_wait=0.15)
    frames = feed(jb, packets[:drop], now=1.0)
    frames += feed(jb, packets[drop + 1 : drop + 40], now=1.0)
    assert not jb.expire(1.1)  # NACK still has time
    plis = [jb.expire(1.2)]  # gave up on the packet
    frames += feed(jb, packets[drop + 40 :], now=1.3)
    plis.append(jb.expire(1.5))
    keyframes = [f.rtp_timestamp for f in frames if f.keyframe]
    assert keyframes == [0, 2 * broken_ts], "broken keyframe released"
    # The second GOP is undecodable without its keyframe: none of it comes out.
    assert [f.rtp_timestamp for f in frames] == [
        3000 * i for i in [*range(FRAMES), *range(2 * FRAMES, 3 * FRAMES)]
    ]
    assert jb.frames_dropped >= FRAMES and len(jb) == 0
    assert plis == [True, False]  # no later keyframe held when it gave up: ask for one
    assert decoded("h264", (f.data for f in frames)) == 2 * FRAMES


@pytest.mark.parametrize("stream", ["vp8", "h264", "h264-aud"])
def test_keyframe_right_after_a_lost_packet_is_released(stream: str) -> None:
    # Lost for good: the marker packet of the frame before a keyframe. The keyframe still
    # starts a frame: VP8's S=1/PID=0 and an H264 AUD say so, and one packet lost after an
    # unfinished frame belonged to that frame.
    if stream == "vp8":
        units = vp8(2 * FRAMES, key_at=(FRAMES,))
        packets = rtp([packetize_vp8(f, i, "picture-id-15") for i, f in enumerate(units)])
    else:
        units = x264(2 * FRAMES, idr_at=(FRAMES,))
        packets = h264_stream(
            units, "aud-first" if stream == "h264-aud" else "as-encoded", "aiortc"
        )
    drop = next(i for i, p in enumerate(packets) if p[1] == 3000 * FRAMES) - 1
    assert packets[drop][2] and not packets[drop - 1][2]
    jb = VideoJitterBuffer("VP8" if stream == "vp8" else "H264", max_wait=0.15)
    frames = feed(jb, packets[:drop] + packets[drop + 1 :], now=1.0)
    assert [f.rtp_timestamp for f in frames] == [3000 * i for i in range(FRAMES - 1)]
    assert not jb.expire(1.2)  # gave up on the packet; the keyframe held needs no PLI
    frames += jb.pop()
    kept = [*range(FRAMES - 1), *range(FRAMES, 2 * FRAMES)]
    assert [f.rtp_timestamp for f in frames] == [3000 * i for i in kept]
    assert [f.rtp_timestamp for f in frames if f.keyframe] == [0, 3000 * FRAMES]
    assert decoded("vp8" if stream == "vp8" else "h264", (f.data for f in frames)) == len(kept)


def test_lost_packet_inside_a_keyframe_recovered_in_time() -> None:
    packets = h264_stream(x264(slices=3), "as-encoded", "aiortc")
    jb = VideoJitterBuffer("H264", max_wait=0.15)
    frames = feed(jb, [p for i, p in enumerate(packets) if i != 2], now=1.0)
    assert frames == [] and not jb.expire(1.1)
    frames = feed(jb, [packets[2]], now=1.12)  # the retransmission
    assert_all_released(frames, packets, FRAMES)
    assert decoded("h264", (f.data for f in frames)) == FRAMES


# -- VP8 ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("extensions", ["none", "picture-id-7", "picture-id-15", "all"])
def test_vp8_first_keyframe_is_released_and_decodes(extensions: str) -> None:
    stream = vp8()
    assert stream[0][0] & 0x01 == 0 and all(f[0] & 0x01 for f in stream[1:])  # P bit
    packets = rtp([packetize_vp8(f, 300 + i, extensions) for i, f in enumerate(stream)])
    assert len([p for p in packets if p[1] == 0]) > 1  # the keyframe spans several packets
    frames = feed(VideoJitterBuffer("VP8"), packets)
    assert_all_released(frames, packets, FRAMES)
    assert [f.data for f in frames] == stream
    assert decoded("vp8", stream) == FRAMES


def test_vp8_stream_joined_mid_keyframe_waits_for_the_next_one() -> None:
    stream = vp8()
    packets = rtp([packetize_vp8(f, i, "picture-id-15") for i, f in enumerate(stream)])
    jb = VideoJitterBuffer("VP8")
    assert feed(jb, packets[1:]) == []  # the keyframe's first packet never came
    assert jb.waiting_for_keyframe
