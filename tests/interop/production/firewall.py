"""nftables rules that make coturn the only way between the client and any sender.

On the input hook, a UDP packet is dropped unless its source or destination port is a
coturn port (the listeners or the relay range). Ephemeral ports in the namespace stay below
the relay range (``netns.EPHEMERAL_PORTS``), so no sender's port is pinned and still every
UDP flow must touch coturn: client <-> coturn, coturn relay <-> sender. Direct client <->
sender UDP dies (counter ``dropped_udp``). TCP is left alone (aioice has no ICE-TCP; TURN
over TCP/TLS needs it).

Counters on the output hook count SRTP/RTCP (first payload byte ``10xxxxxx``; STUN, DTLS
and TURN ChannelData start otherwise) to (``relay_media_in``: the sender's media) and from
(``relay_media_out``: the client's RTCP) the relay ports: proof that media, not only
signalling, went through the relay. The sets ``blocked_udp``/``blocked_tcp`` take
destination ports to drop on top (e.g. UDP 80 and 443: TURN must then run over TCP/TLS).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from tests.interop.production.netns import Namespace

TABLE = "avatar_rtc_production"
COUNTERS = ("dropped_udp", "blocked_udp", "blocked_tcp", "relay_media_in", "relay_media_out")


def ruleset(turn_ports: Iterable[int], relay_ports: tuple[int, int]) -> str:
    listeners = ", ".join(str(p) for p in sorted(set(turn_ports)))
    relay = f"{relay_ports[0]}-{relay_ports[1]}"
    counters = "\n".join(f"  counter {name} {{}}" for name in COUNTERS)
    return f"""
table inet {TABLE} {{
{counters}
  set blocked_udp_ports {{ type inet_service; }}
  set blocked_tcp_ports {{ type inet_service; }}
  chain input {{
    type filter hook input priority 0; policy accept;
    udp dport @blocked_udp_ports counter name blocked_udp drop
    tcp dport @blocked_tcp_ports counter name blocked_tcp drop
    udp sport {{ {listeners}, {relay} }} accept
    udp dport {{ {listeners}, {relay} }} accept
    meta l4proto udp counter name dropped_udp drop
  }}
  chain output {{
    type filter hook output priority 0; policy accept;
    udp dport {relay} @th,64,2 2 counter name relay_media_in
    udp sport {relay} @th,64,2 2 counter name relay_media_out
  }}
}}
"""


@dataclass
class Firewall:
    namespace: Namespace

    @classmethod
    def install(
        cls, namespace: Namespace, turn_ports: Iterable[int], relay_ports: tuple[int, int]
    ) -> Firewall:
        namespace.run(["nft", "-f", "-"], stdin=ruleset(turn_ports, relay_ports))
        return cls(namespace)

    def counters(self) -> dict[str, int]:
        """Packets seen by each named counter so far."""
        out = self.namespace.run(["nft", "-j", "list", "counters", "table", "inet", TABLE])
        items = json.loads(out)["nftables"]
        return {i["counter"]["name"]: int(i["counter"]["packets"]) for i in items if "counter" in i}

    @contextlib.contextmanager
    def blocking(self, *, udp: Iterable[int] = (), tcp: Iterable[int] = ()) -> Iterator[None]:
        """Drop packets to these destination ports (UDP/TCP) while inside the block."""
        udp, tcp = sorted(set(udp)), sorted(set(tcp))
        try:
            for name, ports in (("blocked_udp_ports", udp), ("blocked_tcp_ports", tcp)):
                if ports:
                    elements = "{ " + ", ".join(str(p) for p in ports) + " }"
                    self.namespace.run(["nft", "add", "element", "inet", TABLE, name, elements])
            yield
        finally:
            for name in ("blocked_udp_ports", "blocked_tcp_ports"):
                self.namespace.run(["nft", "flush", "set", "inet", TABLE, name])
