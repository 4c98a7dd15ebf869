"""One media outage, end to end, inside a private network namespace (only ``lo``).

Run (as root) by ``tests/rtc/test_reconnect_outage.py``::

    unshare -n python -m tests.rtc.outage_scenario CASE OUT --outage S

An in-process emulator sends; an :class:`AvatarSession` receives, records to ``OUT`` (copy
mode) and consumes one video stream. After ~2 s of media:

- ``network``: nft drops every UDP and TCP packet on the input hook for ``S`` s (media,
  signalling and the Control API alike), then the table is deleted (the network is back);
- ``turn``: relay-only through coturn (one ``turn:...?transport=udp`` URL); coturn is stopped
  for ``S`` s, then started again on the same ports (its allocations are gone). With
  ``--ice-restart`` the emulator takes WHEP PATCH: media must come back by an ICE restart of
  the same peer connection (a new allocation), not a new one.

Then media must come back on the same stream iterator and into the same file. Prints one JSON
object; times are ``time.monotonic()`` seconds relative to the restore (network back, or the
new coturn ready): the first packet after it (``reconnected`` event), the first frame the
iterator yields, and the initial connect's ``timings.total`` of the same run as a baseline.

- ``sender_killed``: relay-only through coturn; the emulator is a subprocess (``avatar-rtc
  emulator``), killed with SIGKILL: its port refuses connections from then on. Reconnecting is
  impossible: the session must end with a typed error. Times are relative to the kill: the
  ``reconnecting`` event (the watchdog noticed), the ``error`` event, the stream's end.
- ``udp_blocked``: relay-only through coturn's four URLs, as the service gives them (UDP
  twice, TCP, TLS); media flows over TURN/UDP, then nft drops UDP to and from the TURN ports
  for good (a firewall closing UDP mid-session; TCP still works). Media must come back over
  TURN/TCP or TLS on the same stream and file. Times are relative to the cut.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

from avatar_rtc.emulator import Emulator
from avatar_rtc.errors import AvatarRTCError
from avatar_rtc.media.formats import VideoFormat
from avatar_rtc.media.streams import VideoStream
from avatar_rtc.options import SessionOptions
from avatar_rtc.redact import Secret
from avatar_rtc.rtc.ice_options import IceOptions
from avatar_rtc.rtc.ice_servers import IceServer, TurnPorts
from avatar_rtc.rtc.reconnect import Outage
from avatar_rtc.session import AvatarSession, SessionEvent
from tests.turn_server import PASSWORD, USERNAME, TurnServer

TABLE = "avatar_rtc_outage"
DROP_ALL = f"""
table inet {TABLE} {{
  chain input {{
    type filter hook input priority 0; policy accept;
    meta l4proto {{ tcp, udp }} drop
  }}
}}
"""
TURN_PORT, TURN_TLS_PORT, RELAY_PORTS = 3478, 5349, (49160, 49260)
TURN_UDP_PORTS = f"{{ {TURN_PORT}, {TURN_PORT + 1} }}"
DROP_TURN_UDP = f"""
table inet {TABLE} {{
  chain input {{
    type filter hook input priority 0; policy accept;
    udp sport {TURN_UDP_PORTS} drop
    udp dport {TURN_UDP_PORTS} drop
  }}
}}
"""
BEFORE = 2.0  # seconds of media before the outage
AFTER = 2.0  # seconds of media after it came back
BACK_TIMEOUT = 30.0


class Frames:
    """Consumes a stream in the background: (arrival, presentation time) of every frame."""

    def __init__(self, stream: VideoStream) -> None:
        self.seen: list[tuple[float, float]] = []
        self.ended_at: float | None = None
        self.error: AvatarRTCError | None = None  # what ended it, when the media ended for good
        self.task = asyncio.ensure_future(self._run(stream))

    async def _run(self, stream: VideoStream) -> None:
        try:
            async for frame in stream:
                self.seen.append((time.monotonic(), frame.presentation_time))
        except AvatarRTCError as exc:
            self.error = exc
        self.ended_at = time.monotonic()

    def after(self, t: float) -> int:
        """Frames that arrived after ``t``."""
        return sum(1 for arrival, _ in self.seen if arrival > t)

    async def first_after(self, t: float, within: float) -> float | None:
        """Arrival of the first frame after ``t`` (waiting up to ``within`` s for it)."""
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            later = [arrival for arrival, _ in self.seen if arrival > t]
            if later:
                return later[0]
            await asyncio.sleep(0.01)
        return None

    async def aclose(self) -> None:
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)


def visible_gap(outage_seconds: float) -> float:
    """The least gap a reconnect must leave in a file's video timestamps. The outage is
    measured on our clock (last packet before, first after, polled), the file's timestamps on
    the sender's (RTCP SR) with the A/V clock's slewed corrections: on a loaded machine they
    differed by 0.105 s (gap 0.320 s for an outage of 0.425 s), by 0.097 s (0.294 s for
    0.391 s), and, the suite on two workers beside a busy core, by 0.228 s (0.252 s for
    0.480 s). So: half the outage, and five frame intervals either way (a gap collapsed by the
    recorder would be one)."""
    return max(outage_seconds / 2, 5 / 25)


def packet_times(path: Path, stream: str) -> list[float]:
    """ffprobe's packet timestamps (seconds) of the ``v`` or ``a`` streams of a file."""
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-select_streams", stream, "-show_entries", "packet=pts_time",
         "-of", "csv=p=0", str(path)],
        capture_output=True, text=True, check=True, timeout=30,
    )  # fmt: skip
    return [float(line) for line in out.stdout.split() if line]


