"""WHEP endpoint relayed to a headless Chromium page (real libwebrtc as the sender).

    python -m tests.interop.peers.chromium_sender.relay [--port 0] [--codec H264|VP8]
        [--chromium /usr/bin/chromium | --no-browser]

Serves ``sender.html``/``sender.js``, starts Chromium on that page (its own process group, fresh
profile) and prints ``READY http://127.0.0.1:PORT/whep <chromium pgid>`` once the page polls.
``POST /whep[?codec=VP8]`` hands the offer to the page and returns its answer with 201 and a
Location; ``DELETE /whep/<id>`` closes that peer connection in the page. SIGTERM stops Chromium
(by its process group) and exits.

Run it inside a private network namespace with only ``lo`` (see conftest.py): outside one,
Chromium also offers the machine's other address and aioice may nominate that pair.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path
from typing import Any

from aiohttp import web

HERE = Path(__file__).resolve().parent
ANSWER_TIMEOUT_S = 20.0
POLL_HOLD_S = 15.0
PAGE_READY_TIMEOUT_S = 45.0
PR_SET_PDEATHSIG = 1

# Flags from docs/interop-recipes.md.
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-default-apps",
    "--disable-extensions",
    "--mute-audio",
    "--use-fake-device-for-media-stream",
    "--use-fake-ui-for-media-stream",
    "--autoplay-policy=no-user-gesture-required",
    # libwebrtc ignores loopback addresses without this.
    "--allow-loopback-in-peer-connection",
    # Otherwise host candidates are mDNS .local names aiortc cannot resolve.
    "--disable-features=WebRtcHideLocalIpsWithMdns",
    # A hidden headless tab must not throttle the canvas timer.
    "--disable-background-timer-throttling",
    "--disable-renderer-backgrounding",
    "--disable-backgrounding-occluded-windows",
]


def log(*parts: object) -> None:
    print("[chromium-relay]", *parts, file=sys.stderr, flush=True)


class Relay:
    def __init__(self, default_codec: str) -> None:
        self.default_codec = default_codec
        self.messages: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.pending: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self.sessions: set[str] = set()
        self.page_seen = asyncio.Event()

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/", self.page)
        app.router.add_get("/sender.js", self.script)
        app.router.add_get("/poll", self.poll)
        app.router.add_post("/answer/{id}", self.answer)
        app.router.add_post("/log", self.page_log)
        app.router.add_post("/whep", self.whep_post)
        app.router.add_delete("/whep/{id}", self.whep_delete)
        app.router.add_get("/health", self.health)
        return app

    async def page(self, _request: web.Request) -> web.StreamResponse:
        return web.FileResponse(HERE / "sender.html")

    async def script(self, _request: web.Request) -> web.StreamResponse:
        return web.FileResponse(HERE / "sender.js")

    async def health(self, _request: web.Request) -> web.Response:
        return web.json_response({"page": self.page_seen.is_set()})

    async def page_log(self, request: web.Request) -> web.Response:
        log("page:", await request.text())
        return web.Response(status=204)

    async def poll(self, _request: web.Request) -> web.Response:
        self.page_seen.set()
        try:
            msg = await asyncio.wait_for(self.messages.get(), POLL_HOLD_S)
        except TimeoutError:
            return web.Response(status=204)
        return web.json_response(msg)

    async def answer(self, request: web.Request) -> web.Response:
        future = self.pending.get(request.match_info["id"])
        if future is None or future.done():
            return web.Response(status=404)
        future.set_result(await request.json())
        return web.Response(status=204)

    async def whep_post(self, request: web.Request) -> web.Response:
        if request.content_type != "application/sdp":
            return web.Response(status=415, text="expected application/sdp")
        codec = request.query.get("codec", self.default_codec).upper()
        if codec not in ("H264", "VP8"):
            return web.Response(status=400, text=f"unknown codec {codec}")
        session_id = uuid.uuid4().hex
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self.pending[session_id] = future
        offer = await request.text()
        await self.messages.put({"type": "offer", "id": session_id, "sdp": offer, "codec": codec})
        try:
            reply = await asyncio.wait_for(future, ANSWER_TIMEOUT_S)
        except TimeoutError:
            return web.Response(status=503, text="sender page did not answer")
        finally:
            self.pending.pop(session_id, None)
        if "sdp" not in reply:
            return web.Response(status=406, text=str(reply.get("error", "no answer")))
        self.sessions.add(session_id)
        log(f"session {session_id} codec={codec}")
        return web.Response(
            status=201,
            text=reply["sdp"],
            content_type="application/sdp",
            headers={"Location": f"/whep/{session_id}"},
        )

    async def whep_delete(self, request: web.Request) -> web.Response:
        session_id = request.match_info["id"]
        if session_id not in self.sessions:
            return web.Response(status=404)
        self.sessions.discard(session_id)
        await self.messages.put({"type": "close", "id": session_id})
        log(f"session {session_id} deleted")
        return web.Response(status=200)


def start_chromium(binary: str, url: str, profile: str) -> subprocess.Popen[bytes]:
    # Own session/process group, so the whole browser (zygote, renderers, GPU) is stopped
    # together without touching anyone else's Chromium.
    return subprocess.Popen(
        [binary, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", url],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL if not os.environ.get("CHROMIUM_LOG") else None,
        start_new_session=True,
        preexec_fn=die_with_parent,
    )


def die_with_parent() -> None:
    # Runs in the child before exec: if the relay is SIGKILLed, the browser gets SIGKILL too
    # (the browser's helpers exit when their IPC channel to it closes).
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


async def _watch_parent(stop: asyncio.Event) -> None:
    """Set ``stop`` when our parent (the test run) disappears without stopping us."""
    parent = os.getppid()
    while not stop.is_set():
        if os.getppid() != parent:
            log("parent process gone; exiting")
            stop.set()
        await asyncio.sleep(1.0)


def _wait_exit(proc: subprocess.Popen[bytes]) -> None:
    proc.wait()


def stop_chromium(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(5)
    # Children of the browser may outlive its main process: clear the group.
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(5)


async def serve(args: argparse.Namespace) -> int:
    relay = Relay(args.codec)
    # Short shutdown: a pending long-poll must not hold the exit for its full hold time.
    runner = web.AppRunner(relay.app(), access_log=None, shutdown_timeout=1.0)
    await runner.setup()
    # Bind the socket ourselves so the port picked for --port 0 is known before serving.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", args.port))
    port = sock.getsockname()[1]
    await web.SockSite(runner, sock).start()
    base = f"http://127.0.0.1:{port}"

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    watchdog = asyncio.ensure_future(_watch_parent(stop))
    profile = tempfile.mkdtemp(prefix="whep-chromium-")
    browser: subprocess.Popen[bytes] | None = None
    status = 0
    try:
        if not args.no_browser:
            browser = start_chromium(args.chromium, f"{base}/", profile)
        try:
            await asyncio.wait_for(relay.page_seen.wait(), PAGE_READY_TIMEOUT_S)
        except TimeoutError:
            log("the sender page never polled")
            return 1
        pgid = browser.pid if browser is not None else 0
        print(f"READY {base}/whep {pgid}", flush=True)

        waiters: set[asyncio.Future[Any]] = {asyncio.ensure_future(stop.wait())}
        if browser is not None:
            # A browser that dies on its own ends the relay too (the tests then see it gone).
            waiters.add(asyncio.ensure_future(asyncio.to_thread(_wait_exit, browser)))
        await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        for waiter in waiters:
            waiter.cancel()
        if not stop.is_set():
            log("Chromium exited on its own")
            status = 1
    finally:
        if browser is not None:
            await asyncio.to_thread(stop_chromium, browser)
        watchdog.cancel()
        await runner.cleanup()
        shutil.rmtree(profile, ignore_errors=True)
    return status


def main() -> None:
    parser = argparse.ArgumentParser(description="WHEP relay to a headless Chromium sender")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--codec", choices=["H264", "VP8"], default="H264")
    parser.add_argument("--chromium", default=shutil.which("chromium") or "chromium")
    parser.add_argument("--no-browser", action="store_true", help="serve only (open it yourself)")
    args = parser.parse_args()
    sys.exit(asyncio.run(serve(args)))


if __name__ == "__main__":
    main()
