"""Relay-only connections through a real coturn: TURN/UDP, TURN/TCP, TURN/TLS, four URLs."""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from aiortc import RTCRtpReceiver
from av import VideoFrame

from avatar_rtc.errors import ConnectError, NoCandidatesError
from avatar_rtc.rtc import datagram_batch
from avatar_rtc.rtc.connection import MediaConnection
from avatar_rtc.rtc.encoded_frame import EncodedFrame
from avatar_rtc.rtc.ice_options import IceOptions
from avatar_rtc.rtc.ice_servers import IceServer, TurnPorts
from avatar_rtc.rtc.receiver import ReceivePipeline
from avatar_rtc.rtc.silence_probe import SilenceProbe
from tests.support import wait_until
from tests.turn_server import PASSWORD, USERNAME, TurnServer, turn_server

from .whep_sender import AiortcWhepSender

__all__ = ["turn_server"]  # the fixture, imported for pytest

pytestmark = pytest.mark.interop


def single_url(turn: TurnServer, transport: str) -> IceOptions:
    url = {
        "udp": f"turn:127.0.0.1:{turn.port}?transport=udp",
        "tcp": f"turn:127.0.0.1:{turn.port}?transport=tcp",
        "tls": f"turns:127.0.0.1:{turn.tls_port}?transport=tcp",
    }[transport]
    return IceOptions(
        policy="relay",
        extra_servers=(IceServer(url, USERNAME, PASSWORD),),
        turn_ca_file=str(turn.ca_file),
    )


def video_receivers() -> tuple[list[RTCRtpReceiver], Callable[[RTCRtpReceiver, str], None]]:
    """A list that fills with the connection's video receivers, and the hook that fills it."""
    video: list[RTCRtpReceiver] = []

    def hook(receiver: RTCRtpReceiver, kind: str) -> None:
        if kind == "video":
            video.append(receiver)

    return video, hook


async def connect_and_receive(url: str, ice: IceOptions) -> MediaConnection:
    video, hook = video_receivers()
    connection = MediaConnection(url, ice=ice, connect_timeout=10, on_receiver=hook)
    await connection.connect()
    try:
        frame = await asyncio.wait_for(video[0].track.recv(), 5)
        assert isinstance(frame, VideoFrame) and frame.width > 0
    except BaseException:
        await connection.close()
        raise
    return connection


@pytest.mark.parametrize("transport", ["udp", "tcp", "tls"])
async def test_relay_only_over(turn_server: TurnServer, transport: str) -> None:
    async with AiortcWhepSender() as sender:
        connection = await connect_and_receive(sender.url, single_url(turn_server, transport))
        try:
            pair = connection.selected_pair()
            assert pair is not None
            assert (pair.local_type, pair.protocol, pair.relay_transport) == (
                "relay", "udp", transport,
            )  # fmt: skip
            assert connection.timings.time_to_connected is not None
        finally:
            await connection.close()
        assert "a=candidate:" in sender.counters.offers[0]
        assert "typ host" not in sender.counters.offers[0]  # relay policy: relay only
        assert sender.counters.deletes == 1


def four_urls(turn: TurnServer) -> IceOptions:
    return IceOptions(
        policy="relay",
        turn=turn.turn_config,
        turn_ports=turn.ports,
        turn_ca_file=str(turn.ca_file),
    )


def unused_relays(connection: MediaConnection, sender: AiortcWhepSender) -> set[str]:
    """Relays the connection still holds that neither it nor the sender uses."""
    ice_connection = connection._ice_connection
    pair = connection.selected_pair()
    assert ice_connection is not None and pair is not None
    used = {pair.local_address} | sender.sending_to()
    return {url for url, address in ice_connection.relays().items() if address not in used}


async def test_four_urls_all_reachable(turn_server: TurnServer) -> None:
    ice = four_urls(turn_server)
    async with AiortcWhepSender() as sender:
        connection = await connect_and_receive(sender.url, ice)
        try:
            report = connection.gather_report
            assert report is not None
            assert len(report.outcomes) == 4
            assert list(report.outcomes.values()).count("ok") >= 2
            pair = connection.selected_pair()
            assert pair is not None and pair.relay_url in report.outcomes
            # Relays neither side uses are released once media flows (the sender may send
            # to another relay than the one we nominated: that one stays).
            await wait_until(lambda: unused_relays(connection, sender) == set(), 10)
            ice_connection = connection._ice_connection
            assert ice_connection is not None
            assert pair.relay_url in ice_connection.relays()
        finally:
            await connection.close()


