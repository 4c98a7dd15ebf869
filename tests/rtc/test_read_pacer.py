"""read_pacer: media sockets read at a tick while media flows, watched again once idle."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import socket
import weakref
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from avatar_rtc.rtc import datagram_batch, read_pacer
from avatar_rtc.rtc.datagram_batch import DatagramBatch
from avatar_rtc.rtc.read_pacer import ReadPacer, pacer_for
from tests.rtc.test_datagram_batch import (
    Recording,
    batch_on_a_socket,
    fake_transport,
    rtp,
    run_on_uvloop,
)
from tests.rtc.test_receiver_loopback import wait_for

__all__ = ["fake_transport"]  # the fixture, imported for pytest


@contextlib.asynccontextmanager
async def first_read(
    fake_transport: dict[str, Any], interval: float
) -> AsyncIterator[tuple[DatagramBatch, Recording, socket.socket, Any, list[int]]]:
    """A batch on a socket, read every ``interval`` seconds, once its first RTP datagram (0)
    was handled: (batch, protocol, sender, address, the sequence numbers handled)."""
    async with batch_on_a_socket(fake_transport, read_interval=interval) as (
        batch, protocol, sender, address,
    ):  # fmt: skip
        got: list[int] = []
        batch.add(fake_transport["receiver"], lambda p, ms: got.append(p.sequence_number))
        sender.sendto(rtp(0), address)
        await wait_for(lambda: got == [0], limit=5.0)
        yield batch, protocol, sender, address, got


class FakeSocket:
    """A held socket: ``queued`` datagrams are what each drain reads, in turn."""

    def __init__(self, *queued: int | None) -> None:
        self.queued = list(queued)
        self.drains = 0
        self.resumed = 0

    def drain(self) -> int | None:
        self.drains += 1
        return self.queued.pop(0) if self.queued else 0

    def resume(self) -> None:
        self.resumed += 1


async def test_a_pacer_drains_every_held_socket_at_each_tick_until_one_finds_nothing() -> None:
    pacer = ReadPacer(asyncio.get_running_loop(), 0.02)
    busy, quiet = FakeSocket(3, 2, 1), FakeSocket()
    pacer.hold("busy", busy.drain, busy.resume)
    pacer.hold("quiet", quiet.drain, quiet.resume)
    assert pacer.held == 2 and busy.drains == 0  # nothing before the first tick
    await wait_for(lambda: pacer.held == 0, limit=5.0)
    # one tick for both sockets; each watched again after its first empty tick, once
    assert (busy.drains, busy.resumed) == (4, 1)
    assert (quiet.drains, quiet.resumed) == (1, 1)
    assert pacer.ticks == 4
    ticks = pacer.ticks
    await asyncio.sleep(0.1)
    assert pacer.ticks == ticks  # no timer while nothing is held


async def test_a_released_gone_or_failing_socket_is_not_resumed_by_the_pacer(
    caplog: pytest.LogCaptureFixture,
) -> None:
    pacer = ReadPacer(asyncio.get_running_loop(), 0.02)
    released, gone = FakeSocket(5, 5), FakeSocket(None)
    pacer.hold("released", released.drain, released.resume)
    pacer.hold("gone", gone.drain, gone.resume)

    def fails() -> int:
        raise RuntimeError("drain failed")

    failing = FakeSocket()
    pacer.hold("failing", fails, failing.resume)
    assert pacer.release("released") and not pacer.release("released")
    await wait_for(lambda: pacer.held == 0, limit=5.0)
    assert released.drains == 0 and released.resumed == 0  # its owner resumes it if it wants
    assert gone.drains == 1 and gone.resumed == 0  # (None: the socket is closing)
    assert failing.resumed == 1  # a failed drain leaves the socket to the loop, logged
    assert "paced read failed" in caplog.text


async def test_a_drain_that_releases_its_own_socket_or_raises_does_not_stop_the_ticks(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """(It did: a drain that found its socket closing and released it made the tick raise,
    and no tick came again for any socket held.)"""
    pacer = ReadPacer(asyncio.get_running_loop(), 0.02)
    steady = FakeSocket(1, 1, 1)
    pacer.hold("steady", steady.drain, steady.resume)

    def releases_itself() -> int | None:
        pacer.release("closing")
        return None

    pacer.hold("closing", releases_itself, lambda: None)

    def raises() -> int:
        raise OSError("gone")

    resumed: list[str] = []

    def resume_fails() -> None:
        resumed.append("failing")
        raise OSError("closed")

    pacer.hold("failing", raises, resume_fails)
    await wait_for(lambda: pacer.held == 0, limit=5.0)
    assert steady.drains == 4 and steady.resumed == 1  # ticked on to the end
    assert resumed == ["failing"] and "paced read failed" in caplog.text


async def test_a_hold_during_a_tick_does_not_start_a_second_timer() -> None:
    pacer = ReadPacer(asyncio.get_running_loop(), 0.05)
    late = FakeSocket(1)

    def holds_another() -> int:
        pacer.hold("late", late.drain, late.resume)
        return 0

    pacer.hold("first", holds_another, lambda: None)
    await wait_for(lambda: pacer.held == 0, limit=5.0)
    await asyncio.sleep(0.2)  # a second timer would tick on meanwhile
    assert pacer.ticks == 3  # first (holds late), late (1), late (empty): one timer


def test_a_closed_loop_is_not_kept_alive_by_its_pacer() -> None:
    """(Each ``asyncio.run`` that paced reads kept its loop and selector: the registry is weak
    on the loop, and its pacer held the loop.)"""

    async def paced() -> None:
        pacer = pacer_for(0.1)
        pacer.hold("socket", lambda: 0, lambda: None)
        await wait_for(lambda: pacer.held == 0, limit=5.0)

    loop = asyncio.new_event_loop()
    loop.run_until_complete(paced())
    loop.close()
    gone = weakref.ref(loop)
    del loop
    gc.collect()
    assert gone() is None


async def test_one_pacer_per_loop_and_interval() -> None:
    assert pacer_for(0.1) is pacer_for(0.1)
    assert pacer_for(0.1) is not pacer_for(0.2)
    for interval in (0.0, -0.1, read_pacer.MAX_READ_INTERVAL + 0.1, float("nan")):
        with pytest.raises(ValueError, match="interval"):
            ReadPacer(asyncio.get_running_loop(), interval)


async def test_media_is_read_at_the_ticks_and_the_socket_watched_again_once_idle(
    fake_transport: dict[str, Any],
) -> None:
    """The first datagram wakes the loop; what follows waits in the socket (the loop no longer
    watches it) for the pacer's tick, which takes it all at once; a tick that finds nothing
    gives the socket back to the loop, whose next datagram wakes it again."""
    async with first_read(fake_transport, 0.2) as (batch, protocol, sender, address, got):
        transport = protocol.transport
        assert batch.wakeups == 1 and not transport.is_reading()  # held for the tick
        stun = b"\x00\x01\x00\x00" + bytes(16)
        for data in [*(rtp(seq) for seq in range(1, 6)), stun, *(rtp(s) for s in range(6, 11))]:
            sender.sendto(data, address)  # (no await between: the tick cannot come between)
        await wait_for(lambda: len(got) == 11, limit=5.0)
        assert got == list(range(11))
        assert batch.wakeups == 1 and batch.paced_reads == 1  # all ten in one tick
        assert protocol.received == [stun]  # anything not ours: aioice's path, as before
        assert fake_transport["counted"][0] == 11
        await wait_for(lambda: transport.is_reading(), limit=5.0)  # a tick found nothing
        sender.sendto(rtp(11), address)
        await wait_for(lambda: len(got) == 12, limit=5.0)
        assert batch.wakeups == 2  # watched again: the next datagram woke the loop
        batch.remove(fake_transport["receiver"])


async def test_a_held_socket_gets_a_receive_buffer_for_an_interval_of_packets(
    fake_transport: dict[str, Any],
) -> None:
    """Its packets wait in the kernel until the tick: a keyframe burst of a high-rate stream
    overflowed aioice's 256 kB (23 of 255 datagrams of a 300 kB burst lost at 0.1 s)."""
    async with first_read(fake_transport, 0.1) as (batch, protocol, _, _, _):
        sock = protocol.transport.get_extra_info("socket")
        size = sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
        ceiling = int(Path("/proc/sys/net/core/rmem_max").read_text())  # noqa: ASYNC240
        # (Linux reports twice what was set: its own bookkeeping)
        assert size >= 2 * min(datagram_batch.PACED_RCVBUF, ceiling)
        batch.remove(fake_transport["receiver"])


