"""``avatar-rtc emulator`` as a real process: prints URL + KS, serves, stops on SIGINT."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import pytest

from avatar_rtc.cli.main import build_parser


def _start(
    *extra: str, env: dict[str, str] | None = None
) -> tuple[subprocess.Popen[str], dict[str, str]]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "avatar_rtc.cli.main", "emulator", "--port", "0", *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
    )
    assert proc.stdout is not None
    found: dict[str, str] = {}
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and "done" not in found:
        line = proc.stdout.readline()
        if not line:
            break
        if m := re.match(r"(AVATAR_API_URL|AVATAR_KS)=(\S+)", line):
            found[m[1]] = m[2]
        if line.startswith("Press Ctrl-C"):
            found["done"] = "1"
    if "done" not in found:
        proc.kill()
        _, err = proc.communicate()
        pytest.fail(f"emulator did not start: {err}")
    return proc, found


async def test_emulator_subcommand_serves_and_stops_on_sigint() -> None:
    proc, found = _start("--idle-timeout", "30")  # the default, media included
    try:
        api_url, ks = found["AVATAR_API_URL"], found["AVATAR_KS"]
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+/v1/avatar-session", api_url)
        async with aiohttp.ClientSession() as http:
            body = {"visualConfig": {"id": "x"}}
            headers = {"Authorization": f"KS {ks}"}
            async with http.post(f"{api_url}/create", json=body, headers=headers) as resp:
                assert resp.status == 200
                assert (await resp.json())["success"] is True
    finally:
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=10)
    assert proc.returncode == 0, err
    assert "stopped" in out
    assert "Traceback" not in err


async def test_given_ks_is_not_printed() -> None:
    proc, found = _start("--no-media", "--ks", "secret-real-ks-value")
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=10)
    assert proc.returncode == 0
    assert "secret-real-ks-value" not in out + found["AVATAR_KS"]


def _cmdline(pid: int) -> bytes:
    return Path(f"/proc/{pid}/cmdline").read_bytes()


async def test_ks_from_the_environment_is_accepted_and_not_printed() -> None:
    proc, found = _start("--no-media", env={"AVATAR_EMULATOR_KS": "secret-env-ks-value"})
    try:
        cmdline = _cmdline(proc.pid)
        async with aiohttp.ClientSession() as http:
            body = {"visualConfig": {"id": "x"}}
            for ks, status in (("secret-env-ks-value", 200), ("another-ks", 401)):
                headers = {"Authorization": f"KS {ks}"}
                url = f"{found['AVATAR_API_URL']}/create"
                async with http.post(url, json=body, headers=headers) as resp:
                    assert resp.status == status, (ks, await resp.text())
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=10)
    assert proc.returncode == 0, err
    assert b"secret-env-ks-value" not in cmdline
    assert "secret-env-ks-value" not in out + err + found["AVATAR_KS"]


def test_parser_options() -> None:
    args = build_parser().parse_args(
        ["emulator", "--port", "9000", "--turn-url", "turn.example", "--ended-end-status", "410"]
    )
    assert (args.port, args.turn_url, args.ended_end_status) == (9000, "turn.example", 410)
    assert args.host == "127.0.0.1"
    assert callable(args.handler)


def test_busy_port_is_a_clean_error(capsys: pytest.CaptureFixture[str]) -> None:
    import socket

    from avatar_rtc.cli.main import main

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert main(["emulator", "--no-media", "--port", str(port)]) == 1
    assert "cannot listen" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        # a traceback before: bind() raises OverflowError
        (["--port", "99999"], "argument --port: expected a port within 0-65535"),
        (["--port", "-1"], "argument --port: expected a port within 0-65535"),
        (["--port", "http"], "argument --port: expected a port number"),
        # "video_packet_loss must be within [0, 1)" before: a fraction for a percentage
        (["--packet-loss", "150"], "argument --packet-loss: expected a percentage within"),
        (["--fanout", "--fanout-ticks", "0"], "argument --fanout-ticks: expected at least 1"),
    ],
)
def test_values_out_of_range_are_usage_errors(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from avatar_rtc.cli.main import main

    with pytest.raises(SystemExit) as exc:
        main(["emulator", *argv])
    assert exc.value.code == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv",
    [
        ["--size", "100x100"],
        ["--no-media", "--idle-timeout", "0"],
        ["--fps", "0"],
        ["--fanout-ticks", "2"],  # (without --fanout)
        # Accepted before: the fan-out stream ignored them, --no-media has no media to fault.
        ["--fanout", "--packet-loss", "30"],
        ["--fanout", "--black", "1:1"],
        ["--no-media", "--freeze", "1:1"],
        ["--no-media", "--token-ttl", "inf"],  # every create then answered 500
        ["--no-media", "--idle-timeout", "nan"],  # sessions never expired
    ],
)
def test_bad_options_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    from avatar_rtc.cli.main import main

    assert main(["emulator", "--port", "0", *argv]) == 2
    assert "avatar-rtc emulator:" in capsys.readouterr().err