@contextlib.asynccontextmanager
async def session_for(emulator: Emulator | EmulatorProcess,
                      ice: IceOptions) -> AsyncIterator[AvatarSession]:  # fmt: skip
    options = SessionOptions(api_url=emulator.api_url, ks=Secret(emulator.ks), ice=ice,
                             detect_speech=False)  # fmt: skip
    session = AvatarSession(options)
    try:
        async with session:
            yield session
    except AvatarRTCError as exc:
        if exc is not session.error:  # (a loss for good: the scenarios judge it by its events)
            raise


@contextlib.contextmanager
def coturn(workdir: Path, binary: str) -> Iterator[TurnServer]:
    with TurnServer.start(workdir, port=TURN_PORT, tls_port=TURN_TLS_PORT,
                          relay_ports=RELAY_PORTS, binary=binary) as server:  # fmt: skip
        yield server


class EmulatorProcess:
    """``avatar-rtc emulator`` in a subprocess (its own process group), with a KS we chose
    (the emulator never echoes a given one)."""

    def __init__(self, port: int = 8080) -> None:
        self.ks = secrets.token_urlsafe(24)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "avatar_rtc.cli", "emulator", "--port", str(port),
             f"--ks={self.ks}"],  # one argument: a random KS may begin with '-'
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, text=True,
            start_new_session=True,
        )  # fmt: skip
        self.api_url = ""

    def wait_ready(self, within: float = 30.0) -> None:
        """Until it prints its API URL (it listens by then)."""
        assert self.proc.stdout is not None
        deadline = time.monotonic() + within
        while time.monotonic() < deadline and not self.api_url:
            line = self.proc.stdout.readline()
            if not line:
                raise RuntimeError(f"the emulator exited ({self.proc.poll()})")
            if line.startswith("AVATAR_API_URL="):
                self.api_url = line.strip().partition("=")[2]
        if not self.api_url:
            raise RuntimeError("the emulator did not start")

    def kill(self) -> None:
        self.proc.kill()  # SIGKILL: no goodbye, its sockets are closed by the kernel
        self.proc.wait(10)


