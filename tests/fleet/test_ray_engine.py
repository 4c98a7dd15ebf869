"""RayEngine's start: an address where no cluster answers fails in seconds, a stuck start does
not hold the process (the CLI hung for minutes, deaf to Ctrl-C, on such an address), and the
thread that started Ray outlives the start (Ray's processes die with it: PR_SET_PDEATHSIG).
The Ray acceptance run (tests/fleet/test_fleet_cmd.py) starts a real local Ray through it."""

from __future__ import annotations

import asyncio
import socket
import threading

import pytest

from avatar_rtc.errors import NetworkError
from avatar_rtc.fleet.ray_engine import RayEngine, _call_in_keeper


def _free_port() -> int:
    with socket.socket() as sock:  # free a moment ago: nothing listens
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.parametrize("scheme", ["", "ray://"])
async def test_an_address_where_nothing_listens_is_a_network_error(scheme: str) -> None:
    address = f"{scheme}127.0.0.1:{_free_port()}"
    engine = RayEngine(address)
    with pytest.raises(NetworkError, match="no Ray cluster answers at"):  # (Ray or not)
        await engine.start()


def _keeper() -> threading.Thread:
    (thread,) = [t for t in threading.enumerate() if t.name == "avatar-rtc-ray-init"]
    return thread


async def test_a_blocked_start_is_left_behind_on_cancellation() -> None:
    unblock, stopped = threading.Event(), threading.Event()
    wait = asyncio.ensure_future(_call_in_keeper(unblock.wait, stopped))
    await asyncio.sleep(0.05)
    wait.cancel()
    with pytest.raises(asyncio.CancelledError):
        await wait
    thread = _keeper()
    assert thread.daemon and thread.is_alive()  # still blocked, and no reason to wait at exit
    unblock.set()
    stopped.set()
    thread.join(5)
    assert not thread.is_alive()


async def test_the_starting_thread_lives_until_released() -> None:
    started, stopped = [], threading.Event()
    await _call_in_keeper(lambda: started.append(True), stopped)
    thread = _keeper()
    assert started == [True] and thread.is_alive()  # what it started lives on
    stopped.set()
    thread.join(5)
    assert not thread.is_alive()


async def test_what_the_thread_raises_reaches_the_caller() -> None:
    def fail() -> None:
        raise ValueError("bad address")

    with pytest.raises(ValueError, match="bad address"):
        await _call_in_keeper(fail, threading.Event())  # (and the thread ends)
