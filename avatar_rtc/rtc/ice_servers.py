"""ICE server lists built from the avatar service's ``turn`` object."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from ..api.models import TurnConfig
from ..errors import ConfigurationError
from ..redact import redact, register_secret

__all__ = ["IceServer", "IceUrl", "TurnPorts", "ice_servers_from_turn", "parse_ice_url"]


@dataclass(frozen=True)
class TurnPorts:
    """Ports of the four TURN URLs; the service's are the defaults (tests use others)."""

    udp: tuple[int, ...] = (80, 443)
    tcp: int = 80
    tls: int = 443


@dataclass(frozen=True)
class IceServer:
    """One ICE server URL with its credentials (``credential`` masked in ``repr``)."""

    url: str
    username: str | None = None
    credential: str | None = None

    def __post_init__(self) -> None:
        # Credentials may come from a caller or a WHEP Link header, not only from a Secret:
        # register them so the log filter masks them wherever they would show up.
        self.register_secrets()

    def register_secrets(self) -> None:
        """Register the credentials in this process (again in one that unpickled this)."""
        if self.username:
            # Whole only: a TURN REST user name is "<expiry>:<session id>", and the session
            # id must stay readable in every other message.
            register_secret(self.username, pieces=False)
        if self.credential:
            register_secret(self.credential)

    def __repr__(self) -> str:
        masked = "***" if self.credential else None
        return f"IceServer(url={self.url!r}, credential={masked!r})"

    __str__ = __repr__


@dataclass(frozen=True)
class IceUrl:
    """A parsed ``stun:``/``stuns:``/``turn:``/``turns:`` URL (RFC 7064 / RFC 7065).

    ``transport`` is how we reach the server: ``udp``, ``tcp`` or ``tls`` (``turns:``);
    ``None`` for STUN.
    """

    scheme: Literal["stun", "stuns", "turn", "turns"]
    host: str
    port: int
    transport: Literal["udp", "tcp", "tls"] | None


_URL_RE = re.compile(
    r"(?P<scheme>stuns?|turns?):(?://)?(?P<host>\[[0-9a-fA-F:.]+\]|[^?:/\[\]]+)"
    r"(?::(?P<port>\d{1,5}))?/?(?:\?transport=(?P<transport>[a-zA-Z]+))?"
)


def parse_ice_url(url: str) -> IceUrl:
    """Parse an ICE server URL; ``ConfigurationError`` (a ``ValueError``) when malformed or
    unsupported.

    Default ports: 3478 (``stun``/``turn``), 5349 (``stuns``/``turns``). ``turn`` defaults
    to UDP; ``turns`` must be TCP (TLS over TCP; DTLS is not supported by aioice).
    """
    match = _URL_RE.fullmatch(url.strip())
    if match is None:
        raise ConfigurationError(f"malformed ICE server URL {redact(url)!r}")
    scheme = match["scheme"].lower()
    host = match["host"].strip("[]")
    secure = scheme.endswith("s")
    port = int(match["port"]) if match["port"] else (5349 if secure else 3478)
    if not 0 < port < 65536:
        raise ConfigurationError(f"bad port in ICE server URL {url!r}")
    transport_param = (match["transport"] or "").lower()
    if scheme in ("stun", "stuns"):
        if transport_param:
            raise ConfigurationError(f"{scheme}: URLs take no transport: {url!r}")
        return IceUrl("stuns" if secure else "stun", host, port, None)
    if scheme == "turns":
        if transport_param not in ("", "tcp"):
            raise ConfigurationError(f"turns: supports only transport=tcp: {url!r}")
        return IceUrl("turns", host, port, "tls")
    if transport_param not in ("", "udp", "tcp"):
        raise ConfigurationError(f"turn: supports transport=udp|tcp: {url!r}")
    return IceUrl("turn", host, port, "tcp" if transport_param == "tcp" else "udp")


def ice_servers_from_turn(turn: TurnConfig, ports: TurnPorts = TurnPorts()) -> list[IceServer]:
    """The four URLs Kaltura's own clients build, in their order:
    ``turn:H:80?transport=udp``, ``turn:H:443?transport=udp``, ``turn:H:80?transport=tcp``,
    ``turns:H:443?transport=tcp``.
    """
    host = turn.host
    user, cred = turn.username.reveal(), turn.credential.reveal()
    urls = [f"turn:{host}:{p}?transport=udp" for p in ports.udp]
    urls.append(f"turn:{host}:{ports.tcp}?transport=tcp")
    urls.append(f"turns:{host}:{ports.tls}?transport=tcp")
    return [IceServer(url, user, cred) for url in urls]
