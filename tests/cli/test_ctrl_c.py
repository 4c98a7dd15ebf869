"""Stopping ``avatar-rtc record`` with a signal: the file is finalised, the summary printed.

Documented exit statuses: 130 after SIGINT (Ctrl-C), 143 after SIGTERM.
"""

from __future__ import annotations

import contextlib
import json
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from avatar_rtc.errors import ConnectError, NoMediaError, ServiceUnreachableError
from tests.cli.test_record_cmd import cli_env, probe_streams
from tests.support import require_tool

pytestmark = pytest.mark.slow


def as_from_a_terminal() -> None:
    """In the child: Ctrl-C as a terminal delivers it. A runner started in the background
    (``cmd &`` in a script) ignores SIGINT, and the child would inherit that."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _start(*argv: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "avatar_rtc.cli", *argv],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=cli_env(),
        preexec_fn=as_from_a_terminal,
    )


def _wait_for_file(proc: subprocess.Popen[str], path: Path, timeout: float = 30.0) -> float:
    """``time.monotonic()`` when the recorder wrote its first bytes (the first keyframe)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and path.stat().st_size > 0:
            return time.monotonic()
        if proc.poll() is not None:
            break
        time.sleep(0.02)
    proc.kill()
    out, err = proc.communicate()
    pytest.fail(f"recording did not start: {out}\n{err}")


def _reported_duration(stdout: str) -> float:
    """Seconds of media the summary says were recorded ("duration 00:04.0 (4.000 s)")."""
    found = re.search(r"duration \S+ \((\d+\.\d+) s\)", stdout)
    assert found, stdout
    return float(found.group(1))


@pytest.mark.parametrize(
    ("sig", "extension", "seconds", "status"),
    [(signal.SIGINT, "mp4", 4.0, 130), (signal.SIGTERM, "mkv", 2.5, 143)],
)
def test_signal_mid_record_finalises_the_file(
    tmp_path: Path, sig: signal.Signals, extension: str, seconds: float, status: int
) -> None:
    require_tool("ffprobe")
    out = tmp_path / f"interrupted.{extension}"
    proc = _start("record", str(out), "--say", "Hello! I am your avatar.", "--duration", "60")
    started = _wait_for_file(proc, out)
    time.sleep(seconds)
    proc.send_signal(sig)
    stdout, stderr = proc.communicate(timeout=30)
    ran = time.monotonic() - started

    assert proc.returncode == status, stderr
    assert "Traceback" not in stderr
    assert f"recorded {out}" in stdout and "stopped by signal" in stdout
    reported = _reported_duration(stdout)
    # Media cannot outrun the clock; a busy machine may hold the sender back, not halve it.
    assert seconds / 2 <= reported <= ran + 0.5, (seconds, ran, reported)
    streams = probe_streams(out)  # readable to its end: the trailer/last cluster is there
    assert set(streams) == {"video", "audio"}
    for info in streams.values():
        assert abs(info["duration"] - reported) <= 0.1, (reported, streams)


def test_sigint_while_connecting_exits_130_without_traceback(tmp_path: Path) -> None:
    out = tmp_path / "never.mp4"
    proc = _start("-v", "record", str(out), "--duration", "30")
    assert proc.stderr is not None
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        if not line or "emulator listening" in line:
            break  # the emulator is up: the client is connecting now
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr
    assert "interrupted" in stderr or "stopped by signal" in stdout


def test_source_killed_mid_record_still_finalises_the_file(tmp_path: Path) -> None:
    """The sender vanishes (SIGKILL): the recording stops, file readable. Media stopped
    arriving is a NoMediaError (exit 3); a sender whose port refuses the reconnect is a
    ServiceUnreachableError (a MediaLostError, exit 3); a lost connection a ConnectError (7)."""
    require_tool("ffprobe")
    out = tmp_path / "killed.mp4"
    with _emulator_process() as (emulator, target):
        proc = _start("record", str(out), "--duration", "2", "--no-progress", *target)
        _wait_for_file(proc, out)
        time.sleep(0.8)
        emulator.kill()
        stdout, stderr = proc.communicate(timeout=30)
    assert "Traceback" not in stderr
    last = stderr.strip().splitlines()[-1]
    if "stopped by stalled" in stdout:
        assert proc.returncode == NoMediaError.exit_code == 3, stderr
        assert last == "avatar-rtc record: NoMediaError: media stopped arriving", last
    elif "ServiceUnreachableError" in last:
        assert proc.returncode == ServiceUnreachableError.exit_code == 3, stderr
        assert "refuses connections" in last, last
    else:
        assert "stopped by disconnected" in stdout, stdout
        assert proc.returncode == ConnectError.exit_code == 7, stderr
        assert last.startswith("avatar-rtc record: ConnectError: disconnected"), last
    reported = _reported_duration(stdout)
    assert 0.0 < reported < 2.1, reported  # stopped early by the stall (--duration 2)
    streams = probe_streams(out)
    assert set(streams) == {"video", "audio"}
    for info in streams.values():  # what was recorded until the source died is in the file
        assert abs(info["duration"] - reported) <= 0.1, (reported, streams)


