"""Which ICE candidate pair carries the media, in terms a user can act on."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = ["RelayTransport", "SelectedPair"]

RelayTransport = Literal["udp", "tcp", "tls"]


@dataclass(frozen=True)
class SelectedPair:
    """The nominated pair of the (bundled) ICE transport.

    - ``local_type`` / ``remote_type``: ``host``, ``srflx``, ``prflx`` or ``relay``.
    - ``protocol``: the ICE candidate's protocol; always ``udp`` with aioice (a relayed
      candidate is a UDP allocation even when we reach the TURN server over TCP/TLS).
    - ``relay_url`` / ``relay_transport``: for a relayed local candidate, the TURN URL it
      was allocated through and how we talk to that server (``udp``, ``tcp`` or ``tls``).
    """

    local_type: str
    local_address: tuple[str, int]
    remote_type: str
    remote_address: tuple[str, int]
    protocol: str = "udp"
    relay_url: str | None = None
    relay_transport: RelayTransport | None = None

    def describe(self) -> str:
        """One line for logs, e.g. ``relay (turn/tls turns:h:443?transport=tcp) -> host``."""
        local = self.local_type
        if self.relay_url is not None:
            local += f" (turn/{self.relay_transport} {self.relay_url})"
        return (
            f"{local} {self.local_address[0]}:{self.local_address[1]} -> {self.remote_type} "
            f"{self.remote_address[0]}:{self.remote_address[1]} [{self.protocol}]"
        )
