"""Minimal HS256 JSON Web Tokens (RFC 7519) for the emulator's session tokens.

Only what the emulator needs: sign a claims dict, and verify signature, algorithm and
``exp``. Kept dependency-free so the emulator runs wherever the client does.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import time
from typing import Any

__all__ = ["JwtError", "decode", "encode"]

_HEADER = {"alg": "HS256", "typ": "JWT"}


class JwtError(Exception):
    """The token is malformed, badly signed or expired."""


def _b64encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64decode(text: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError) as exc:
        raise JwtError("bad base64") from exc


def _json_segment(value: dict[str, Any]) -> str:
    return _b64encode(json.dumps(value, separators=(",", ":"), sort_keys=True).encode())


def _sign(signing_input: str, secret: bytes) -> str:
    return _b64encode(hmac.new(secret, signing_input.encode("ascii"), hashlib.sha256).digest())


def encode(claims: dict[str, Any], secret: bytes) -> str:
    """A compact HS256 JWS of ``claims``."""
    signing_input = f"{_json_segment(_HEADER)}.{_json_segment(claims)}"
    return f"{signing_input}.{_sign(signing_input, secret)}"


def decode(token: str, secret: bytes, *, now: float | None = None) -> dict[str, Any]:
    """The claims of ``token`` after checking its HS256 signature and ``exp``.

    Raises :class:`JwtError` on any problem; the reason is for logs, never for clients.
    """
    parts = token.split(".")
    if len(parts) != 3:
        raise JwtError("not a compact JWS")
    header_b64, claims_b64, signature = parts
    try:
        header = json.loads(_b64decode(header_b64))
        claims = json.loads(_b64decode(claims_b64))
    except (ValueError, RecursionError) as exc:  # RecursionError: nested too deep
        raise JwtError("bad JSON") from exc
    # The algorithm is pinned: accepting the header's "alg" is the classic "none" hole.
    if not isinstance(header, dict) or header.get("alg") != "HS256":
        raise JwtError("unexpected algorithm")
    expected = _sign(f"{header_b64}.{claims_b64}", secret)
    # Bytes: compare_digest refuses non-ASCII str, and a client's token may be anything.
    if not hmac.compare_digest(expected.encode(), signature.encode("utf-8", "replace")):
        raise JwtError("bad signature")
    if not isinstance(claims, dict):
        raise JwtError("claims are not an object")
    exp = claims.get("exp")
    if not isinstance(exp, int | float) or isinstance(exp, bool):
        raise JwtError("missing exp")
    if (time.time() if now is None else now) >= exp:
        raise JwtError("expired")
    return claims
