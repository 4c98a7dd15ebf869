"""AvatarSession across a lost connection, against the in-process emulator on 127.0.0.1.

- The emulator drops our viewer (its peer connection closes): a new connection replaces it,
  and the same stream iterator keeps yielding, with the gap in its timestamps.
- The service session ends: reconnecting is impossible (WHEP 404), a typed error within 5 s
  of the watchdog firing, and the streams end instead of waiting forever.
- Reconnecting off: the first loss is final (MediaLostError).
- The service session ends with ``new_session_on_not_found``: a new service session replaces
  it, the same iterator and the same recording carry on.

The network outage and the TURN restart (nftables, coturn): tests/rtc/test_reconnect_outage.py.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import statistics
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import cast

import pytest
import pytest_asyncio

from avatar_rtc.cli.common import announce_reconnects
from avatar_rtc.emulator import Emulator
from avatar_rtc.emulator.media import AvatarMedia
from avatar_rtc.errors import AvatarRTCError, MediaLostError, WhepNotFoundError
from avatar_rtc.media.decoder import decoder_for
from avatar_rtc.media.formats import VideoFormat
from avatar_rtc.record.options import RecordOptions
from avatar_rtc.rtc.reconnect import Outage, ReconnectPolicy
from avatar_rtc.session import AvatarSession, SessionClosedError, SessionEvent
from avatar_rtc.session_stats import SessionState
from tests.record.filecheck import decodes_cleanly
from tests.rtc.outage_scenario import Frames, packet_times
from tests.support import emulator_options, require_tool, wait_until

pytestmark = pytest.mark.asyncio(loop_scope="module")

RAW = VideoFormat(pixel_format=None)  # no conversion: only the frames' timing matters here


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def emu() -> AsyncIterator[Emulator]:
    async with Emulator() as emulator:
        yield emulator


def new_session(emu: Emulator, **options: object) -> AvatarSession:
    base = emulator_options(emu, detect_speech=False, keep_alive_interval=3600.0)
    return AvatarSession(dataclasses.replace(base, **options))  # type: ignore[arg-type]


class Events:
    def __init__(self, session: AvatarSession) -> None:
        self.log: list[SessionEvent] = []
        for name in ("reconnecting", "reconnected", "disconnected", "error"):
            session.on(name, self.log.append)

    def names(self) -> list[str]:
        return [e.name for e in self.log]

    def of(self, name: str) -> list[SessionEvent]:
        return [e for e in self.log if e.name == name]


def media_of(emu: Emulator, session: AvatarSession) -> AvatarMedia:
    assert session.session_id is not None
    media = emu.session(session.session_id).media
    assert isinstance(media, AvatarMedia)
    return media


async def test_dropped_viewer_comes_back_on_a_new_connection_same_stream(emu: Emulator) -> None:
    async with new_session(emu) as session:
        events = Events(session)
        frames = Frames(session.video(RAW))
        await wait_until(lambda: len(frames.seen) >= 10, 10)
        first_connection = session.connection
        media = media_of(emu, session)
        (resource_id,) = media.viewers
        t_drop = time.monotonic()
        await media.disconnect_viewer(resource_id)  # the server side closes our viewer

        await wait_until(lambda: events.of("reconnected"), 15)
        await wait_until(lambda: frames.after(events.of("reconnected")[0].time) >= 10, 10)
        assert events.names() == ["reconnecting", "reconnected"]
        outage = events.of("reconnected")[0].data
        assert isinstance(outage, Outage) and outage.replaced and outage.attempts == 1
        assert outage.seconds is not None and outage.seconds > 0
        assert session.connection is not first_connection
        assert session.state is SessionState.CONNECTED
        assert len(media.viewers) == 1 and resource_id not in media.viewers
        # The same iterator: frames before and after, timestamps increasing, the gap in them.
        assert frames.after(t_drop) >= 10 and frames.ended_at is None
        pts = [p for _, p in frames.seen]
        steps = [b - a for a, b in itertools.pairwise(pts)]
        assert min(steps) > 0
        # Visible as one step several frame intervals long. Not compared with the wall-clock
        # outage: presentation times are the sender's media time, and the in-process emulator
        # on a busy machine can fall behind the wall clock (a CI run saw a 0.20 s step for a
        # 0.39 s outage).
        assert max(steps) >= 3 * statistics.median(steps)
        stats = session.stats()
        assert stats.reconnect.outages == stats.reconnect.reconnects == 1
        assert stats.reconnect.attempts == 1 and not stats.reconnect.reconnecting
        assert stats.reconnect.outage_seconds == pytest.approx(outage.seconds)
        assert stats.to_dict()["reconnect"]["reconnects"] == 1
        await frames.aclose()


async def test_session_ended_is_a_typed_error_within_5s(emu: Emulator) -> None:
    session = new_session(emu)
    await _session_ends_under_us(session)  # (its stream raised the loss: the block does not)
    assert session.error_raised
    # Compared by value: mypy still believes the state narrowed to DISCONNECTED above.
    assert session.state.value == "ended"


async def _session_ends_under_us(session: AvatarSession) -> None:
    async with session:
        events = Events(session)
        frames = Frames(session.video(RAW))
        await wait_until(lambda: len(frames.seen) >= 5, 10)
        live = session.live
        assert live is not None
        await live.client.end(live.handle)  # the sender is gone for good

        await wait_until(lambda: events.of("error"), 15)
        fired = events.of("reconnecting")[0].time  # the watchdog noticed the loss
        error_event = events.of("error")[0]
        print(f"watchdog fired -> typed error: {error_event.time - fired:.3f} s")
        assert error_event.time - fired < 5.0
        assert isinstance(error_event.data, WhepNotFoundError)
        assert isinstance(error_event.data, AvatarRTCError)
        assert events.names() == ["reconnecting", "disconnected", "error"]
        assert session.state is SessionState.DISCONNECTED
        # The stream ends rather than waiting for frames that will not come: its iterator
        # raises the typed error (a loop over frames must not take the loss for the end).
        await wait_until(lambda: frames.ended_at is not None, 5)
        assert frames.ended_at is not None and frames.ended_at - fired < 5.0
        assert frames.error is error_event.data is session.error
        assert session.stats().reconnect.reconnects == 0


@pytest.mark.parametrize("keep_alive", [3600.0, 0.2])
async def test_session_ended_is_replaced_by_a_new_one_when_asked(
    emu: Emulator, tmp_path: Path, keep_alive: float
) -> None:
    """Noticed by the watchdog (WHEP POST 404) or first by a keep-alive (404): the same."""
    require_tool("ffmpeg")
    out = tmp_path / "renewed.mp4"
    policy = ReconnectPolicy(new_session_on_not_found=True)
    session = new_session(emu, reconnect=policy, keep_alive_interval=keep_alive)
    async with session:
        events = Events(session)
        frames = Frames(session.video(RAW))
        recorder = session.record(out, RecordOptions(mode="copy"))
        await wait_until(lambda: recorder.stats().video.frames >= 10, 10)
        live = session.live
        assert live is not None
        old_id = live.session_id
        before = recorder.stats().video.frames
        await live.client.end(live.handle)  # WHEP answers 404 from now on

        await wait_until(lambda: events.of("reconnected"), 15)
        back = events.of("reconnected")[0].time
        await wait_until(lambda: frames.after(back) >= 10, 10)
        await wait_until(lambda: recorder.stats().video.frames >= before + 10, 10)
        assert events.names() == ["reconnecting", "reconnected"]
        outage = events.of("reconnected")[0].data
        assert isinstance(outage, Outage) and outage.new_session and outage.replaced
        new_id = session.session_id
        assert new_id is not None and new_id != old_id
        assert emu.session(new_id).state.is_live and not emu.session(old_id).state.is_live
        assert session.whep_url is not None and new_id in session.whep_url
        assert session.state is SessionState.CONNECTED and frames.ended_at is None
        pts = [p for _, p in frames.seen]
        assert min(b - a for a, b in itertools.pairwise(pts)) > 0
        stats = await recorder.astop()
        await frames.aclose()
    # Compared by value: mypy still believes the state narrowed to CONNECTED above.
    assert session.state.value == "ended"
    assert not emu.session(new_id).state.is_live  # the new one is ended on close too
    # One file across both service sessions, decodable end to end.
    assert stats.error is None and decodes_cleanly(out) == ""
    assert len(packet_times(out, "v")) >= stats.video.frames >= before + 10


async def test_a_keep_alive_404_while_media_flows_reconnects_once_not_in_a_loop(
    emu: Emulator,
) -> None:
    # Media on the connection marked dead counted as recovery, the mark stayed, and the
    # watchdog reported the loss again at once: 186 reconnects in 10 s.
    policy = ReconnectPolicy(new_session_on_not_found=True)
    session = new_session(emu, reconnect=policy, keep_alive_interval=0.2)
    async with session:
        events = Events(session)
        await session.wait_first_frame(timeout=20)
        emu.faults.fail_next("keep-alive", 404)  # the service session itself lives on
        await wait_until(lambda: events.of("reconnected"), 20)
        await asyncio.sleep(2.0)  # a loop would add dozens of events here
        assert events.names() == ["reconnecting", "reconnected"]
        assert session.state is SessionState.CONNECTED


async def test_reconnect_off_makes_the_first_loss_final(emu: Emulator, tmp_path: Path) -> None:
    session = new_session(emu, reconnect=ReconnectPolicy.disabled())
    await _first_loss_is_final(session, emu, tmp_path)  # (the streams raised it: not the block)
    assert isinstance(session.error, MediaLostError) and session.error_raised


async def _first_loss_is_final(session: AvatarSession, emu: Emulator, tmp_path: Path) -> None:
    async with session:
        events = Events(session)
        frames = Frames(session.video(RAW))
        await wait_until(lambda: len(frames.seen) >= 5, 10)
        media = media_of(emu, session)
        (resource_id,) = media.viewers
        await media.disconnect_viewer(resource_id)
        await wait_until(lambda: events.of("error"), 10)
        assert events.names() == ["disconnected", "error"]
        assert isinstance(events.of("error")[0].data, MediaLostError)
        await wait_until(lambda: frames.ended_at is not None, 5)
        assert session.state is SessionState.DISCONNECTED
        assert media.viewers == {}  # no new connection was made
        assert isinstance(frames.error, MediaLostError)
        # What is opened after the loss ends at once (with the error) rather than wait.
        late = session.video()
        async with asyncio.timeout(10):  # (a hang, were it to wait)
            with pytest.raises(MediaLostError):
                await late.recv()
        assert late.closed and late.error is session.error
        assert not decoder_for(session.video_pipeline).running
        with pytest.raises(SessionClosedError, match="lost for good"):
            session.record(tmp_path / "late.mkv")
        assert not (tmp_path / "late.mkv").exists()


async def test_cli_announces_the_outage_and_the_recovery(
    capsys: pytest.CaptureFixture[str],
) -> None:
    handlers: dict[str, Callable[[SessionEvent], object]] = {}

    class FakeSession:
        def on(self, name: str, handler: Callable[[SessionEvent], object]) -> Callable[[], None]:
            handlers[name] = handler
            return lambda: handlers.pop(name, None) and None

    ended_lines: list[str] = []
    session = cast(AvatarSession, FakeSession())
    remove = announce_reconnects(session, "record", lambda: ended_lines.append("\n"))
    lost = Outage("no media for 2.0 s", started=1.0)
    handlers["reconnecting"](SessionEvent("reconnecting", session, 3.0, lost))
    back = Outage("no media for 2.0 s", started=1.0, attempts=1, seconds=10.4, replaced=True)
    handlers["reconnected"](SessionEvent("reconnected", session, 11.4, back))
    assert capsys.readouterr().err.splitlines() == [
        "avatar-rtc record: media lost (no media for 2.0 s): reconnecting",
        "avatar-rtc record: media back after 10.4 s on a new connection",
    ]
    assert len(ended_lines) == 2  # the progress line was ended before each
    remove()
    assert handlers == {}
