"""``avatar-rtc record``: option handling, progress formatting, and real recordings.

The end-to-end tests run ``python -m avatar_rtc.cli record`` against the embedded emulator
and check the file with ffprobe (skipped locally without it, required in CI).
"""

from __future__ import annotations

import io
import json
import math
import os
import struct
import subprocess
import sys
import wave
from argparse import Namespace
from pathlib import Path
from typing import Any

import pytest

from avatar_rtc.cli import record_cmd
from avatar_rtc.cli.arguments import Speech
from avatar_rtc.cli.common import Target
from avatar_rtc.cli.main import build_parser, main
from avatar_rtc.cli.progress import (
    Progress,
    ProgressSample,
    format_bitrate,
    format_duration,
    format_size,
    progress_line,
)
from avatar_rtc.errors import ConfigurationError
from avatar_rtc.options import SessionOptions
from avatar_rtc.record import RecordedStreamStats, RecorderStats
from tests.support import require, require_tool

SAY = "Hello! I am your avatar."


# --- helpers (also used by test_ctrl_c) -----------------------------------------------------


def cli(*argv: str, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "avatar_rtc.cli", *argv],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=cli_env(),
    )


def cli_env() -> dict[str, str]:
    # The default target is the embedded emulator: no KS/API URL may leak in from the shell.
    env = {k: v for k, v in os.environ.items() if not k.startswith("AVATAR_")}
    env["PYTHONUNBUFFERED"] = "1"
    return env


def write_tone(path: Path, seconds: float, amplitude: float, hz: float = 440.0) -> None:
    """A mono 48 kHz 16-bit WAV sine (RMS level: 20 log10(amplitude / sqrt 2) dBFS)."""
    rate = 48000
    samples = (
        round(amplitude * 32767 * math.sin(2 * math.pi * hz * i / rate))
        for i in range(int(seconds * rate))
    )
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(b"".join(struct.pack("<h", s) for s in samples))


def probe_streams(path: Path) -> dict[str, dict[str, Any]]:
    """Per stream type: codec, size, packets and duration from the packets' timestamps
    (Matroska has no per-stream duration field)."""
    ffprobe = require_tool("ffprobe")
    out = subprocess.run(
        [
            ffprobe, "-v", "error", "-of", "json", "-show_entries",
            "stream=index,codec_type,codec_name,width,height"
            ":packet=stream_index,pts_time,duration_time",
            str(path),
        ],
        capture_output=True, text=True, timeout=30, check=True,
    ).stdout  # fmt: skip
    data = json.loads(out)
    streams: dict[str, dict[str, Any]] = {}
    for stream in data["streams"]:
        packets = [p for p in data.get("packets", []) if p["stream_index"] == stream["index"]]
        start = min(float(p["pts_time"]) for p in packets)
        end = max(float(p["pts_time"]) + float(p.get("duration_time", 0)) for p in packets)
        assert stream["codec_type"] not in streams, "one stream per type expected"
        streams[stream["codec_type"]] = {
            "codec": stream["codec_name"],
            "width": stream.get("width"),
            "height": stream.get("height"),
            "packets": len(packets),
            "duration": end - start,
        }
    return streams


# --- options ------------------------------------------------------------------------------


def test_parser_defaults() -> None:
    args = build_parser().parse_args(["record", "out.mp4"])
    assert (args.out, args.mode, args.duration, args.until_idle, args.speech, args.force) == (
        "out.mp4", "copy", None, False, [], False,
    )  # fmt: skip
    assert args.handler is record_cmd.run


def test_say_and_say_audio_are_repeatable_in_order(tmp_path: Path) -> None:
    audio = tmp_path / "hello.wav"
    write_tone(audio, 0.1, 0.5)
    argv = ["record", "o.mkv", "--say", "one", "--say-audio", str(audio), "--say", "two"]
    assert build_parser().parse_args(argv).speech == [
        Speech("text", "one"), Speech("audio", str(audio)), Speech("text", "two"),
    ]  # fmt: skip


def test_a_missing_say_audio_file_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as exc:
        build_parser().parse_args(["probe", "--say-audio", str(tmp_path / "absent.wav")])
    assert exc.value.code == 2


