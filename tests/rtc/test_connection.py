"""MediaConnection with real aiortc media on loopback, and its teardown on every path."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Awaitable, Callable, Iterator

import pytest
from aiohttp import web
from aiortc import RTCPeerConnection, RTCRtpReceiver, RTCSessionDescription
from aiortc.mediastreams import AudioStreamTrack, VideoStreamTrack
from av import AudioFrame, VideoFrame

from avatar_rtc.errors import (
    ConnectError,
    ConnectTimeoutError,
    NoCandidatesError,
    WhepConflictError,
)
from avatar_rtc.rtc import aiortc_seam as seam
from avatar_rtc.rtc import connection, multi_turn
from avatar_rtc.rtc.connection import MediaConnection, add_rtcp_mux_only
from avatar_rtc.rtc.encoded_frame import EncodedFrame
from avatar_rtc.rtc.ice_options import IceOptions
from avatar_rtc.rtc.receiver import ReceivePipeline
from tests.support import LOOPBACK_ICE

from .scripted_whep import ScriptedWhep, created
from .whep_sender import AiortcWhepSender


class Receivers:
    def __init__(self) -> None:
        self.items: list[tuple[RTCRtpReceiver, str]] = []

    def __call__(self, receiver: RTCRtpReceiver, kind: str) -> None:
        self.items.append((receiver, kind))

    def of(self, kind: str) -> RTCRtpReceiver:
        return next(r for r, k in self.items if k == kind)


async def test_connects_and_receives_video_and_audio() -> None:
    receivers = Receivers()
    states: list[str] = []
    async with AiortcWhepSender() as sender:
        connection = MediaConnection(
            sender.url,
            bearer="bearer-token-1",
            ice=LOOPBACK_ICE,
            on_receiver=receivers,
            on_state_change=states.append,
        )
        async with connection:
            assert connection.state == "connected"
            assert [k for _, k in receivers.items] == ["video", "audio"]
            video = await asyncio.wait_for(receivers.of("video").track.recv(), 5)
            audio = await asyncio.wait_for(receivers.of("audio").track.recv(), 5)
            assert isinstance(video, VideoFrame) and video.width > 0
            assert isinstance(audio, AudioFrame) and audio.sample_rate == 48000
            pair = connection.selected_pair()
            assert pair is not None and pair.local_type == "host" and pair.relay_url is None
            durations = connection.timings.durations()
            assert list(durations) == [
                "offer_created", "gathering_done", "answer_received", "ice_connected",
                "dtls_connected",
            ]  # fmt: skip
            assert durations == dict(sorted(durations.items(), key=lambda kv: kv[1]))
            assert sender.active == 1
        assert str(connection.state) == "closed"
        assert sender.counters.deletes == 1 and sender.active == 0
        offer = sender.counters.offers[0]
    assert sender.counters.auth == ["Bearer bearer-token-1"]
    assert states == ["gathering", "signaling", "connecting", "connected", "closed"]
    # recvonly, bundled, rtcp-mux-only in every m-section, H264 before VP8, no public STUN.
    sections = offer.split("m=")[1:]
    assert [s.split(" ")[0] for s in sections] == ["video", "audio"]
    for section in sections:
        assert "a=recvonly" in section and "a=rtcp-mux-only" in section
    assert "a=group:BUNDLE 0 1" in offer
    video_section = sections[0]
    assert video_section.index("H264/90000") < video_section.index("VP8/90000")
    assert "a=candidate:" in offer and "typ srflx" not in offer


async def test_vp8_preference() -> None:
    async with AiortcWhepSender() as sender:
        async with MediaConnection(sender.url, ice=LOOPBACK_ICE, video_codecs=("VP8",)):
            pass
        video = sender.counters.offers[0].split("m=")[1]
    assert "VP8/90000" in video and "H264" not in video


def test_add_rtcp_mux_only() -> None:
    sdp = "v=0\r\nm=video 9 x 96\r\na=rtcp-mux\r\nm=audio 9 x 111\r\na=rtcp-mux\r\n"
    munged = add_rtcp_mux_only(sdp)
    assert munged.count("a=rtcp-mux\r\na=rtcp-mux-only\r\n") == 2
    assert add_rtcp_mux_only(munged) == munged


async def test_close_is_idempotent() -> None:
    async with AiortcWhepSender() as sender:
        connection = MediaConnection(sender.url, ice=LOOPBACK_ICE)
        await connection.connect()
        await asyncio.gather(connection.close(), connection.close())
        await connection.close()
        assert sender.counters.deletes == 1
        with pytest.raises(ConnectError):
            await connection.connect()


async def test_relay_policy_without_turn_fails_before_posting() -> None:
    async with ScriptedWhep(post=[created()]) as server:
        ice = IceOptions(policy="relay", gather_timeout=60.0)
        connection = MediaConnection(server.url(), ice=ice, connect_timeout=120.0)
        started = time.monotonic()
        with pytest.raises(NoCandidatesError, match="no candidate"):
            await connection.connect()
        assert time.monotonic() - started < ice.gather_timeout / 2  # did not wait it out
        assert not server.seen and connection.state == "closed"


async def test_whep_error_leaves_nothing_behind() -> None:
    async with ScriptedWhep(post=[web.Response(status=409)]) as server:
        connection = MediaConnection(server.url(), ice=LOOPBACK_ICE)
        with pytest.raises(WhepConflictError):
            await connection.connect()
        assert connection.state == "closed" and not server.requests("DELETE")


async def test_delete_sent_when_answer_is_unusable() -> None:
    async with ScriptedWhep(post=[created("/whep/r/1")]) as server:  # answer: not a real SDP
        connection = MediaConnection(server.url(), ice=LOOPBACK_ICE)
        with pytest.raises(Exception):  # noqa: B017 - whatever aiortc raises for a bad answer
            await connection.connect()
        assert [s.path for s in server.requests("DELETE")] == ["/whep/r/1"]


@pytest.fixture
def silent_udp() -> Iterator[int]:
    """A bound UDP port that never answers (ICE checks to it go unanswered, no ICMP)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


