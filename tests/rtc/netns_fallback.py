"""UDP-blocked TURN fallback, measured inside a private network namespace.

Run (as root) with ``unshare -n python -m tests.rtc.netns_fallback --runs 5``: brings ``lo``
up, starts coturn on 127.0.0.1 (UDP 3478 + 3479, TCP 3478, TLS 5349), drops UDP to the
TURN ports with nftables, starts an aiortc WHEP sender and connects relay-only with:

- ``four_urls``: the service's four URLs in its order (UDP first) — needs multi-TURN;
- ``tcp_first``: the same four URLs with the TCP URL first;
- ``tcp_only``: only the TCP URL (what stock aiortc would use if TCP came first).

Prints one JSON object: per configuration the time-to-connected of every run and the
selected relay transports. ``--stock`` adds one attempt with stock aiortc (first URL only).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from avatar_rtc.errors import ConnectError
from avatar_rtc.rtc.connection import MediaConnection
from avatar_rtc.rtc.ice_options import IceOptions
from avatar_rtc.rtc.ice_servers import IceServer, TurnPorts, ice_servers_from_turn
from tests.rtc.whep_sender import AiortcWhepSender
from tests.turn_server import TurnServer

UDP_PORT, TLS_PORT = 3478, 5349
PORTS = TurnPorts(udp=(UDP_PORT, UDP_PORT + 1), tcp=UDP_PORT, tls=TLS_PORT)
NFT_RULES = f"""
table inet avatar_rtc_test {{
  chain output {{
    type filter hook output priority 0; policy accept;
    udp dport {{ {UDP_PORT}, {UDP_PORT + 1} }} drop
  }}
}}
"""


def configurations(turn: TurnServer) -> dict[str, IceOptions]:
    servers = ice_servers_from_turn(turn.turn_config, PORTS)
    udp = [s for s in servers if s.url.endswith("transport=udp")]
    tcp = next(s for s in servers if s.url.startswith("turn:") and s.url.endswith("=tcp"))
    tls = next(s for s in servers if s.url.startswith("turns:"))
    common: dict[str, Any] = {"policy": "relay", "turn_ca_file": str(turn.ca_file)}
    return {
        "four_urls": IceOptions(turn=turn.turn_config, turn_ports=PORTS, **common),
        "tcp_first": IceOptions(extra_servers=(tcp, tls, *udp), **common),
        "tcp_only": IceOptions(extra_servers=(tcp,), **common),
    }


async def one_run(url: str, ice: IceOptions) -> tuple[float, str | None]:
    connection = MediaConnection(url, ice=ice, connect_timeout=15)
    async with connection:
        pair = connection.selected_pair()
        elapsed = connection.timings.time_to_connected
    assert elapsed is not None
    return elapsed, pair.relay_transport if pair else None


async def stock_aiortc(url: str, servers: list[IceServer]) -> dict[str, Any]:
    """Stock aiortc with the four URLs (it keeps the first: UDP, blocked here)."""
    from aiortc import RTCConfiguration, RTCIceServer, RTCPeerConnection
    from aiortc.rtcconfiguration import RTCBundlePolicy, RTCIceTransportPolicy

    config = RTCConfiguration(
        iceServers=[RTCIceServer([s.url for s in servers], servers[0].username,
                                 servers[0].credential)],
        iceTransportPolicy=RTCIceTransportPolicy.RELAY,
        bundlePolicy=RTCBundlePolicy.MAX_BUNDLE,
    )  # fmt: skip
    pc = RTCPeerConnection(config)
    pc.addTransceiver("video", direction="recvonly")
    started = time.monotonic()
    await pc.setLocalDescription(await pc.createOffer())
    gathered = time.monotonic() - started
    candidates = pc.localDescription.sdp.count("a=candidate:")
    await pc.close()
    return {"gather_seconds": round(gathered, 3), "candidates": candidates}


def setup_network() -> None:
    """``lo`` up, UDP to the TURN ports dropped (silently, like a firewall)."""
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    subprocess.run(["nft", "-f", "-"], input=NFT_RULES, text=True, check=True)


async def main(runs: int, stock: bool) -> dict[str, Any]:
    result: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        binary = shutil.which("turnserver")
        assert binary is not None
        with TurnServer.start(Path(tmp), port=UDP_PORT, tls_port=TLS_PORT, binary=binary) as turn:
            configs = configurations(turn)
            async with AiortcWhepSender() as sender:
                await one_run(sender.url, configs["tcp_only"])  # warm-up (imports, certs)
                times: dict[str, list[float]] = {name: [] for name in configs}
                transports: dict[str, list[str | None]] = {name: [] for name in configs}
                for _ in range(runs):  # interleaved, so drift hits every configuration
                    for name, ice in configs.items():
                        try:
                            elapsed, transport = await one_run(sender.url, ice)
                        except ConnectError as exc:
                            elapsed, transport = float("inf"), f"error: {exc}"
                        times[name].append(round(elapsed, 3))
                        transports[name].append(transport)
                for name in configs:
                    result[name] = {
                        "times": times[name],
                        "median": statistics.median(times[name]),
                        "transports": transports[name],
                    }
                if stock:
                    servers = ice_servers_from_turn(turn.turn_config, PORTS)
                    result["stock_aiortc"] = await stock_aiortc(sender.url, servers)
    return result


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--stock", action="store_true")
    args = parser.parse_args()
    setup_network()
    print(json.dumps(asyncio.run(main(args.runs, args.stock))))
    sys.stdout.flush()