def test_encode_options() -> None:
    parse = build_parser().parse_args
    args = parse(["record", "o.mp4", "--mode", "encode", "--size", "320x240", "--fps", "15",
                  "--video-codec", "libx264", "--audio-codec", "aac"])  # fmt: skip
    options = record_cmd.encode_options(args)
    assert options is not None
    assert (options.width, options.height, options.fps) == (320, 240, 15.0)
    assert (options.video_codec, options.audio_codec) == ("libx264", "aac")
    assert record_cmd.encode_options(parse(["record", "o.mp4"])) is None
    with pytest.raises(ConfigurationError, match="--size"):
        record_cmd.encode_options(parse(["record", "o.mp4", "--size", "320x240"]))


@pytest.mark.parametrize(
    "argv",
    [
        ["--size", "321x240"],
        ["--size", "big"],
        ["--duration", "0"],
        ["--duration", "nan"],
        ["--duration", "inf"],
        ["--connect-timeout", "inf"],
        ["--mode", "transcode"],
        ["--say", "  "],  # the service refuses it (HTTP 400), once connected
    ],
)
def test_bad_option_values_exit_2(argv: list[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        build_parser().parse_args(["record", "o.mp4", *argv])
    assert exc.value.code == 2


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["o.avi"], "unknown extension"),
        (["o.mp4", "--fps", "10"], "--mode encode"),
        (["o.mp4", "--whep-url", "ftp://x"], "http"),
        (["o.mp4", "--bearer", "tok-en"], "--whep-url"),
        (["o.mp4", "--turn-username", "u"], "--turn URL"),
        (["o.mp4", "--stun", "turn:h:3478"], "stun"),
        (["o.mp4", "--ks", "ks-abcdef", "--api-url", "not-a-url"], "http:// or https://"),
        (["o.mp4", "--ks", "ks-abcdef", "--api-url", "http://h:99999/v1"], "Port out of range"),
        (["o.mp4", "--api-url", "http://127.0.0.1:9/v1"], "--api-url needs a KS"),
        (["o.webm", "--mode", "encode", "--audio-codec", "aac"], "cannot hold audio"),
        (["o.mp4", "--mode", "encode", "--video-codec", "libvpx"], "cannot hold video"),
    ],
)
def test_inconsistent_options_exit_2(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str], monkeypatch: Any
) -> None:
    monkeypatch.delenv("AVATAR_KS", raising=False)
    monkeypatch.delenv("AVATAR_API_URL", raising=False)
    assert main(["record", *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("avatar-rtc record: ") and message in err
    assert err.count("\n") == 1


@pytest.fixture
def connections(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """``record`` without connecting: the OUT of each run that got as far as connecting."""
    started: list[str] = []

    async def connect_nowhere(args: Namespace, target: object, encode: object, stop: object) -> int:
        started.append(args.out)
        return 0

    for name in ("AVATAR_KS", "AVATAR_API_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(record_cmd, "_record", connect_nowhere)
    return started


def _bad_outputs(tmp_path: Path) -> list[tuple[str, str]]:
    a_file = tmp_path / "notes.txt"
    a_file.write_text("x")
    (tmp_path / "old.mp4").write_bytes(b"keep me")
    (tmp_path / "folder.mp4").mkdir()
    bad = [
        (str(a_file / "out.mp4"), "is not a directory"),  # raw FileExistsError before
        (str(a_file / "deeper" / "out.mp4"), "is not a directory"),
        (str(tmp_path / "old.mp4"), "exists: use --force"),  # silently overwritten before
        (str(tmp_path / "folder.mp4"), "is a directory"),
        (f"{tmp_path / 'meant-a-folder.mp4'}/", "is a directory"),  # written as a file before
    ]
    if Path("/proc/self").is_dir():  # Linux: takes no new file, even from root
        bad.append(("/proc/out.mp4", "cannot create a file in '/proc'"))
    return bad


def test_an_unusable_output_is_refused_before_connecting(
    tmp_path: Path, connections: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    for out, message in _bad_outputs(tmp_path):
        assert main(["record", out]) == ConfigurationError.exit_code, out
        err = capsys.readouterr().err
        assert err.startswith("avatar-rtc record: ConfigurationError: ") and message in err, err
    assert connections == []  # refused before connecting: no 6 s wait for "no streams"
    assert (tmp_path / "old.mp4").read_bytes() == b"keep me"


def test_force_overwrites_and_missing_folders_are_fine(
    tmp_path: Path, connections: list[str]
) -> None:
    (tmp_path / "old.mkv").write_bytes(b"replace me")
    assert main(["record", str(tmp_path / "old.mkv"), "--force"]) == 0
    assert main(["record", str(tmp_path / "new" / "sub" / "out.webm")]) == 0  # recorder mkdirs
    assert connections == [str(tmp_path / "old.mkv"), str(tmp_path / "new" / "sub" / "out.webm")]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["old.mkv"]  # the check left nothing


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        # used to stop at once with a 0.1 s file and exit 0: nothing makes the avatar speak
        (["--until-idle"], "--until-idle needs --say or --say-audio"),
        (["--until-idle", "--duration", "5"], "--until-idle needs --say or --say-audio"),
        (["--say", "hi", "--whep-url", "http://127.0.0.1:9/w"], "need the Control API"),
        (["--say-audio", "NOT_AUDIO"], "NOT_AUDIO: not readable audio"),
    ],
)
def test_speech_options_are_checked_before_connecting(
    tmp_path: Path,
    argv: list[str],
    message: str,
    connections: list[str],
    capsys: pytest.CaptureFixture[str],
) -> None:
    not_audio = tmp_path / "notes.wav"
    not_audio.write_text("not a sound")
    (tmp_path / "o.mp4").write_bytes(b"keep me")  # (--force given: kept all the same)
    argv = [str(not_audio) if a == "NOT_AUDIO" else a for a in argv]
    message = message.replace("NOT_AUDIO", str(not_audio))
    assert main(["record", str(tmp_path / "o.mp4"), "--force", *argv]) == 2
    assert message in capsys.readouterr().err
    assert connections == []
    assert (tmp_path / "o.mp4").read_bytes() == b"keep me"


# --- progress -------------------------------------------------------------------------------


def _sample(
    at: float, frames: int, nbytes: int, dropped: int = 0, limit: float | None = None
) -> ProgressSample:
    return ProgressSample(at, at, at - 0.1, frames, nbytes, dropped, limit)


def test_formatting() -> None:
    assert format_duration(4.25) == "00:04.2"
    assert format_duration(75.0) == "01:15.0"
    assert format_duration(3725) == "1:02:05"
    assert format_bitrate(250_000) == "250 kbit/s"
    assert format_bitrate(1_500_000) == "1.50 Mbit/s"
    assert format_size(512) == "512 B"
    assert format_size(3 * 1024 * 1024) == "3.0 MiB"
    line = progress_line(_sample(1.0, 25, 0), _sample(3.0, 75, 250_000, dropped=2))
    assert line == "rec 00:03.0  media 00:02.9  25.0 fps  1.00 Mbit/s  dropped 2"
    # against --duration
    line = progress_line(None, _sample(3.0, 75, 250_000, limit=10.0))
    assert line.startswith("rec 00:03.0  media 00:02.9/00:10.0  ")


def test_progress_while_connecting() -> None:
    log, tty = io.StringIO(), io.StringIO()
    in_log, on_tty = Progress(log, tty=False), Progress(tty, tty=True)
    for phase, elapsed in [("creating the session", 0.1), ("ICE/DTLS", 0.4), ("ICE/DTLS", 0.6)]:
        in_log.connecting("embedded emulator", phase, elapsed)
        on_tty.connecting("embedded emulator", phase, elapsed)
    assert log.getvalue().splitlines() == [  # a log: a line per phase
        "connecting to the embedded emulator: creating the session  00:00.1",
        "connecting to the embedded emulator: ICE/DTLS  00:00.4",
    ]
    assert tty.getvalue().count("\r") == 3  # a terminal: the elapsed time runs
    assert tty.getvalue().endswith("connecting to the embedded emulator: ICE/DTLS  00:00.6")
    # the recording's progress then takes the line over
    assert on_tty.update(_sample(1.0, 0, 0), force=True)
    assert tty.getvalue().split("\r")[-1].startswith("rec 00:01.0")


def test_progress_on_a_terminal_rewrites_one_line() -> None:
    out = io.StringIO()
    progress = Progress(out, tty=True, interval=0.5)
    assert not progress.update(_sample(0.0, 0, 0))  # the first sample starts the clock
    assert not progress.update(_sample(0.2, 5, 100))  # too soon
    assert progress.update(_sample(1.0, 25, 1000))
    assert progress.update(_sample(2.0, 50, 2000))
    progress.finish()
    text = out.getvalue()
    assert text.count("\r") == 2 and text.endswith("\n") and text.count("\n") == 1


def test_progress_in_a_log_prints_full_lines_every_interval() -> None:
    out = io.StringIO()
    progress = Progress(out, tty=False)
    assert progress.interval == 5.0
    for t in range(0, 12):
        progress.update(_sample(float(t), 25 * t, 1000 * t))
    progress.update(_sample(12.0, 300, 12000), force=True)
    progress.finish()
    lines = out.getvalue().splitlines()
    assert len(lines) == 3 and "\r" not in out.getvalue()
    assert "25.0 fps" in lines[-1]  # the forced line: the whole run's average


def test_recorded_seconds_counts_the_held_back_video_frame() -> None:
    video = RecordedStreamStats("h264", frames=100, bytes=1, start=0.0, end=4.0)  # 40 ms frames
    assert record_cmd.recorded_seconds(video, RecordedStreamStats()) == pytest.approx(4.04)
    audio = RecordedStreamStats("opus", frames=150, bytes=1, start=0.0, end=3.0)
    assert record_cmd.recorded_seconds(video, audio) == pytest.approx(3.0)
    assert record_cmd.recorded_seconds(RecordedStreamStats(), RecordedStreamStats()) == 0.0


# --- real recordings --------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("extension", ["mp4", "mkv"])
def test_record_with_say_and_duration(tmp_path: Path, extension: str) -> None:
    require_tool("ffprobe")
    out = tmp_path / f"avatar.{extension}"
    result = cli("record", str(out), "--say", SAY, "--duration", "6")
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    assert f"recorded {out}" in result.stdout and "stopped by duration" in result.stdout
    # progress (a log: full lines): connecting, then the media recorded against --duration
    lines = result.stderr.splitlines()
    assert lines[0].startswith("connecting to the embedded emulator: "), lines
    assert any(line.startswith("rec 00:") and "/00:06.0 " in line for line in lines), lines

    streams = probe_streams(out)
    assert set(streams) == {"video", "audio"}
    video, audio = streams["video"], streams["audio"]
    assert (video["codec"], video["width"], video["height"]) == ("h264", 512, 512)
    assert audio["codec"] == "opus"
    assert video["duration"] == pytest.approx(6.0, abs=0.1), streams
    assert audio["duration"] == pytest.approx(6.0, abs=0.1), streams
    assert abs(video["duration"] - audio["duration"]) <= 0.1, streams


@pytest.mark.slow
def test_record_json_summary(tmp_path: Path) -> None:
    out = tmp_path / "short.mkv"
    result = cli("record", str(out), "--duration", "1.5", "--json", "--no-progress")
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    summary = json.loads(result.stdout)
    assert summary["file"] == str(out) and summary["stopped_by"] == "duration"
    assert summary["streams"]["video"]["codec"] == "h264"
    assert summary["streams"]["audio"]["codec"] == "opus"
    assert summary["duration"] == pytest.approx(1.5, abs=0.1)
    assert summary["size"] == out.stat().st_size > 0 and summary["dropped"] == 0


@pytest.mark.slow
def test_say_audio_is_recorded_until_idle(tmp_path: Path) -> None:
    tone = tmp_path / "tone.wav"
    write_tone(tone, seconds=1.5, amplitude=0.5)
    out = tmp_path / "tone.mkv"
    result = cli("record", str(out), "--say-audio", str(tone), "--json", "--no-progress")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["stopped_by"] == "idle", summary
    # the 1.5 s file was spoken, then the avatar went quiet (0.5 s) and the recording stopped
    assert 1.5 < summary["duration"] < 10.0, summary


@pytest.mark.slow
def test_say_without_duration_stops_when_the_avatar_is_idle(tmp_path: Path) -> None:
    out = tmp_path / "idle.mkv"
    result = cli("record", str(out), "--say", "Hi there.", "--say", "Bye.", "--json")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["stopped_by"] == "idle", summary
    # two short sentences: more than a second of media, far less than the 300 s cap
    assert 1.0 < summary["duration"] < 20.0, summary


def test_report_refuses_an_existing_report_file_unless_force(
    tmp_path: Path, connections: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "a.mkv"
    (tmp_path / "a.mkv.qa.json").write_text("{}")
    assert main(["record", str(out), "--report"]) == ConfigurationError.exit_code
    assert "a.mkv.qa.json' exists" in capsys.readouterr().err and connections == []
    assert main(["record", str(out), "--report", "--force"]) == 0
    assert connections == [str(out)]


@pytest.mark.slow
def test_record_report_writes_the_qa_report_beside_the_file(tmp_path: Path) -> None:
    from avatar_rtc.qa import analyse_file

    out = tmp_path / "talk.mkv"
    result = cli("record", str(out), "--say", SAY, "--report", "--json", "--no-progress")
    written = json.loads((tmp_path / "talk.mkv.qa.json").read_text())
    # The report of the final file, as `avatar-rtc qa OUT` gives it, and its verdict decides
    # the exit status (4: a threshold breached).
    assert written == analyse_file(out).to_dict()
    assert result.returncode == (0 if written["verdict"] == "pass" else 4), result.stderr
    summary = json.loads(result.stdout)
    report = {"file": f"{out}.qa.json", "verdict": written["verdict"], "error": None}
    assert summary["report"] == report and summary["stopped_by"] == "idle"
    assert written["audio"]["speech"] and written["video"]["frames"] > 0


def _small_disk(folder: Path) -> list[str]:
    """A command prefix running the rest with a 200 KiB tmpfs at ``folder`` (a private mount
    namespace: root, ``unshare -m``); skipped (locally) or failed (CI) where it cannot."""
    mount = f"mount -t tmpfs -o size=200k tmpfs {folder}"
    probe = subprocess.run(
        ["unshare", "-m", "sh", "-c", mount], capture_output=True, text=True, timeout=15
    )
    require(probe.returncode == 0, f"a private mount namespace (unshare -m): {probe.stderr}")
    return ["unshare", "-m", "sh", "-c", f'{mount} && exec "$0" "$@"']


@pytest.mark.slow
def test_a_full_disk_ends_the_recording_when_the_writer_fails(tmp_path: Path) -> None:
    """Not at --duration (nor never, without one), waiting for media the file cannot take; and
    one line says why, no traceback."""
    small = tmp_path / "small"
    small.mkdir()
    out = small / "x.mp4"
    command = [*_small_disk(small), sys.executable, "-m", "avatar_rtc.cli", "record", str(out)]
    # 200 KiB hold ~2 s of the emulator's stream; the run is given less than --duration
    result = subprocess.run(
        [*command, "--duration", "120", "--no-progress"],
        capture_output=True,
        text=True,
        timeout=90,
        env=cli_env(),
    )
    assert result.returncode == 1, result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("avatar-rtc record: RecordError: recording to"), result.stderr
    assert "No space left on device" in last
    assert "Traceback" not in result.stderr


def _stats(**changes: Any) -> RecorderStats:
    video = RecordedStreamStats("h264", frames=50, bytes=1000, start=0.0, end=2.0)
    audio = RecordedStreamStats("opus", frames=80, bytes=500, start=0.0, end=2.0)
    fields: dict[str, Any] = dict.fromkeys(
        ("queued", "queued_bytes", "peak_queued", "peak_queued_bytes", "dropped",
         "dropped_bytes", "skipped_before_start", "skipped_rate", "timestamp_fixups",
         "audio_overlap_drops", "audio_fill_packets", "late_writes"), 0,
    )  # fmt: skip
    fields.update(path="/nonexistent/x.mkv", mode="copy", started=True, closed=True)
    fields.update(video=video, audio=audio, duration=2.0, transcoded_video=False, error=None)
    return RecorderStats(**{**fields, **changes})


def test_the_summary_says_a_file_cut_by_a_writer_error_is_incomplete(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """After "No space left on device" the summary counted 50 frames, the file held 43."""
    outcome = record_cmd._Outcome()
    stats = _stats(error="RecordError: [Errno 28] No space left on device")
    assert record_cmd.summary(_stats(), outcome, 1.0)["complete"] is True
    assert record_cmd.summary(stats, outcome, 1.0)["complete"] is False
    args = Namespace(json=False)
    record_cmd._print_summary(args, Target("emulator", SessionOptions()), stats, outcome, 1.0)
    assert "the file is incomplete" in capsys.readouterr().out


def test_the_summary_counts_the_silence_filled_into_audio_holes(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The audio line said 350 frames of a file holding 501 packets."""
    stats = _stats(audio_fill_packets=151)
    data = record_cmd.summary(stats, record_cmd._Outcome(), 1.0)
    assert data["streams"]["audio"]["silence_filled"] == 151
    assert (
        "silence_filled"
        not in record_cmd.summary(_stats(), record_cmd._Outcome(), 1.0)["streams"]["audio"]
    )
    args = Namespace(json=False)
    record_cmd._print_summary(
        args, Target("emulator", SessionOptions()), stats, record_cmd._Outcome(), 1.0
    )
    assert "80 frames (and 151 of silence filled into holes)" in capsys.readouterr().out