def _unreachable_answerer(port: int) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    """A POST handler answering with a real aiortc answer whose candidate is ``port``."""

    async def handler(request: web.Request) -> web.StreamResponse:
        pc = RTCPeerConnection()
        await pc.setRemoteDescription(RTCSessionDescription(await request.text(), "offer"))
        multi_turn.install(
            seam.ice_connection(pc.getTransceivers()[0]),
            servers=[], host_addresses=["127.0.0.1"], ssl_context=None,
            relay_grace=0.3, gather_timeout=2.0,
        )  # fmt: skip
        pc.addTrack(VideoStreamTrack())
        pc.addTrack(AudioStreamTrack())
        await pc.setLocalDescription(await pc.createAnswer())
        sdp = pc.localDescription.sdp
        await pc.close()
        lines = []
        for line in sdp.split("\r\n"):
            if line.startswith("a=candidate:"):
                fields = line.split(" ")
                fields[5] = str(port)
                line = " ".join(fields)
            lines.append(line)
        return web.Response(
            status=201, text="\r\n".join(lines), content_type="application/sdp",
            headers={"Location": "/whep/r/2"},
        )  # fmt: skip

    return handler


async def test_connect_timeout_deletes(silent_udp: int) -> None:
    async with ScriptedWhep(post=[_unreachable_answerer(silent_udp)]) as server:
        connection = MediaConnection(server.url(), ice=LOOPBACK_ICE, connect_timeout=1.5)
        started = time.monotonic()
        with pytest.raises(ConnectTimeoutError, match=r"within 1\.5 s .*ICE/DTLS"):
            await connection.connect()
        # 1.5 s, then the DELETE: far below the 20 s default even on a busy machine.
        assert time.monotonic() - started < 1.5 + 5.0
        assert [s.path for s in server.requests("DELETE")] == ["/whep/r/2"]
        assert connection.state == "closed"


async def test_cancelled_connect_deletes(silent_udp: int) -> None:
    async with ScriptedWhep(post=[_unreachable_answerer(silent_udp)]) as server:
        connection = MediaConnection(server.url(), ice=LOOPBACK_ICE, connect_timeout=10)
        connecting = asyncio.Event()
        connection.on_state_change = lambda s: connecting.set() if s == "connecting" else None
        task = asyncio.create_task(connection.connect())
        await asyncio.wait_for(connecting.wait(), 5)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert [s.path for s in server.requests("DELETE")] == ["/whep/r/2"]
        assert connection.state == "closed"


async def test_cancelled_body_of_context_manager_deletes() -> None:
    async with AiortcWhepSender() as sender:
        inside = asyncio.Event()

        async def run() -> None:
            async with MediaConnection(sender.url, ice=LOOPBACK_ICE):
                inside.set()
                await asyncio.sleep(30)

        task = asyncio.create_task(run())
        await asyncio.wait_for(inside.wait(), 20)  # connected: the body runs (hang guard)
        assert sender.active == 1
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert sender.counters.deletes == 1 and sender.active == 0


async def test_receive_pipeline_attaches_through_on_receiver() -> None:
    pipelines = {"video": ReceivePipeline("video"), "audio": ReceivePipeline("audio")}
    got: dict[str, list[object]] = {"video": [], "audio": []}
    for kind, pipeline in pipelines.items():
        pipeline.subscribe(got[kind].append)

    def hook(receiver: RTCRtpReceiver, kind: str) -> None:
        pipelines[kind].attach(receiver)

    async with (
        AiortcWhepSender() as sender,
        MediaConnection(sender.url, ice=LOOPBACK_ICE, on_receiver=hook),
    ):
        for _ in range(100):
            if got["video"] and got["audio"]:
                break
            await asyncio.sleep(0.05)
    assert got["video"] and got["audio"]


