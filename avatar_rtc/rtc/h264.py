"""H264 facts the receive path needs: IDR detection in RTP payloads, out-of-band parameter sets.

RTP payloads follow RFC 6184 packetization-mode 0/1 (single NAL unit, STAP-A, FU-A); access
units are Annex-B with 4-byte start codes, as aiortc's depayloader writes them.
"""

from __future__ import annotations

import base64
import functools
import logging

__all__ = [
    "carries_idr",
    "has_parameter_sets",
    "parameter_sets_from_sprop",
    "sprop_by_payload_type",
    "starts_access_unit",
    "with_parameter_sets",
]

logger = logging.getLogger(__name__)

NAL_IDR = 5
NAL_SPS = 7
NAL_PPS = 8
NAL_AUD = 9
STAP_A = 24
FU_A = 28
START_CODE = b"\x00\x00\x00\x01"
_SHORT_START_CODE = b"\x00\x00\x01"
_AUD_SIZE = 2  # NAL header + primary_pic_type with its trailing bits


def carries_idr(payload: bytes) -> bool:
    """True when an RTP payload holds an IDR NAL unit or the first fragment of one."""
    if not payload:
        return False
    kind = payload[0] & 0x1F
    if kind == FU_A:
        return len(payload) > 1 and payload[1] & 0x80 != 0 and payload[1] & 0x1F == NAL_IDR
    if kind == STAP_A:
        pos = 1
        while pos + 2 < len(payload):
            if payload[pos + 2] & 0x1F == NAL_IDR:
                return True
            pos += 2 + ((payload[pos] << 8) | payload[pos + 1])
        return False
    return kind == NAL_IDR


def starts_access_unit(payload: bytes) -> bool:
    """True when an RTP payload begins with an access unit delimiter: a frame starts here."""
    if not payload:
        return False
    kind = payload[0] & 0x1F
    if kind == STAP_A:
        return len(payload) > 3 and payload[3] & 0x1F == NAL_AUD
    return kind == NAL_AUD


def has_parameter_sets(access_unit: bytes) -> bool:
    """True when an SPS and a PPS come before the first slice of an Annex-B access unit."""
    seen: set[int] = set()
    pos = access_unit.find(_SHORT_START_CODE)
    # Parameter sets precede the slices, so the scan stops at the first slice header.
    while pos != -1 and pos + 3 < len(access_unit):
        kind = access_unit[pos + 3] & 0x1F
        if 1 <= kind <= NAL_IDR:
            break
        seen.add(kind)
        pos = access_unit.find(_SHORT_START_CODE, pos + 4)
    return NAL_SPS in seen and NAL_PPS in seen


@functools.lru_cache(maxsize=8)
def parameter_sets_from_sprop(sprop: str) -> bytes:
    """Annex-B SPS/PPS from an fmtp ``sprop-parameter-sets`` value (base64, comma-separated).

    Empty when the value does not decode (logged once per value thanks to the cache).
    """
    out: list[bytes] = []
    for item in sprop.split(","):
        item = item.strip()
        if not item:
            continue
        try:
            # Some senders leave out the base64 padding.
            nal = base64.b64decode(item + "=" * (-len(item) % 4), validate=True)
        except ValueError:  # binascii.Error, or characters that are not ASCII
            logger.warning("ignoring undecodable sprop-parameter-sets (%d chars)", len(sprop))
            return b""
        if nal:
            out.append(START_CODE + nal)
    return b"".join(out)


def sprop_by_payload_type(sdp: str) -> dict[int, str]:
    """``sprop-parameter-sets`` of every ``a=fmtp`` line of ``sdp``, by payload type."""
    found: dict[int, str] = {}
    for line in sdp.splitlines():
        if not line.startswith("a=fmtp:"):
            continue
        payload_type, _, params = line[len("a=fmtp:") :].partition(" ")
        for param in params.split(";"):
            name, _, value = param.strip().partition("=")
            # isascii: "²".isdigit() is True but int() refuses it.
            if (
                name == "sprop-parameter-sets"
                and value
                and payload_type.isascii()
                and payload_type.isdigit()
            ):
                found[int(payload_type)] = value
    return found


def with_parameter_sets(access_unit: bytes, sprop: str) -> bytes:
    """``access_unit`` with the SDP's SPS/PPS in front when it carries none in band.

    They go after a leading access unit delimiter, which must stay the first NAL unit.
    """
    if has_parameter_sets(access_unit):
        return access_unit
    params = parameter_sets_from_sprop(sprop)
    if not params:
        return access_unit
    cut = 0
    first = access_unit.find(_SHORT_START_CODE)
    if first != -1 and first + 3 < len(access_unit) and access_unit[first + 3] & 0x1F == NAL_AUD:
        cut = first + 3 + _AUD_SIZE
    return access_unit[:cut] + params + access_unit[cut:]
