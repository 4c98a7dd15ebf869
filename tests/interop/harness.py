"""Start independent WebRTC stacks as WHEP senders and run the receive check against them.

Used by the interop tests (through conftest.py fixtures) and by benchmark scripts
(``scripts/ttff_chromium.py``). Every process is started in its own process group and stopped
by that group id only: other engineers' browsers and pipelines on this machine are never touched.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
PEERS = Path(__file__).resolve().parent / "peers"
SYSTEM_PYTHON = "/usr/bin/python3"  # Debian's gi bindings live here, not in the venv
READY_TIMEOUT_S = 60.0  # Chromium's first start on a loaded 2-core machine can be slow
CONNECT_TIMEOUT_S = 30.0

GST_PROBE = """
import gi
gi.require_version("Gst", "1.0")
gi.require_version("GstWebRTC", "1.0")
gi.require_version("GstSdp", "1.0")
from gi.repository import Gst, GstWebRTC, GstSdp
Gst.init(None)
need = ["webrtcbin", "x264enc", "vp8enc", "opusenc", "rtph264pay", "rtpvp8pay", "rtpopuspay",
        "h264parse", "videotestsrc", "audiotestsrc", "nicesrc"]
missing = [e for e in need if Gst.ElementFactory.find(e) is None]
print(",".join(missing))
raise SystemExit(1 if missing else 0)
"""


class HarnessError(RuntimeError):
    """A sender did not start, or a receive check produced no summary."""


def gstreamer_problem() -> str | None:
    """Why the GStreamer sender cannot run here, or None when it can."""
    if not os.path.exists(SYSTEM_PYTHON):
        return f"{SYSTEM_PYTHON} (system Python with python3-gi)"
    try:
        result = subprocess.run(
            [SYSTEM_PYTHON, "-c", GST_PROBE], capture_output=True, text=True, timeout=30
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"GStreamer probe failed: {exc}"
    if result.returncode != 0:
        detail = result.stdout.strip() or result.stderr.strip().splitlines()[-1:]
        return f"GStreamer webrtcbin sender (missing: {detail})"
    return None


def netns_problem() -> str | None:
    """Why a private network namespace cannot be made here, or None when it can."""
    try:
        result = subprocess.run(
            ["unshare", "-n", "sh", "-c", "ip link set lo up"],
            capture_output=True,
            text=True,
            timeout=15,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"unshare -n: {exc}"
    if result.returncode != 0:
        return f"a private network namespace (unshare -n; needs root): {result.stderr.strip()}"
    return None


@dataclass
class Sender:
    """A running WHEP sender process (and, for Chromium, the namespace it lives in)."""

    name: str
    proc: subprocess.Popen[str]
    url: str  # WHEP endpoint, http://127.0.0.1:PORT/whep
    log_path: Path
    netns_pid: int | None = None  # join this process's network namespace to reach the sender
    browser_pgid: int | None = None

    def whep_url(self, codec: str) -> str:
        return f"{self.url}?codec={codec}"

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def deleted_sessions(self) -> int:
        """How many WHEP sessions clients have DELETEd so far (the senders log each one)."""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return 0
        return sum(1 for line in text.splitlines() if line.endswith(" deleted"))

    def alive(self) -> bool:
        return self.proc.poll() is None


def read_until(proc: subprocess.Popen[str], prefix: str, timeout: float) -> list[str] | None:
    """Stdout lines up to the first one starting with ``prefix``; None when the process
    exits or ``timeout`` passes first."""
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    deadline = time.monotonic() + timeout
    buffer = ""
    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.5)
        if ready:
            chunk = os.read(fd, 4096).decode(errors="replace")
            if not chunk:
                break  # EOF: the process is gone
            buffer += chunk
            lines = buffer.splitlines()
            complete = lines if buffer.endswith("\n") else lines[:-1]
            if any(line.startswith(prefix) for line in complete):
                return complete
        elif proc.poll() is not None:
            break
    return None


def _wait_ready(proc: subprocess.Popen[str], timeout: float) -> list[str]:
    """Fields of the sender's ``READY ...`` line; raises when it exits or times out first."""
    lines = read_until(proc, "READY ", timeout)
    if lines is None:
        raise HarnessError(f"sender not ready after {timeout:.0f} s (exit code {proc.poll()})")
    return next(line for line in lines if line.startswith("READY ")).split()[1:]


