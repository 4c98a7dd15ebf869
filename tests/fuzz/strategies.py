"""Hypothesis strategies for what crosses the wire: SDP, WHEP headers, JSON bodies, tokens.

Mutations start from real inputs (an SDP answer of aiortc, the JSON the Control API answers)
and break them the way a buggy server, a proxy or an attacker would: fields of the wrong
kind, numbers out of range, non-ASCII digits, cut lines, huge values, bytes that are not
UTF-8. Planted secrets (``planted.SECRETS``) go in last and whole, so that a piece of one
in an error can only come from the code under test (an excerpt cut inside it).

Speed: ten thousand cases must run in about a minute on a busy two-core machine, where each
Hypothesis draw costs about half a millisecond. So Hypothesis draws one seeded
``random.Random`` per input (:func:`seeded`) and plain Python builds the input from it: a
failing case is still reported with its input and replayed from Hypothesis's choice, but it
is not shrunk (the regression ``@example``\\ s are written small by hand instead).

Nothing generated names a host other than loopback: redirects and candidates stay on
127.0.0.0/8 (see :func:`loopback_only`).
"""

from __future__ import annotations

import base64
import json
import random
import re
from collections.abc import Callable
from typing import Any, TypeVar

from hypothesis import strategies as st

from .planted import SECRETS

__all__ = [
    "ATOMS",
    "b64url",
    "header_text",
    "json_body",
    "loopback_only",
    "plant",
    "raw_body",
    "sdp_mutation",
    "seeded",
    "small_text",
    "token_text",
]

T = TypeVar("T")

# Values that break parsers: numbers out of range, digits int() refuses ("²") or takes ("٣"),
# separators, control and non-ASCII characters, and the words the parsers look for.
ATOMS: tuple[str, ...] = (
    "", " ", "0", "-1", "9", "65535", "65536", "4294967296", "99999999999999999999999",
    "²", "٣", "1e999", "nan", "inf", "-0", "+5", "0x10", "\t", "é", "\u2028", "\x7f", "\x01",
    "::1", "127.0.0.1", "[", "]", "<", ">", '"', "'", "=", ";", ",", ":", "/", "%", "{", "}",
    "udp", "tcp", "TCP", "typ", "host", "relay", "srflx", "tcptype", "raddr", "rport",
    "generation", "H264", "h264", "VP8", "VP9", "AV1", "rtx", "RTX", "opus", "90000", "48000/2",
    "sprop-parameter-sets", "Z0IAH5WoFAFuQA==,aM48gA==", "Z0I", "!!!", "apt", "BUNDLE",
    "sha-256", "actpass", "passive", "active", "recvonly", "sendonly", "inactive", "video",
    "audio", "application", "UDP/TLS/RTP/SAVPF", "RTP/AVP", "a" * 3000, "9" * 400,
)  # fmt: skip
_HEADER_ATOMS = tuple(a for a in ATOMS if a.isprintable())
# Code point ranges to draw characters from: ASCII, Latin-1, the BMP, the astral planes
# (surrogates left out: they cannot be encoded), and control characters.
_RANGES = ((0x20, 0x7E), (0x20, 0x7E), (0xA0, 0xFF), (0x100, 0xD7FF), (0xE000, 0xFFFD),
           (0x10000, 0x10FFFF), (0x00, 0x1F))  # fmt: skip


def seeded(build: Callable[[random.Random], T]) -> st.SearchStrategy[T]:
    """Inputs built by ``build`` from a Random that Hypothesis seeds (see the module doc)."""
    return st.randoms(use_true_random=True).map(build)


def _char(rng: random.Random, printable: bool) -> str:
    low, high = rng.choice(_RANGES[:-1] if printable else _RANGES)
    char = chr(rng.randint(low, high))
    return char if char.isprintable() or not printable else "x"


def _text(rng: random.Random, size: int, printable: bool = False) -> str:
    return "".join(_char(rng, printable) for _ in range(rng.randint(0, size)))


def small_text(rng: random.Random) -> str:
    """A short field value: a parser-breaking atom, random characters or a huge number."""
    pick = rng.random()
    if pick < 0.6:
        return rng.choice(ATOMS)
    if pick < 0.85:
        return _text(rng, 12)
    return str(rng.randint(-(2**70), 2**70))


def plant(rng: random.Random, text: str) -> str:
    """``text`` with zero to two planted secrets inserted whole at random places (never
    inside one another: the pieces of a split secret would be no secret)."""
    places = [rng.randint(0, len(text)) for _ in range(rng.choice((0, 0, 1, 2)))]
    for at in sorted((_outside_secrets(text, at) for at in places), reverse=True):
        text = text[:at] + rng.choice(SECRETS) + text[at:]
    return text


