"""Unit tests of the receive pipeline's pieces: jitter buffer and NACK tracker."""

from __future__ import annotations

import struct

import pytest

from avatar_rtc.rtc.jitter_buffer import AssembledFrame, VideoJitterBuffer, parse_video_payload
from avatar_rtc.rtc.nack import NackTracker

SPS = b"\x67\x42\x00\x1f\xaa"
PPS = b"\x68\xce\x3c\x80"
IDR = b"\x65\x88\x84\x00"
P = b"\x41\x9a\x00\x11"


def stap(*nals: bytes) -> bytes:
    return b"\x78" + b"".join(struct.pack("!H", len(n)) + n for n in nals)


def fu(nal: bytes, start: bool, end: bool, chunk: bytes) -> bytes:
    header = (0x80 if start else 0) | (0x40 if end else 0) | (nal[0] & 0x1F)
    return bytes([(nal[0] & 0xE0) | 28, header]) + chunk


def keyframe(seq: int, ts: int) -> list[tuple[int, int, bool, bytes]]:
    """(seq, ts, marker, payload) of an H264 keyframe in three packets."""
    return [
        (seq, ts, False, stap(SPS, PPS)),
        (seq + 1, ts, False, fu(IDR, True, False, b"\x01\x02")),
        (seq + 2, ts, True, fu(IDR, False, True, b"\x03\x04")),
    ]


def pframe(seq: int, ts: int, n: int = 2) -> list[tuple[int, int, bool, bytes]]:
    if n == 1:
        return [(seq, ts, True, P)]
    out = [(seq, ts, False, fu(P, True, False, b"\x10"))]
    out += [(seq + i, ts, False, fu(P, False, False, b"\x11")) for i in range(1, n - 1)]
    out.append((seq + n - 1, ts, True, fu(P, False, True, b"\x12")))
    return out


def feed(
    jb: VideoJitterBuffer, pkts: list[tuple[int, int, bool, bytes]], now: float = 0.0
) -> list[AssembledFrame]:
    out: list[AssembledFrame] = []
    for seq, ts, marker, payload in pkts:
        jb.insert(seq, ts, marker, payload, now)
        out += jb.pop()
    return out


def test_h264_payload_parsing() -> None:
    # key data = an IDR NAL unit; parameter sets alone do not make a keyframe
    parsed = parse_video_payload("H264", stap(SPS, PPS))
    assert not parsed.key and not parsed.starts_frame
    assert parsed.data == b"\x00\x00\x00\x01" + SPS + b"\x00\x00\x00\x01" + PPS
    assert parse_video_payload("H264", stap(SPS, PPS, IDR)).key
    assert parse_video_payload("H264", fu(IDR, True, False, b"x")).key
    assert not parse_video_payload("H264", fu(IDR, False, True, b"x")).key
    assert not parse_video_payload("H264", P).key
    assert parse_video_payload("H264", stap(b"\x09\xf0", SPS)).starts_frame  # AUD first


def test_frame_released_on_marker_without_waiting_for_next() -> None:
    jb = VideoJitterBuffer("H264")
    frames = feed(jb, keyframe(100, 3000))
    assert len(frames) == 1  # released by its marker packet, not by the next frame
    f = frames[0]
    assert f.keyframe and f.rtp_timestamp == 3000 and (f.first_seq, f.last_seq) == (100, 102)
    assert f.data.startswith(b"\x00\x00\x00\x01" + SPS)
    assert f.data.endswith(b"\x00\x00\x00\x01\x65\x01\x02\x03\x04")
    assert len(feed(jb, pframe(103, 6000, 3))) == 1
    assert len(jb) == 0


def test_reordered_packets_complete_the_frame() -> None:
    jb = VideoJitterBuffer("H264")
    pkts = keyframe(10, 0) + pframe(13, 3000, 3)
    order = [pkts[i] for i in (0, 2, 1, 3, 5, 4)]
    frames = feed(jb, order)
    assert [f.rtp_timestamp for f in frames] == [0, 3000]


def test_waits_for_keyframe_at_start_and_skips_p_frames() -> None:
    jb = VideoJitterBuffer("H264")
    assert feed(jb, pframe(1, 0) + pframe(3, 3000)) == []
    assert jb.waiting_for_keyframe
    frames = feed(jb, keyframe(5, 6000) + pframe(8, 9000))
    assert [f.keyframe for f in frames] == [True, False]
    assert len(jb) == 0  # P-frames before the keyframe were dropped


def test_loss_gives_up_after_max_wait_and_asks_for_keyframe() -> None:
    jb = VideoJitterBuffer("H264", max_wait=0.15)
    feed(jb, keyframe(0, 0))
    lost = pframe(3, 3000, 3)
    assert feed(jb, [lost[0], lost[2]], now=1.0) == []  # packet 4 missing
    assert feed(jb, pframe(6, 6000), now=1.01) == []  # later frames wait behind the hole
    assert not jb.expire(1.1)
    assert jb.expire(1.2)  # gave up: wants a PLI
    assert jb.waiting_for_keyframe and len(jb) == 0
    assert feed(jb, pframe(8, 9000), now=1.3) == []  # undecodable: still waiting
    frames = feed(jb, keyframe(10, 12000), now=1.4)
    assert [f.keyframe for f in frames] == [True]
    assert jb.frames_dropped >= 2


