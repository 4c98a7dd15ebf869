"""WHEP sender backed by GStreamer webrtcbin (an independent WebRTC stack for interop tests).

Run with the *system* interpreter (``/usr/bin/python3``): Debian's ``gi`` bindings are not
importable from a pip virtualenv. Uses only the standard library besides ``gi``.

    /usr/bin/python3 gst_whep_sender.py [--port 0] [--codec H264|VP8]

Prints ``READY http://127.0.0.1:PORT/whep`` once listening. ``POST /whep[?codec=VP8]`` with an
SDP offer builds one pipeline per session and answers 201 (answer SDP with candidates, Location);
``DELETE /whep/<id>`` tears it down. SIGTERM/SIGINT stops everything.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import sys
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import gi  # type: ignore[import-not-found]  # Debian's, not in this interpreter

gi.require_version("Gst", "1.0")
gi.require_version("GstSdp", "1.0")
gi.require_version("GstWebRTC", "1.0")
from gi.repository import Gst, GstSdp, GstWebRTC  # type: ignore[import-not-found]  # noqa: E402

GATHER_TIMEOUT_S = 10.0

ENCODERS = {
    # Low-latency settings from docs/interop-recipes.md; keyframe every ~1 s because aiortc
    # sends no PLI at stream start, so the first picture waits for the next keyframe.
    "VP8": (
        "vp8enc deadline=1 cpu-used=8 keyframe-max-dist=30 threads=1 ! rtpvp8pay pt={pt}",
        "VP8",
    ),
    "H264": (
        "x264enc tune=zerolatency speed-preset=ultrafast key-int-max=30 threads=1 "
        "! video/x-h264,profile=constrained-baseline ! h264parse "
        "! rtph264pay pt={pt} config-interval=-1 aggregate-mode=zero-latency",
        "H264",
    ),
}


def log(*parts: object) -> None:
    print("[gst-sender]", *parts, file=sys.stderr, flush=True)


def pick_payload_types(offer: str, codec: str) -> tuple[int, int]:
    """(video PT, audio PT) for ``codec`` and Opus, taken from the offer's rtpmap/fmtp lines."""
    rtpmap = dict(re.findall(r"a=rtpmap:(\d+) ([\w-]+)/", offer))
    fmtp = dict(re.findall(r"a=fmtp:(\d+) (.*)", offer))
    video = [int(pt) for pt, name in rtpmap.items() if name.upper() == codec]
    if codec == "H264":
        # Only packetization-mode=1 is something aiortc (and x264 + rtph264pay) handle well.
        video = [pt for pt in video if "packetization-mode=1" in fmtp.get(str(pt), "")] or video
        # webrtcbin matches our stream to the offer by H264 profile; x264 is told to produce
        # constrained-baseline (profile-level-id 42e0xx / 42c0xx), so prefer that payload type.
        constrained = [
            pt
            for pt in video
            if re.search(r"profile-level-id=42[ce]0", fmtp.get(str(pt), ""), re.IGNORECASE)
        ]
        video = constrained or video
    audio = [int(pt) for pt, name in rtpmap.items() if name.upper() == "OPUS"]
    if not video or not audio:
        raise ValueError(f"offer has no {codec} or no Opus payload type")
    return video[0], audio[0]


class Session:
    """One WHEP session: a pipeline feeding a webrtcbin."""

    def __init__(self, offer: str, codec: str) -> None:
        video_pt, audio_pt = pick_payload_types(offer, codec)
        encoder, enc_name = ENCODERS[codec]
        desc = (
            "webrtcbin name=webrtc bundle-policy=max-bundle "
            "videotestsrc is-live=true pattern=ball ! "
            "video/x-raw,width=640,height=480,framerate=30/1 ! videoconvert ! queue ! "
            f"{encoder.format(pt=video_pt)} ! "
            f"application/x-rtp,media=video,encoding-name={enc_name},payload={video_pt} ! "
            "webrtc. "
            "audiotestsrc is-live=true wave=sine freq=440 volume=0.3 ! audioconvert ! "
            "audioresample ! queue ! opusenc ! "
            f"rtpopuspay pt={audio_pt} ! "
            f"application/x-rtp,media=audio,encoding-name=OPUS,payload={audio_pt} ! webrtc."
        )
        self.pipeline: Any = Gst.parse_launch(desc)
        self.webrtc: Any = self.pipeline.get_by_name("webrtc")
        # Keep the agent referenced for the whole session: if its Python wrapper is collected,
        # webrtcbin's ICE agent is freed and the next call segfaults.
        self.agent: Any = self.webrtc.get_property("ice-agent")
        self.agent.emit("add-local-ip-address", "127.0.0.1")
        self.agent.set_property("ice-tcp", False)
        self._gathered = threading.Event()
        self.webrtc.connect("notify::ice-gathering-state", self._on_gathering)
        self.pipeline.set_state(Gst.State.PLAYING)
        self.answer = self._negotiate(offer)

    def _on_gathering(self, webrtc: Any, _pspec: Any) -> None:
        if webrtc.get_property("ice-gathering-state") == GstWebRTC.WebRTCICEGatheringState.COMPLETE:
            self._gathered.set()

    def _negotiate(self, offer_sdp: str) -> str:
        ok, sdp = GstSdp.SDPMessage.new_from_text(offer_sdp)
        if ok != GstSdp.SDPResult.OK:
            raise ValueError("unparsable offer")
        offer = GstWebRTC.WebRTCSessionDescription.new(GstWebRTC.WebRTCSDPType.OFFER, sdp)
        promise = Gst.Promise.new()
        self.webrtc.emit("set-remote-description", offer, promise)
        promise.wait()
        promise = Gst.Promise.new()
        self.webrtc.emit("create-answer", None, promise)
        promise.wait()
        reply = promise.get_reply()
        answer = reply.get_value("answer") if reply is not None else None
        if answer is None:
            raise RuntimeError(f"create-answer failed: {reply}")
        promise = Gst.Promise.new()
        self.webrtc.emit("set-local-description", answer, promise)
        promise.wait()
        # No trickle towards the client: answer only once all candidates are in the SDP.
        if not self._gathered.wait(GATHER_TIMEOUT_S):
            log("ICE gathering did not complete in time; answering with what we have")
        return str(self.webrtc.get_property("local-description").sdp.as_text())

    def close(self) -> None:
        self.pipeline.set_state(Gst.State.NULL)


