"""ICE configuration of a media connection (policy, TURN, host addresses, timers)."""

from __future__ import annotations

import ipaddress
import ssl
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

from ..api.models import TurnConfig
from ..errors import ConfigurationError
from .ice_servers import IceServer, TurnPorts, ice_servers_from_turn, parse_ice_url

__all__ = ["IceOptions", "IcePolicy"]

IcePolicy = Literal["all", "relay"]


@dataclass(frozen=True)
class IceOptions:
    """How a :class:`~avatar_rtc.rtc.connection.MediaConnection` gathers candidates.

    - ``policy``: ``"all"`` (host + srflx + relay) or ``"relay"`` (TURN only, what the
      avatar service expects). ``"all"`` is the default so a bare WHEP URL works without TURN.
    - ``turn``: the service's TURN object, expanded into its four URLs with ``turn_ports``.
    - ``extra_servers``: more ``stun:``/``turn:``/``turns:`` servers (e.g. from WHEP ``Link``
      headers of a previous attempt). No implicit public STUN server is ever added.
    - ``host_addresses``: pin host candidates to these addresses (aioice otherwise gathers
      every interface except 127.0.0.1; tests pass ``("127.0.0.1",)``).
    - ``gather_timeout``: hard cap on gathering. ``relay_grace``: once the first relay
      candidate exists, wait at most this long for the other TURN URLs (see ``multi_turn``).
    - ``turn_tls_verify`` / ``turn_ca_file``: certificate checks of ``turns:`` servers;
      verified against the system store (or ``turn_ca_file``) by default.
    """

    policy: IcePolicy = "all"
    turn: TurnConfig | None = None
    turn_ports: TurnPorts = field(default_factory=TurnPorts)
    extra_servers: Sequence[IceServer] = ()
    host_addresses: Sequence[str] | None = None
    gather_timeout: float = 5.0
    relay_grace: float = 0.3
    turn_tls_verify: bool = True
    turn_ca_file: str | None = None

    def __post_init__(self) -> None:
        if self.policy not in ("all", "relay"):
            raise ConfigurationError(f"policy must be 'all' or 'relay', not {self.policy!r}")
        if not self.gather_timeout > 0 or not self.relay_grace >= 0:  # (NaN too)
            raise ConfigurationError("gather_timeout must be > 0 and relay_grace >= 0")
        for server in self.extra_servers:
            parse_ice_url(server.url)  # fail early on a malformed URL
        for address in self.host_addresses or ():
            try:  # (else: no candidate to gather, NoCandidatesError once connecting)
                ipaddress.ip_address(address)
            except ValueError:
                raise ConfigurationError(f"host address {address!r}: not an IP address") from None

    def servers(self) -> list[IceServer]:
        """Every ICE server, TURN object's four URLs first (their order is a preference)."""
        servers = ice_servers_from_turn(self.turn, self.turn_ports) if self.turn else []
        return [*servers, *self.extra_servers]

    def uses_tls(self) -> bool:
        """Whether any server is a ``turns:`` URL (the only ones needing :meth:`ssl_context`)."""
        return any(server.url.lower().startswith("turns:") for server in self.servers())

    def ssl_context(self) -> ssl.SSLContext:
        """The TLS context for ``turns:`` URLs."""
        context = ssl.create_default_context(cafile=self.turn_ca_file)
        if not self.turn_tls_verify:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        return context
