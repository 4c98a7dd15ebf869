"""Reachability probes (is the network back?) against real sockets on 127.0.0.1."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from typing import cast

import pytest
import pytest_asyncio

from avatar_rtc.rtc.candidate_pair import SelectedPair
from avatar_rtc.rtc.reachability import (
    ProbeTarget,
    ReachabilityMonitor,
    probe,
    probe_targets,
)


class StunResponder(asyncio.DatagramProtocol):
    """Answers every datagram with a STUN error response to its transaction (like aioice
    answering an unauthenticated Binding request)."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        self.transport.sendto(b"\x01\x11\x00\x00" + data[4:20], addr)


@pytest_asyncio.fixture
async def stun_port() -> AsyncIterator[int]:
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(StunResponder, local_addr=("127.0.0.1", 0))
    yield transport.get_extra_info("sockname")[1]
    transport.close()


def _closed_port(kind: int) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_targets_of_a_relayed_pair_are_the_whep_and_turn_servers() -> None:
    turn_url = "turn:127.0.0.1:3478?transport=udp"
    pair = SelectedPair("relay", ("127.0.0.1", 49160), "host", ("127.0.0.5", 5000),
                        relay_url=turn_url, relay_transport="udp")  # fmt: skip
    whep, turn = probe_targets("https://example.invalid/whep/1", pair)
    # The WHEP server refusing proves the network works (its host sent the RST).
    assert (whep.transport, whep.host, whep.port, whep.refused_is_up) == (
        "tcp", "example.invalid", 443, True)  # fmt: skip
    assert (turn.transport, turn.host, turn.port, turn.refused_is_up) == (
        "stun", "127.0.0.1", 3478, False)  # fmt: skip
    tls_url = "turns:127.0.0.1:5349?transport=tcp"
    tls = SelectedPair("relay", ("127.0.0.1", 1), "host", ("127.0.0.1", 2),
                       relay_url=tls_url, relay_transport="tls")  # fmt: skip
    assert probe_targets("http://127.0.0.1:8080/w", tls)[1].transport == "tcp"


def test_target_of_a_direct_pair_is_the_peer_whose_refusal_proves_the_path() -> None:
    pair = SelectedPair("host", ("127.0.0.1", 1), "host", ("127.0.0.1", 40000))
    whep, peer = probe_targets("http://127.0.0.1:8080/whep", pair)
    assert whep.port == 8080
    assert (peer.transport, peer.host, peer.port, peer.refused_is_up) == (
        "stun", "127.0.0.1", 40000, True)  # fmt: skip
    assert probe_targets("whep:endpoint", None) == []


async def test_tcp_probe_answered_and_refused() -> None:
    server = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    assert await probe(ProbeTarget("tcp", "127.0.0.1", port, False, "up"), 1.0)
    server.close()
    await server.wait_closed()
    closed = ProbeTarget("tcp", "127.0.0.1", port, False, "down")
    assert not await probe(closed, 1.0)  # a server refusing: it is down


async def test_stun_probe_answered_and_refused(stun_port: int) -> None:
    assert await probe(ProbeTarget("stun", "127.0.0.1", stun_port, False, "turn"), 1.0)
    port = _closed_port(socket.SOCK_DGRAM)
    # ICMP port unreachable: a TURN server that is down, but a peer whose ICE agent is gone
    # behind a working network.
    assert not await probe(ProbeTarget("stun", "127.0.0.1", port, False, "turn"), 1.0)
    assert await probe(ProbeTarget("stun", "127.0.0.1", port, True, "peer"), 1.0)


async def test_stun_probe_silent_peer_is_down() -> None:
    silent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)  # receives, never answers
    silent.bind(("127.0.0.1", 0))
    try:
        port = silent.getsockname()[1]
        assert not await probe(ProbeTarget("stun", "127.0.0.1", port, True, "peer"), 0.5)
    finally:
        silent.close()


async def test_monitor_validates_then_sees_the_network_come_back(stun_port: int) -> None:
    server = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    silent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    silent.bind(("127.0.0.1", 0))
    targets = [
        ProbeTarget("tcp", "127.0.0.1", port, False, "WHEP server"),
        ProbeTarget("stun", "127.0.0.1", stun_port, False, "TURN server"),
        ProbeTarget("stun", "127.0.0.1", silent.getsockname()[1], True, "peer"),
    ]
    monitor = ReachabilityMonitor(targets, interval=0.05, timeout=0.3)
    try:
        assert monitor.down is None  # no verdict yet
        await monitor.validate()
        assert [t.label for t in monitor.targets] == ["WHEP server", "TURN server"]
        assert await monitor.check() and monitor.down is False and not monitor.came_back()
        server.close()
        await server.wait_closed()
        assert not await monitor.check() and monitor.down is True
        server = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", port)
        monitor.start()
        for _ in range(100):
            if monitor.came_back():
                break
            await asyncio.sleep(0.02)
        else:
            pytest.fail("the monitor did not see the server come back")
        assert monitor.down is False and not monitor.came_back()  # once per transition
    finally:
        await monitor.stop()
        server.close()
        await server.wait_closed()
        silent.close()


async def test_udp_silent_while_tcp_answers_is_udp_blocked(stun_port: int) -> None:
    """Only the UDP TURN server silent, the WHEP server answering over TCP: UDP is blocked on
    a working network (a new path over TURN/TCP may work). Silent TCP too, or a refusing TURN
    server (down), is not that."""
    server = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    silent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    silent.bind(("127.0.0.1", 0))
    whep = ProbeTarget("tcp", "127.0.0.1", port, True, "WHEP server")
    quiet_turn = ProbeTarget("stun", "127.0.0.1", silent.getsockname()[1], False, "TURN server")
    refusing_turn = ProbeTarget("stun", "127.0.0.1", _closed_port(socket.SOCK_DGRAM), False, "TURN")
    try:
        monitor = ReachabilityMonitor([whep, quiet_turn], timeout=0.3)
        assert not await monitor.check()
        assert monitor.down is True and monitor.udp_blocked
        monitor = ReachabilityMonitor([whep, refusing_turn], timeout=0.3)
        assert not await monitor.check()
        assert monitor.down is True and not monitor.udp_blocked  # TURN down: wait for it
        monitor = ReachabilityMonitor([whep, ProbeTarget("stun", "127.0.0.1", stun_port, False,
                                                         "TURN")], timeout=0.3)  # fmt: skip
        assert await monitor.check() and not monitor.udp_blocked
        server.close()
        await server.wait_closed()
        monitor = ReachabilityMonitor([whep, quiet_turn], timeout=0.3)
        assert not await monitor.check()
        # the WHEP server's port refuses: its host answers, the network works: still blocked
        assert monitor.udp_blocked
        monitor = ReachabilityMonitor([quiet_turn], timeout=0.3)
        assert not await monitor.check() and not monitor.udp_blocked  # nothing answers
    finally:
        server.close()
        silent.close()