class Handler(BaseHTTPRequestHandler):
    server: SenderServer

    def log_message(self, format: str, *args: Any) -> None:
        log(format % args)

    def _reply(self, status: int, body: str = "", headers: dict[str, str] | None = None) -> None:
        data = body.encode()
        self.send_response(status)
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self) -> None:
        url = urlsplit(self.path)
        if url.path != "/whep":
            self._reply(404, "not found")
            return
        if self.headers.get("Content-Type", "").split(";")[0].strip() != "application/sdp":
            self._reply(415, "expected application/sdp")
            return
        offer = self.rfile.read(int(self.headers.get("Content-Length", "0"))).decode()
        codec = parse_qs(url.query).get("codec", [self.server.codec])[0].upper()
        if codec not in ENCODERS:
            self._reply(400, f"unknown codec {codec}")
            return
        try:
            session = Session(offer, codec)
        except (ValueError, RuntimeError) as exc:
            self._reply(406, str(exc))
            return
        session_id = uuid.uuid4().hex
        with self.server.lock:
            self.server.sessions[session_id] = session
        # A client that dies without DELETE must not leave an encoder running for ever.
        reaper = threading.Timer(self.server.max_session_s, self.server.expire, [session_id])
        reaper.daemon = True
        reaper.start()
        log(f"session {session_id} codec={codec}")
        self._reply(
            201,
            session.answer,
            {"Content-Type": "application/sdp", "Location": f"/whep/{session_id}"},
        )

    def do_DELETE(self) -> None:
        session_id = urlsplit(self.path).path.rsplit("/", 1)[-1]
        with self.server.lock:
            session = self.server.sessions.pop(session_id, None)
        if session is None:
            self._reply(404, "no such session")
            return
        session.close()
        log(f"session {session_id} deleted")
        self._reply(200)

    def do_GET(self) -> None:
        if self.path == "/health":
            self._reply(200, "ok")
        else:
            self._reply(404, "not found")


class SenderServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, port: int, codec: str, max_session_s: float) -> None:
        super().__init__(("127.0.0.1", port), Handler)
        self.codec = codec
        self.max_session_s = max_session_s
        self.lock = threading.Lock()
        self.sessions: dict[str, Session] = {}

    def expire(self, session_id: str) -> None:
        with self.lock:
            session = self.sessions.pop(session_id, None)
        if session is not None:
            log(f"session {session_id} expired without DELETE")
            session.close()

    def close_all(self) -> None:
        with self.lock:
            sessions, self.sessions = list(self.sessions.values()), {}
        for session in sessions:
            session.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--codec", choices=sorted(ENCODERS), default="H264")
    parser.add_argument("--max-session-s", type=float, default=300.0)
    args = parser.parse_args()
    Gst.init(None)
    server = SenderServer(args.port, args.codec, args.max_session_s)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    # serve_forever runs in a thread so the main thread can react to signals.
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    print(f"READY http://127.0.0.1:{server.server_address[1]}/whep", flush=True)
    # If the test run is killed outright, don't linger as an orphan with encoders running.
    parent = os.getppid()
    while not stop.wait(1.0):
        if os.getppid() != parent:
            log("parent process gone; exiting")
            break
    server.shutdown()
    server.close_all()


if __name__ == "__main__":
    main()
