"""A UDP relay that adds a fixed delay, both ways (the kernel here has no netem).

    python -m tests.interop.impairment.delay_relay --target 127.0.0.1:3478 \
        --listen 3479 --listen 3480 --delay-ms 50

Each ``--listen`` port stands in front of ``--target`` (coturn): a datagram from a client is
sent on, ``delay`` later, from a socket of that client's own (coturn sees one 5-tuple per
client, so allocations stay apart), and coturn's answers go back to the client ``delay``
later too: the round trip grows by ``2 * delay``. Order is kept (one fixed delay), unless
``--jitter-ms J`` adds each datagram a delay of its own, uniform in 0..J ms: then later ones
overtake earlier ones, as on a jittery path. One port per receiver lets ``impair.py`` cap or
drop each receiver's traffic by that port.

Prints ``READY`` once listening; runs until SIGTERM or its parent dies.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import signal
from collections.abc import Callable
from typing import cast

Address = tuple[str, int]


class _Upstream(asyncio.DatagramProtocol):
    """One client's socket towards the target: answers go back through ``front``."""

    def __init__(self, front: _Front, client: Address) -> None:
        self.front, self.client = front, client
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: Address) -> None:
        self.front.later(self.front.send_back, data, self.client)


class _Front(asyncio.DatagramProtocol):
    """The listening port clients talk to."""

    def __init__(self, target: Address, delay: float, jitter: float = 0.0) -> None:
        self.target, self.delay, self.jitter = target, delay, jitter
        self.transport: asyncio.DatagramTransport | None = None
        self.upstreams: dict[Address, _Upstream] = {}
        self.pending: dict[Address, list[bytes]] = {}  # while the client's socket opens
        self.opening: set[asyncio.Task[None]] = set()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: Address) -> None:
        self.later(self.send_on, data, addr)

    def later(self, send: Callable[[bytes, Address], None], data: bytes, addr: Address) -> None:
        loop = asyncio.get_running_loop()
        delay = self.delay + (random.uniform(0.0, self.jitter) if self.jitter else 0.0)
        if delay > 0:
            loop.call_later(delay, send, data, addr)  # the loop keeps a heap of due times
        else:
            send(data, addr)

    def send_back(self, data: bytes, client: Address) -> None:
        if self.transport is not None:
            self.transport.sendto(data, client)

    def send_on(self, data: bytes, client: Address) -> None:
        upstream = self.upstreams.get(client)
        if upstream is not None and upstream.transport is not None:
            upstream.transport.sendto(data)
            return
        queued = self.pending.setdefault(client, [])
        queued.append(data)
        if len(queued) == 1:
            task = asyncio.ensure_future(self._open(client))
            self.opening.add(task)  # the loop keeps only weak references
            task.add_done_callback(self.opening.discard)

    async def _open(self, client: Address) -> None:
        loop = asyncio.get_running_loop()
        _, upstream = await loop.create_datagram_endpoint(
            lambda: _Upstream(self, client), remote_addr=self.target
        )
        self.upstreams[client] = upstream
        assert upstream.transport is not None
        for data in self.pending.pop(client, []):
            upstream.transport.sendto(data)


async def serve(
    host: str, ports: list[int], target: Address, delay: float, jitter: float = 0.0
) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    fronts = [
        await loop.create_datagram_endpoint(
            lambda: _Front(target, delay, jitter), local_addr=(host, p)
        )
        for p in ports
    ]
    print("READY", flush=True)
    parent = os.getppid()
    while not stop.is_set() and os.getppid() == parent:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 1.0)
    for transport, front in fronts:
        for upstream in front.upstreams.values():
            if upstream.transport is not None:
                upstream.transport.close()
        transport.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--listen", type=int, action="append", required=True)
    parser.add_argument("--target", required=True, help="HOST:PORT")
    parser.add_argument("--delay-ms", type=float, default=0.0)
    parser.add_argument("--jitter-ms", type=float, default=0.0, help="0..J ms more, at random")
    args = parser.parse_args()
    host, port = args.target.rsplit(":", 1)
    target = (host, int(port))
    asyncio.run(serve(args.host, args.listen, target, args.delay_ms / 1000, args.jitter_ms / 1000))


if __name__ == "__main__":
    main()
