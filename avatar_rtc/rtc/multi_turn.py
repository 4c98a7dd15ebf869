"""Gather relay candidates from *every* TURN URL at once, like a browser.

aiortc 1.16 keeps only the first TURN URL (``rtcicetransport.connection_kwargs``), so with
the avatar service's four URLs a blocked ``turn:H:80?transport=udp`` means no candidate at
all. :class:`MultiTurnConnection` is an ``aioice.Connection`` whose gathering

- binds host candidates on the pinned ``host_addresses`` (policy ``all`` only),
- queries every STUN server and allocates on every TURN URL **concurrently**,
- returns when everything finished, or ``relay_grace`` after the first relay candidate
  (so one dead transport costs at most the grace, not a full timeout), or at
  ``gather_timeout`` — whichever comes first. Unfinished allocations are cancelled (aioice
  closes their sockets).

Why a grace and not "first candidate wins": on a healthy network all transports of one
TURN server answer within a few round trips of each other, so 300 ms keeps the preferred
UDP relay (and its siblings as ICE fallbacks) while a blocked transport is cut off quickly.
Gathering ends before the offer is sent (a WHEP trickle PATCH only repeats those candidates),
so this is the only place to trade completeness for time.

After ICE nominated a pair, the relay allocations that were not selected are released
(REFRESH lifetime 0), so a session does not hold four allocations on the TURN server — but
only once the peer has sent us media (DTLS, RTP or RTCP) and ``RELEASE_SETTLE`` more seconds
went by, and never one that carried media: aioice (and any peer with aggressive nomination,
RFC 8445) may pick another of the nominated pairs than we did, and sends its media *to that
relay*. Releasing it on our choice alone cut such a session off with 0 packets.

It can also restart ICE in place (:meth:`MultiTurnConnection.restart`, RFC 8445 section 9;
aioice cannot): new credentials and, for the WHEP player, candidates gathered again on new
sockets (a TURN server that restarted lost our allocations). The pair nominated before keeps
carrying what comes until the new checks nominate another; then the old sockets are closed.

It is installed per peer connection by :func:`install` (a class swap of the connection aiortc
just created, before gathering) — no process-global patch. aioice's private state is reached
only through ``aiortc_seam``.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import socket
import ssl
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import aioice.ice
from aioice import Candidate, Connection, stun, turn
from aioice.candidate import candidate_foundation, candidate_priority

from ..tasks import cancel_and_wait, wait_ended
from . import aiortc_seam as seam
from .candidate_pair import RelayTransport, SelectedPair
from .ice_servers import IceServer, parse_ice_url

__all__ = ["GatherReport", "MultiTurnConnection", "TurnEndpoint", "install", "split_servers"]

logger = logging.getLogger(__name__)

# Local preference of relay candidates by how the TURN server is reached (UDP best, like
# libwebrtc); the URL's position breaks ties so the service's order is kept.
_TRANSPORT_RANK: dict[RelayTransport, int] = {"udp": 0, "tcp": 1, "tls": 2}

# How long the unused relays are kept after the peer's first media (the peer may still switch
# pairs while the last checks complete), and how long we wait for that media at most.
RELEASE_SETTLE = 2.0
_MEDIA_EVIDENCE_TIMEOUT = 30.0


class LocalProtocol(aioice.ice.StunProtocol):
    """The protocol of one local candidate (host or relay); notes whether the peer sent media
    to it."""

    def __init__(self, receiver: Connection, on_media: Callable[[], None]) -> None:
        super().__init__(receiver)
        self.media_seen = False
        self._on_media = on_media

    def datagram_received(self, data: bytes | str, addr: tuple[Any, ...]) -> None:
        # STUN's first byte is 0..3; DTLS, RTP and RTCP start above it (RFC 7983).
        if not self.media_seen and isinstance(data, bytes) and data and data[0] > 3:
            self.media_seen = True
            self._on_media()
        super().datagram_received(data, addr)


@dataclass(frozen=True)
class TurnEndpoint:
    """One TURN URL, ready for aioice. Credentials are kept out of ``repr``."""

    url: str
    host: str
    port: int
    transport: RelayTransport
    username: str | None = field(default=None, repr=False)
    password: str | None = field(default=None, repr=False)

    @classmethod
    def from_server(cls, server: IceServer) -> TurnEndpoint:
        parsed = parse_ice_url(server.url)
        if parsed.transport is None:
            raise ValueError(f"not a TURN URL: {server.url!r}")
        return cls(
            server.url,
            parsed.host,
            parsed.port,
            parsed.transport,
            server.username,
            server.credential,
        )


def split_servers(
    servers: Sequence[IceServer],
) -> tuple[list[tuple[str, int]], list[TurnEndpoint]]:
    """STUN addresses and TURN endpoints of ``servers`` (``stuns:`` is not supported: skipped)."""
    stun: list[tuple[str, int]] = []
    turns: list[TurnEndpoint] = []
    for server in servers:
        parsed = parse_ice_url(server.url)
        if parsed.scheme == "stun":
            stun.append((parsed.host, parsed.port))
        elif parsed.scheme in ("turn", "turns"):
            turns.append(TurnEndpoint.from_server(server))
        else:
            logger.warning("ignoring %s: stuns: is not supported by aioice", server.url)
    return stun, turns


@dataclass
class GatherReport:
    """What gathering did, per server URL: ``"ok"``, ``"cancelled"`` or the failure."""

    outcomes: dict[str, str] = field(default_factory=dict)
    duration: float = 0.0

    def summary(self) -> str:
        if not self.outcomes:
            return "no STUN/TURN server configured"
        return "; ".join(f"{url}: {outcome}" for url, outcome in self.outcomes.items())


class MultiTurnConnection(seam.RestartableConnection):
    """``aioice.Connection`` with multi-server gathering; configure with :meth:`configure`."""

    # No class-level defaults: install() calls configure() right after the class swap.
    _mt_stun: list[tuple[str, int]]
    _mt_turn: list[TurnEndpoint]
    _mt_hosts: list[str] | None
    _mt_ssl: ssl.SSLContext | None
    _mt_grace: float
    _mt_timeout: float
    _mt_relay_of: dict[int, TurnEndpoint]
    _mt_release_task: asyncio.Task[None] | None
    _mt_releasing: bool
    _mt_media: asyncio.Event
    _mt_closed: bool
    _mt_retired: list[Any]
    _mt_retire_task: asyncio.Task[None] | None
    gather_report: GatherReport

    def configure(
        self,
        *,
        servers: Sequence[IceServer],
        host_addresses: Sequence[str] | None,
        ssl_context: ssl.SSLContext | None,
        relay_grace: float,
        gather_timeout: float,
    ) -> None:
        self._mt_stun, self._mt_turn = split_servers(servers)
        self._mt_hosts = list(host_addresses) if host_addresses is not None else None
        self._mt_ssl = ssl_context
        self._mt_grace = relay_grace
        self._mt_timeout = gather_timeout
        self._mt_relay_of = {}
        self._mt_release_task = None
        self._mt_releasing = False
        self._mt_media = asyncio.Event()  # one of our candidates got the peer's first media
        self._mt_closed = False
        self._mt_retired = []  # protocols of the candidates an ICE restart replaced
        self._mt_retire_task = None
        self.gather_report = GatherReport()

    # --- gathering ------------------------------------------------------------------

    async def gather_candidates(self) -> None:
        if not seam.start_gathering(self):
            return
        started = time.monotonic()
        results = await asyncio.gather(*(self._gather_component(c) for c in seam.components(self)))
        gathered = [candidate for candidates in results for candidate in candidates]
        seam.finish_gathering(self, gathered)
        self.gather_report.duration = time.monotonic() - started
        logger.info(
            "gathered %d candidate(s) in %.0f ms (%s)",
            len(gathered),
            self.gather_report.duration * 1000,
            self.gather_report.summary(),
        )

    async def _gather_component(self, component: int) -> list[Candidate]:
        relay_only = seam.relay_only(self)
        candidates: list[Candidate] = []
        host_protocols: list[LocalProtocol] = []
        if not relay_only:
            host_protocols = await self._bind_hosts(component)
            candidates += [p.local_candidate for p in host_protocols]

        # One task per server; the task's label goes into the gather report.
        tasks: dict[asyncio.Task[Any], tuple[str, TurnEndpoint | None]] = {}
        for protocol in host_protocols:
            if ipaddress.ip_address(protocol.local_candidate.host).version != 4:
                continue
            for server in self._mt_stun:
                srflx = aioice.ice.server_reflexive_candidate(protocol, server)
                tasks[asyncio.create_task(srflx)] = (f"stun:{server[0]}:{server[1]}", None)
        for turn_endpoint in self._mt_turn:
            relay = self._allocate(component, turn_endpoint, hide_related=relay_only)
            tasks[asyncio.create_task(relay)] = (turn_endpoint.url, turn_endpoint)

        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._mt_timeout
        grace_end: float | None = None
        pending: set[asyncio.Task[Any]] = set(tasks)
        try:
            while pending:
                end = deadline if grace_end is None else min(deadline, grace_end)
                if end <= loop.time():
                    break
                done, pending = await asyncio.wait(
                    pending, timeout=end - loop.time(), return_when=asyncio.FIRST_COMPLETED
                )
                for task in done:
                    label, endpoint = tasks[task]
                    exc = task.exception()
                    if exc is not None:
                        self.gather_report.outcomes[label] = _describe_failure(exc)
                        logger.info("gathering from %s failed: %s", label, _describe_failure(exc))
                        continue
                    candidate, protocol = task.result()
                    candidates.append(candidate)
                    self.gather_report.outcomes[label] = "ok"
                    if endpoint is not None:
                        seam.add_protocol(self, protocol)
                        self._mt_relay_of[id(protocol)] = endpoint
                    # The grace starts with the first relay (or, without TURN, srflx).
                    if grace_end is None and (endpoint is not None or not self._mt_turn):
                        grace_end = loop.time() + self._mt_grace
        finally:
            # Also runs when gathering itself is cancelled: never leak a half-open allocation.
            for task in pending:
                task.cancel()
                self.gather_report.outcomes[tasks[task][0]] = (
                    "cancelled (another relay was ready)" if grace_end else "timed out"
                )
            if pending:
                results = await asyncio.gather(*pending, return_exceptions=True)
                # Allocations that completed while we were being cancelled: release them.
                for result in results:
                    if isinstance(result, tuple) and result[1] is not None:
                        with contextlib.suppress(Exception):
                            await asyncio.wait_for(result[1].close(), 2.0)
        return candidates

    async def _bind_hosts(self, component: int) -> list[LocalProtocol]:
        addresses = self._mt_hosts
        if addresses is None:
            use_ipv4, use_ipv6 = seam.use_ip_versions(self)
            addresses = aioice.ice.get_host_addresses(use_ipv4=use_ipv4, use_ipv6=use_ipv6)
        loop = asyncio.get_running_loop()
        protocols: list[LocalProtocol] = []
        for address in addresses:
            try:
                transport, protocol = await loop.create_datagram_endpoint(
                    lambda: LocalProtocol(self, self._mt_media.set), local_addr=(address, 0)
                )
            except OSError as exc:
                logger.info("could not bind host candidate on %s: %s", address, exc)
                continue
            sock = transport.get_extra_info("socket")
            if sock is not None:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, turn.UDP_SOCKET_BUFFER_SIZE)
            host, port = transport.get_extra_info("sockname")[:2]
            protocol.local_candidate = Candidate(
                foundation=candidate_foundation("host", "udp", host),
                component=component,
                transport="udp",
                priority=candidate_priority(component, "host"),
                host=host,
                port=port,
                type="host",
            )
            protocols.append(protocol)
            seam.add_protocol(self, protocol)
        return protocols

    async def _allocate(
        self, component: int, endpoint: TurnEndpoint, *, hide_related: bool
    ) -> tuple[Candidate, LocalProtocol]:
        """One TURN allocation (what ``aioice.ice.relayed_candidate`` does, plus TLS context,
        a per-URL foundation and a per-transport priority)."""
        tls = endpoint.transport == "tls"
        _, protocol = await turn.create_turn_endpoint(
            lambda: LocalProtocol(self, self._mt_media.set),
            server_addr=(endpoint.host, endpoint.port),
            username=endpoint.username,
            password=endpoint.password,
            ssl=(self._mt_ssl or True) if tls else False,
            transport="udp" if endpoint.transport == "udp" else "tcp",
        )
        relayed = protocol.transport.get_extra_info("sockname")
        related = protocol.transport.get_extra_info("related_address")
        if hide_related:  # RFC 9429 3.5.3: do not reveal host addresses under relay policy
            related = ("0.0.0.0", 9) if ipaddress.ip_address(relayed[0]).version == 4 else ("::", 9)
        index = self._mt_turn.index(endpoint)
        local_pref = 65535 - 1024 * _TRANSPORT_RANK[endpoint.transport] - index
        protocol.local_candidate = Candidate(
            # Distinct per TURN URL (RFC 8445 5.1.1.3): the server and transport differ.
            foundation=candidate_foundation("relay", f"udp/{endpoint.transport}", endpoint.url),
            component=component,
            transport="udp",
            priority=candidate_priority(component, "relay", local_pref),
            host=relayed[0],
            port=relayed[1],
            type="relay",
            related_address=related[0],
            related_port=related[1],
        )
        return protocol.local_candidate, protocol

    # --- remote candidates we cannot pair with ----------------------------------------

    def open_permissions(self, addresses: Sequence[tuple[str, int]]) -> None:
        """Let checks in through our relays from hosts we cannot pair with (TCP candidates).

        A TURN server drops what a peer sends to a relay unless the client installed a
        permission for that peer's address. A binding indication (a harmless keepalive) to each
        address installs one (with a channel); the peer's own checks then arrive and become
        peer-reflexive candidates that ICE can pair and nominate.
        """
        indication = bytes(
            stun.Message(message_method=stun.Method.BINDING, message_class=stun.Class.INDICATION)
        )
        for protocol in seam.protocols(self):
            if protocol.local_candidate.type != "relay":
                continue
            for address in addresses:
                protocol.transport.sendto(indication, address)
        if addresses:
            logger.info("opened relay permissions for %d unpairable candidate(s)", len(addresses))

    # --- after nomination -----------------------------------------------------------

    async def connect(self) -> None:
        await super().connect()
        if self._mt_closed:  # close() ran while connect() finished: nothing may outlive it
            seam.cancel_consent_checks(self)
            return
        if self._mt_retired:  # a new pair is nominated: the old sockets may go
            self._mt_retire_task = asyncio.create_task(self._close_retired())
        if any(p.local_candidate.type == "relay" for p in seam.protocols(self)):
            # In the background: DTLS starts now. close() cancels the wait, or waits for
            # a release under way.
            self._mt_release_task = asyncio.create_task(self._release_unused())

    async def _release_unused(self) -> None:
        """Release the relays neither we nor the peer use, once the peer's media shows which
        one it sends to (see the module docstring)."""
        own = seam.protocols(self)
        relays = [
            p for p in own if isinstance(p, LocalProtocol) and p.local_candidate.type == "relay"
        ]
        try:
            async with asyncio.timeout(_MEDIA_EVIDENCE_TIMEOUT):
                await self._mt_media.wait()
        except TimeoutError:
            return  # no media at all: the connection fails anyway; close() releases them
        await asyncio.sleep(RELEASE_SETTLE)
        nominated = {id(pair.protocol) for pair in seam.nominated_pairs(self).values()}
        unused = [p for p in relays if id(p) not in nominated and not p.media_seen]
        kept = [p for p in relays if id(p) not in nominated and p.media_seen]
        if kept:
            logger.info(
                "the peer sends to another relay than the one we nominated: keeping %s",
                ", ".join(self._mt_relay_of[id(p)].url for p in kept),
            )
        for protocol in unused:
            own.remove(protocol)
        self._mt_releasing = True  # from here on close() waits: these are no longer its own
        for protocol in unused:
            endpoint = self._mt_relay_of.get(id(protocol))
            with contextlib.suppress(Exception):
                await asyncio.wait_for(protocol.close(), 5.0)
            logger.debug("released unused relay of %s", endpoint.url if endpoint else "?")

    async def close(self) -> None:
        self._mt_closed = True
        await self._stop_release()
        if self._mt_retire_task is not None:
            with contextlib.suppress(Exception):
                await wait_ended(self._mt_retire_task)
        await self._close_retired()  # a restart that never nominated leaves them here
        await super().close()

    async def _stop_release(self) -> None:
        task = self._mt_release_task
        if task is not None and not task.done():
            if self._mt_releasing:
                with contextlib.suppress(Exception):
                    await wait_ended(task)  # the release goes on: no TURN allocation left
            else:  # still waiting for media: close() or a restart's gathering releases them
                await cancel_and_wait(task)
        self._mt_release_task = None

    # --- ICE restart ----------------------------------------------------------------

    async def restart(self, *, regather: bool) -> None:
        """Begin an ICE restart: new :attr:`local_username`/:attr:`local_password`, the
        checks and the peer's credentials and candidates afresh (``aiortc_seam.
        restart_ice_agent``). ``regather``: new local candidates, gathered before this returns
        (the old sockets close once :meth:`connect` nominated a new pair, or on close).
        Then set ``remote_username``/``remote_password``, add the peer's candidates and run
        :meth:`connect` again."""
        await self._stop_release()
        self._mt_retired += seam.restart_ice_agent(self, regather=regather)
        if regather:
            self._mt_media = asyncio.Event()  # which new relay the peer sends to, see connect()
            self.gather_report = GatherReport()
            await self.gather_candidates()

    async def _close_retired(self) -> None:
        retired, self._mt_retired = self._mt_retired, []
        if retired:
            await asyncio.gather(
                *(asyncio.wait_for(p.close(), 5.0) for p in retired), return_exceptions=True
            )
            logger.debug("closed %d socket(s) an ICE restart replaced", len(retired))

    def relays(self) -> dict[str, tuple[str, int]]:
        """TURN URL -> relayed address, of the allocations this connection still holds."""
        return {
            self._mt_relay_of[id(p)].url: (p.local_candidate.host, p.local_candidate.port)
            for p in seam.protocols(self)
            if id(p) in self._mt_relay_of
        }

    def selected_pair(self, component: int = 1) -> SelectedPair | None:
        """The nominated pair of ``component``, or ``None`` before ICE completed."""
        pair = seam.nominated_pairs(self).get(component)
        if pair is None:
            return None
        local, remote = pair.local_candidate, pair.remote_candidate
        endpoint = self._mt_relay_of.get(id(pair.protocol))
        return SelectedPair(
            local_type=local.type,
            local_address=(local.host, local.port),
            remote_type=remote.type,
            remote_address=(remote.host, remote.port),
            protocol=local.transport,
            relay_url=endpoint.url if endpoint else None,
            relay_transport=endpoint.transport if endpoint else None,
        )


def _describe_failure(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, ssl.SSLError):
        return f"TLS error: {text}"
    return text


def install(
    gatherer_connection: Connection,
    *,
    servers: Sequence[IceServer],
    host_addresses: Sequence[str] | None,
    ssl_context: ssl.SSLContext | None,
    relay_grace: float,
    gather_timeout: float,
) -> MultiTurnConnection:
    """Turn the ``aioice.Connection`` aiortc created for one ICE gatherer into a
    :class:`MultiTurnConnection` (must happen before gathering starts).

    Swapping the class keeps every reference aiortc holds (gatherer, ICE transport,
    bound ``recv``/``send``) valid, and affects this connection only.
    """
    if seam.gathering_started(gatherer_connection):
        raise RuntimeError("candidate gathering already started")
    seam.swap_connection_class(gatherer_connection, MultiTurnConnection)
    connection: MultiTurnConnection = gatherer_connection  # type: ignore[assignment]
    connection.configure(
        servers=servers,
        host_addresses=host_addresses,
        ssl_context=ssl_context,
        relay_grace=relay_grace,
        gather_timeout=gather_timeout,
    )
    return connection
