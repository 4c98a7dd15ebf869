"""datagram_batch: SRTP RTP straight from the socket to our pipelines, bursts in one wake-up."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any, cast

import pytest
from aioice import stun, turn
from aiortc.clock import current_ms
from aiortc.rtp import RtpPacket

from avatar_rtc.rtc import aiortc_seam as seam
from avatar_rtc.rtc import datagram_batch
from avatar_rtc.rtc.datagram_batch import DatagramBatch
from avatar_rtc.rtc.encoded_frame import EncodedFrame
from tests.media.loopback import loopback
from tests.rtc.test_receiver_loopback import wait_for
from tests.support import require


def rtp(seq: int, payload_type: int = 96) -> bytes:
    return struct.pack("!BBHII", 0x80, payload_type, seq, 1000 * seq, 1234) + b"payload"


class Recording(asyncio.DatagramProtocol):
    """Stands in for aioice's StunProtocol: records what reaches its own handler."""

    def __init__(self) -> None:
        self.transport: Any = None
        self.received: list[bytes] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.received.append(data)


class FakeDtls:
    """Stands in for the DTLS transport (the seam is patched to answer for it)."""


class FakeSrtp:
    def __init__(self) -> None:
        self.unprotected = 0

    def unprotect(self, data: bytes) -> bytes:
        self.unprotected += 1
        return data


