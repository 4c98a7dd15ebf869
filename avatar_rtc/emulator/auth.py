"""The two auth schemes of the Control API: ``KS <ks>`` for create/catalog, ``Bearer <jwt>``.

The scheme word is matched case-insensitively: working clients send ``ks <KS>``.
"""

from __future__ import annotations

import enum
import hmac
import secrets
import time
from typing import Any

from . import jwt

__all__ = ["KsAuthority", "KsVerdict", "TokenAuthority", "parse_authorization"]

_ISSUER = "avatar-rtc-emulator"


def parse_authorization(header: str | None) -> tuple[str, str] | None:
    """``(scheme in lowercase, credentials)`` of an Authorization header, or None."""
    if not header:
        return None
    scheme, _, credentials = header.strip().partition(" ")
    credentials = credentials.strip()
    if not credentials:
        return None
    return scheme.lower(), credentials


class KsVerdict(enum.Enum):
    ADMIN = "admin"
    NOT_ADMIN = "not-admin"  # valid KS without the admin privilege -> 403
    INVALID = "invalid"  # missing, wrong scheme or unknown -> 401


def _new_ks(kind: str) -> str:
    # Shaped like nothing real on purpose: it must never be mistaken for a user's KS.
    return f"emu-{kind}-ks-{secrets.token_urlsafe(24)}"


class KsAuthority:
    """Knows the admin KS and the non-admin KS this emulator accepts."""

    def __init__(self, admin_ks: str | None = None) -> None:
        self.admin_ks = admin_ks or _new_ks("admin")
        self.non_admin_ks = _new_ks("user")

    def check(self, header: str | None) -> KsVerdict:
        parsed = parse_authorization(header)
        if parsed is None or parsed[0] != "ks":
            return KsVerdict.INVALID
        # surrogatepass: a header that is not UTF-8 reaches us with lone surrogates.
        ks = parsed[1].encode("utf-8", "surrogatepass")
        if hmac.compare_digest(ks, self.admin_ks.encode()):
            return KsVerdict.ADMIN
        if hmac.compare_digest(ks, self.non_admin_ks.encode()):
            return KsVerdict.NOT_ADMIN
        return KsVerdict.INVALID


class TokenAuthority:
    """Issues and verifies the per-session Bearer JWTs (HS256, per-emulator secret)."""

    def __init__(self, ttl: float) -> None:
        self.ttl = ttl
        self._secret = secrets.token_bytes(32)

    def issue(self, session_id: str, token_id: str) -> str:
        now = time.time()
        # Whole seconds as usual; short test TTLs keep milliseconds so they stay exact.
        exp: float = int(now + self.ttl) if self.ttl >= 10 else round(now + self.ttl, 3)
        claims: dict[str, Any] = {
            "iss": _ISSUER,
            "sub": session_id,
            "sid": session_id,
            "jti": token_id,  # ControlApi checks it against EmulatedSession.token_id
            "iat": int(now),
            "exp": exp,
        }
        return jwt.encode(claims, self._secret)

    def verify(self, header: str | None) -> dict[str, Any] | None:
        """The claims of a valid, unexpired Bearer token, else None."""
        parsed = parse_authorization(header)
        if parsed is None or parsed[0] != "bearer":
            return None
        try:
            return jwt.decode(parsed[1], self._secret)
        except jwt.JwtError:
            return None