async def run_sender_killed(out: Path, workdir: Path) -> dict[str, Any]:
    url = f"turn:127.0.0.1:{TURN_PORT}?transport=udp"
    ice = IceOptions(policy="relay", extra_servers=(IceServer(url, USERNAME, PASSWORD),))
    events: list[tuple[str, float, Outage | str | None]] = []
    result: dict[str, Any] = {"case": "sender_killed"}
    emulator = EmulatorProcess()
    try:
        await asyncio.to_thread(emulator.wait_ready)
        with coturn(workdir / "turn", shutil.which("turnserver") or ""):
            async with session_for(emulator, ice) as session:
                for name in ("reconnecting", "reconnected", "disconnected", "error"):
                    session.on(name, lambda e: events.append(_event(e)))
                failed = asyncio.Event()

                def on_error(event: SessionEvent) -> None:
                    result["error_types"] = _mro(event.data)
                    failed.set()

                session.on("error", on_error)
                await session.wait_first_frame(20)
                result["connect_seconds"] = session.timings.total
                result["media_timeout"] = session.options.reconnect.media_timeout
                result["pair"] = session.selected_pair.describe() if session.selected_pair else None
                recorder = session.record(out)
                frames = Frames(session.video(VideoFormat(pixel_format=None)))
                await asyncio.sleep(BEFORE)
                t_kill = time.monotonic()
                emulator.kill()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(failed.wait(), 90)
                await asyncio.sleep(0.5)  # the stream ends right after the error
                result.update(
                    state=session.state.value,
                    frames_before=len(frames.seen),
                    stream_ended=None if frames.ended_at is None else frames.ended_at - t_kill,
                    stream_error=None if frames.error is None else _mro(frames.error),
                    reconnect=session.stats().to_dict()["reconnect"],
                )
                await frames.aclose()
                stats = await recorder.astop()
                result["recorder"] = {"video_frames": stats.video.frames, "error": stats.error}
    finally:
        if emulator.proc.poll() is None:
            emulator.kill()
    result["events"] = [
        {"name": name, "t": t - t_kill, "data": vars(d) if isinstance(d, Outage) else d}
        for name, t, d in events
    ]
    return result


async def run_udp_blocked(out: Path, workdir: Path) -> dict[str, Any]:
    events: list[tuple[str, float, Outage | str | None]] = []
    result: dict[str, Any] = {"case": "udp_blocked"}
    with coturn(workdir / "turn", shutil.which("turnserver") or "") as turn:
        ports = TurnPorts(udp=(TURN_PORT, TURN_PORT + 1), tcp=TURN_PORT, tls=TURN_TLS_PORT)
        ice = IceOptions(policy="relay", turn=turn.turn_config, turn_ports=ports,
                         turn_ca_file=str(turn.ca_file))  # fmt: skip
        async with Emulator() as emulator, session_for(emulator, ice) as session:
            for name in ("reconnecting", "reconnected", "disconnected", "error"):
                session.on(name, lambda e: events.append(_event(e)))
            await session.wait_first_frame(20)
            result["connect_seconds"] = session.timings.total
            pair = session.selected_pair
            result["transport_before"] = None if pair is None else pair.relay_transport
            session.record(out)
            frames = Frames(session.video(VideoFormat(pixel_format=None)))
            await asyncio.sleep(BEFORE)
            t_cut = time.monotonic()
            await nft("-f", "-", stdin=DROP_TURN_UDP)
            first = await frames.first_after(t_cut + 0.5, 60.0)  # (frames in flight at the cut)
            await asyncio.sleep(AFTER)
            pair = session.selected_pair
            result.update(
                first_frame_after=None if first is None else first - t_cut,
                frames_before=len(frames.seen) - frames.after(t_cut),
                frames_after=frames.after(t_cut),
                pts=[pts for _, pts in frames.seen],
                transport_after=None if pair is None else pair.relay_transport,
                state=session.state.value,
            )
            await _wrap_up(result, session, frames)
    result["events"] = _timed(events, t_cut)
    return result


async def nft(*args: str, stdin: str | None = None) -> None:
    await asyncio.to_thread(subprocess.run, ["nft", *args], input=stdin, text=True, check=True)


