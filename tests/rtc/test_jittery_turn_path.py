"""Audio over a jittery relay-only path: a real coturn behind a relay that delays each datagram
0-60 ms at random (so later packets overtake earlier ones), the emulator sending.

Reordered Opus packets are put back in order (``audio_reorder``), not dropped as late: before,
a third of the audio was dropped on such a path and recorded as silence (a helper's run, 20-100
ms of jitter: 663 Opus packets kept of ~990, 327 filled with silence).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from avatar_rtc.emulator import Emulator
from avatar_rtc.options import SessionOptions
from avatar_rtc.record.options import RecordOptions
from avatar_rtc.redact import Secret
from avatar_rtc.rtc.ice_options import IceOptions
from avatar_rtc.rtc.ice_servers import IceServer
from avatar_rtc.session import AvatarSession
from tests.interop.harness import read_until
from tests.turn_server import PASSWORD, USERNAME, TurnServer, turn_server

__all__ = ["turn_server"]  # the fixture, imported for pytest

pytestmark = [pytest.mark.interop, pytest.mark.timeout(120)]

ROOT = Path(__file__).resolve().parents[2]
JITTER_MS = 60.0
SECONDS = 5.0  # ~250 Opus packets


def _free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextlib.contextmanager
def jitter_relay(target_port: int, log: Path) -> Iterator[int]:
    """``delay_relay`` in front of the TURN server; yields the port to use as the TURN URL's."""
    port = _free_udp_port()
    with open(log, "w") as log_file:
        proc = subprocess.Popen(
            [sys.executable, "-m", "tests.interop.impairment.delay_relay", "--target",
             f"127.0.0.1:{target_port}", "--listen", str(port), "--jitter-ms", str(JITTER_MS)],
            cwd=ROOT, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=log_file,
            text=True,
        )  # fmt: skip
    try:
        assert read_until(proc, "READY", 30.0) is not None, log.read_text()
        yield port
    finally:
        proc.terminate()
        proc.wait(10)


async def test_reordered_audio_is_put_back_in_order_not_dropped(
    turn_server: TurnServer, tmp_path: Path
) -> None:
    with jitter_relay(turn_server.port, tmp_path / "relay.log") as port:
        url = f"turn:127.0.0.1:{port}?transport=udp"
        ice = IceOptions(policy="relay", extra_servers=(IceServer(url, USERNAME, PASSWORD),))
        async with Emulator() as emulator:
            options = SessionOptions(
                api_url=emulator.api_url, ks=Secret(emulator.ks), ice=ice, detect_speech=False
            )
            async with AvatarSession(options) as session:
                await session.wait_first_frame(30)
                pair = session.selected_pair
                assert pair is not None and pair.local_type == "relay", pair
                before = session.stats().audio
                recorder = session.record(tmp_path / "out.mkv", RecordOptions(mode="copy"))
                await asyncio.sleep(SECONDS)
                recorded = await recorder.astop()
                audio = session.stats().audio
    packets = audio.packets - before.packets
    reordered = audio.reordered_packets - before.reordered_packets
    late = audio.late_packets - before.late_packets
    summary = (packets, reordered, late, audio.hole_wait, recorded.audio_fill_packets)
    assert packets >= 100, summary
    # 0-60 ms of jitter on 20 ms packets: a quarter came after a later one (62 and 67 of 250)
    assert reordered >= 0.1 * packets, summary
    # before: those were dropped (62 of 248, 60 filled with silence); now only what comes
    # later than the adapted wait would be (none in 2 runs)
    assert late <= 0.02 * packets, summary
    assert recorded.audio is not None
    assert recorded.audio_fill_packets <= 0.02 * recorded.audio.frames, summary
