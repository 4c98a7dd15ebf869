"""One cell of the impairment matrix: our receiver and headless Chromium, same sender, same
impairment, same time, inside a private network namespace (only ``lo``; root).

    with Namespace.start() as ns:                  # tests/interop/production/netns.py
        result = run_cell(ns, CELLS["5%+50ms"], "emulator", seconds=15, chromium=path)

Topology (all on 127.0.0.1 in the namespace)::

    sender (emulator | GStreamer behind the emulator's external WHEP URL)
       <-> coturn :3478 <-> delay relay :3490 <-> our AvatarSession
                            delay relay :3491 <-> Chromium (receiver.html)

Media is relay-only through coturn, as in production. The emulator allows one WHEP viewer
per service session (409 otherwise), so each receiver has its own session of the same
emulator: the same synthetic content, encoded per session. The impairment sits on the
receiver <-> coturn leg: loss by nft on each relay port (``impair.py``, both directions,
independent draws), delay by the relay (each way), a tbf cap per relay port on the media
direction. Events (outages, coturn restart, sender kill) happen 3 s after our first frame.

``python -m tests.interop.impairment.cell CELL --sender S --seconds N --chromium PATH`` runs
inside the namespace and prints ``RESULT {json}``; :func:`run_cell` does that from outside.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from avatar_rtc.api.client import ControlClient
from avatar_rtc.errors import AvatarRTCError
from avatar_rtc.media.formats import VideoFormat
from avatar_rtc.options import SessionOptions
from avatar_rtc.redact import Secret
from avatar_rtc.rtc.ice_options import IceOptions
from avatar_rtc.rtc.ice_servers import IceServer
from avatar_rtc.session import AvatarSession, SessionEvent
from tests.interop.harness import ROOT, _stop, gstreamer_sender, read_until
from tests.interop.impairment import impair, metrics
from tests.interop.impairment.metrics import ReceiverFigures
from tests.interop.peers.chromium_receiver.receiver import (
    ChromiumReceiver,
    ChromiumWatch,
    StatsSample,
)
from tests.interop.peers.chromium_sender.relay import die_with_parent
from tests.interop.production.netns import Namespace
from tests.turn_server import PASSWORD, USERNAME, TurnServer

logger = logging.getLogger(__name__)

SenderKind = Literal["emulator", "gstreamer"]
Event = Literal["outage", "turn-restart", "sender-kill"]
TURN_PORT, TURN_TLS_PORT, RELAY_PORTS = 3478, 5349, (49160, 49260)
OUR_PORT, CHROMIUM_PORT = 3490, 3491  # the delay relay's ports (coturn has 3478-3479)
EMULATOR_PORT = 8001
EVENT_AFTER = 3.0  # seconds after our first frame
FIRST_FRAME_TIMEOUT = 40.0
TYPED_ERROR_TIMEOUT = 90.0
# Chromium is stopped once both receivers had a full window after the later first frame
# (either can come late under loss: 8.3 s and 8.8 s after launch were seen at 5 % from a
# NACK-deaf sender on CI with a busy core); this bounds the watch if that never happens.
CHROMIUM_WATCH_MAX = FIRST_FRAME_TIMEOUT + 30.0
SETTLE = 0.5  # the window starts this long after the later first frame


@dataclass(frozen=True)
class Cell:
    name: str
    loss: int = 0  # % per direction
    delay_ms: float = 0.0  # each way
    rate_kbit: int | None = None  # cap of the media direction, per receiver
    event: Event | None = None
    outage_s: float = 0.0


CELLS = {
    c.name: c
    for c in (
        Cell("0%"),
        Cell("3%+50ms", loss=3, delay_ms=50),
        Cell("5%+50ms", loss=5, delay_ms=50),
        Cell("10%+200ms", loss=10, delay_ms=200),
        Cell("500kbit", rate_kbit=500),
        Cell("3%+100ms+2mbit", loss=3, delay_ms=100, rate_kbit=2000),
        Cell("outage-2s", event="outage", outage_s=2),
        Cell("outage-10s", event="outage", outage_s=10),
        Cell("turn-restart", event="turn-restart"),
        Cell("sender-killed", event="sender-kill"),
    )
}


@dataclass
class CellResult:
    cell: str
    sender: SenderKind
    window_s: float
    ours: ReceiverFigures
    chromium: ReceiverFigures
    notes: list[str] = field(default_factory=list)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CellResult:
        return cls(data["cell"], data["sender"], data["window_s"],
                   ReceiverFigures(**data["ours"]), ReceiverFigures(**data["chromium"]),
                   data["notes"])  # fmt: skip


class CellError(RuntimeError):
    """The cell could not run (a participant did not start, no RESULT line)."""


# --- from outside the namespace ---------------------------------------------------------


def run_cell(
    namespace: Namespace,
    cell: Cell,
    sender: SenderKind,
    *,
    seconds: float,
    chromium: str,
    playout: float | None = None,
) -> CellResult:
    """One cell; ``playout``: our ``SessionOptions.max_playout_delay`` (None: off)."""
    cmd = [*namespace.prefix, sys.executable, "-m", "tests.interop.impairment.cell", cell.name,
           "--sender", sender, "--seconds", str(seconds), "--chromium", chromium]  # fmt: skip
    if playout is not None:
        cmd += ["--playout", str(playout)]
    limit = seconds + cell.outage_s + TYPED_ERROR_TIMEOUT + 120
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=limit,
                          preexec_fn=die_with_parent)  # fmt: skip
    for line in done.stdout.splitlines():
        if line.startswith("RESULT "):
            return CellResult.from_dict(json.loads(line[len("RESULT ") :]))
    raise CellError(f"{cell.name}: exit {done.returncode}\n{done.stderr[-3000:]}")


# --- inside the namespace ---------------------------------------------------------------


@dataclass
class _Sender:
    api_url: str
    ks: str
    kill: Callable[[], None]


def _spawn(cmd: list[str], ready: str, log: Path) -> tuple[subprocess.Popen[str], list[str]]:
    """Start ``cmd`` (its own process group); its stdout lines up to ``ready``."""
    with open(log, "w") as log_file:
        proc = subprocess.Popen(cmd, cwd=ROOT, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=log_file, text=True, start_new_session=True,
                                preexec_fn=die_with_parent)  # fmt: skip
    lines = read_until(proc, ready, 60.0)
    if lines is None:
        _stop(proc)
        raise CellError(f"{cmd[:4]} not ready:\n{log.read_text(errors='replace')[-2000:]}")
    return proc, lines


def _killer(proc: subprocess.Popen[str]) -> Callable[[], None]:
    def kill() -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # its own group: started by us

    return kill


@contextlib.contextmanager
def _sender(kind: SenderKind, workdir: Path) -> Iterator[_Sender]:
    with contextlib.ExitStack() as stack:
        cmd = [sys.executable, "-m", "avatar_rtc.cli", "-v", "emulator", "--port",
               str(EMULATOR_PORT), "--idle-timeout", "600"]  # fmt: skip
        kill: Callable[[], None] | None = None
        if kind == "gstreamer":
            gst = stack.enter_context(gstreamer_sender())
            cmd += ["--no-media", "--whep-url-override", gst.whep_url("H264")]
            kill = _killer(gst.proc)
        proc, lines = _spawn(cmd, "AVATAR_KS=", workdir / "emulator.log")
        stack.callback(_stop, proc)
        values = dict(line.split("=", 1) for line in lines if "=" in line)
        yield _Sender(values["AVATAR_API_URL"], values["AVATAR_KS"], kill or _killer(proc))


class _Frames:
    """Our frames: wall-clock arrivals of what the VideoStream yields, and how it ended."""

    def __init__(self, session: AvatarSession) -> None:
        self.arrivals: list[float] = []
        self.latencies: list[float] = []  # from each frame's last packet to here, seconds
        self.error: BaseException | None = None
        self.ended_at: float | None = None
        self.task = asyncio.ensure_future(self._run(session))

    async def _run(self, session: AvatarSession) -> None:
        try:
            async for frame in session.video(VideoFormat(pixel_format=None)):
                self.arrivals.append(time.time())
                self.latencies.append(time.monotonic() - frame.arrival_time)
        except AvatarRTCError as exc:
            self.error = exc
        self.ended_at = time.time()

    async def first(self, within: float) -> float:
        deadline = time.monotonic() + within
        while not self.arrivals:
            if time.monotonic() > deadline or self.task.done():
                raise CellError(f"no first frame of ours ({self.error!r})")
            await asyncio.sleep(0.02)
        return self.arrivals[0]


async def _event(
    cell: Cell, sender: _Sender, restart_turn: Callable[[], None]
) -> tuple[float, float]:
    """Make the cell's event happen: (wall when it started, wall when the network is back).

    The network is back once the outage's nft table deletion started, at the earliest (it
    takes up to ~15 ms): both receivers' times to media are counted from there."""
    t_cut = time.time()
    t_back = None
    if cell.event == "outage":
        async with impair.outage((OUR_PORT, CHROMIUM_PORT)):
            await asyncio.sleep(cell.outage_s)
            t_back = time.time()
    elif cell.event == "turn-restart":
        await asyncio.to_thread(restart_turn)  # back once the new coturn is ready
    elif cell.event == "sender-kill":
        sender.kill()
    return t_cut, time.time() if t_back is None else t_back