@pytest.mark.parametrize("read_interval", [0.0, 0.1], ids=["each-packet", "paced"])
async def test_relayed_media_takes_our_fast_path(
    turn_server: TurnServer, read_interval: float
) -> None:
    """Media through a UDP relay (the service's only path) reaches our pipelines from the TURN
    server's socket, which ``datagram_batch`` drains (ChannelData unwrapped there); paced
    (``read_interval``), at the pacer's ticks, every frame all the same."""
    video = ReceivePipeline("video", read_interval=read_interval)
    audio = ReceivePipeline("audio", read_interval=read_interval)
    frames: list[EncodedFrame] = []
    video.subscribe(frames.append)

    def hook(receiver: RTCRtpReceiver, kind: str) -> None:
        (video if kind == "video" else audio).attach(receiver)

    async with AiortcWhepSender() as sender:
        ice = single_url(turn_server, "udp")
        connection = MediaConnection(sender.url, ice=ice, connect_timeout=10, on_receiver=hook)
        await connection.connect()
        try:
            await wait_until(lambda: len(frames) >= 60, 15)
            pair = connection.selected_pair()
            assert pair is not None and (pair.local_type, pair.relay_transport) == ("relay", "udp")
            assert video.receiver is not None
            batch = datagram_batch._BATCHES[video.receiver.transport]
            assert batch.drained_sockets >= 1  # the TURN server's socket
            # probed in a silence: the TURN server, which answers at once while the path works
            assert ("127.0.0.1", turn_server.port) in batch.first_hops
            told: list[int] = []
            probe = SilenceProbe(lambda: told.append(1), silence=0.0)
            probe.datagram(time.monotonic(), ("127.0.0.1", turn_server.port))
            await wait_until(lambda: probe.probes > 0, 5)
            await asyncio.sleep(0.2)
            sent = probe.probes
            await asyncio.sleep(0.1)
            probe.close()
            # answered (the first probe): probing stopped, the path was never down
            assert probe.probes == sent and told == [] and probe.paths_back == 0
            packets = video.stats().packets + audio.stats().packets
            assert batch.fast_packets >= packets - 5 > 0  # (a few may precede the handshake)
            assert video.stats().frames_dropped == 0 and video.stats().lost == 0
            if read_interval:  # the loop woke for a datagram only when a tick found none
                assert batch.paced_reads > batch.wakeups
            else:
                assert batch.paced_reads == 0
        finally:
            await connection.close()
            video.close()
            audio.close()


async def test_the_relay_the_peer_sends_to_is_kept(turn_server: TurnServer) -> None:
    """A peer may nominate another of our relays than we did (aggressive nomination, as
    aioice does) and send its media there: that relay must outlive the unused ones' release.
    Before the fix every frame stopped once the unused relays were released.

    Our own nomination may move afterwards too (aioice nominates on every successful check,
    triggered ones included: a check from the peer on the relay it sends to can make that
    relay ours as well), so what must survive is the relay the peer sends to and the one we
    nominate at the end, and nothing else once the unused ones are released."""
    connection: MediaConnection | None = None
    opened: list[tuple[str, int]] = []

    def ours() -> tuple[str, int] | None:
        pair = connection.selected_pair() if connection is not None else None
        if pair is None:
            return None
        if not opened:
            # As our checks from several relays do when they race: every relay we still
            # hold lets the sender in.
            assert connection is not None and connection._ice_connection is not None
            connection._ice_connection.open_permissions([pair.remote_address])
            opened.append(pair.remote_address)
        return pair.local_address

    video, hook = video_receivers()
    async with AiortcWhepSender(avoid=ours) as sender:
        connection = MediaConnection(
            sender.url, ice=four_urls(turn_server), connect_timeout=10, on_receiver=hook
        )
        await connection.connect()
        try:
            await wait_until(lambda: sender.switched_to is not None, 5)
            ice_connection = connection._ice_connection
            assert ice_connection is not None
            # Frames go on arriving until the unused relays are gone, and 30 more after.
            while len(ice_connection.relays()) > 2:
                await asyncio.wait_for(video[0].track.recv(), 5)
            for _ in range(30):
                await asyncio.wait_for(video[0].track.recv(), 5)
            relays = set(ice_connection.relays().values())
            pair = connection.selected_pair()
            assert pair is not None and len(relays) <= 2
            assert {pair.local_address, sender.switched_to} <= relays, relays
        finally:
            await connection.close()


async def test_wrong_credentials_fail_fast(turn_server: TurnServer) -> None:
    url = f"turn:127.0.0.1:{turn_server.port}?transport=tcp"
    server = IceServer(url, USERNAME, "wrong-pass")
    ice = IceOptions(policy="relay", extra_servers=(server,), gather_timeout=60.0)
    async with AiortcWhepSender() as sender:
        started = time.monotonic()
        with pytest.raises(NoCandidatesError, match="401"):
            await MediaConnection(sender.url, ice=ice, connect_timeout=120.0).connect()
        assert time.monotonic() - started < ice.gather_timeout / 2  # the 401, not the cap
        assert sender.counters.posts == 0


def test_coturns_command_line_shows_no_credential(turn_server: TurnServer) -> None:
    # the relay tests above prove coturn took the credential from its config file
    cmdline = Path(f"/proc/{turn_server.process.pid}/cmdline").read_bytes()
    assert PASSWORD.encode() not in cmdline and USERNAME.encode() not in cmdline
    config = next(Path(arg.decode()) for arg in cmdline.split(b"\0") if arg.endswith(b".conf"))
    assert config.stat().st_mode & 0o777 == 0o600