def _outside_secrets(text: str, at: int) -> int:
    """``at``, or the end of the secret ``text`` already holds around it."""
    for secret in SECRETS:
        start = text.find(secret)
        while start != -1:
            if start < at < start + len(secret):
                return start + len(secret)
            start = text.find(secret, start + 1)
    return at


# --- SDP --------------------------------------------------------------------------------------

_SEPARATORS = re.compile(r"([ :/=;,\t])")
_LINE_TEMPLATES: tuple[str, ...] = (
    "a=candidate:{} 1 udp 2130706431 127.0.0.1 {} typ host",
    "a=candidate:1 {} {} {} 127.0.0.1 9 typ {} raddr 0.0.0.0 rport {}",
    "a=candidate:{}", "a=rtpmap:{} {}/90000", "a=rtpmap:{} {}", "a=fmtp:{} apt={}",
    "a=fmtp:{} packetization-mode=1;sprop-parameter-sets={}", "a=fmtp:{} {}",
    "a=group:BUNDLE {}", "a=group:BUNDLE {} {}", "m=video {} UDP/TLS/RTP/SAVPF {}",
    "m=audio {} UDP/TLS/RTP/SAVPF {}", "m={} {} {} {}", "a=mid:{}", "a=setup:{}",
    "a=fingerprint:sha-256 {}", "a=fingerprint:{} {}", "a=ice-ufrag:{}", "a=ice-pwd:{}",
    "a=ice-lite", "a=end-of-candidates", "a=ssrc:{} cname:{}", "a=extmap:{} {}",
    "a=rtcp-fb:{} {}", "c=IN IP4 {}", "a=msid:{} {}", "b=AS:{}", "a=rtcp:{} IN IP4 {}",
    "a={}", "a={}:{}", "{}", "v={}", "o=- {} {} IN IP4 {}", "t={} {}", "a=ssrc-group:FID {} {}",
)  # fmt: skip
_SDP_OPS = ("drop", "dup", "swap", "cut", "field", "field", "insert", "insert", "garbage", "move")


def _mutated_line(rng: random.Random, line: str) -> str:
    """One field of ``line`` replaced (fields: the text between SDP separators)."""
    parts = _SEPARATORS.split(line)
    fields = [i for i, part in enumerate(parts) if part and not _SEPARATORS.fullmatch(part)]
    if not fields:
        return line + small_text(rng)
    parts[rng.choice(fields)] = small_text(rng)
    return "".join(parts)


def _mutate_lines(rng: random.Random, lines: list[str]) -> list[str]:
    op = rng.choice(_SDP_OPS)
    if not lines:
        lines = [""]
    i = rng.randrange(len(lines))
    if op == "drop":
        del lines[i]
    elif op == "dup":
        lines.insert(i, lines[i])
    elif op == "swap":
        j = rng.randrange(len(lines))
        lines[i], lines[j] = lines[j], lines[i]
    elif op == "cut":
        lines[i] = lines[i][: rng.randint(0, len(lines[i]))]
    elif op == "field":
        lines[i] = _mutated_line(rng, lines[i])
    elif op == "insert":
        template = rng.choice(_LINE_TEMPLATES)
        lines.insert(i, template.format(*(small_text(rng) for _ in range(template.count("{}")))))
    elif op == "garbage":
        lines[i] = small_text(rng)
    else:  # a section moved to the end: candidates and mids in another order
        starts = [k for k, line in enumerate(lines) if line.startswith("m=")]
        if starts:
            first = rng.choice(starts)
            end = next((k for k in starts if k > first), len(lines))
            lines = lines[:first] + lines[end:] + lines[first:end]
    return lines


def sdp_mutation(seeds: list[str]) -> Callable[[random.Random], str]:
    """A real SDP from ``seeds`` after one to six line-level mutations, secrets planted."""

    def build(rng: random.Random) -> str:
        lines = rng.choice(seeds).splitlines()
        for _ in range(rng.randint(1, 6)):
            lines = _mutate_lines(rng, lines)
        eol = rng.choice(("\r\n", "\r\n", "\n"))
        return plant(rng, eol.join(lines) + eol)

    return build


_CANDIDATE = re.compile(r"^(a=candidate:(?:\S+\s+){4})(\S+)", re.MULTILINE)


def loopback_only(sdp: str) -> str:
    """Candidate addresses other than 127.0.0.1 rewritten to it: ICE checks (and name
    lookups) a fuzzed answer could start never leave loopback."""
    return _CANDIDATE.sub(lambda m: m.group(1) + "127.0.0.1", sdp)


# --- HTTP headers -----------------------------------------------------------------------------


def header_text(rng: random.Random, max_size: int = 40, planted: bool = True) -> str:
    """A header value an aiohttp server can send (no control character; non-ASCII goes out
    as UTF-8), secrets planted unless ``planted`` is off."""
    pick = rng.random() < 0.5
    text = rng.choice(_HEADER_ATOMS) if pick else _text(rng, max_size, printable=True)
    return plant(rng, text) if planted else text