def test_abandoned_gap_expires_at_once_and_the_next_keyframe_plays() -> None:
    """An outage: 200 packets never came and will not be NACKed; the head frame does not
    wait ``max_wait`` for them, and the keyframe the PLI brings plays as it completes."""
    jb = VideoJitterBuffer("H264", max_wait=0.15)
    feed(jb, keyframe(0, 0) + pframe(3, 3000))
    after = pframe(205, 600_000)  # the first packets after the outage: a P-frame
    jb.abandon(205)
    assert feed(jb, after, now=3.0) == []  # undecodable: its reference was lost
    assert jb.expire(3.001)  # gave up at once (not 150 ms later): wants a PLI
    frames = feed(jb, keyframe(207, 603_000), now=3.05)
    assert [f.keyframe for f in frames] == [True]
    # A hole above the abandoned range is waited for as usual.
    p = pframe(210, 606_000, 3)
    assert feed(jb, [p[0], p[2]], now=3.1) == []
    assert not jb.expire(3.2) and jb.expire(3.26)


def test_a_keyframe_in_an_outages_nacked_tail_plays_with_what_follows() -> None:
    """The pipeline NACKed the tail of an outage from 148 on: the head does not wait for
    what came before, keeps what came after, and resumes at the keyframe the tail brings."""
    jb = VideoJitterBuffer("H264", max_wait=0.15)
    feed(jb, keyframe(0, 0))
    jb.abandon(148)
    assert feed(jb, pframe(155, 9000), now=3.0) == []  # after the outage; no reference
    assert jb.expire(3.001)  # the run before 148 is given up at once (a PLI is wanted)
    # The tail starts inside a P-frame (undecodable), then a keyframe and what follows it.
    retransmitted = pframe(148, 4500) + keyframe(150, 6000) + pframe(153, 7500)
    frames = feed(jb, retransmitted, now=3.01)
    assert [(f.rtp_timestamp, f.keyframe) for f in frames] == [
        (6000, True),
        (7500, False),
        (9000, False),
    ]


def test_loss_recovered_by_retransmission_in_time() -> None:
    jb = VideoJitterBuffer("H264")
    feed(jb, keyframe(0, 0))
    p = pframe(3, 3000, 3)
    assert feed(jb, [p[0], p[2], *pframe(6, 6000)], now=1.0) == []
    assert not jb.expire(1.05)
    frames = feed(jb, [p[1]], now=1.06)
    assert [f.rtp_timestamp for f in frames] == [3000, 6000]


def test_resumes_at_a_later_keyframe_already_buffered() -> None:
    jb = VideoJitterBuffer("H264", max_wait=0.1)
    feed(jb, keyframe(0, 0))
    p = pframe(3, 3000, 3)
    feed(jb, [p[0], p[2], *keyframe(6, 6000)], now=1.0)
    assert not jb.expire(1.2)  # no PLI needed: a complete keyframe follows
    frames = jb.pop()
    assert [f.rtp_timestamp for f in frames] == [6000]


def test_sequence_wrap_and_bounded_size() -> None:
    jb = VideoJitterBuffer("H264", max_packets=64)
    frames = feed(jb, keyframe(65534, 0))  # extended seqs cross 65535 fine
    assert len(frames) == 1
    for i in range(100):  # never-completing frames: the buffer stays bounded
        jb.insert(70000 + 2 * i, 1000 + i, False, P, 0.0)
    assert len(jb) <= 64
    assert jb.take_pli_request()


def test_vp8_keyframe_detection() -> None:
    # descriptor: S=1, PID=0; VP8 payload header byte with P=0 (keyframe)
    parsed = parse_video_payload("VP8", b"\x10\x00\x9d\x01\x2a")
    assert parsed.key and parsed.starts_frame and parsed.data == b"\x00\x9d\x01\x2a"
    parsed = parse_video_payload("VP8", b"\x10\x01\x00")  # P=1: an inter frame's start
    assert not parsed.key and parsed.starts_frame
    assert not parse_video_payload("VP8", b"\x00\x00").starts_frame


def test_nack_retries_until_max_then_gives_up() -> None:
    n = NackTracker(retry_interval=0.02, max_retries=3)
    n.on_packet(1, 0.0)
    n.on_packet(4, 0.0)
    assert n.due(0.0) == [2, 3]
    assert n.due(0.01) == []  # not yet due
    assert n.due(0.021) == [2, 3]
    n.on_packet(2, 0.03)  # recovered
    assert n.rtt == pytest.approx(0.03)
    assert n.due(0.1) == [3]
    assert n.due(0.2) == []  # retries exhausted
    assert n.missing_count == 0


def test_nack_bounded_and_forget() -> None:
    n = NackTracker(max_missing=10, max_burst=200)
    n.on_packet(0, 0.0)
    n.on_packet(100, 0.0)
    assert n.missing_count == 10
    n.forget_before(95)
    assert n.due(0.0) == [95, 96, 97, 98, 99]
    assert not n.on_packet(10_000, 0.0)  # huge jump: not NACKable


def test_padding_packets_are_not_holes() -> None:
    jb = VideoJitterBuffer("H264")
    frames = feed(jb, [*keyframe(0, 0), (3, 0, False, b""), (4, 0, False, b""), *pframe(5, 3000)])
    assert [f.rtp_timestamp for f in frames] == [0, 3000]
    assert len(jb) == 0