async def test_counter_offer_is_answered_with_patch() -> None:
    receivers = Receivers()
    async with AiortcWhepSender(counter_offer=True) as sender:
        connection = MediaConnection(sender.url, ice=LOOPBACK_ICE, on_receiver=receivers)
        async with connection:
            frame = await asyncio.wait_for(receivers.items[-2][0].track.recv(), 5)
            assert isinstance(frame, VideoFrame) and frame.width > 0
        assert sender.counters.patches == 1 and sender.counters.deletes == 1
    # on_receiver ran for the first pc and again for the one answering the counter-offer.
    assert [k for _, k in receivers.items] == ["video", "audio", "video", "audio"]


async def test_remote_hangup_is_reported_and_close_still_deletes() -> None:
    states: list[str] = []
    ended = asyncio.Event()

    def on_state(state: str) -> None:
        states.append(state)
        if state in ("closed", "failed"):
            ended.set()

    async with AiortcWhepSender() as sender:
        connection = MediaConnection(sender.url, ice=LOOPBACK_ICE, on_state_change=on_state)
        await connection.connect()
        (pc,) = sender._pcs.values()
        for _ in range(100):  # our DTLS (server role) completes before the sender's
            if pc.connectionState == "connected":
                break
            await asyncio.sleep(0.02)
        await pc.close()  # the server ends the stream (DTLS close_notify)
        await asyncio.wait_for(ended.wait(), 5)
        assert states[-1] in ("closed", "failed")
        await connection.close()
        assert sender.counters.deletes == 1


async def test_counter_offer_moves_the_receive_pipelines_to_the_new_connection() -> None:
    pipelines = {"video": ReceivePipeline("video"), "audio": ReceivePipeline("audio")}
    got: dict[str, list[EncodedFrame]] = {"video": [], "audio": []}
    for kind, pipeline in pipelines.items():
        pipeline.subscribe(got[kind].append)

    def hook(receiver: RTCRtpReceiver, kind: str) -> None:
        pipelines[kind].attach(receiver)

    async with (
        AiortcWhepSender(counter_offer=True) as sender,
        MediaConnection(sender.url, ice=LOOPBACK_ICE, on_receiver=hook),
    ):
        for _ in range(100):
            if got["video"] and got["audio"]:
                break
            await asyncio.sleep(0.05)
        assert sender.counters.patches == 1
        assert not pipelines["video"].closed and not pipelines["audio"].closed
    assert got["video"] and got["audio"]


async def test_a_peer_connection_that_cannot_close_is_left_closing_after_the_bound() -> None:
    # Over a dead network aioice deallocates each TURN allocation in turn, 63 s apiece:
    # closing a session during an outage took 40 s to 4 minutes.
    class Unanswered:
        async def close(self) -> None:
            await asyncio.sleep(3600)

    started = time.monotonic()
    await asyncio.wait_for(connection._close_within(Unanswered(), 0.2), 60)  # type: ignore[arg-type]
    assert time.monotonic() - started < 1800  # the bound, not the hour (a busy machine: any)
    (closing,) = connection._closing_in_background
    closing.cancel()
    await asyncio.wait([closing])
    assert not connection._closing_in_background


async def test_a_close_whose_caller_is_cancelled_goes_on_tracked() -> None:
    release = asyncio.Event()

    class Slow:
        async def close(self) -> None:
            await release.wait()
            raise RuntimeError("TURN refresh failed while closing")

    caller = asyncio.create_task(connection._close_within(Slow(), 3600))  # type: ignore[arg-type]
    await asyncio.sleep(0.05)
    caller.cancel()  # Ctrl-C, an outer timeout
    with pytest.raises(asyncio.CancelledError):
        await caller
    (closing,) = connection._closing_in_background  # was: untracked, its error unretrieved
    release.set()
    await asyncio.wait([closing])
    await asyncio.sleep(0)  # its done callback
    assert not connection._closing_in_background


async def test_a_close_not_waited_for_goes_on_tracked() -> None:
    """``close(pc_wait=0)`` (a reconnect: only the DELETE must be done before the new POST)."""
    release = asyncio.Event()

    class Slow:
        closed = False

        async def close(self) -> None:
            await release.wait()
            self.closed = True

    pc = Slow()
    await asyncio.wait_for(connection._close_within(pc, 0.0), 60)  # type: ignore[arg-type]
    (closing,) = connection._closing_in_background
    assert not pc.closed
    release.set()
    await asyncio.wait([closing])
    assert pc.closed and not connection._closing_in_background