async def test_removing_the_last_handler_gives_a_held_socket_back_to_the_loop(
    fake_transport: dict[str, Any],
) -> None:
    async with first_read(fake_transport, 0.2) as (batch, protocol, sender, address, got):
        assert not protocol.transport.is_reading()
        pacer = pacer_for(0.2)
        assert pacer.held == 1
        batch.remove(fake_transport["receiver"])
        assert protocol.transport.is_reading() and pacer.held == 0
        sender.sendto(rtp(1), address)  # the protocol's own handler has it, at once
        await wait_for(lambda: len(protocol.received) == 1, limit=5.0)
        assert got == [0]


async def test_a_socket_closed_while_held_is_let_go(fake_transport: dict[str, Any]) -> None:
    async with first_read(fake_transport, 0.05) as (batch, protocol, _, _, _):
        protocol.transport.close()  # aioice closing it (a released allocation, a restart)
        await wait_for(lambda: pacer_for(0.05).held == 0, limit=5.0)
        batch.remove(fake_transport["receiver"])  # nothing to resume: no error


async def test_a_socket_aioice_closes_is_let_go_at_a_tick_while_another_is_held(
    fake_transport: dict[str, Any],
) -> None:
    """An ICE restart's replaced socket, a released TURN allocation's: closed by aioice while
    media flows on another socket, which is held, so no wake-up of the loop comes to close our
    dup of it. A tick does: its port is free again. (It stayed bound: the live session's ICE
    restart test failed with paced reads.)"""
    loop = asyncio.get_running_loop()
    replaced, old = await loop.create_datagram_endpoint(Recording, local_addr=("127.0.0.1", 0))
    fake_transport["protocols"].append(old)
    port = replaced.get_extra_info("sockname")[1]
    try:
        async with first_read(fake_transport, 0.05) as (batch, _, sender, address, got):
            assert batch.drained_sockets == 2
            replaced.close()
            for seq in range(1, 4):  # media flows on, on the held socket
                sender.sendto(rtp(seq), address)
            await wait_for(lambda: batch.drained_sockets == 1, limit=5.0)
            await wait_for(lambda: len(got) == 4, limit=5.0)
            assert batch.wakeups == 1  # only ticks read since the first datagram
            probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            probe.bind(("127.0.0.1", port))  # free again
            probe.close()
            batch.remove(fake_transport["receiver"])
    finally:
        replaced.close()


