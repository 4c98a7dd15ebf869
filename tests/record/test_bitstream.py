"""Parsers of the copy path: H264 NAL units, VP8 keyframe size, Opus packet duration."""

from __future__ import annotations

import struct

from avatar_rtc.record.bitstream import (
    h264_nal_types,
    h264_parameter_sets,
    iter_annexb_nals,
    opus_head,
    opus_packet_samples,
    vp8_keyframe_size,
)


def test_annexb_nals_with_3_and_4_byte_start_codes() -> None:
    data = b"\x00\x00\x00\x01\x67\xaa\x00\x00\x01\x68\xbb\xcc\x00\x00\x00\x01\x65\x00\x01"
    assert list(iter_annexb_nals(data)) == [b"\x67\xaa", b"\x68\xbb\xcc", b"\x65\x00\x01"]
    assert h264_nal_types(data) == [7, 8, 5]
    assert h264_parameter_sets(data) == ([b"\x67\xaa"], [b"\x68\xbb\xcc"])
    assert list(iter_annexb_nals(b"")) == []


def test_vp8_keyframe_size() -> None:
    key = b"\x50\x42\x00\x9d\x01\x2a" + struct.pack("<HH", 512 | 0x4000, 288) + b"\x00" * 8
    assert vp8_keyframe_size(key) == (512, 288)  # the 2 scaling bits are not size
    assert vp8_keyframe_size(b"\x51" + key[1:]) is None  # interframe
    assert vp8_keyframe_size(b"\x00\x00") is None


def test_opus_packet_samples() -> None:
    assert opus_packet_samples(b"\xfc\xff\xfe") == 960  # CELT FB 20 ms, 1 frame
    assert opus_packet_samples(bytes([(1 << 3) | 1, 0, 0])) == 1920  # SILK NB 20 ms x2
    assert opus_packet_samples(bytes([(16 << 3) | 3, 3])) == 360  # CELT 2.5 ms x3
    assert opus_packet_samples(bytes([(3 << 3) | 3, 3])) is None  # 3 x 60 ms > 120 ms
    assert opus_packet_samples(b"") is None


def test_opus_head_layout() -> None:
    head = opus_head(2)
    assert len(head) == 19 and head[:8] == b"OpusHead"
    assert struct.unpack_from("<BBHI", head, 8) == (1, 2, 0, 48000)
