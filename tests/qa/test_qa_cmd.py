"""``avatar-rtc qa FILE``: JSON on stdout, --json/--plot files, exit status per outcome."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from avatar_rtc.cli.main import main

from .conftest import MakeMedia
from .media import Faults

pytestmark = pytest.mark.slow


def test_clean_file_exit_0_with_json_and_plot(
    make_media: MakeMedia, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = make_media("drawn_0.mkv", face="drawn", faults=Faults(0.0))
    out_json, out_png = tmp_path / "r.json", tmp_path / "r.png"
    assert main(["qa", str(path), "--json", str(out_json), "--plot", str(out_png)]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed == json.loads(out_json.read_text())
    assert printed["verdict"] == "pass" and printed["schema_version"] == 1
    assert out_png.read_bytes()[:4] == b"\x89PNG"


def test_breached_threshold_exit_4(
    make_media: MakeMedia, capsys: pytest.CaptureFixture[str]
) -> None:
    path = make_media("drawn_black.mkv", face="drawn", faults=Faults(black=(6.0, 0.5)))
    assert main(["qa", str(path), "--compact"]) == 4
    out = capsys.readouterr().out
    assert out.count("\n") == 1 and json.loads(out)["verdict"] == "fail"


def test_thresholds_file_can_allow_it(
    make_media: MakeMedia, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = make_media("drawn_black.mkv", face="drawn", faults=Faults(black=(6.0, 0.5)))
    toml = tmp_path / "t.toml"
    toml.write_text("[video]\nmax_black = 1\n")
    assert main(["qa", str(path), "--thresholds", str(toml)]) == 0


def test_no_media_exit_3_usage_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_text("hello\n")
    assert main(["qa", str(notes)]) == 3
    assert main(["qa", str(tmp_path / "absent.mkv")]) == 2
    bad = tmp_path / "bad.toml"
    bad.write_text("[video]\nmax_freezs = 1\n")
    assert main(["qa", str(notes), "--thresholds", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "NoMediaInFileError" in err and "FileNotFoundError" in err and "max_freezs" in err
    with pytest.raises(SystemExit) as exc:  # `qa` alone is a live session (test_qa_cmd_live)
        main(["qa", "--no-such-option"])
    assert exc.value.code == 2


def test_a_still_image_is_no_media(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import av
    import numpy as np

    image = tmp_path / "talk.png"
    with av.open(str(image), "w", format="image2") as container:  # one PNG picture
        stream = container.add_stream("png", rate=1)
        stream.width = stream.height = 16
        stream.pix_fmt = "rgb24"
        picture = av.VideoFrame.from_ndarray(np.zeros((16, 16, 3), np.uint8), format="rgb24")
        container.mux(stream.encode(picture))
        container.mux(stream.encode(None))
    assert image.read_bytes()[:4] == b"\x89PNG"
    assert main(["qa", str(image)]) == 3  # it passed every check before, on nothing
    assert "no media time" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--plot", "PLACE/r.txt"], "a .png, .svg, .pdf file"),
        (["--json", "PLACE/notes.txt/r.json"], "is not a directory"),
        (["--json", "PLACE"], "is a directory"),
    ],
)
def test_report_paths_are_checked_before_the_analysis(
    make_media: MakeMedia,
    tmp_path: Path,
    argv: list[str],
    message: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    path = make_media("drawn_0.mkv", face="drawn", faults=Faults(0.0))
    (tmp_path / "notes.txt").write_text("x")
    argv = [a.replace("PLACE", str(tmp_path)) for a in argv]
    assert main(["qa", str(path), *argv]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and message in captured.err  # refused before any work


def test_a_live_recording_is_not_written_over(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    kept = tmp_path / "take1.mkv"
    kept.write_bytes(b"keep me")
    assert main(["qa", "--record", str(kept), "--duration", "1"]) == 2  # before connecting
    assert "exists: give another name" in capsys.readouterr().err  # (qa has no --force)
    assert kept.read_bytes() == b"keep me"


def test_report_folders_are_made(
    make_media: MakeMedia, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = make_media("drawn_0.mkv", face="drawn", faults=Faults(0.0))
    out_json, out_svg = tmp_path / "a" / "r.json", tmp_path / "b" / "c" / "r.svg"
    assert main(["qa", str(path), "--json", str(out_json), "--plot", str(out_svg)]) == 0
    assert json.loads(out_json.read_text())["verdict"] == "pass"
    assert out_svg.read_bytes().lstrip().startswith(b"<?xml")


def test_the_cli_does_not_load_the_qa_stack_until_qa_runs() -> None:
    # --version / --help and the other commands stay fast: no SciPy/OpenCV at start.
    code = (
        "import sys, avatar_rtc.cli.main; "
        "print(sorted(m for m in ('avatar_rtc.qa', 'cv2', 'scipy', 'matplotlib') "
        "if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert out.stdout.strip() == "[]"
