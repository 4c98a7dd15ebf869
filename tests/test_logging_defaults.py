"""What a program using the library sees in its logs: nothing it did not ask for, no secret.

- The package logger has a ``NullHandler``: without logging configured, our warnings do not
  reach Python's last-resort handler (stderr); once the program configures logging, they do.
- Secret redaction needs no call from the user: a program that logs everything at DEBUG
  (``logging.basicConfig``) and runs a session through TURN sees no KS, JWT or TURN
  credential. aioice logs every TURN request with its USERNAME attribute, so the path that
  would leak is exercised (and seen masked). The emulator runs in its own process, so only
  the client's own redaction is tested (the emulator registers its secrets in-process too).
"""

from __future__ import annotations

import contextlib
import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.interop.harness import _stop
from tests.turn_server import TurnServer

ROOT = Path(__file__).resolve().parents[1]
USER_SCRIPT = ROOT / "tests" / "scripts" / "debug_logging_user.py"
KS = "ks-library-user-DISTINCT-5150"
TURN_SECRET = "turn-rest-secret-DISTINCT-2112"
WARN = "import logging, avatar_rtc; logging.getLogger('avatar_rtc.session').warning('it warns')"


def _python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=ROOT
    )


def test_silent_until_the_program_configures_logging() -> None:
    quiet = _python(WARN)
    assert quiet.returncode == 0, quiet.stderr
    assert quiet.stderr == ""  # no "it warns" from the last-resort handler
    configured = _python(f"import logging; logging.basicConfig(); {WARN}")
    assert configured.returncode == 0, configured.stderr
    assert "WARNING:avatar_rtc.session:it warns" in configured.stderr


@contextlib.contextmanager
def emulator_process(turn: TurnServer) -> Iterator[str]:
    """``avatar-rtc emulator`` handing out ``turn`` with REST credentials; yields its API URL."""
    proc = subprocess.Popen(
        [
            sys.executable, "-m", "avatar_rtc.cli", "emulator", "--port", "0", "--ks", KS,
            "--turn-url", turn.host, "--turn-secret", TURN_SECRET,
        ],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, cwd=ROOT,
        start_new_session=True,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            if line.startswith("AVATAR_API_URL="):
                yield line.split("=", 1)[1].strip()
                return
        pytest.fail(f"the emulator exited with {proc.wait()} before listening")
    finally:
        _stop(proc)


@pytest.mark.interop
def test_debug_logs_of_a_library_user_hold_no_secret(tmp_path: Path) -> None:
    out = tmp_path / "used.json"
    with (
        TurnServer.start(tmp_path / "coturn", auth_secret=TURN_SECRET) as turn,
        emulator_process(turn) as api_url,
    ):
        ports = turn.ports
        config = {"udp": ports.udp, "tcp": ports.tcp, "tls": ports.tls, "ca_file": turn.ca_file}
        result = subprocess.run(
            [sys.executable, str(USER_SCRIPT), api_url, KS, json.dumps(config, default=str), out],
            capture_output=True, text=True, timeout=90, cwd=ROOT,
        )  # fmt: skip
    logs = result.stdout + result.stderr
    assert result.returncode == 0, result.stderr[-3000:]
    used = json.loads(out.read_text())
    assert used["local_type"] == "relay"
    # The leaking path ran: aioice logged its TURN requests, USERNAME attribute masked.
    turn_lines = "\n".join(line for line in logs.splitlines() if ":aioice.turn:" in line)
    usernames = re.findall(r"'USERNAME': '([^']*)'", turn_lines)
    assert usernames and set(usernames) == {"***"}
    for name, secret in {"ks": KS, "turn secret": TURN_SECRET, **used["secrets"]}.items():
        assert secret not in logs, f"the {name} is in the logs"
    assert not re.search(r"eyJ[\w-]+\.[\w-]+", logs), "a JWT is in the logs"
