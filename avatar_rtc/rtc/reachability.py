"""Is the network back? Cheap probes of the path a media connection used.

While media is lost, a new connection is worth trying only once the network works again;
retransmission timers (TCP SYN, STUN checks) and a backoff of several seconds would otherwise
notice that late. :class:`ReachabilityMonitor` probes, every ``interval``:

- the WHEP server: a TCP connect to its host and port;
- the selected pair's first hop: through TURN, the TURN server (a STUN Binding request over
  UDP, or a TCP connect for TURN over TCP/TLS); directly, the peer's candidate (an
  unauthenticated Binding request, which an ICE agent answers with an error).

A refusal (TCP RST, ICMP port unreachable) from the TURN server means it is down (wait for it);
from the WHEP server's host or the peer's ICE port it means the network works and nothing
listens there any more: a new connection is worth trying at once (and when the WHEP server
keeps refusing, the loss is final: :class:`~avatar_rtc.rtc.reconnect.Reconnector` checks with
:func:`verdict`).
Targets that do not answer while the connection is known good (:meth:`ReachabilityMonitor.
validate`) are dropped: a probe that never answers must not hold reconnecting back.

When the only targets that fail are UDP ones that stay silent while a TCP one answers
(:attr:`ReachabilityMonitor.udp_blocked`), UDP is blocked on a network that works (a firewall
closed it mid-session): waiting for the UDP path would wait for ever, and a new connection
may go through TURN over TCP or TLS.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import struct
from dataclasses import dataclass
from typing import Literal
from urllib.parse import urlsplit

from ..tasks import cancel_and_wait
from .candidate_pair import SelectedPair
from .ice_servers import parse_ice_url

__all__ = [
    "BINDING_REQUEST",
    "ProbeTarget",
    "ReachabilityMonitor",
    "Verdict",
    "binding_request",
    "probe",
    "probe_targets",
    "verdict",
]

logger = logging.getLogger(__name__)

BINDING_REQUEST = 0x0001
_MAGIC_COOKIE = 0x2112A442
_STUN_RESEND = 0.2  # a lost probe datagram is resent within one probe

Verdict = Literal["answered", "refused", "silent"]


@dataclass(frozen=True)
class ProbeTarget:
    """One thing to probe. ``refused_is_up``: a refusal still proves the network works."""

    transport: Literal["tcp", "stun"]
    host: str
    port: int
    refused_is_up: bool
    label: str


def probe_targets(whep_url: str, pair: SelectedPair | None) -> list[ProbeTarget]:
    """What to probe for a connection to ``whep_url`` that used ``pair``."""
    targets: list[ProbeTarget] = []
    url = urlsplit(whep_url)
    if url.hostname:
        port = url.port or (443 if url.scheme == "https" else 80)
        # A refusal is a TCP RST from its host: the network works (see the module docstring).
        targets.append(ProbeTarget("tcp", url.hostname, port, True, "WHEP server"))
    if pair is None:
        return targets
    if pair.relay_url is not None:
        try:
            turn = parse_ice_url(pair.relay_url)
        except ValueError:
            return targets
        transport: Literal["tcp", "stun"] = "stun" if turn.transport == "udp" else "tcp"
        targets.append(ProbeTarget(transport, turn.host, turn.port, False, "TURN server"))
    else:
        host, port = pair.remote_address
        targets.append(ProbeTarget("stun", host, port, True, "peer"))
    return targets


def binding_request(transaction_id: bytes) -> bytes:
    """A STUN Binding request without attributes (RFC 8489): any STUN server answers it, an
    ICE agent with an error (no credentials); either answer proves the path."""
    return struct.pack("!HHI", BINDING_REQUEST, 0, _MAGIC_COOKIE) + transaction_id


async def probe(target: ProbeTarget, within: float) -> bool:
    """One probe of ``target``: True when it answered within ``within`` seconds (or refused,
    if that proves the path)."""
    result = await verdict(target, within)
    return result == "answered" or (result == "refused" and target.refused_is_up)


async def verdict(target: ProbeTarget, within: float) -> Verdict:
    """One probe of ``target``: it answered, refused (RST / port unreachable) or stayed silent
    (no answer within ``within`` seconds, or no route)."""
    try:
        async with asyncio.timeout(within):
            if target.transport == "tcp":
                return await _tcp_probe(target)
            return await _stun_probe(target)
    except TimeoutError:
        return "silent"


async def _tcp_probe(target: ProbeTarget) -> Verdict:
    try:
        _, writer = await asyncio.open_connection(target.host, target.port)
    except ConnectionRefusedError:
        return "refused"
    except OSError:
        return "silent"
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return "answered"


class _StunProbe(asyncio.DatagramProtocol):
    def __init__(self, transaction_id: bytes, answered: asyncio.Future[Verdict]) -> None:
        self._transaction_id = transaction_id
        self._answered = answered

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        # Any STUN answer (success or error) to our transaction: the peer heard us.
        if len(data) >= 20 and data[8:20] == self._transaction_id and not self._answered.done():
            self._answered.set_result("answered")

    def error_received(self, exc: Exception) -> None:
        if isinstance(exc, ConnectionRefusedError) and not self._answered.done():
            self._answered.set_result("refused")  # ICMP port unreachable: nothing listens there


async def _stun_probe(target: ProbeTarget) -> Verdict:
    loop = asyncio.get_running_loop()
    transaction_id = os.urandom(12)
    request = binding_request(transaction_id)
    answered: asyncio.Future[Verdict] = loop.create_future()
    try:
        transport, _ = await loop.create_datagram_endpoint(
            lambda: _StunProbe(transaction_id, answered), remote_addr=(target.host, target.port)
        )
    except OSError:
        return "silent"
    try:
        while True:
            transport.sendto(request)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(_STUN_RESEND):
                    return await asyncio.shield(answered)
    finally:
        transport.close()


class ReachabilityMonitor:
    """Probes ``targets`` in the background (see the module docstring).

    :attr:`down` is the latest verdict (all targets answered = up; ``None`` before the first
    one, ``False`` without targets); :meth:`came_back` is True once after a verdict went from
    down to up; :attr:`udp_blocked`: down, but only because UDP probes stay silent while a TCP
    one answers.
    """

    def __init__(
        self, targets: list[ProbeTarget], *, interval: float = 0.25, timeout: float = 0.5
    ) -> None:
        self.targets = list(targets)
        self.interval = interval
        self.timeout = timeout
        self.down: bool | None = False if not self.targets else None
        self.udp_blocked = False
        self._back = False
        self._task: asyncio.Task[None] | None = None

    async def validate(self) -> None:
        """Keep only the targets that answer now (call while the connection is known good)."""
        results = await asyncio.gather(*(probe(t, self.timeout) for t in self.targets))
        silent = [t for t, ok in zip(self.targets, results, strict=True) if not ok]
        for target in silent:
            logger.info("%s %s:%d does not answer probes: not used", target.label,
                        target.host, target.port)  # fmt: skip
        self.targets = [t for t, ok in zip(self.targets, results, strict=True) if ok]
        self.down = False if not self.targets else None

    async def check(self) -> bool:
        """Probe every target once; updates :attr:`down` (and the came-back flag)."""
        verdicts = await asyncio.gather(*(verdict(t, self.timeout) for t in self.targets))
        ok = [
            v == "answered" or (v == "refused" and t.refused_is_up)
            for t, v in zip(self.targets, verdicts, strict=True)
        ]
        up = all(ok)
        if up and self.down:
            self._back = True
        self.down = not up
        failed = [(t, v) for t, v, fine in zip(self.targets, verdicts, ok, strict=True) if not fine]
        self.udp_blocked = (
            bool(failed)
            and all(t.transport == "stun" and v == "silent" for t, v in failed)
            and any(t.transport == "tcp" and fine for t, fine in zip(self.targets, ok, strict=True))
        )
        return up

    def came_back(self) -> bool:
        """True once after the network went from down to up (consumes the flag)."""
        back, self._back = self._back, False
        return back

    def start(self) -> None:
        if self._task is None and self.targets:
            self._task = asyncio.ensure_future(self._run())

    async def stop(self) -> None:
        task, self._task = self._task, None
        self.down = False if not self.targets else None
        self.udp_blocked = False
        self._back = False
        await cancel_and_wait(task)

    async def _run(self) -> None:
        while True:
            try:
                await self.check()
            except Exception:  # a probe bug must not stall reconnecting: count it as down
                logger.exception("reachability probe failed")
                self.down = True
                self.udp_blocked = False
            await asyncio.sleep(self.interval)
