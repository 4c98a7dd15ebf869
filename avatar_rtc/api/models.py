"""Typed results of the Control API."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..redact import Secret

__all__ = ["CatalogItem", "ClientConfig", "SessionHandle", "TurnConfig"]


@dataclass(frozen=True)
class SessionHandle:
    """What ``create`` returns: the session id and its Bearer JWT."""

    session_id: str
    token: Secret


@dataclass(frozen=True)
class TurnConfig:
    """The ``turn`` object of ``init-client``.

    ``url`` is kept as received; the live service sends a bare host, the docs a URL,
    so :attr:`host` strips an optional ``turn:``/``turns:`` prefix, a ``//``, a port
    and a trailing ``/``.
    """

    url: str
    username: Secret
    credential: Secret

    @property
    def host(self) -> str:
        value = self.url.strip()
        for prefix in ("turns:", "turn:"):
            if value.lower().startswith(prefix):
                value = value[len(prefix) :]
                break
        value = value.lstrip("/").split("?", 1)[0].rstrip("/")
        if value.startswith("["):  # [IPv6]:port
            address, bracket, _ = value.partition("]")
            return address + bracket
        if value.count(":") == 1:
            value = value.split(":", 1)[0]
        return value

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TurnConfig:
        return cls(
            url=str(data.get("url", "")),
            username=Secret(str(data.get("username", ""))),
            credential=Secret(str(data.get("credential", ""))),
        )


@dataclass(frozen=True)
class ClientConfig:
    """What ``init-client`` returns: the WHEP URL (used verbatim) and the TURN config."""

    whep_url: str
    turn: TurnConfig | None


@dataclass(frozen=True)
class CatalogItem:
    """One avatar visual or voice from ``/v1/catalog-item/list``."""

    item_id: str
    type: str
    name: str | None = None
    attributes: dict[str, Any] = field(default_factory=dict)
    raw: dict[str, Any] = field(default_factory=dict)