async def test_tls_certificate_is_verified_by_default(turn_server: TurnServer) -> None:
    ice = single_url(turn_server, "tls")
    untrusted = IceOptions(policy=ice.policy, extra_servers=ice.extra_servers)
    async with AiortcWhepSender() as sender:
        with pytest.raises(NoCandidatesError, match="CERTIFICATE_VERIFY_FAILED"):
            await MediaConnection(sender.url, ice=untrusted).connect()


async def test_dead_turn_server_fails_fast(tmp_path: Path) -> None:
    # Nothing listens on these ports: TCP/TLS are refused at once, UDP goes unanswered
    # until gather_timeout.
    dead = TurnPorts(udp=(9, 19), tcp=9, tls=19)
    turn = TurnServer.__new__(TurnServer)  # only for its turn_config
    turn.host = "127.0.0.1"
    ice = IceOptions(policy="relay", turn=turn.turn_config, turn_ports=dead, gather_timeout=2.0)
    async with AiortcWhepSender() as sender:
        connection = MediaConnection(sender.url, ice=ice, connect_timeout=60.0)
        started = time.monotonic()
        with pytest.raises(ConnectError) as info:
            await connection.connect()
        elapsed = time.monotonic() - started
    assert isinstance(info.value, NoCandidatesError)  # gathering gave up, not the connect
    assert elapsed < connection.connect_timeout / 2
    message = str(info.value)
    assert "relay policy needs a reachable TURN server" in message
    assert "connection refused" in message and "timed out" in message
    assert sender.counters.posts == 0


async def test_no_credentials_in_debug_logs(
    turn_server: TurnServer, caplog: pytest.LogCaptureFixture
) -> None:
    ice = IceOptions(
        policy="relay",
        turn=turn_server.turn_config,
        turn_ports=turn_server.ports,
        turn_ca_file=str(turn_server.ca_file),
    )
    with caplog.at_level(logging.DEBUG):
        async with AiortcWhepSender() as sender:
            connection = MediaConnection(sender.url, bearer="bearer-secret-42", ice=ice)
            async with connection:
                await asyncio.sleep(0.2)
    # caplog.text is formatted at emit time, after the redaction filter.
    text = caplog.text
    assert "aioice.turn" in text and "'USERNAME': '***'" in text  # aioice DEBUG was captured
    for secret in (PASSWORD, USERNAME, "bearer-secret-42"):
        assert secret not in text
    # The password never travels (only its HMAC key); not even in the raw record arguments.
    assert PASSWORD not in "".join(repr(r.args) + str(r.msg) for r in caplog.records)
    assert PASSWORD not in repr(ice) and PASSWORD not in repr(ice.servers())


async def test_policy_all_gathers_host_and_relay(turn_server: TurnServer) -> None:
    ice = IceOptions(
        policy="all",
        host_addresses=("127.0.0.1",),
        extra_servers=(
            IceServer(f"turn:127.0.0.1:{turn_server.port}?transport=udp", USERNAME, PASSWORD),
        ),
    )
    async with AiortcWhepSender() as sender:
        async with MediaConnection(sender.url, ice=ice) as connection:
            pair = connection.selected_pair()
            assert pair is not None and pair.local_type in ("host", "relay")
            # The relay goes once media flows, unless one side uses it.
            await wait_until(lambda: unused_relays(connection, sender) == set(), 10)
        offer = sender.counters.offers[0]
    assert "typ host" in offer and "typ relay" in offer
    assert "raddr 0.0.0.0" not in offer  # related address hidden only under relay policy


async def test_silent_udp_urls_cost_only_the_grace(turn_server: TurnServer) -> None:
    """UDP URLs that never answer (a bound socket that drops everything, like a firewall)
    do not hold up gathering once the TCP/TLS relays are there."""
    with (
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent1,
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent2,
    ):
        silent1.bind(("127.0.0.1", 0))
        silent2.bind(("127.0.0.1", 0))
        servers = [
            IceServer(f"turn:127.0.0.1:{s.getsockname()[1]}?transport=udp", USERNAME, PASSWORD)
            for s in (silent1, silent2)
        ]
        servers += [
            IceServer(f"turn:127.0.0.1:{turn_server.port}?transport=tcp", USERNAME, PASSWORD),
            IceServer(f"turns:127.0.0.1:{turn_server.tls_port}?transport=tcp", USERNAME, PASSWORD),
        ]
        ice = IceOptions(
            policy="relay",
            extra_servers=tuple(servers),
            turn_ca_file=str(turn_server.ca_file),
            gather_timeout=60.0,
        )
        async with AiortcWhepSender() as sender:
            connection = await connect_and_receive(sender.url, ice)
            try:
                report = connection.gather_report
                assert report is not None
                outcomes = list(report.outcomes.values())
                assert outcomes.count("cancelled (another relay was ready)") == 2, report
                # The grace after the first relay (the TCP/TLS allocations take ~0.1 s), not
                # gather_timeout: the silent URLs would hold gathering up for 60 s.
                assert report.duration < ice.gather_timeout / 2
                pair = connection.selected_pair()
                assert pair is not None and pair.relay_transport in ("tcp", "tls")
            finally:
                await connection.close()
