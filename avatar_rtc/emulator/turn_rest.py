"""TURN REST credentials (coturn ``--use-auth-secret``), the kind the avatar service hands out.

username ``"<unix expiry>:<name>"``; credential ``base64(HMAC-SHA1(secret, username))``.
A TURN server sharing the secret accepts them until the expiry, without any user database.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time

__all__ = ["rest_credentials"]


def rest_credentials(
    secret: str, name: str, lifetime: float = 86400.0, *, now: float | None = None
) -> tuple[str, str]:
    """``(username, credential)`` valid for ``lifetime`` seconds from ``now``."""
    expiry = int((time.time() if now is None else now) + lifetime)
    username = f"{expiry}:{name}"
    digest = hmac.new(secret.encode(), username.encode(), hashlib.sha1).digest()
    return username, base64.b64encode(digest).decode()