@pytest.fixture
def fake_transport(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """The seam answers for a DTLS transport whose handshake is done (SRTP = identity)."""
    state: dict[str, Any] = {"protocols": [], "srtp": FakeSrtp(), "counted": [0, 0]}
    state.update(queued=0, settled=True)  # aioice's queue, aiortc's handshake timer
    receiver = object()
    state["receiver"] = receiver

    def count(dtls: object, packets: int, octets: int) -> None:
        state["counted"][0] += packets
        state["counted"][1] += octets

    monkeypatch.setattr(seam, "transport_ice_connection", lambda dtls: dtls)
    monkeypatch.setattr(seam, "protocols", lambda connection: state["protocols"])
    monkeypatch.setattr(seam, "srtp_receive_session", lambda dtls: state["srtp"])
    monkeypatch.setattr(seam, "queued_datagrams", lambda connection: state["queued"])
    monkeypatch.setattr(seam, "handshake_settled", lambda dtls: state["settled"])
    monkeypatch.setattr(seam, "abs_send_time_id", lambda dtls: None)
    monkeypatch.setattr(seam, "route_rtp", lambda dtls, packet: receiver)
    monkeypatch.setattr(seam, "count_received", count)
    # A busy machine can pause us mid-burst past the time cap: these tests count wake-ups of
    # whole bursts (the cap has its own test).
    monkeypatch.setattr(datagram_batch, "MAX_BATCH_SECONDS", 60.0)
    return state


@contextlib.asynccontextmanager
async def batch_on_a_socket(
    fake_transport: dict[str, Any], *, read_interval: float = 0.0
) -> AsyncIterator[tuple[DatagramBatch, Recording, socket.socket, Any]]:
    """A batch hooked to a real UDP socket (its protocol stands in for aioice's), and a socket
    to send to it from: (batch, protocol, sender, the hooked socket's address)."""
    loop = asyncio.get_running_loop()
    transport, protocol = await loop.create_datagram_endpoint(
        Recording, local_addr=("127.0.0.1", 0)
    )
    sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        fake_transport["protocols"].append(protocol)
        dtls = FakeDtls()  # referenced here while the batch lives: it holds it weakly
        batch = DatagramBatch(dtls, read_interval=read_interval)  # type: ignore[arg-type]
        yield batch, protocol, sender, transport.get_extra_info("sockname")
    finally:
        sender.close()
        transport.close()


async def test_a_burst_is_read_in_one_wakeup_and_the_rest_goes_its_own_way(
    fake_transport: dict[str, Any],
) -> None:
    async with batch_on_a_socket(fake_transport) as (batch, protocol, sender, address):
        got: list[RtpPacket] = []
        arrivals: list[int] = []

        def on_rtp(packet: RtpPacket, arrival_ms: int) -> None:
            got.append(packet)
            arrivals.append(arrival_ms)

        batch.add(fake_transport["receiver"], on_rtp)
        stun = b"\x00\x01\x00\x00" + bytes(16)
        rtcp_sr = struct.pack("!BBHI", 0x80, 200, 6, 1234) + bytes(20)
        burst = [rtp(seq) for seq in range(10)]
        # All queued in the socket before the loop looks at it: one wake-up must take them.
        for data in [*burst[:5], stun, rtcp_sr, *burst[5:]]:
            sender.sendto(data, address)
        await wait_for(lambda: len(got) == 10, limit=5.0)
        assert [p.sequence_number for p in got] == list(range(10))
        assert all(abs(current_ms() - ms) < 5000 for ms in arrivals)  # aiortc's clock (REMB)
        assert batch.wakeups == 1 and batch.datagrams == 12
        assert protocol.received == [stun, rtcp_sr]  # STUN and SRTCP: aioice's/aiortc's path
        assert fake_transport["counted"] == [10, sum(len(d) for d in burst)]
        # The last handler removed: the protocol's own handler is back, the dup is closed.
        batch.remove(fake_transport["receiver"])
        assert "datagram_received" not in vars(protocol) and batch.closed
        sender.sendto(rtp(11), address)
        await wait_for(lambda: len(protocol.received) == 3, limit=5.0)
        assert len(got) == 10 and batch.datagrams == 12


async def test_a_long_burst_lets_the_loop_run_between_wakeups(
    fake_transport: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Dispatching stops after MAX_BATCH_SECONDS: what the loop has to run meanwhile (a frame
    a decoder thread hands over) goes before the rest of the burst, not after all of it."""
    monkeypatch.setattr(datagram_batch, "MAX_BATCH_SECONDS", 0.002)
    async with batch_on_a_socket(fake_transport) as (batch, _, sender, address):
        loop = asyncio.get_running_loop()
        order: list[int | str] = []

        def slow(packet: RtpPacket, arrival_ms: int) -> None:
            order.append(packet.sequence_number)
            if packet.sequence_number == 0:
                loop.call_soon(order.append, "loop")
            time.sleep(0.003)  # past the cap: one datagram per wake-up

        batch.add(fake_transport["receiver"], slow)
        for seq in range(5):  # all queued before the loop looks at the socket
            sender.sendto(rtp(seq), address)
        await wait_for(lambda: len(order) == 6, limit=5.0)
        assert order == [0, "loop", 1, 2, 3, 4]
        assert batch.wakeups == 5 and batch.datagrams == 5
        batch.remove(fake_transport["receiver"])


def run_on_uvloop(main: Callable[[], Coroutine[Any, Any, None]]) -> None:
    """``main()`` on uvloop's event loop (a dev extra: it skips without it, fails under CI)."""
    try:
        import uvloop
    except ImportError:
        require(False, "uvloop (the dev extras)")
        return
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        assert "uvloop" in type(runner.get_loop()).__module__
        runner.run(main())


def test_a_burst_is_one_wakeup_on_uvloop_too(fake_transport: dict[str, Any]) -> None:
    """uvloop's UDP transport is not an asyncio.BaseTransport; its socket drains all the same."""

    async def burst() -> None:
        async with batch_on_a_socket(fake_transport) as (batch, _, sender, address):
            got: list[int] = []
            batch.add(fake_transport["receiver"], lambda p, ms: got.append(p.sequence_number))
            for seq in range(10):
                sender.sendto(rtp(seq), address)
            await wait_for(lambda: len(got) == 10, limit=5.0)
            assert got == list(range(10)) and batch.wakeups == 1
            batch.remove(fake_transport["receiver"])

    run_on_uvloop(burst)


async def test_a_burst_through_a_turn_relay_is_one_wakeup(
    fake_transport: dict[str, Any],
) -> None:
    """A relay candidate's datagrams come from the TURN server's socket: the burst there is
    drained too, ChannelData unwrapped (unbound channels dropped, as aioice does), a Data
    indication's payload and SRTCP reach the relay's protocol, with the peer's address. A
    released allocation's socket (it never wakes again) is let go at any other wake-up."""
    loop = asyncio.get_running_loop()
    peer = ("192.0.2.7", 40000)
    client_transport, client = await loop.create_datagram_endpoint(
        lambda: turn.TurnClientUdpProtocol(("127.0.0.1", 3478), "u", "p", 600, 300),
        local_addr=("127.0.0.1", 0),
    )
    client.channel_to_peer[0x4000] = peer
    client.peer_to_channel[peer] = 0x4000
    relay = Recording()
    # As aioice wires a relay candidate: its TurnTransport cast to a datagram transport.
    relay.connection_made(cast(asyncio.DatagramTransport, turn.TurnTransport(client)))
    client.receiver = relay
    fake_transport["protocols"].append(relay)
    try:
        async with batch_on_a_socket(fake_transport) as (batch, _, sender, host_address):
            assert batch.drained_sockets == 2  # the host socket and the TURN server's
            got: list[int] = []
            batch.add(fake_transport["receiver"], lambda p, ms: got.append(p.sequence_number))

            def channel(data: bytes, number: int = 0x4000) -> bytes:
                return struct.pack("!HH", number, len(data)) + data

            indication = stun.Message(stun.Method.DATA, stun.Class.INDICATION)
            indication.attributes["XOR-PEER-ADDRESS"] = peer
            indication.attributes["DATA"] = rtp(5)
            rtcp_sr = struct.pack("!BBHI", 0x80, 200, 6, 1234) + bytes(20)
            burst = [
                *(channel(rtp(seq)) for seq in range(5)),
                bytes(indication),
                channel(rtp(99), number=0x4001),  # no such channel: dropped
                channel(rtcp_sr),
                *(channel(rtp(seq)) for seq in range(6, 10)),
            ]
            for data in burst:
                sender.sendto(data, client_transport.get_extra_info("sockname"))
            await wait_for(lambda: len(got) == 10, limit=5.0)
            await asyncio.sleep(0.05)  # nothing more comes
            assert got == list(range(10))
            assert batch.wakeups == 1 and batch.datagrams == 11  # 10 RTP + the SRTCP
            assert relay.received == [rtcp_sr]  # SRTCP: aiortc's path
            client_transport.close()  # the allocation released (aioice closes the socket)
            sender.sendto(rtp(10), host_address)
            await wait_for(lambda: len(got) == 11, limit=5.0)
            assert batch.drained_sockets == 1  # only the host socket's dup is left open
            batch.remove(fake_transport["receiver"])
            assert "datagram_received" not in vars(relay) and batch.closed
    finally:
        client_transport.close()


async def test_before_the_handshake_everything_takes_aiortcs_path(
    fake_transport: dict[str, Any],
) -> None:
    fake_transport["srtp"] = None
    loop = asyncio.get_running_loop()
    transport, protocol = await loop.create_datagram_endpoint(
        Recording, local_addr=("127.0.0.1", 0)
    )
    sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        fake_transport["protocols"].append(protocol)
        dtls = FakeDtls()
        batch = DatagramBatch(dtls)  # type: ignore[arg-type]
        got: list[RtpPacket] = []
        batch.add(fake_transport["receiver"], lambda packet, arrival_ms: got.append(packet))
        sender.sendto(rtp(1), transport.get_extra_info("sockname"))
        await wait_for(lambda: len(protocol.received) == 1, limit=5.0)
        assert not got and fake_transport["counted"] == [0, 0]
        batch.remove(fake_transport["receiver"])
    finally:
        sender.close()
        transport.close()


async def test_packets_do_not_overtake_the_ones_aioice_still_holds(
    fake_transport: dict[str, Any],
) -> None:
    # Attached after the DTLS handshake: what came before waits in aioice's queue for aiortc's
    # receive task. Newer packets follow it there until it is empty (a keyframe's first packet,
    # its SPS and PPS, came after the rest: an IDR alone, undecodable).
    fake_transport["queued"] = 2
    receiver = fake_transport["receiver"]
    async with batch_on_a_socket(fake_transport) as (batch, protocol, sender, addr):
        got: list[int] = []
        batch.add(receiver, lambda packet, arrival_ms: got.append(packet.sequence_number))
        sender.sendto(rtp(3), addr)
        await wait_for(lambda: len(protocol.received) == 1, limit=5.0)
        assert got == [] and batch.fast_packets == 0
        fake_transport["queued"] = 0  # aiortc's task took them, but may not have handled one
        fake_transport["settled"] = False  # (its retransmission timer: asyncio.wait_for)
        sender.sendto(rtp(4), addr)
        await wait_for(lambda: len(protocol.received) == 2, limit=5.0)
        assert got == []
        fake_transport["settled"] = True
        sender.sendto(rtp(4), addr)
        await wait_for(lambda: got == [4], limit=5.0)
        fake_transport["queued"] = 1  # (only what is not SRTP goes that way now)
        sender.sendto(rtp(5), addr)
        await wait_for(lambda: got == [4, 5], limit=5.0)
        assert protocol.received == [rtp(3), rtp(4)]
        batch.remove(receiver)


async def test_real_session_rtp_takes_the_fast_path_and_stats_still_count() -> None:
    async with loopback() as lb:
        frames: list[EncodedFrame] = []
        lb.video.subscribe(frames.append)
        await wait_for(lambda: len(frames) >= 30, limit=15.0)
        receiver: Any = lb.video_receiver
        batch = datagram_batch._BATCHES[receiver.transport]
        assert lb.audio.receiver is not None
        assert lb.audio.receiver.transport is receiver.transport  # bundled: one batch for both
        packets = lb.video.stats().packets + lb.audio.stats().packets
        assert batch.fast_packets >= packets - 5 > 0  # (a few may precede the handshake)
        report = await lb.receiver.getStats()  # the peer connection's: transport included
        received = [s.packetsReceived for s in report.values() if s.type == "transport"]
        assert received and received[0] >= batch.fast_packets
        inbound = [s for s in (await receiver.getStats()).values() if s.type == "inbound-rtp"]
        assert inbound and inbound[0].packetsReceived >= lb.video.stats().packets - 5
        lb.video.close()
        lb.audio.close()
        assert batch.closed  # both pipelines gone: aiortc's own path again
        assert receiver.transport not in datagram_batch._BATCHES
        assert all(
            "datagram_received" not in vars(p)
            for p in seam.protocols(seam.transport_ice_connection(receiver.transport))
        )