async def run_inside(cell: Cell, kind: SenderKind, seconds: float, chromium_path: str,
                     workdir: Path, playout: float | None = None) -> CellResult:  # fmt: skip
    notes: list[str] = []
    overflows = impair.udp_receive_buffer_errors()
    turn_kwargs: dict[str, Any] = dict(port=TURN_PORT, tls_port=TURN_TLS_PORT,
                                       relay_ports=RELAY_PORTS,
                                       binary=shutil.which("turnserver"))  # fmt: skip
    with contextlib.ExitStack() as stack:
        turn = stack.enter_context(TurnServer.start(workdir / "turn", **turn_kwargs))

        def restart_turn() -> None:  # the same ports; its allocations are gone
            turn.stop()
            stack.enter_context(TurnServer.start(workdir / "turn-again", **turn_kwargs))

        relay, _ = _spawn([sys.executable, "-m", "tests.interop.impairment.delay_relay",
                        "--target", f"127.0.0.1:{TURN_PORT}", "--listen", str(OUR_PORT),
                        "--listen", str(CHROMIUM_PORT), "--delay-ms", str(cell.delay_ms)],
                       "READY", workdir / "relay.log")  # fmt: skip
        stack.callback(_stop, relay)
        sender = stack.enter_context(_sender(kind, workdir))
        browser = stack.enter_context(ChromiumReceiver.start(chromium_path, workdir / "chromium"))
        stack.enter_context(impair.rate_cap((OUR_PORT, CHROMIUM_PORT), cell.rate_kbit))
        stack.enter_context(impair.random_loss((OUR_PORT, CHROMIUM_PORT), cell.loss))

        async with ControlClient(sender.api_url, Secret(sender.ks)) as api:
            handle = await api.create("impairment")
            config = await api.init_client(handle)
        ice = [{"urls": f"turn:127.0.0.1:{CHROMIUM_PORT}?transport=udp",
                "username": USERNAME, "credential": PASSWORD}]  # fmt: skip
        window = seconds + cell.outage_s
        our_frames: list[_Frames] = []  # [0] once our session is up

        def full_window(samples: list[StatsSample]) -> bool:  # (a control-server thread)
            chrome_first = next((s.wall for s in samples if s.frames_decoded > 0), None)
            if chrome_first is None or not our_frames or not our_frames[0].arrivals:
                return False
            start = max(our_frames[0].arrivals[0], chrome_first) + SETTLE
            return samples[-1].wall >= start + window + SETTLE

        t_launch = time.time()
        future = browser.watch_async(
            config.whep_url,
            bearer=handle.token.reveal(),
            ice_servers=ice,
            seconds=window + CHROMIUM_WATCH_MAX,
            until=full_window,
        )
        our_turn = IceServer(f"turn:127.0.0.1:{OUR_PORT}?transport=udp", USERNAME, PASSWORD)
        options = SessionOptions(api_url=sender.api_url, ks=Secret(sender.ks),
                                 ice=IceOptions(policy="relay", extra_servers=(our_turn,)),
                                 detect_speech=False, max_playout_delay=playout)  # fmt: skip
        events: list[tuple[str, float, str]] = []
        t_cut = t_back = None
        async with AvatarSession(options) as session:
            for name in ("reconnecting", "reconnected", "disconnected", "error"):
                session.on(name, lambda e: events.append(_event_row(e)))
            frames = _Frames(session)
            our_frames.append(frames)
            await frames.first(FIRST_FRAME_TIMEOUT)
            if cell.event is not None:
                await asyncio.sleep(EVENT_AFTER)
                t_cut, t_back = await _event(cell, sender, restart_turn)
            if cell.event == "sender-kill":
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(asyncio.shield(frames.task), TYPED_ERROR_TIMEOUT)
            watch: ChromiumWatch = await asyncio.wrap_future(future)
            our_end = time.time()
            stats = session.stats()
            frames.task.cancel()
            await asyncio.gather(frames.task, return_exceptions=True)
    overflows = impair.udp_receive_buffer_errors() - overflows
    notes.append(f"namespace: {overflows} datagrams dropped by full UDP receive buffers")
    if watch.error:
        notes.append(f"chromium: {watch.error}")
    if watch.candidate_type != "relay":
        notes.append(f"chromium's pair is {watch.candidate_type}, not relay")
    chrome_first = next((s.wall for s in watch.samples if s.frames_decoded > 0), None)
    our_first = frames.arrivals[0]
    # Both were asked at the same time; the window starts once both show video, so fps and
    # freezes are the steady state's (the time to first frame is reported on its own).
    start = max(our_first, chrome_first or our_first) + SETTLE
    chrome_end = watch.samples[-1].wall if watch.samples else start
    end = min(our_end, chrome_end, start + window)
    ours = metrics.ours(frames.arrivals, (start, end), frames.latencies)
    ours.residual_loss_pct = metrics.our_residual_loss(stats.video)
    if stats.playout_delay_s is not None:
        ours.playout_delay_ms = 1000 * stats.playout_delay_s
    chrome = metrics.chromium(watch.samples, (start, end))
    ours.first_frame_s = our_first - t_launch
    chrome.first_frame_s = None if chrome_first is None else chrome_first - t_launch
    if t_cut is not None and t_back is not None:
        chrome_times = metrics.chromium_frame_times(watch.samples)
        if cell.event == "sender-kill":
            ours.last_frame_after_event_s = _last_after(frames.arrivals, t_cut)
            chrome.last_frame_after_event_s = _last_after(chrome_times, t_cut)
            typed = [t for name, t, _ in events if name in ("error", "disconnected")]
            ours.error_after_event_s = typed[0] - t_cut if typed else None
            ours.error = repr(frames.error) if frames.error else None
            if chrome_first is not None and chrome_first > t_cut:
                notes.append("chromium's first frame came after the kill")
        else:
            ours.media_back_s = metrics.first_after(frames.arrivals, t_back)
            chrome.media_back_s = metrics.first_after(chrome_times, t_back)
            notes.append(f"ours: {stats.video.early_tail_nacks} outage tail(s) NACKed on the "
                         "transport's first datagram back")  # fmt: skip
    video = stats.video
    notes.append(f"ours: {video.lost} lost, {video.nacked_packets} packets NACKed "
                 f"({video.nack_echoes} echoed), {video.recovered_packets} recovered, "
                 f"{video.late_packets} late, {video.loss_bursts} bursts not NACKed, "
                 f"{video.nacks_throttled} throttled, sender repairs {video.sender_repairs}, "
                 f"hole wait {video.hole_wait:.3f} s, {video.late_repairs} repaired late, "
                 f"{video.repairs_awaited} still asked for at the end")  # fmt: skip
    notes += [f"ours {name} at {t - start:+.2f} s {what}" for name, t, what in events]
    return CellResult(cell.name, kind, end - start, ours, chrome, notes)


def _last_after(times: list[float], t: float) -> float | None:
    later = [x for x in times if x > t]
    return later[-1] - t if later else None


def _event_row(event: SessionEvent) -> tuple[str, float, str]:
    what = type(event.data).__name__ if event.name == "error" else ""
    return str(event.name), time.time(), what


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("cell", choices=sorted(CELLS))
    parser.add_argument("--sender", choices=("emulator", "gstreamer"), default="emulator")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--chromium", required=True)
    parser.add_argument("--playout", type=float, help="our max playout delay (s); default off")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    logging.getLogger("avatar_rtc").setLevel(logging.INFO)
    # SIGTERM unwinds like an error: coturn and the other participants get stopped.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    with tempfile.TemporaryDirectory(prefix="impairment-") as tmp:
        result = asyncio.run(
            run_inside(
                CELLS[args.cell], args.sender, args.seconds, args.chromium, Path(tmp), args.playout
            )
        )
    print("RESULT " + json.dumps(asdict(result)), flush=True)


if __name__ == "__main__":
    main()
