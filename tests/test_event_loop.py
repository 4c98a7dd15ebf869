"""avatar_rtc.event_loop: the loops avatar-rtc starts itself, asyncio's or uvloop's.

The rest of the suite runs on asyncio's loop (the default, and pytest-asyncio's); here the CLI
records through the emulator on uvloop's, end to end.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import subprocess
import sys
import types
import warnings
from pathlib import Path

import pytest

from avatar_rtc import event_loop
from avatar_rtc.cli.main import main
from avatar_rtc.errors import ConfigurationError
from avatar_rtc.media.sync_iter import BackgroundLoop
from tests.cli.test_record_cmd import cli_env
from tests.record.filecheck import decodes_cleanly
from tests.support import require, require_tool


@pytest.fixture
def uvloop_installed() -> None:
    require(importlib.util.find_spec("uvloop") is not None, "uvloop (the dev extras)")


@pytest.fixture
def uvloop_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "uvloop", None)  # import uvloop -> ImportError


async def _running_loop_module() -> str:
    return type(asyncio.get_running_loop()).__module__


def test_asyncio_by_default_uvloop_when_asked_for(
    uvloop_installed: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(event_loop.ENV, raising=False)
    assert event_loop.loop_kind() == "asyncio"
    assert event_loop.run(_running_loop_module()).startswith("asyncio")
    for choice in ("uvloop", "auto", " UVLOOP "):
        monkeypatch.setenv(event_loop.ENV, choice)
        assert event_loop.loop_kind() == "uvloop"
        assert event_loop.run(_running_loop_module()).startswith("uvloop")


def test_auto_is_asyncio_when_uvloop_is_missing(
    uvloop_missing: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(event_loop.ENV, "auto")
    assert event_loop.loop_kind() == "asyncio"
    assert event_loop.run(_running_loop_module()).startswith("asyncio")
    monkeypatch.setenv(event_loop.ENV, "uvloop")  # insisted on: a typed error, not a fallback
    with pytest.raises(ConfigurationError, match=r"uvloop is not installed.*avatar-rtc\[uvloop\]"):
        event_loop.new_event_loop()


def test_a_misspelt_choice_is_a_typed_error_before_anything_runs(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(event_loop.ENV, "uvlop")
    started: list[bool] = []

    async def body() -> None:
        started.append(True)

    coro = body()
    assert isinstance(coro, types.CoroutineType)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # "coroutine ... was never awaited" would be one
        with pytest.raises(ConfigurationError, match="AVATAR_RTC_EVENT_LOOP='uvlop'"):
            event_loop.run(coro)
    assert not started and coro.cr_frame is None  # closed, never run


@pytest.mark.parametrize("command", ["record", "emulator"])
def test_the_cli_says_so_in_one_line_and_exits_with_the_configuration_status(
    command: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    monkeypatch.setenv(event_loop.ENV, "tokio")
    out = tmp_path / "never.mp4"
    argv = ["record", str(out)] if command == "record" else ["emulator", "--port", "0"]
    assert main(argv) == ConfigurationError.exit_code
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "AVATAR_RTC_EVENT_LOOP='tokio'" in err[0], err
    assert not out.exists()


def test_the_sync_twins_background_loop_follows_the_choice(
    uvloop_installed: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(event_loop.ENV, "uvloop")
    background = BackgroundLoop()
    try:
        assert background.run(_running_loop_module(), timeout=5).startswith("uvloop")
    finally:
        background.close()


@pytest.mark.slow
def test_the_cli_records_the_emulator_on_uvloop(uvloop_installed: None, tmp_path: Path) -> None:
    """The whole path (Control API, WHEP, ICE, DTLS, the receive fast path on uvloop's UDP
    transports, the recorder) on uvloop's loop: a playable file of the asked length."""
    require_tool("ffmpeg")
    out = tmp_path / "uvloop.mkv"
    env = {**cli_env(), event_loop.ENV: "uvloop"}
    result = subprocess.run(
        [sys.executable, "-m", "avatar_rtc.cli", "-v", "record", str(out), "--duration", "1.5",
         "--json", "--no-progress"],
        capture_output=True, text=True, timeout=60, env=env,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "event loop: uvloop" in result.stderr
    summary = json.loads(result.stdout)
    assert summary["duration"] == pytest.approx(1.5, abs=0.1) and summary["dropped"] == 0
    assert decodes_cleanly(out) == ""