def _stop(proc: subprocess.Popen[str], extra_pgid: int | None = None) -> None:
    """SIGTERM the process group we created, then SIGKILL whatever is left of it."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(5)
    # The relay stops its browser itself; this is only for a relay that died first.
    if extra_pgid:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(extra_pgid, signal.SIGKILL)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    if proc.stdout is not None:
        proc.stdout.close()


@contextlib.contextmanager
def _sender(name: str, cmd: list[str], *, netns: bool) -> Iterator[Sender]:
    with tempfile.TemporaryDirectory(prefix=f"interop-{name}-") as tmp:
        log_path = Path(tmp) / "sender.log"
        with open(log_path, "w") as log_file:
            if netns:
                # Only `lo` in the namespace: every candidate on both sides is 127.0.0.1.
                cmd = ["unshare", "-n", "sh", "-c", 'ip link set lo up && exec "$0" "$@"', *cmd]
            proc = subprocess.Popen(
                cmd,
                cwd=ROOT,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=log_file,
                text=True,
                start_new_session=True,  # its own process group: stopped by that id only
            )
        sender: Sender | None = None
        try:
            try:
                fields = _wait_ready(proc, READY_TIMEOUT_S)
            except HarnessError as exc:
                tail = log_path.read_text(errors="replace")[-3000:]
                raise HarnessError(f"{name}: {exc}\n{tail}") from None
            sender = Sender(
                name=name,
                proc=proc,
                url=fields[0],
                log_path=log_path,
                # unshare and sh exec the program, so its PID is the namespace holder.
                netns_pid=proc.pid if netns else None,
                browser_pgid=int(fields[1]) if len(fields) > 1 and int(fields[1]) > 0 else None,
            )
            yield sender
        finally:
            _stop(proc, sender.browser_pgid if sender else None)


@contextlib.contextmanager
def gstreamer_sender() -> Iterator[Sender]:
    """GStreamer webrtcbin WHEP sender on 127.0.0.1 (codec per request: ``?codec=VP8``)."""
    cmd = [SYSTEM_PYTHON, str(PEERS / "gst_whep_sender.py"), "--port", "0"]
    with _sender("gstreamer", cmd, netns=False) as sender:
        yield sender


@contextlib.contextmanager
def chromium_sender(chromium: str = "chromium") -> Iterator[Sender]:
    """Headless Chromium WHEP sender inside a private network namespace."""
    cmd = [
        sys.executable,
        "-m",
        "tests.interop.peers.chromium_sender.relay",
        "--port",
        "0",
        "--chromium",
        chromium,
    ]
    with _sender("chromium", cmd, netns=True) as sender:
        yield sender


def receive_checks(
    sender: Sender,
    codec: str,
    *,
    client: str = "auto",
    video_frames: int = 30,
    audio_frames: int = 50,
    timeout: float = CONNECT_TIMEOUT_S,
    repeat: int = 1,
) -> list[dict[str, Any]]:
    """Run ``receive_check`` (in the sender's namespace if it has one) for ``repeat``
    sequential sessions in one process; their JSON summaries."""
    cmd = [
        sys.executable,
        "-m",
        "tests.interop.peers.receive_check",
        sender.whep_url(codec),
        "--codec",
        codec,
        "--client",
        client,
        "--video-frames",
        str(video_frames),
        "--audio-frames",
        str(audio_frames),
        "--timeout",
        str(timeout),
        "--repeat",
        str(repeat),
    ]
    if sender.netns_pid is not None:
        cmd = ["nsenter", f"--net=/proc/{sender.netns_pid}/ns/net", *cmd]
    limit = (timeout + 15) * repeat + 15
    try:
        result = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=limit)
    except subprocess.TimeoutExpired as exc:
        raise HarnessError(f"receive check hung (> {limit:.0f} s)") from exc
    lines = [line for line in result.stdout.splitlines() if line.startswith("{")]
    if len(lines) != repeat:
        raise HarnessError(
            f"receive check printed {len(lines)} of {repeat} summaries "
            f"(exit {result.returncode}):\n"
            f"{result.stderr[-3000:]}\n--- sender log ---\n{sender.log_tail()}"
        )
    summaries: list[dict[str, Any]] = [json.loads(line) for line in lines]
    for summary in summaries:
        summary["stderr_tail"] = result.stderr[-2000:]
    return summaries


def receive_check(
    sender: Sender,
    codec: str,
    *,
    client: str = "auto",
    video_frames: int = 30,
    audio_frames: int = 50,
    timeout: float = CONNECT_TIMEOUT_S,
) -> dict[str, Any]:
    """One session in a fresh receiving process; its JSON summary."""
    return receive_checks(
        sender,
        codec,
        client=client,
        video_frames=video_frames,
        audio_frames=audio_frames,
        timeout=timeout,
    )[0]


def ttff_runs(
    sender: Sender, codec: str, runs: int, *, client: str = "auto", fresh_process: bool = False
) -> list[dict[str, Any]]:
    """``runs`` WHEP sessions, each stopped at its first decoded video frame.

    ``ttff_s`` is connect start -> first decoded video frame, measured inside the receiving
    process (interpreter start-up and imports excluded); ``timings`` is the client's phase
    split when it has one. By default the sessions run one after the other in one process
    (what a long-running application sees); ``fresh_process`` starts a process per session, so
    every run also pays first-use costs (lazy imports, TLS context, codec init).
    """
    if fresh_process:
        return [
            receive_check(sender, codec, client=client, video_frames=1, audio_frames=1)
            for _ in range(runs)
        ]
    return receive_checks(sender, codec, client=client, video_frames=1, audio_frames=1, repeat=runs)
