"""SilenceProbe: during a silence, STUN probes of the first hop tell when a path that went down
is back, before the sender's next packet does; a silence on a working path (the sender
paused) tells nothing. Against a STUN responder of our own that can stop answering (the path
down), and a real coturn (test_turn.py)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from avatar_rtc.rtc import datagram_batch
from avatar_rtc.rtc.reachability import BINDING_REQUEST
from avatar_rtc.rtc.silence_probe import MIN_UNANSWERED, SilenceProbe
from tests.rtc.test_datagram_batch import batch_on_a_socket, fake_transport, rtp
from tests.rtc.test_receiver_loopback import wait_for

__all__ = ["fake_transport"]  # the fixture, imported for the batch test

SILENCE = 0.05
INTERVAL = 0.005


class Responder(asyncio.DatagramProtocol):
    """Answers STUN Binding requests (success, same transaction ID) while ``answering``, but
    for the first ``lose_first`` (lost on a working path)."""

    def __init__(self) -> None:
        self.transport: Any = None
        self.answering = True
        self.lose_first = 0
        self.requests = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr: Any) -> None:
        if len(data) < 20 or int.from_bytes(data[:2], "big") != BINDING_REQUEST:
            return
        self.requests += 1
        if self.answering and self.requests > self.lose_first:
            self.transport.sendto(b"\x01\x01\x00\x00" + data[4:20], addr)


@contextlib.asynccontextmanager
async def responder() -> AsyncIterator[tuple[Responder, tuple[str, int]]]:
    transport, protocol = await asyncio.get_running_loop().create_datagram_endpoint(
        Responder, local_addr=("127.0.0.1", 0)
    )
    try:
        host, port = transport.get_extra_info("sockname")[:2]
        yield protocol, (host, port)
    finally:
        transport.close()


async def test_a_path_that_was_down_is_told_back_at_its_first_answer() -> None:
    told: list[float] = []
    async with responder() as (stun, address):
        probe = SilenceProbe(lambda: told.append(time.monotonic()), silence=SILENCE,
                             interval=INTERVAL)  # fmt: skip
        try:
            stun.answering = False  # the path is down
            probe.datagram(time.monotonic(), address)  # the last datagram before the outage
            await wait_for(lambda: stun.requests >= 5, limit=10.0)  # probing, unanswered
            assert told == [] and probe.paths_back == 0
            stun.answering = True  # back
            back = time.monotonic()
            await wait_for(lambda: told != [], limit=10.0)
            assert told[0] >= back and probe.paths_back == 1
            sent = probe.probes
            await asyncio.sleep(10 * INTERVAL)
            assert probe.probes == sent and told == told[:1]  # it stopped, told once
        finally:
            probe.close()


@pytest.mark.parametrize("lost", [0, MIN_UNANSWERED - 1], ids=["none lost", "first lost"])
async def test_a_silence_on_a_working_path_is_the_senders_pause(lost: int) -> None:
    """Also when the first probes are lost: too few for an outage, loss on a working path."""
    told: list[int] = []
    async with responder() as (stun, address):
        stun.lose_first = lost
        probe = SilenceProbe(lambda: told.append(1), silence=SILENCE, interval=INTERVAL)
        try:
            probe.datagram(time.monotonic(), address)
            await wait_for(lambda: stun.requests >= lost + 1, limit=10.0)
            await asyncio.sleep(20 * INTERVAL)
            # The first answer stopped the probing; the path was never down.
            sent = probe.probes
            await asyncio.sleep(20 * INTERVAL)
            assert told == [] and probe.paths_back == 0
            assert probe.probes == stun.requests == sent
        finally:
            probe.close()


async def test_a_datagram_ends_the_probing_and_arms_the_next_silence() -> None:
    told: list[int] = []
    async with responder() as (stun, address):
        stun.answering = False
        silence = 1.0  # long: a busy machine's late wake-up must not reach the next one
        probe = SilenceProbe(lambda: told.append(1), silence=silence, interval=INTERVAL)
        try:
            probe.datagram(time.monotonic(), address)
            await wait_for(lambda: stun.requests >= 3, limit=10.0)
            probe.datagram(time.monotonic(), address)  # the sender's packet came first
            await asyncio.sleep(2 * INTERVAL)
            stopped = probe.probes
            await wait_for(lambda: stun.requests >= stopped, limit=10.0)  # (any in flight)
            await asyncio.sleep(silence / 5)
            # no probe before the next silence is due
            assert probe.probes == stun.requests == stopped
            await wait_for(lambda: stun.requests > stopped, limit=10.0)  # the next silence
            assert told == []
        finally:
            probe.close()
        sent = probe.probes
        # The last probe sent may still be on its way (a busy machine reads it late).
        await wait_for(lambda: stun.requests >= sent, limit=10.0)
        await asyncio.sleep(10 * INTERVAL)
        assert probe.probes == stun.requests == sent  # closed: nothing more


async def test_no_target_no_probe() -> None:
    async with responder() as (stun, _):
        probe = SilenceProbe(lambda: None, silence=SILENCE, interval=INTERVAL)
        probe.datagram(time.monotonic(), None)  # e.g. a host candidate's socket
        await asyncio.sleep(SILENCE + 10 * INTERVAL)
        assert stun.requests == 0 and probe.probes == 0
        probe.close()


async def test_the_batch_tells_its_handlers_once_a_silence(
    fake_transport: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The probe tells the handlers before the datagram that ends the silence; that datagram
    then tells nobody (the pipelines asked for the outage's tail once)."""
    monkeypatch.setattr(datagram_batch, "PATH_SILENCE", 0.3)
    async with responder() as (stun, address):
        # The batch probes a TURN client's socket's server: this socket stands in for one.
        monkeypatch.setattr(datagram_batch, "_first_hop", lambda *_: address)
        async with batch_on_a_socket(fake_transport) as (batch, _, sender, hooked):
            told: list[int] = []
            batch.add(fake_transport["receiver"], lambda packet, _ms: None,
                      on_path_back=lambda: told.append(1))  # fmt: skip
            stun.answering = False
            sender.sendto(rtp(0), hooked)
            await wait_for(lambda: stun.requests >= 3, limit=10.0)  # silent: probing
            stun.answering = True
            await wait_for(lambda: told == [1], limit=10.0)
            sender.sendto(rtp(1), hooked)  # the datagram that ends the silence
            await wait_for(lambda: batch.fast_packets == 2, limit=10.0)
            assert told == [1] and batch.probe.paths_back == 1
            batch.remove(fake_transport["receiver"])
            probed = batch.probe.probes
            await wait_for(lambda: stun.requests >= probed, limit=10.0)  # (any in flight)
            await asyncio.sleep(0.3 + 10 * 0.005)
            assert batch.probe.probes == stun.requests == probed  # removed: no more probing
