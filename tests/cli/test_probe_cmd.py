"""``avatar-rtc probe`` and the shared target/ICE options (``cli/common.py``)."""

from __future__ import annotations

import json
import math
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from avatar_rtc.cli.common import Target, target_from_args
from avatar_rtc.cli.exit_status import error_line
from avatar_rtc.cli.main import build_parser
from avatar_rtc.emulator import DEFAULT_VISUAL_ID, DEFAULT_VOICE_ID
from avatar_rtc.errors import AuthenticationError, ConfigurationError, NetworkError
from avatar_rtc.redact import redact
from avatar_rtc.rtc.reconnect import ReconnectPolicy
from avatar_rtc.session_stats import SCHEMA_VERSION, SessionTimings
from tests.cli.test_record_cmd import write_tone

PHASES = {"session", "offer_answer", "ice_dtls", "first_keyframe", "first_frame"}


def _target(*argv: str, env: dict[str, str] | None = None) -> Target:
    args = build_parser().parse_args(["probe", *argv])
    return target_from_args(args, environ=env or {})


def _cli(*argv: str, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AVATAR_")}
    return subprocess.run(
        [sys.executable, "-m", "avatar_rtc.cli", *argv],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )


# --- target selection -------------------------------------------------------------------------


def test_default_target_is_the_embedded_emulator_on_loopback() -> None:
    target = _target()
    options = target.options
    assert target.kind == "emulator"
    assert (options.avatar_id, options.voice_id) == (DEFAULT_VISUAL_ID, DEFAULT_VOICE_ID)
    assert options.ice.host_addresses == ("127.0.0.1",)
    assert options.ice.policy == "all" and options.ice.extra_servers == ()
    assert options.video_codecs == ("H264", "VP8")
    assert options.ks is None and options.api_url is None
    assert not options.reconnect.new_session_on_not_found


def test_renew_session_asks_for_a_new_service_session_on_404() -> None:
    options = _target("--renew-session").options
    assert options.reconnect.new_session_on_not_found
    assert options.reconnect.max_attempts == ReconnectPolicy().max_attempts  # defaults kept


def test_video_options_reach_the_session_options() -> None:
    options = _target().options
    assert options.keyframe_wait == 1.0 and options.max_playout_delay is None
    options = _target("--keyframe-wait", "never", "--playout-delay", "0.5").options
    assert options.keyframe_wait is None and options.max_playout_delay == 0.5
    assert _target("--keyframe-wait", "2.5").options.keyframe_wait == 2.5
    with pytest.raises(SystemExit):
        _target("--playout-delay", "0")


def test_read_interval_reaches_the_session_options() -> None:
    assert _target().options.read_interval == 0.0
    assert _target("--read-interval", "0.1").options.read_interval == 0.1
    for bad in ("0.3", "-1", "nan", "soon"):
        with pytest.raises(SystemExit):
            _target("--read-interval", bad)


def test_a_ks_selects_the_service() -> None:
    target = _target(env={"AVATAR_KS": "ks-from-env-123"})
    options = target.options
    assert target.kind == "service"
    assert options.ks is not None and options.ks.reveal() == "ks-from-env-123"
    assert "ks-from-env-123" not in repr(target)
    assert redact("token ks-from-env-123") == "token ***"  # registered for log redaction
    assert options.ice.host_addresses is None  # every interface against a real service
    assert options.avatar_id is None  # the session picks $AVATAR_ID / the catalog's first

    url = "http://127.0.0.1:1/v1/avatar-session"
    target = _target("--api-url", url, "--ks", "ks-cli-value", "--avatar-id", "a1")
    assert (target.kind, target.options.api_url, target.options.avatar_id) == (
        "service", url, "a1",
    )  # fmt: skip
    with pytest.raises(ConfigurationError, match="--api-url needs a KS"):  # found now, not
        _target("--api-url", url)  # once connecting (and said in the CLI's words)
    env_url = {"AVATAR_API_URL": "http://h/v1/avatar-session"}
    target = _target("--ks", "ks-cli-value", env=env_url)
    assert target.options.api_url == "http://h/v1/avatar-session"
    # A KS that begins with '-' (URL-safe base64 may) goes as one argument, as the help says.
    ks = _target("--ks=-dash-first-ks", env=env_url).options.ks
    assert ks is not None and ks.reveal() == "-dash-first-ks"


def test_whep_url_selects_a_bare_whep_source() -> None:
    target = _target("--whep-url", "http://127.0.0.1:9/whep", "--bearer", "bearer-xyz-1")
    assert target.kind == "whep" and target.options.whep_url == "http://127.0.0.1:9/whep"
    bearer = target.options.bearer
    assert bearer is not None and bearer.reveal() == "bearer-xyz-1"
    assert "bearer-xyz-1" not in repr(target)
    # a KS in the environment does not turn a WHEP probe into a service one
    assert _target("--whep-url", "https://x/whep", env={"AVATAR_KS": "ks-abcd"}).kind == "whep"


def test_the_bearer_and_the_turn_credential_can_come_from_the_environment() -> None:
    env = {"AVATAR_BEARER": "bearer-env-2", "AVATAR_TURN_CREDENTIAL": "turn-env-3"}
    argv = ["--turn", "turn:127.0.0.1:3478?transport=udp", "--turn-username", "u1"]
    target = _target("--whep-url", "http://127.0.0.1:9/whep", *argv, env=env)
    bearer = target.options.bearer
    assert bearer is not None and bearer.reveal() == "bearer-env-2"
    assert [s.credential for s in target.options.ice.extra_servers] == ["turn-env-3"]
    assert "bearer-env-2" not in repr(target) and "turn-env-3" not in repr(target)
    # a flag wins over the environment
    flags = _target("--whep-url", "http://h/w", "--bearer", "b-flag", *argv, "--turn-credential",
                    "t-flag", env=env)  # fmt: skip
    assert flags.options.bearer is not None and flags.options.bearer.reveal() == "b-flag"
    assert [s.credential for s in flags.options.ice.extra_servers] == ["t-flag"]
    # used only where its flag would be: no WHEP URL, no bearer; no --turn, no TURN server
    service = _target(env={**env, "AVATAR_KS": "ks-env-4"})
    assert service.options.bearer is None and service.options.ice.extra_servers == ()


@pytest.mark.parametrize(
    "argv",
    [
        ["--whep-url", "http://h/w", "--ks", "ks-x1"],
        ["--whep-url", "rtsp://h/w"],
        ["--bearer", "bearer-only"],
        ["--turn-credential", "cred"],
        ["--turn", "stun:h:3478"],
        ["--stun", "http://h"],
    ],
)
def test_inconsistent_target_options(argv: list[str]) -> None:
    with pytest.raises(ConfigurationError):
        _target(*argv)


def test_ice_options() -> None:
    target = _target(
        "--ice-policy", "relay",
        "--stun", "stun:127.0.0.1:3478",
        "--turn", "turn:127.0.0.1:3478?transport=udp",
        "--turn", "turns:127.0.0.1:5349?transport=tcp",
        "--turn-username", "turn-user-1", "--turn-credential", "turn-cred-1",
        "--host-address", "127.0.0.1", "--host-address", "::1",
        "--codec", "vp8", "--codec", "H264",
        "--connect-timeout", "7", "--gather-timeout", "2",
    )  # fmt: skip
    ice = target.options.ice
    assert ice.policy == "relay" and ice.host_addresses == ("127.0.0.1", "::1")
    assert ice.gather_timeout == 2.0 and target.options.connect_timeout == 7.0
    assert [s.url for s in ice.servers()] == [
        "stun:127.0.0.1:3478",
        "turn:127.0.0.1:3478?transport=udp",
        "turns:127.0.0.1:5349?transport=tcp",
    ]
    assert ice.extra_servers[0].username is None
    assert {(s.username, s.credential) for s in ice.extra_servers[1:]} == {
        ("turn-user-1", "turn-cred-1")
    }
    assert "turn-cred-1" not in repr(target)
    assert target.options.video_codecs == ("VP8", "H264")


@pytest.mark.parametrize(
    "argv", [["--codec", "AV1"], ["--ice-policy", "none"], ["--duration", "-1"]]
)
def test_bad_values_are_usage_errors(argv: list[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        build_parser().parse_args(["probe", *argv])
    assert exc.value.code == 2


# --- real probes ------------------------------------------------------------------------------


@pytest.mark.slow
def test_probe_the_embedded_emulator() -> None:
    result = _cli("probe", "--duration", "3")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["schema_version"] == SCHEMA_VERSION and report["state"] == "connected"
    probe, video, audio = report["probe"], report["video"], report["audio"]
    assert probe["target"] == "emulator" and probe["error"] is None
    assert probe["phases_reached"] == list(SessionTimings.PHASES)
    assert (video["codec"], audio["codec"]) == ("H264", "opus")
    assert (probe["video"]["width"], probe["video"]["height"]) == (512, 512)
    assert probe["video"]["frames"] > 0 and 15 <= probe["video"]["fps"] <= 35
    assert audio["frames"] > 0 and probe["audio"]["seconds"] > 2.0
    timings = report["timings"]
    assert set(timings) == PHASES | {"total"}
    phases = [timings[name] for name in PHASES]
    assert all(isinstance(v, float) and v >= 0 for v in phases), timings
    assert timings["total"] >= sum(phases) - 0.05
    pair = report["selected_pair"]
    assert pair["local_type"] == "host" and pair["protocol"] == "udp"
    assert pair["relay_transport"] is None
    assert video["packets"] > 0 and video["lost"] >= 0


@pytest.mark.slow
def test_probe_the_embedded_emulator_in_vp8() -> None:
    result = _cli("probe", "--duration", "2", "--codec", "VP8")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert (report["video"]["codec"], report["audio"]["codec"]) == ("VP8", "opus")
    assert (report["probe"]["video"]["width"], report["probe"]["video"]["height"]) == (512, 512)
    assert report["probe"]["video"]["frames"] > 0 and report["audio"]["frames"] > 0


@pytest.mark.slow
def test_probe_level_is_of_the_whole_run_and_say_audio_is_spoken(tmp_path: Path) -> None:
    """A 1 s tone at -9 dBFS (RMS), said with --say-audio, in a 3 s probe: the peak is the
    tone's level, the run's level its energy spread over the run (no speech otherwise)."""
    tone = tmp_path / "tone.wav"
    write_tone(tone, seconds=1.0, amplitude=0.5)  # sine: RMS 0.354 = -9.0 dBFS
    result = _cli("probe", "--duration", "3", "--say-audio", str(tone), "--compact")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    audio = report["probe"]["audio"]
    assert audio["peak_db"] == pytest.approx(-9.0, abs=2.0), audio
    # 1 s of tone in >= 3 s of audio: >= 4.8 dB below the tone; more than a blip of it
    assert -9.0 - 10 * math.log10(audio["seconds"]) == pytest.approx(audio["level_db"], abs=2.0)
    assert report["utterances"] == 1, report


def test_probe_a_dead_whep_endpoint_prints_the_report_with_the_error() -> None:
    result = _cli("probe", "--whep-url", "http://127.0.0.1:9/whep", "--connect-timeout", "5")
    assert result.returncode == NetworkError.exit_code == 6, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("avatar-rtc probe: NetworkError:"), lines
    report = json.loads(result.stdout)  # the report, exactly when a QA run needs it
    assert report["schema_version"] == SCHEMA_VERSION and report["state"] == "failed"
    probe = report["probe"]
    assert probe["error"]["type"] == "NetworkError" and probe["error"]["exit_code"] == 6
    assert "127.0.0.1:9" in probe["error"]["message"]
    # bare WHEP: no Control API session phase; it failed at the offer/answer
    assert probe["phases_reached"] == [] and probe["failed_phase"] == "offer_answer"
    assert probe["video"]["frames"] == 0 and probe["window_seconds"] == 0.0


# --- secrets ----------------------------------------------------------------------------------

KS = "ks-DISTINCTIVE-cli-test-4242"
EMU_TURN = ("emu-turn-user-7777", "emu-turn-cred-8888")
CLI_TURN = ("cli-turn-user-5555", "cli-turn-cred-6666")


@pytest.fixture
def emulator_with_secrets() -> Iterator[str]:
    """``avatar-rtc emulator`` with a fixed KS and TURN credentials (unreachable TURN)."""
    proc = subprocess.Popen(
        [
            sys.executable, "-m", "avatar_rtc.cli", "emulator", "--port", "0", "--ks", KS,
            "--turn-url", "127.0.0.1", "--turn-username", EMU_TURN[0],
            "--turn-credential", EMU_TURN[1],
        ],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )  # fmt: skip
    assert proc.stdout is not None
    api_url = None
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and api_url is None:
        line = proc.stdout.readline()
        if not line:
            break
        if m := re.match(r"AVATAR_API_URL=(\S+)", line):
            api_url = m[1]
    try:
        if api_url is None:
            proc.kill()
            pytest.fail(f"emulator did not start: {proc.communicate()[1]}")
        yield api_url
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.communicate(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.communicate()


@pytest.mark.slow
def test_no_secret_in_the_output_of_a_run(emulator_with_secrets: str) -> None:
    result = _cli(
        "-vv", "probe", "--duration", "1", "--compact",
        "--api-url", emulator_with_secrets, "--ks", KS,
        "--host-address", "127.0.0.1", "--gather-timeout", "1",
        "--turn", "turn:127.0.0.1:9?transport=udp",
        "--turn-username", CLI_TURN[0], "--turn-credential", CLI_TURN[1],
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads(result.stdout)["probe"]["target"] == "service"
    output = result.stdout + result.stderr
    assert "DEBUG" in output  # -vv: the debug logs of every layer were shown and checked
    for secret in (KS, *EMU_TURN, *CLI_TURN):
        assert secret not in output, secret
    assert not re.search(r"eyJ[\w-]+\.[\w-]+", output), "a JWT was printed"


@pytest.mark.slow
@pytest.mark.parametrize("avatar_id", [["--avatar-id", "a1"], []])
def test_a_rejected_ks_is_exit_5_with_a_report_without_the_ks(
    emulator_with_secrets: str, avatar_id: list[str]
) -> None:
    """Also without --avatar-id (the catalog is asked first): still an AuthenticationError."""
    wrong = "ks-WRONG-value-31337"
    argv = ("--api-url", emulator_with_secrets, "--ks", wrong, *avatar_id)
    result = _cli("probe", *argv)
    assert result.returncode == AuthenticationError.exit_code == 5, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("avatar-rtc probe: AuthenticationError:")
    probe = json.loads(result.stdout)["probe"]
    assert probe["error"]["type"] == "AuthenticationError" and probe["failed_phase"] == "session"
    output = result.stdout + result.stderr
    assert wrong not in output and KS not in output


def test_error_lines_mask_secrets() -> None:
    ks = _target("--ks", "ks-in-an-error-99").options.ks
    assert ks is not None
    line = error_line("probe", RuntimeError(f"bad KS {ks.reveal()}\nsecond line"))
    assert line == "avatar-rtc probe: RuntimeError: bad KS ***"
