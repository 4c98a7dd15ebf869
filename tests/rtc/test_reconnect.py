"""Reconnector: when a connection is replaced, when it is not, and how it gives up.

The connections are fakes (connect/close/state, no WebRTC) so every path runs in well under
a second; the network probes are real (a TCP listener on 127.0.0.1 that the test stops and
starts again). The real thing, end to end: tests/test_session_reconnect.py and
tests/rtc/test_reconnect_outage.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import itertools
import socket
import time
from collections.abc import AsyncIterator, Callable
from typing import Any, cast

import pytest

from avatar_rtc.errors import (
    AvatarRTCError,
    ConnectError,
    MediaLostError,
    NetworkError,
    ServerError,
    ServiceUnreachableError,
    WhepNotFoundError,
)
from avatar_rtc.rtc.connection import MediaConnection
from avatar_rtc.rtc.reconnect import Outage, Reconnector, ReconnectPolicy
from tests.support import wait_until

FAST = ReconnectPolicy(
    media_timeout=0.2, initial_delay=0.05, max_delay=0.2, jitter=0.0, max_attempts=4,
    attempt_timeout=2.0, probe_interval=0.05,
)  # fmt: skip
NO_PROBES = "whep:endpoint"  # no host: nothing to probe, the network always counts as up


class Net:
    """Media of every fake connection: while ``flowing``, each look finds a packet just in."""

    def __init__(self) -> None:
        self.flowing = True
        self.last: float | None = None

    def last_activity(self) -> float | None:
        if self.flowing:
            self.last = time.monotonic()
        return self.last


class FakeConnection:
    """What Reconnector uses of a MediaConnection."""

    def __init__(self, net: Net, log: list[tuple[str, int]], number: int, whep_url: str,
                 fail: BaseException | None, hang: bool) -> None:  # fmt: skip
        self.net, self.log, self.number = net, log, number
        self.whep_url = whep_url
        self.connect_timeout = 20.0
        self.on_state_change: Any = None
        self.fail, self.hang = fail, hang
        self.closed = False
        self.started: float | None = None
        # ICE restart outcomes, in order: "media" (restarted, media flows again), "silent"
        # (restarted, no media), "refused" (the server does not restart ICE), or an error
        self.restarts: list[str | BaseException] = []
        self.can_restart_ice = False

    async def connect(self) -> None:
        self.log.append(("connect", self.number))
        self.started = time.monotonic()
        if self.hang:
            await asyncio.sleep(3600)
        if self.fail is not None:
            raise self.fail
        self.net.flowing = True

    async def close(self, *, pc_wait: float = 5.0) -> None:
        self.log.append(("close", self.number))
        self.closed = True

    async def restart_ice(self) -> bool:
        self.log.append(("restart", self.number))
        outcome = self.restarts.pop(0)
        if isinstance(outcome, BaseException):
            raise outcome
        self.net.flowing = outcome == "media"
        return outcome != "refused"

    def selected_pair(self) -> None:
        return None

    def die(self, state: str = "closed") -> None:
        self.net.flowing = False
        self.on_state_change(state)


class Harness:
    def __init__(self, policy: ReconnectPolicy = FAST, whep_url: str = NO_PROBES) -> None:
        self.net = Net()
        self.log: list[tuple[str, int]] = []
        self.made: list[FakeConnection] = []
        self.failures: list[BaseException | None] = []  # for connections 2, 3, ...
        self.hang = False
        self.whep_url = whep_url
        self.events: list[tuple[str, Outage | AvatarRTCError, float]] = []
        self.on_event: Callable[[str], None] | None = None  # called after each event
        self.reconnector = Reconnector(
            self._new, policy=policy, last_activity=self.net.last_activity,
            on_reconnecting=lambda o: self._event("reconnecting", o),
            on_reconnected=lambda o: self._event("reconnected", o),
            on_failed=lambda e: self._event("failed", e),
        )  # fmt: skip

    def _event(self, name: str, data: Outage | AvatarRTCError) -> None:
        self.events.append((name, data, time.monotonic()))
        if self.on_event is not None:
            self.on_event(name)

    def _new(self) -> MediaConnection:
        number = len(self.made) + 1
        fail = self.failures.pop(0) if number > 1 and self.failures else None
        connection = FakeConnection(self.net, self.log, number, self.whep_url, fail,
                                    self.hang and number > 1)  # fmt: skip
        self.made.append(connection)
        return cast(MediaConnection, connection)

    def names(self) -> list[str]:
        return [name for name, _, _ in self.events]

    def event(self, name: str) -> Any:
        return next(data for n, data, _ in self.events if n == name)


@contextlib.asynccontextmanager
async def running(harness: Harness) -> AsyncIterator[Harness]:
    await harness.reconnector.connect()
    try:
        yield harness
    finally:
        await harness.reconnector.close()


async def test_media_back_on_the_same_connection_needs_no_new_one() -> None:
    async with running(Harness()) as h:
        await asyncio.sleep(0.05)
        h.net.flowing = False  # silence: the watchdog fires after media_timeout
        await wait_until(lambda: h.names() == ["reconnecting"], 2)
        h.net.flowing = True
        await wait_until(lambda: "reconnected" in h.names(), 2)
        outage = h.event("reconnected")
        assert outage.reason.startswith("no media for")
        assert not outage.replaced and outage.attempts == 0 and outage.seconds >= 0.2
        assert len(h.made) == 1 and h.log == [("connect", 1)]
        stats = h.reconnector.stats()
        assert (stats.outages, stats.reconnects, stats.attempts) == (1, 1, 0)
        assert stats.outage_seconds == pytest.approx(outage.seconds)


async def test_a_dead_connection_is_replaced_the_old_resource_deleted_first() -> None:
    async with running(Harness()) as h:
        h.made[0].die()
        await wait_until(lambda: "reconnected" in h.names(), 2)
        outage = h.event("reconnected")
        assert outage.reason == "media connection closed"
        assert outage.replaced and outage.attempts == 1
        # DELETE (close) of the old one before the new POST (connect): one viewer per stream.
        assert h.log == [("connect", 1), ("close", 1), ("connect", 2)]
        assert h.reconnector.connection is cast(MediaConnection, h.made[1])
        assert h.made[1].connect_timeout == FAST.attempt_timeout
        # The replacement is watched in turn.
        h.made[1].die("failed")
        await wait_until(lambda: h.names().count("reconnected") == 2, 2)
        assert h.reconnector.stats().reconnects == 2


async def test_the_service_session_gone_is_final_at_once() -> None:
    # A second attempt would come 30 s after the first: "failed" before it is "at once".
    policy = dataclasses.replace(FAST, multiplier=600.0, max_delay=30.0)
    h = Harness(policy)
    h.failures = [WhepNotFoundError("WHEP POST failed with HTTP 404", status=404)]
    async with running(h):
        h.made[0].die()
        await wait_until(lambda: "failed" in h.names(), 20)
        error = h.event("failed")
        assert isinstance(error, WhepNotFoundError)
        assert h.events[-1][2] - h.events[0][2] < policy.delay(1)
        assert len(h.made) == 2  # no second attempt
        assert not h.reconnector.stats().reconnecting


async def test_gives_up_after_max_attempts_with_backoff_between_them() -> None:
    h = Harness()
    h.failures = [ConnectError(f"attempt {n} refused") for n in range(FAST.max_attempts)]
    async with running(h):
        h.made[0].die()
        await wait_until(lambda: "failed" in h.names(), 5)
    error = h.event("failed")
    assert isinstance(error, MediaLostError)
    assert f"{FAST.max_attempts} connection attempts" in str(error)
    assert "attempt 3 refused" in str(error)
    stats = h.reconnector.stats()
    assert stats.attempts == FAST.max_attempts and stats.reconnects == 0
    assert stats.outage_seconds > 0 and stats.last_error is not None
    # Each attempt waited its backoff slot (jitter off: 0.05, 0.1, 0.2, 0.2 s).
    assert h.names() == ["reconnecting", "failed"] and len(h.made) == FAST.max_attempts + 1
    starts = [c.started for c in h.made[1:]]
    assert all(t is not None for t in starts)
    waits = [b - a for a, b in itertools.pairwise(starts)]  # type: ignore[operator]
    assert all(w >= FAST.delay(n + 1) - 0.01 for n, w in enumerate(waits)), waits


async def test_close_during_an_attempt_closes_the_new_connection() -> None:
    h = Harness()
    h.hang = True
    await h.reconnector.connect()
    h.made[0].die()
    await wait_until(lambda: len(h.made) == 2, 2)
    await h.reconnector.close()
    assert h.made[1].closed and h.made[0].closed
    assert "failed" not in h.names()


async def test_reconnecting_off_makes_the_first_death_final() -> None:
    policy = dataclasses.replace(FAST, enabled=False)
    async with running(Harness(policy)) as h:
        h.net.flowing = False
        await asyncio.sleep(3 * policy.media_timeout)
        assert h.names() == []  # silence alone is not watched when off
        h.made[0].on_state_change("failed")
        await wait_until(lambda: "failed" in h.names(), 2)
        assert isinstance(h.event("failed"), MediaLostError)
        assert h.names() == ["failed"] and len(h.made) == 1


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _silent_listener(port: int) -> tuple[socket.socket, socket.socket]:
    """A listener on ``port`` whose accept queue is full: Linux drops further SYNs, so a
    connect times out as on a dead network (no refusal). Returns it and the queued client."""
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", port))
    listener.listen(0)
    return listener, socket.create_connection(("127.0.0.1", port), timeout=1)


async def test_no_attempt_while_the_network_is_down_one_soon_after_it_is_back() -> None:
    port = _free_port()
    server = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", port)
    # The first slot passes while the network is down; the next is 30 s on. An attempt
    # before that is the probe's doing, not the backoff's.
    policy = dataclasses.replace(FAST, max_attempts=10, multiplier=600.0, max_delay=30.0)
    h = Harness(policy, whep_url=f"http://127.0.0.1:{port}/whep")
    async with running(h):
        await asyncio.sleep(0.3)  # the probe target is validated while all is well
        server.close()  # and in the same step (no probe between) the network goes silent
        silent = _silent_listener(port)
        await server.wait_closed()
        h.made[0].die()
        await wait_until(lambda: h.names() == ["reconnecting"], 2)
        await asyncio.sleep(1.0)  # the first slot falls here: without the probe, an attempt
        assert len(h.made) == 1, h.log  # nothing torn down, nothing tried
        for sock in silent:
            sock.close()
        server = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", port)
        t_back = time.monotonic()
        await wait_until(lambda: "reconnected" in h.names(), 20)
        assert h.events[-1][2] - t_back < policy.delay(1) / 2
        assert h.event("reconnected").replaced
    server.close()
    await server.wait_closed()


async def test_closed_as_media_comes_back_it_closes() -> None:
    """close() right after "reconnected": the reconnect task is still stopping the network
    probes then. Its cancellation was swallowed there, the task went back to watching media
    and close() waited for it for ever (a CI run hung for 120 s)."""
    port = _free_port()
    server = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", port)
    h = Harness(whep_url=f"http://127.0.0.1:{port}/whep")
    closing: list[asyncio.Task[None]] = []

    def close_when_back(name: str) -> None:
        if name == "reconnected":  # runs before the reconnect task's probes have stopped
            closing.append(asyncio.ensure_future(h.reconnector.close()))

    h.on_event = close_when_back
    try:
        await h.reconnector.connect()
        await asyncio.sleep(0.2)  # the probes are validated and running
        h.made[0].die()
        await wait_until(lambda: closing, 5)
        await asyncio.wait(closing)  # no bound of ours: pytest-timeout guards the hang
        assert closing[0].exception() is None
        assert h.made[1].closed and h.names() == ["reconnecting", "reconnected"]
    finally:
        server.close()
        await server.wait_closed()


async def test_a_refusing_whep_server_is_final_within_about_a_second() -> None:
    """The sender killed: its host answers the POST with a TCP RST. The network works, so
    each slot tries at once; ``refused_attempts`` refusals in a row are final."""
    port = _free_port()  # nothing listens: connections refused
    # The backoff would wait 30 s before the second attempt; refusals are 0.2 s apart.
    policy = dataclasses.replace(
        FAST, max_attempts=10, initial_delay=0.2, multiplier=600.0, max_delay=30.0
    )
    h = Harness(policy, whep_url=f"http://127.0.0.1:{port}/whep")
    h.failures = [NetworkError("WHEP POST: request failed: refused")] * 10
    async with running(h):
        t_dead = time.monotonic()
        h.made[0].die()
        await wait_until(lambda: "failed" in h.names(), 20)
        took = h.events[-1][2] - t_dead
    error = h.event("failed")
    assert isinstance(error, ServiceUnreachableError) and isinstance(error, MediaLostError)
    assert error.origin == f"http://127.0.0.1:{port}"
    assert f"WHEP server http://127.0.0.1:{port} refuses connections" in str(error)
    assert len(h.made) == 1 + policy.refused_attempts
    # Three slots of initial_delay, not the backoff's.
    assert policy.refused_attempts * policy.initial_delay <= took < policy.delay(1), took


async def test_a_refusing_whep_server_that_comes_back_is_reconnected() -> None:
    port = _free_port()
    h = Harness(dataclasses.replace(FAST, max_attempts=10), whep_url=f"http://127.0.0.1:{port}/w")
    h.failures = [NetworkError("WHEP POST: request failed: refused")] * 2  # then it is back
    async with running(h):
        h.made[0].die()
        await wait_until(lambda: "reconnected" in h.names(), 3)
    assert h.event("reconnected").attempts == 3 and h.names() == ["reconnecting", "reconnected"]


async def test_timeouts_are_not_refusals() -> None:
    """A POST that fails while the WHEP server's host is silent (network down) is not counted
    as a refusal: only ``max_attempts`` ends it, with a plain MediaLostError."""
    port = _free_port()
    silent = _silent_listener(port)
    try:
        h = Harness(dataclasses.replace(FAST, max_attempts=4), whep_url=NO_PROBES)
        h.failures = [NetworkError("WHEP POST: request failed: timeout")] * 4
        async with running(h):
            h.made[0].die()
            await wait_until(lambda: "failed" in h.names(), 5)
        error = h.event("failed")
        assert type(error) is MediaLostError and len(h.made) == 5
        silent_host = Harness(whep_url=f"http://127.0.0.1:{port}/w")
        assert not await silent_host.reconnector._refused(NetworkError("timeout"))
    finally:
        for sock in silent:
            sock.close()


async def test_whep_404_makes_a_new_service_session_when_asked() -> None:
    renewed: list[float] = []

    async def renew() -> None:
        renewed.append(time.monotonic())

    h = Harness(dataclasses.replace(FAST, new_session_on_not_found=True))
    h.failures = [WhepNotFoundError("WHEP POST failed with HTTP 404", status=404)]
    h.reconnector._renew = renew
    async with running(h):
        h.made[0].die()
        await wait_until(lambda: "reconnected" in h.names(), 2)
    outage = h.event("reconnected")
    assert outage.new_session and outage.replaced and outage.attempts == 2
    assert len(renewed) == 1 and len(h.made) == 3


async def test_a_failed_renewal_is_retried_like_an_attempt() -> None:
    """The Control API answers 5xx while creating the new session: the next slot tries again
    (POST 404 again, renew again), it is not final."""
    calls: list[int] = []

    async def renew() -> None:
        calls.append(len(calls))
        if len(calls) == 1:
            raise ServerError("create failed with HTTP 503", status=503)

    h = Harness(dataclasses.replace(FAST, new_session_on_not_found=True))
    gone = WhepNotFoundError("WHEP POST failed with HTTP 404", status=404)
    h.failures = [gone, gone]
    h.reconnector._renew = renew
    async with running(h):
        h.made[0].die()
        await wait_until(lambda: "reconnected" in h.names(), 2)
    assert len(calls) == 2 and h.event("reconnected").new_session
    assert h.names() == ["reconnecting", "reconnected"]


async def _outage(h: Harness, number: int, *outcomes: str | BaseException) -> Outage:
    """Connection ``number`` takes PATCH with these ICE restart outcomes; its media stops;
    returns the outage once media is back."""
    connection = h.made[number - 1]
    connection.can_restart_ice = True
    connection.restarts = list(outcomes)
    await asyncio.sleep(0.05)  # media seen first: the watchdog waits for it
    h.net.flowing = False
    await wait_until(lambda: h.names().count("reconnected") == number, 4)
    return cast(Outage, [data for name, data, _ in h.events if name == "reconnected"][-1])


async def test_an_ice_restart_comes_first_where_the_server_takes_patch() -> None:
    async with running(Harness()) as h:
        outage = await _outage(h, 1, "media")
        assert outage.ice_restarted and not outage.replaced and outage.attempts == 1
        assert h.log == [("connect", 1), ("restart", 1)]  # no DELETE, no new POST
        stats = h.reconnector.stats()
        assert (stats.reconnects, stats.attempts, stats.ice_restarts) == (1, 1, 1)
        assert h.reconnector.connection is cast(MediaConnection, h.made[0])


async def test_a_refused_ice_restart_means_a_new_connection_now_and_no_restart_later() -> None:
    async with running(Harness()) as h:
        outage = await _outage(h, 1, "refused")
        assert outage.replaced and not outage.ice_restarted and outage.attempts == 2
        assert h.log == [("connect", 1), ("restart", 1), ("close", 1), ("connect", 2)]
        await _outage(h, 2, "media")  # (it would say so) but the server refused once
        assert h.log[-2:] == [("close", 2), ("connect", 3)]
        assert h.reconnector.stats().ice_restarts == 0


@pytest.mark.parametrize(
    "failure", [ConnectError("ICE restart failed: ICE negotiation failed"), "silent"]
)
async def test_a_failed_ice_restart_falls_back_to_a_new_connection(
    failure: str | BaseException,
) -> None:
    async with running(Harness()) as h:
        outage = await _outage(h, 1, failure)
        assert outage.replaced and not outage.ice_restarted
        assert h.log == [("connect", 1), ("restart", 1), ("close", 1), ("connect", 2)]
        assert "ICE restart" in (h.reconnector.stats().last_error or "") or failure == "silent"
        # A failure is not a refusal: the next connection's restart is tried.
        assert (await _outage(h, 2, "media")).ice_restarted
        assert h.log[-1] == ("restart", 2)


async def test_ice_restart_off_in_the_policy() -> None:
    async with running(Harness(dataclasses.replace(FAST, ice_restart=False))) as h:
        assert (await _outage(h, 1, "media")).replaced
        assert h.log == [("connect", 1), ("close", 1), ("connect", 2)]
