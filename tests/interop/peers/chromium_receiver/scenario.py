"""Chromium watches a speaking emulator session through coturn, relay only; prints JSON.

Run (as root) by ``tests/interop/test_chromium_receiver.py``::

    unshare -n python -m tests.interop.peers.chromium_receiver.scenario WORKDIR \
        --chromium /usr/bin/chromium --seconds 4 [--secrets-out FILE]

The production path inside a private namespace (only ``lo``): coturn like the service's
(80 UDP+TCP, 443 TLS+DTLS, TURN REST credentials), an in-process emulator handing them out at
init-client, say-text so the avatar speaks, then one :meth:`ChromiumReceiver.watch` with the
session's whepUrl, token (as the WHEP bearer) and the four ICE servers our client builds.
``--secrets-out`` writes the token and TURN credentials to a file (for the test that checks
they appear nowhere else); nothing prints them.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import secrets
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

from avatar_rtc.api.models import TurnConfig
from avatar_rtc.emulator import DEFAULT_VISUAL_ID, DEFAULT_VOICE_ID, Emulator
from avatar_rtc.redact import Secret
from avatar_rtc.rtc.ice_servers import ice_servers_from_turn
from tests.interop.peers.chromium_receiver.receiver import (
    ChromiumReceiver,
    ChromiumWatch,
    StatsSample,
    Until,
)
from tests.turn_server import TurnServer

TURN_PORT, TURN_TLS_PORT, RELAY_PORTS = 80, 443, (49152, 49252)
SPEECH = "The quick brown fox jumps over the lazy dog, again and again. " * 6


def call(url: str, auth: str, body: dict[str, Any]) -> dict[str, Any]:
    request = urllib.request.Request(
        url,
        json.dumps(body).encode(),
        {"Content-Type": "application/json", "Authorization": auth},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=20) as response:
        reply: dict[str, Any] = json.loads(response.read() or b"{}")
    return reply


def ice_server_dicts(turn: dict[str, str]) -> list[dict[str, Any]]:
    """RTCIceServer dicts of the four URLs our client builds from init-client's ``turn``."""
    config = TurnConfig(turn["url"], Secret(turn["username"]), Secret(turn["credential"]))
    return [
        {"urls": [s.url], "username": s.username, "credential": s.credential}
        for s in ice_servers_from_turn(config)
    ]


def run(workdir: Path, chromium: str, seconds: float, secrets_out: Path | None,
        after_first: float | None = None) -> dict[str, Any]:  # fmt: skip
    secret = secrets.token_urlsafe(24)
    placeholder = TurnConfig("127.0.0.1", Secret("unused"), Secret("unused"))
    with (
        TurnServer.start(workdir / "coturn", port=TURN_PORT, tls_port=TURN_TLS_PORT, dtls=True,
                         auth_secret=secret, relay_ports=RELAY_PORTS),
        Emulator(turn=placeholder, turn_secret=secret).in_thread() as emulator,
    ):  # fmt: skip
        body = {"visualConfig": {"id": DEFAULT_VISUAL_ID}, "voiceConfig": {"id": DEFAULT_VOICE_ID}}
        created = call(f"{emulator.api_url}/create", f"KS {emulator.ks}", body)
        session_id, token = created["sessionId"], created["token"]
        auth = f"Bearer {token}"
        init = call(f"{emulator.api_url}/{session_id}/init-client", auth, {})
        ice_servers = ice_server_dicts(init["turn"])
        if secrets_out is not None:
            secrets_out.write_text(json.dumps([token, init["turn"]["username"],
                                               init["turn"]["credential"], secret]))  # fmt: skip
        launched = time.monotonic()
        with ChromiumReceiver.start(chromium, workdir / "chromium") as browser:
            call(f"{emulator.api_url}/{session_id}/say-text", auth, {"text": SPEECH})
            started = time.monotonic()
            until = None if after_first is None else _after_first(after_first)
            longest = seconds if after_first is None else seconds + 30
            watch = browser.watch(init["whepUrl"], bearer=token, ice_servers=ice_servers,
                                  seconds=longest, until=until)  # fmt: skip
            watch_seconds = time.monotonic() - started
            startup = browser.startup_seconds
        stopped = time.monotonic() - launched
        viewers_left = _viewers(emulator, session_id)
    return {
        "startup_seconds": startup,
        "watch_seconds": watch_seconds,
        "browser_lifetime_seconds": stopped,
        "fps": watch.fps(),
        "viewers_left": viewers_left,
        **_as_json(watch),
    }


def _after_first(seconds: float) -> Until:
    """Stop ``seconds`` after the first sample with a decoded frame."""

    def enough(samples: list[StatsSample]) -> bool:
        first = next((s.wall for s in samples if s.frames_decoded > 0), None)
        return first is not None and samples[-1].wall - first >= seconds

    return enough


def _viewers(emulator: Emulator, session_id: str) -> int:
    """How many WHEP viewers the session's media still has (0 once the DELETE went through)."""
    return len(emulator.avatar_media(session_id).viewers)


def _as_json(watch: ChromiumWatch) -> dict[str, Any]:
    data = dataclasses.asdict(watch)
    data["relay"] = watch.relay
    return data


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("workdir", type=Path)
    parser.add_argument("--chromium", required=True)
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--secrets-out", type=Path)
    parser.add_argument(
        "--after-first",
        type=float,
        help="stop this long after the first decoded frame (at most --seconds + 30 in all)",
    )
    args = parser.parse_args()
    # Everything the peer logs goes to stderr (the secrets test reads it all).
    logging.basicConfig(level=logging.DEBUG, stream=sys.stderr)
    for noisy in ("aioice", "aiortc"):  # per-packet lines
        logging.getLogger(noisy).setLevel(logging.INFO)
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    result = run(args.workdir, args.chromium, args.seconds, args.secrets_out, args.after_first)
    print(json.dumps(result))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