async def test_nothing_is_held_before_the_handshake(fake_transport: dict[str, Any]) -> None:
    """Connecting (ICE checks, DTLS) is never delayed: only SRTP media makes a socket held."""
    fake_transport["srtp"] = None
    async with batch_on_a_socket(fake_transport, read_interval=0.2) as (
        batch, protocol, sender, address,
    ):  # fmt: skip
        batch.add(fake_transport["receiver"], lambda p, ms: None)
        sender.sendto(rtp(1), address)
        await wait_for(lambda: len(protocol.received) == 1, limit=5.0)
        assert protocol.transport.is_reading() and pacer_for(0.2).held == 0
        batch.remove(fake_transport["receiver"])


def test_under_uvloop_every_datagram_is_read_as_it_comes(fake_transport: dict[str, Any]) -> None:
    """uvloop's UDP transports cannot pause reading: read_interval changes nothing there."""

    async def run() -> None:
        async with first_read(fake_transport, 0.2) as (batch, _, sender, address, got):
            sender.sendto(rtp(1), address)
            await wait_for(lambda: got == [0, 1], limit=5.0)
            assert batch.wakeups == 2 and batch.paced_reads == 0
            assert pacer_for(0.2).held == 0
            batch.remove(fake_transport["receiver"])

    run_on_uvloop(run)


async def test_a_flood_past_the_bound_is_left_to_the_loop(
    fake_transport: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(datagram_batch, "MAX_PACED", 4)
    async with first_read(fake_transport, 0.2) as (batch, _, sender, address, got):
        for seq in range(1, 11):
            sender.sendto(rtp(seq), address)
        await wait_for(lambda: len(got) == 11, limit=5.0)
        # the tick read its 4 and gave the socket back: the loop read the rest at once
        assert got == list(range(11)) and batch.paced_reads == 1 and batch.wakeups >= 2
        batch.remove(fake_transport["receiver"])
