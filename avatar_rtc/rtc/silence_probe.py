"""Is the path back before the sender's next packet says so? STUN probes during a silence.

After an outage the first datagram back is the sender's next packet: audio comes every 20 ms,
so on average half that after the network came back. Until then nothing tells the receive
pipelines to NACK the outage's tail (``receiver.ReceivePipeline.on_path_back``).

While the transport has been silent for ``silence`` seconds, :class:`SilenceProbe` sends a
STUN Binding request to the path's first hop (the TURN server: the production path is always
relayed) every ``interval``, from a socket of its own, each with a transaction ID of its own:

- the first request answered: the path works, the sender is quiet (a pause, an outage further
  on): nothing to tell; probing stops until the next silence;
- a later one answered while at least ``MIN_UNANSWERED`` earlier ones were not: the path was
  down and is back; ``on_back()`` is called (before the sender's next packet, by about half
  its interval). Fewer unanswered ones are loss on a working path, read as a pause: on_back
  would make video guess an outage's tail and ask for a keyframe that nothing lost;
- a datagram on the media path, ``give_up`` seconds of probing, or :meth:`close` end it too.

A STUN server answers a Binding request without state (RFC 8489); a 20-byte request every
5 ms is 200 datagrams, ~77 kbit/s with IP and UDP headers, a second toward the TURN server, for
the silence only (at most ``give_up`` seconds of it). In steady state the cost is one timer
callback per ``silence`` seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Callable

from .reachability import binding_request

__all__ = ["SilenceProbe"]

logger = logging.getLogger(__name__)

INTERVAL = 0.005  # between probes: the path's return is known within this (plus a round trip)
GIVE_UP = 30.0  # seconds of probing; longer outages are the reconnector's (it probes too)
# Unanswered probes before an answered one that mean "the path was down": at 5 % loss each
# way (0.0975 a round trip), the first three lost on a working path is one pause in ~1,100.
MIN_UNANSWERED = 3

Address = tuple[str, int]


class _Answers(asyncio.DatagramProtocol):
    """Collects the transaction IDs of STUN responses (success or error: either was heard)."""

    def __init__(self, sent: dict[bytes, int], answered: asyncio.Future[int]) -> None:
        self._sent = sent
        self._answered = answered

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        index = self._sent.get(data[8:20]) if len(data) >= 20 else None
        if index is not None and not self._answered.done():
            self._answered.set_result(index)

    def error_received(self, exc: Exception) -> None:
        pass  # ICMP unreachable while the path is down: keep probing


class SilenceProbe:
    """See the module docstring. Use on the event loop's thread."""

    def __init__(
        self,
        on_back: Callable[[], None],
        *,
        silence: float,
        interval: float = INTERVAL,
        give_up: float = GIVE_UP,
    ) -> None:
        self._on_back = on_back
        self._silence = silence
        self._interval = interval
        self._give_up = give_up
        self._last = time.monotonic()
        self._target: Address | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        # counters (tests, diagnostics)
        self.probes = 0
        self.paths_back = 0  # silences that ended with a probe answered after unanswered ones

    def datagram(self, now: float, target: Address | None) -> None:
        """A datagram arrived (``now``: ``time.monotonic()``); ``target``: the first hop to
        probe in the next silence (None: do not probe). Cheap: called per wake-up."""
        self._last = now
        self._target = target
        if self._task is not None:  # the path told by itself
            self._task.cancel()
            self._task = None
        if self._timer is None and target is not None and not self._closed:
            self._timer = asyncio.get_running_loop().call_later(self._silence, self._check)

    def close(self) -> None:
        self._closed = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._task is not None:
            self._task.cancel()
            self._task = None

    def _check(self) -> None:
        self._timer = None
        target = self._target
        if self._closed or target is None:  # (no task runs: a datagram ended it, or it ended)
            return
        wait = self._last + self._silence - time.monotonic()
        if wait > 0:  # a datagram came since: wait for its silence
            self._timer = asyncio.get_running_loop().call_later(wait, self._check)
            return
        self._task = asyncio.get_running_loop().create_task(self._probe(target))

    async def _probe(self, target: Address) -> None:
        loop = asyncio.get_running_loop()
        sent: dict[bytes, int] = {}
        answered: asyncio.Future[int] = loop.create_future()
        try:
            transport, _ = await loop.create_datagram_endpoint(
                lambda: _Answers(sent, answered), remote_addr=target
            )
        except OSError as exc:
            logger.debug("silence probe: no socket to %s:%d: %s", *target, exc)
            return
        try:
            deadline = loop.time() + self._give_up
            while loop.time() < deadline:
                transaction_id = os.urandom(12)
                sent[transaction_id] = len(sent)
                transport.sendto(binding_request(transaction_id))
                self.probes += 1
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self._interval):
                        index = await asyncio.shield(answered)
                        if index >= MIN_UNANSWERED:  # unanswered before it: down, now back
                            self.paths_back += 1
                            logger.debug("silence probe: path back (%d probes)", len(sent))
                            self._on_back()
                        return
        finally:
            transport.close()
            if self._task is asyncio.current_task():
                self._task = None
