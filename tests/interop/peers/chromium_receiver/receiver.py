"""Headless Chromium as a WHEP receiver: watch a stream, sample getStats() every 0.25 s.

    with ChromiumReceiver.start(chromium_path, workdir) as browser:
        watch = browser.watch(whep_url, bearer=token, ice_servers=servers, seconds=4)
        watch.samples[-1].frames_decoded, watch.candidate_type   # "relay"

One Chromium runs ``receiver.html`` (its own process group, fresh profile, SIGKILL if we die;
the sender peer's helpers). The page long-polls a small control server in this process for
"watch" commands. WHEP itself goes through that server: the page hands it its offer, we POST
it to the WHEP URL with the bearer and DELETE the resource afterwards, so the bearer never
reaches the page and CORS does not matter. The page gets the ICE servers (it needs them).

Chromium, the control server (127.0.0.1) and this process share one network namespace;
the WHEP endpoint and TURN servers must be reachable from it (run the whole thing inside a
private namespace, e.g. ``unshare -n``; see ``scenario.py``).
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import json
import logging
import queue
import shutil
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, fields
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from tests.interop.peers.chromium_sender.relay import start_chromium, stop_chromium

logger = logging.getLogger(__name__)

HERE = Path(__file__).resolve().parent
SAMPLE_PERIOD_S = 0.25
POLL_HOLD_S = 10.0
PAGE_READY_TIMEOUT_S = 45.0
WHEP_TIMEOUT_S = 20.0
# Beyond ``seconds``: ICE gathering (≤ 5 s in the page), WHEP, closing.
WATCH_SLACK_S = 40.0


@dataclass
class StatsSample:
    """One getStats() poll: inbound-rtp kind=video (and the audio packet counters)."""

    wall: float  # time.time() seconds when the page took the sample (Date.now()/1000)
    frames_decoded: int = 0
    frames_received: int = 0
    frames_dropped: int = 0
    freeze_count: int = 0
    total_freezes_duration: float = 0.0  # seconds
    pause_count: int = 0  # W3C pauses (libwebrtc: a gap once its stream counted as inactive)
    packets_received: int = 0
    packets_lost: int = 0
    nack_count: int = 0
    pli_count: int = 0
    jitter_buffer_delay: float = 0.0  # seconds, summed over emitted frames
    jitter_buffer_emitted_count: int = 0
    audio_packets_received: int = 0
    audio_packets_lost: int = 0
    # Frames presented since the previous sample (requestVideoFrameCallback): (wall, seconds
    # from the frame's last packet to its presentation, None when the page could not tell)
    shown: list[tuple[float, float | None]] = field(default_factory=list)

    @classmethod
    def from_page(cls, data: dict[str, Any]) -> StatsSample:
        known = {f.name: f.type for f in fields(cls) if f.name != "shown"}
        values: dict[str, Any] = {}
        for name, kind in known.items():
            raw = data.get(name) or 0
            values[name] = float(raw) if kind == "float" else int(raw)
        shown = data.get("shown") or []
        values["shown"] = [
            (float(wall), None if latency is None else float(latency)) for wall, latency in shown
        ]
        return cls(**values)


@dataclass
class ChromiumWatch:
    """The result of one watch."""

    samples: list[StatsSample] = field(default_factory=list)
    error: str | None = None
    # Of the selected candidate pair's local candidate: "relay", "host", "srflx", "prflx";
    # relay_protocol is how Chromium reached the TURN server ("udp", "tcp", "tls").
    candidate_type: str | None = None
    relay_protocol: str | None = None
    offer_wall: float | None = None  # time.time() when the offer was POSTed
    answer_wall: float | None = None  # time.time() when the answer came back
    whep_delete_status: int | None = None  # the DELETE's HTTP status (None: not sent/failed)

    @property
    def relay(self) -> bool:
        return self.candidate_type == "relay"

    def fps(self) -> float:
        """Decoded frames per second from the first sample with a decoded frame to the last."""
        decoding = [s for s in self.samples if s.frames_decoded > 0]
        if len(decoding) < 2 or decoding[-1].wall <= decoding[0].wall:
            return 0.0
        first, last = decoding[0], decoding[-1]
        return (last.frames_decoded - first.frames_decoded) / (last.wall - first.wall)


Until = Callable[[list["StatsSample"]], bool]  # the samples so far -> stop now?


@dataclass
class _Pending:
    """A watch in progress: what the page reported so far."""

    whep_url: str
    bearer: str | None
    until: Until | None = None
    result: ChromiumWatch = field(default_factory=ChromiumWatch)
    resource_url: str | None = None
    done: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)


class _ControlServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, owner: ChromiumReceiver) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.owner = owner


class _Handler(BaseHTTPRequestHandler):
    server: _ControlServer

    def log_message(self, format: str, *args: Any) -> None:
        pass  # request lines are noise; the page's own log comes through /log

    def do_GET(self) -> None:
        owner = self.server.owner
        if self.path == "/":
            self._reply(200, (HERE / "receiver.html").read_bytes(), "text/html")
        elif self.path == "/receiver.js":
            self._reply(200, (HERE / "receiver.js").read_bytes(), "text/javascript")
        elif self.path == "/poll":
            owner.page_seen.set()
            try:
                command = owner.commands.get(timeout=POLL_HOLD_S)
            except queue.Empty:
                self._reply(204, b"")
                return
            self._reply(200, json.dumps(command).encode(), "application/json")
        else:
            self._reply(404, b"")

    def do_POST(self) -> None:
        owner = self.server.owner
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        kind, _, watch_id = self.path.strip("/").partition("/")
        if kind == "log":
            logger.info("page: %s", body.decode(errors="replace"))
            self._reply(204, b"")
            return
        pending = owner.pending.get(watch_id)
        if pending is None:
            self._reply(404, b"")
        elif kind == "offer":
            status, answer = owner.whep_offer(pending, body.decode())
            self._reply(status, answer.encode(), "application/sdp")
        elif kind == "sample":
            samples = pending.result.samples
            samples.append(StatsSample.from_page(json.loads(body)))
            if pending.until is not None and pending.until(samples):
                self._reply(200, b"stop")  # the page ends the watch
            else:
                self._reply(204, b"")
        elif kind == "done":
            report = json.loads(body)
            pending.result.error = report.get("error") or pending.result.error
            pending.result.candidate_type = report.get("candidate_type")
            pending.result.relay_protocol = report.get("relay_protocol")
            # DELETE before the page closes its peer connection (it waits for this reply),
            # as a client would: the resource still exists then.
            owner.whep_delete(pending)
            pending.done.set()
            self._reply(204, b"")
        else:
            self._reply(404, b"")

    def _reply(self, status: int, body: bytes, content_type: str = "text/plain") -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)


class ChromiumReceiver:
    """One headless Chromium on ``receiver.html``; watches run one after another or at once."""

    def __init__(self) -> None:
        self.commands: queue.Queue[dict[str, Any]] = queue.Queue()
        self.pending: dict[str, _Pending] = {}
        self.page_seen = threading.Event()
        self.startup_seconds: float | None = None  # launch until the page first polled
        self._executor = concurrent.futures.ThreadPoolExecutor(thread_name_prefix="chromium-watch")
        self._server = _ControlServer(self)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    @classmethod
    @contextlib.contextmanager
    def start(cls, chromium: str, workdir: Path) -> Iterator[ChromiumReceiver]:
        workdir.mkdir(parents=True, exist_ok=True)
        receiver = cls()
        server = receiver._server
        thread = threading.Thread(target=server.serve_forever, name="chromium-control", daemon=True)
        thread.start()
        profile = workdir / f"chromium-profile-{uuid.uuid4().hex[:8]}"
        profile.mkdir()
        with contextlib.ExitStack() as cleanup:
            cleanup.callback(shutil.rmtree, profile, ignore_errors=True)
            cleanup.callback(server.server_close)
            cleanup.callback(server.shutdown)
            started = time.monotonic()
            browser = start_chromium(chromium, f"{receiver.base_url}/", str(profile))
            cleanup.callback(stop_chromium, browser)  # by its process group only
            cleanup.callback(receiver._executor.shutdown, wait=True, cancel_futures=True)
            if not receiver.page_seen.wait(PAGE_READY_TIMEOUT_S):
                raise RuntimeError(f"the receiver page never polled (Chromium {browser.poll()})")
            receiver.startup_seconds = time.monotonic() - started
            logger.info("Chromium receiver up in %.2f s", receiver.startup_seconds)
            yield receiver

    def watch(
        self,
        whep_url: str,
        *,
        bearer: str | None,
        ice_servers: list[dict[str, Any]],
        relay_only: bool = True,
        seconds: float,
        until: Until | None = None,
        start_wall: float | None = None,
    ) -> ChromiumWatch:
        """Watch ``whep_url`` for ``seconds`` (from the answer on), sampling every 0.25 s.

        ``until``: called (in a server thread) with the samples so far after each one; the
        watch ends as soon as it returns True, and ``seconds`` is only its upper bound (a
        receiver slow to its first frame under loss still gets a full window: the caller
        decides what full means). ``start_wall``: the time.time() at which to begin (the
        offer); default now. Never raises for a failed watch: ``error`` says what went wrong,
        samples hold what came.
        """
        if start_wall is not None:
            time.sleep(max(0.0, start_wall - time.time()))
        watch_id = uuid.uuid4().hex
        pending = _Pending(whep_url, bearer, until)
        self.pending[watch_id] = pending
        self.commands.put(
            {
                "type": "watch",
                "id": watch_id,
                "ice_servers": ice_servers,
                "relay_only": relay_only,
                "seconds": seconds,
                "period": SAMPLE_PERIOD_S,
            }
        )
        try:
            if not pending.done.wait(seconds + WATCH_SLACK_S):
                pending.result.error = pending.result.error or "the page did not finish the watch"
        finally:
            self.pending.pop(watch_id, None)
            self.whep_delete(pending)  # a no-op when the page's /done already deleted it
        return pending.result

    def watch_async(
        self,
        whep_url: str,
        *,
        bearer: str | None,
        ice_servers: list[dict[str, Any]],
        relay_only: bool = True,
        seconds: float,
        until: Until | None = None,
        start_wall: float | None = None,
    ) -> concurrent.futures.Future[ChromiumWatch]:
        """:meth:`watch` in a background thread; ``.result()`` waits for it."""
        return self._executor.submit(
            self.watch,
            whep_url,
            bearer=bearer,
            ice_servers=ice_servers,
            relay_only=relay_only,
            seconds=seconds,
            until=until,
            start_wall=start_wall,
        )

    # --- WHEP on the page's behalf (the bearer stays here) ------------------------------

    def whep_offer(self, pending: _Pending, offer: str) -> tuple[int, str]:
        """POST the page's offer; (200, answer) or (502, why)."""
        headers = {"Content-Type": "application/sdp"}
        if pending.bearer:
            headers["Authorization"] = f"Bearer {pending.bearer}"
        request = urllib.request.Request(pending.whep_url, offer.encode(), headers, method="POST")
        pending.result.offer_wall = time.time()
        try:
            with urllib.request.urlopen(request, timeout=WHEP_TIMEOUT_S) as response:
                answer = response.read().decode()
                location = response.headers.get("Location")
        except urllib.error.HTTPError as exc:
            why = f"WHEP POST answered {exc.code}: {exc.read()[:200].decode(errors='replace')}"
            pending.result.error = why
            return 502, why
        except OSError as exc:
            pending.result.error = f"WHEP POST failed: {exc}"
            return 502, pending.result.error
        pending.result.answer_wall = time.time()
        if location:
            pending.resource_url = urllib.parse.urljoin(pending.whep_url, location)
        return 200, answer

    def whep_delete(self, pending: _Pending) -> None:
        with pending.lock:
            url, pending.resource_url = pending.resource_url, None
        if url is None:
            return
        headers = {"Authorization": f"Bearer {pending.bearer}"} if pending.bearer else {}
        request = urllib.request.Request(url, headers=headers, method="DELETE")
        try:
            with urllib.request.urlopen(request, timeout=WHEP_TIMEOUT_S) as response:
                pending.result.whep_delete_status = response.status
        except urllib.error.HTTPError as exc:
            pending.result.whep_delete_status = exc.code
            logger.warning("WHEP DELETE answered %s", exc.code)
        except OSError as exc:
            logger.warning("WHEP DELETE failed: %s", exc)