async def run(
    case: str, out: Path, outage: float, workdir: Path, *, ice_restart: bool = False
) -> dict[str, Any]:
    turn_binary = shutil.which("turnserver") or ""
    url = f"turn:127.0.0.1:{TURN_PORT}?transport=udp"
    relay = IceOptions(policy="relay", extra_servers=(IceServer(url, USERNAME, PASSWORD),))
    ice = relay if case == "turn" else IceOptions(host_addresses=("127.0.0.1",))
    events: list[tuple[str, float, Outage | str | None]] = []
    result: dict[str, Any] = {"case": case, "outage": outage}
    with contextlib.ExitStack() as stack:
        turn = None
        if case == "turn":
            turn = stack.enter_context(coturn(workdir / "turn1", turn_binary))
        async with (
            Emulator(ice_restart=ice_restart) as emulator,
            session_for(emulator, ice) as session,
        ):
            for name in ("reconnecting", "reconnected", "disconnected", "error"):
                session.on(name, lambda e: events.append(_event(e)))
            await session.wait_first_frame(20)
            result["connect_seconds"] = session.timings.total
            result["pair"] = session.selected_pair.describe() if session.selected_pair else None
            session.record(out)
            frames = Frames(session.video(VideoFormat(pixel_format=None)))
            await asyncio.sleep(BEFORE)
            t_cut = time.monotonic()
            if turn is not None:
                turn.stop()
            else:
                await nft("-f", "-", stdin=DROP_ALL)
            await asyncio.sleep(outage)
            if turn is not None:
                again = coturn(workdir / "turn2", turn_binary)
                await asyncio.to_thread(stack.enter_context, again)  # back once it is ready
            else:
                await nft("delete", "table", "inet", TABLE)
            t_back = time.monotonic()
            first = await frames.first_after(t_back, BACK_TIMEOUT)
            await asyncio.sleep(AFTER)
            result.update(
                cut=t_cut - t_back,
                first_frame_after=None if first is None else first - t_back,
                frames_before=len(frames.seen) - frames.after(t_back),
                frames_after=frames.after(t_back),
                pts=[pts for _, pts in frames.seen],
                pair_after=session.selected_pair.describe() if session.selected_pair else None,
                state=session.state.value,
            )
            await _wrap_up(result, session, frames)
    result["events"] = _timed(events, t_back)
    return result


async def _wrap_up(result: dict[str, Any], session: AvatarSession, frames: Frames) -> None:
    """The session's figures once its media came back (while it is still open)."""
    stats = session.stats()
    result["reconnect"] = stats.to_dict()["reconnect"]
    result["iterator_ended"] = frames.ended_at is not None
    await frames.aclose()
    recorder = stats.recorders[0]
    result["recorder"] = {"video_frames": recorder.video.frames,
                          "duration": recorder.duration, "error": recorder.error}  # fmt: skip


def _timed(events: list[tuple[str, float, Outage | str | None]], t0: float) -> list[Any]:
    """The session's events, their times from ``t0``."""
    return [
        {"name": name, "t": t - t0, **({"outage": vars(d)} if isinstance(d, Outage) else
                                       {"data": d})}
        for name, t, d in events
    ]  # fmt: skip


def _mro(error: object) -> list[str]:
    """The names of an error's classes, most specific first (for the JSON verdict)."""
    return [cls.__name__ for cls in type(error).__mro__]


def _event(event: SessionEvent) -> tuple[str, float, Outage | str | None]:
    data = event.data if isinstance(event.data, Outage) else str(event.data)
    return event.name, event.time, data


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("case", choices=("network", "turn", "sender_killed", "udp_blocked"))
    parser.add_argument("out", type=Path)
    parser.add_argument("--outage", type=float, default=10.0)
    parser.add_argument("--ice-restart", action="store_true", help="the emulator takes PATCH")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    logging.getLogger("avatar_rtc").setLevel(logging.INFO)  # the log tells the attempts
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    with tempfile.TemporaryDirectory() as tmp:
        if args.case == "sender_killed":
            result = asyncio.run(run_sender_killed(args.out, Path(tmp)))
        elif args.case == "udp_blocked":
            result = asyncio.run(run_udp_blocked(args.out, Path(tmp)))
        else:
            result = asyncio.run(
                run(args.case, args.out, args.outage, Path(tmp), ice_restart=args.ice_restart)
            )
    print(json.dumps(result))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
