"""ICE server lists built from the avatar service's ``turn`` object."""

from __future__ import annotations

from dataclasses import dataclass

from ..api.models import TurnConfig

__all__ = ["IceServer", "TurnPorts", "ice_servers_from_turn"]


@dataclass(frozen=True)
class TurnPorts:
    """Ports of the four TURN URLs; the service's are the defaults (tests use others)."""

    udp: tuple[int, ...] = (80, 443)
    tcp: int = 80
    tls: int = 443


@dataclass(frozen=True)
class IceServer:
    """One ICE server URL with its credentials (``username``/``credential`` unmasked only on use)."""

    url: str
    username: str | None = None
    credential: str | None = None

    def __repr__(self) -> str:
        masked = "***" if self.credential else None
        return f"IceServer(url={self.url!r}, credential={masked!r})"


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