# --- JSON bodies ------------------------------------------------------------------------------


def _json_value(rng: random.Random, depth: int = 0) -> Any:
    pick = rng.randrange(9 if depth < 3 else 7)
    if rng.random() < 0.01:
        return plant(rng, "h" * 200_000)  # a huge value
    if pick == 0:
        return None
    if pick == 1:
        return rng.random() < 0.5
    if pick == 2:
        return rng.randint(-(2**80), 2**80)
    if pick == 3:
        return rng.choice((0.5, -0.0, 1e308, float("nan"), float("inf"), float("-inf")))
    if pick in (4, 5, 6):
        return plant(rng, small_text(rng))
    if pick == 7:
        return [_json_value(rng, depth + 1) for _ in range(rng.randint(0, 4))]
    return {small_text(rng): _json_value(rng, depth + 1) for _ in range(rng.randint(0, 4))}


def json_body(fields: dict[str, Any]) -> Callable[[random.Random], bytes]:
    """A JSON object shaped like ``fields`` (a real answer) with fields dropped, of the wrong
    type, or replaced; one time in ten not JSON at all (see :func:`raw_body`)."""

    def build(rng: random.Random) -> bytes:
        if rng.random() < 0.1:
            return raw_body(rng)
        data: dict[str, Any] = {}
        for key, value in fields.items():
            choice = rng.randrange(6)
            if choice == 0:
                continue  # missing
            data[key] = value if choice <= 2 else _json_value(rng)
        for _ in range(rng.randint(0, 2)):
            data[small_text(rng)] = _json_value(rng)
        return json.dumps(data, allow_nan=True).encode("utf-8", "surrogatepass")

    return build


# Bodies that are not JSON objects, or that break JSON parsers: too deep, too big, NaN.
_RAW_BODIES: tuple[bytes, ...] = (
    b"", b"{", b"[]", b"null", b"\xff\xfe\x00{", b"\xef\xbb\xbf{}", b"[" * 100_000,
    b'{"a":' * 50_000, b'{"success": NaN}', b'{"x": 1e999}', b'{"x": ' + b"9" * 5000 + b"}",
    b'{"error": "' + b"\xc3\x28" * 10 + b'"}', b'{"error": "' + b"e" * 1_000_000 + b'"}',
    b"<html>502 Bad Gateway</html>", b'{"success": true, "sessionId": "s", "token": "t"',
)  # fmt: skip


def raw_body(rng: random.Random) -> bytes:
    """Random bytes, a parser-breaking body, or random text with secrets planted."""
    pick = rng.randrange(3)
    if pick == 0:
        return rng.randbytes(rng.randint(0, 200))
    if pick == 1:
        return rng.choice(_RAW_BODIES)
    return plant(rng, _text(rng, 200)).encode("utf-8")


# --- tokens -----------------------------------------------------------------------------------


def b64url(data: bytes) -> str:
    """Base64url without padding, as in a JWT."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


# JWT segments: empty, not base64, "{}", "[]", "null", {"alg": "none"}, not UTF-8, too deep.
_BAD_SEGMENTS: tuple[str, ...] = (
    "", "!!!", "e30", "W10", "bnVsbA", "eyJhbGciOiJub25lIn0", b64url(b"\xff\xfe"),
    b64url(b"[" * 5000), "x" * 9000,
)  # fmt: skip
_BAD_TOKENS = ("", " ", "...", "a.b.c", "e30.e30.", "a" * 20_000)


def token_text(valid: list[str]) -> Callable[[random.Random], str]:
    """A Bearer JWT or KS: a valid one, a mutated one, or one built to be refused (wrong
    algorithm, bad base64, JSON that is not an object, huge, binary, empty)."""

    def build(rng: random.Random) -> str:
        kind = rng.randrange(8)
        if kind == 0 or not valid:
            return plant(rng, _text(rng, 60))
        token = rng.choice(valid)
        if kind == 1:
            return token
        if kind == 2:  # one character changed
            at = rng.randrange(len(token))
            return token[:at] + _char(rng, printable=False) + token[at + 1 :]
        if kind == 3:  # cut
            return token[: rng.randint(0, len(token))]
        if kind == 4:  # a segment of the JWT replaced
            parts = token.split(".")
            parts[rng.randrange(len(parts))] = rng.choice(_BAD_SEGMENTS)
            return ".".join(parts)
        if kind == 5:  # a header of another algorithm
            header = {"alg": rng.choice(("none", "HS512", "RS256", "", None, 256))}
            return b64url(json.dumps(header).encode()) + "." + ".".join(token.split(".")[1:])
        if kind == 6:
            return token + rng.choice(("\x00", "é", " x", ".", "..", "\t", "===="))
        return rng.choice(_BAD_TOKENS)

    return build