@pytest.mark.parametrize("command", ["probe", "qa"])
def test_source_killed_mid_run_ends_it_with_the_loss(command: str) -> None:
    """A live probe/QA run ends when the media is lost for good, not at ``--duration``; its
    report is printed, the exit status is the loss's."""
    duration = 300.0
    with _emulator_process() as (emulator, target):
        proc = _start("-v", command, "--duration", f"{duration:g}", "--compact", *target)
        assert proc.stderr is not None
        for line in proc.stderr:  # -v: the first frame is logged
            if "first video frame" in line:
                break
        time.sleep(0.5)
        emulator.kill()
        try:
            stdout, stderr = proc.communicate(timeout=duration / 2)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
            pytest.fail(f"{command} outlived its media's loss")
    assert proc.returncode == ServiceUnreachableError.exit_code == 3, stderr
    last = stderr.strip().splitlines()[-1]
    assert last.startswith(f"avatar-rtc {command}: ServiceUnreachableError: media lost"), last
    report = json.loads(stdout)
    if command == "probe":
        probe = report["probe"]
        assert probe["error"]["type"] == "ServiceUnreachableError", probe
        assert probe["video"]["frames"] > 0
        assert 0.0 < probe["window_seconds"] < duration / 2, probe
    else:
        assert report["video"]["frames"] > 0, report["video"]
        assert 0.0 < report["duration_s"] < duration / 2, report["duration_s"]


def test_a_probe_whose_video_stops_while_audio_goes_on_exits_3() -> None:
    """Video withheld from 1 s of media time on (audio flows: no reconnect): the probe's
    window ends without a frame for seconds, a NoMediaError (it exited 0, "fps 25")."""
    with _emulator_process("--freeze-withheld", "1.0:600") as (_, target):
        proc = _start(
            "probe", "--say", "Hello there, how are you today?", "--duration", "6",
            "--compact", *target,
        )  # fmt: skip
        stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == NoMediaError.exit_code == 3, stderr
    last = stderr.strip().splitlines()[-1]
    assert last.startswith("avatar-rtc probe: NoMediaError: video stopped arriving"), last
    probe = json.loads(stdout)["probe"]
    assert probe["video"]["frames"] > 0 and probe["audio"]["seconds"] > 4.0, probe


@contextlib.contextmanager
def _emulator_process(*flags: str) -> Iterator[tuple[subprocess.Popen[str], list[str]]]:
    """``avatar-rtc emulator FLAGS`` in a process of its own, and the options that target it."""
    emulator = _start("emulator", "--port", "0", *flags)
    try:
        assert emulator.stdout is not None
        found: dict[str, str] = {}
        while "AVATAR_KS" not in found:
            line = emulator.stdout.readline()
            assert line, emulator.stderr.read() if emulator.stderr else "emulator exited"
            key, _, value = line.strip().partition("=")
            if key in ("AVATAR_API_URL", "AVATAR_KS"):
                found[key] = value
        target = ["--api-url", found["AVATAR_API_URL"], "--ks", found["AVATAR_KS"]]
        yield emulator, [*target, "--host-address", "127.0.0.1"]
    finally:
        if emulator.poll() is None:
            emulator.kill()
        emulator.communicate()


@pytest.mark.parametrize("extension", ["mp4", "mkv"])
def test_sigkill_after_5s_leaves_a_playable_file(tmp_path: Path, extension: str) -> None:
    """No chance to finalise: fragmented MP4 / Matroska must still hold >= 4 s of A/V."""
    require_tool("ffprobe")
    out = tmp_path / f"killed.{extension}"
    proc = _start("record", str(out), "--say", "Hello! I am your avatar.", "--duration", "60")
    _wait_for_file(proc, out)
    time.sleep(5.0)
    proc.kill()
    proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGKILL

    streams = probe_streams(out)
    assert set(streams) == {"video", "audio"}
    assert streams["video"]["codec"] == "h264" and streams["audio"]["codec"] == "opus"
    for info in streams.values():
        assert info["duration"] >= 4.0, streams


def _entry_point() -> list[str]:
    """The installed ``avatar-rtc`` script next to this Python: it imports the CLI before any
    of our code can catch a Ctrl-C (``python -m avatar_rtc.cli`` guards its import)."""
    script = Path(sys.executable).with_name("avatar-rtc")
    return [str(script)] if script.exists() else [sys.executable, "-m", "avatar_rtc.cli"]


def _interpreter_start() -> float:
    """Seconds a bare interpreter takes to start on this machine, now (the slowest of 3)."""
    times = []
    for _ in range(3):
        started = time.monotonic()
        subprocess.run([sys.executable, "-c", "pass"], check=True, env=cli_env())
        times.append(time.monotonic() - started)
    return max(times)


@pytest.mark.parametrize("delay", [0.1, 0.25, 0.4])
def test_ctrl_c_in_the_first_half_second_is_exit_130_without_traceback(
    tmp_path: Path, delay: float
) -> None:
    """Used to land in the second-long import of the media stack: a KeyboardInterrupt
    traceback. The interpreter's own start (a few tens of ms, measured as the baseline) is
    the only window left where Python itself prints it: the delays start after it."""
    at = _interpreter_start() + delay
    proc = subprocess.Popen(
        [*_entry_point(), "record", str(tmp_path / "early.mp4"), "--duration", "30"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=cli_env(),
        preexec_fn=as_from_a_terminal,
    )
    time.sleep(at)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=30)
    assert "Traceback" not in stderr and "KeyboardInterrupt" not in stderr, (at, stderr)
    assert proc.returncode == 130, (at, stderr)
    assert "interrupted" in stderr or "stopped by signal" in stdout, (at, stdout, stderr)
