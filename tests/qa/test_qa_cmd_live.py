"""``avatar-rtc qa`` without FILE: a scripted live session against the embedded emulator.

Run in this process (``main``): the report on stdout, ``--json``/``--plot``/``--record`` files,
exit 0 when every threshold holds and 4 when one cannot; usage errors before connecting.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from avatar_rtc.cli.main import main
from avatar_rtc.cli.qa_cmd import read_script
from tests.cli.test_record_cmd import probe_streams
from tests.support import require_tool


@pytest.fixture(autouse=True)
def _emulator_target(monkeypatch: pytest.MonkeyPatch) -> None:
    # The default target is the embedded emulator: no KS/API URL from the shell.
    for name in [n for n in os.environ if n.startswith("AVATAR_")]:
        monkeypatch.delenv(name)


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


@pytest.mark.slow
def test_say_exit_0_with_json_plot_and_recording(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    require_tool("ffprobe")
    out_json, out_png, out_mkv = tmp_path / "r.json", tmp_path / "r.png", tmp_path / "r.mkv"
    argv = ["qa", "--say", "Hello there. How are you today?", "--json", str(out_json)]
    status = main([*argv, "--plot", str(out_png), "--record", str(out_mkv)])
    printed = json.loads(capsys.readouterr().out)
    failed = [c for c in printed["checks"] if not c["ok"]]
    assert status == 0, failed
    assert printed == json.loads(out_json.read_text())
    assert printed["verdict"] == "pass" and printed["source"] == "live"
    [turn] = printed["turns"]["items"]
    assert turn["text"] == "Hello there. How are you today?"
    assert 0 < turn["speech_latency_s"] < 2.5 and 0 < turn["mouth_latency_s"] < 2.5
    assert printed["start"]["total"] is not None and printed["network"]["video"]["packets"] > 0
    assert png_size(out_png) == (1200, 900)  # four rows: a live session has a network row
    streams = probe_streams(out_mkv)
    assert (streams["video"]["codec"], streams["audio"]["codec"]) == ("h264", "opus")
    # The file holds the session from its first keyframe to the end: nearly all of it.
    assert streams["video"]["duration"] == pytest.approx(printed["duration_s"], abs=0.5)


@pytest.mark.slow
def test_an_impossible_threshold_exits_4_and_a_script_adds_turns(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    toml = tmp_path / "t.toml"
    toml.write_text("[live]\nmax_say_to_speech_s = 0.001\n")
    script = tmp_path / "turns.txt"
    script.write_text("# a comment\n\n  From the script.  \n")
    argv = ["qa", "--say", "Hi.", "--script", str(script), "--thresholds", str(toml)]
    assert main([*argv, "--compact"]) == 4
    printed = json.loads(capsys.readouterr().out)
    assert printed["verdict"] == "fail"
    assert [t["text"] for t in printed["turns"]["items"]] == ["Hi.", "From the script."]
    assert [c["name"] for c in printed["checks"] if not c["ok"]] == ["turns.say_to_speech_s"]


def test_usage_errors_exit_2_before_connecting(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    media = tmp_path / "some.mkv"
    media.write_bytes(b"x")
    taken = tmp_path / "taken.mkv"
    taken.write_bytes(b"x")
    assert main(["qa", str(media), "--say", "hi"]) == 2
    assert main(["qa", str(media), "--duration", "3"]) == 2
    assert main(["qa", "--script", str(tmp_path / "absent.txt")]) == 2
    assert main(["qa", "--whep-url", "http://127.0.0.1:9/whep", "--say", "hi"]) == 2
    assert main(["qa", "--record", str(tmp_path / "out.txt")]) == 2
    assert main(["qa", "--record", str(taken)]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 6 and all(line.startswith("avatar-rtc qa: ") for line in err), err
    assert "--say/--say-audio" in err[0] and "--duration" in err[1] and "absent.txt" in err[2]
    assert "Control API" in err[3] and "extension" in err[4] and "exists" in err[5]


def test_a_script_is_one_text_turn_per_line(tmp_path: Path) -> None:
    script = tmp_path / "s.txt"
    script.write_text("First line.\n# not said\n\n   Second line.\n")
    assert [(s.kind, s.value) for s in read_script(str(script))] == [
        ("text", "First line."),
        ("text", "Second line."),
    ]
