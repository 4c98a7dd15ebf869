"""The production topology: the sender is reachable only through coturn's relay.

Every cell runs ``avatar-rtc probe`` or ``record`` through the emulator's Control API
(create + init-client hands out the WHEP URL and the coturn host with fresh TURN REST
credentials; the client expands the bare host into the service's four URLs) against one
sender, in one network, with one answer shape. Each cell asserts: connected, media received
(frames > 0), the selected pair's local candidate is ``relay`` through the TURN URL
expected, and the firewall's counter of SRTP/RTCP into the relay ports rose (media, not only
signalling, crossed the relay).

Cells are chosen so that every dimension is covered with the emulator, and the answer
shapes with the emulator and GStreamer (an independent stack). Some shapes (``first``,
``tcp-only``, ``trickle``) need client work in progress: those cells fail until it lands.
"""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import pytest

from avatar_rtc.errors import ConnectError
from tests.interop.harness import gstreamer_problem
from tests.interop.production.harness import (
    HOST,
    ClientRun,
    Command,
    EmulatorConfig,
    SenderName,
    Topology,
)
from tests.interop.production.sdp_shapes import Shape
from tests.support import require, require_tool

pytestmark = [pytest.mark.interop, pytest.mark.slow]

Network = Literal["open", "udp-blocked", "only-udp80", "only-udp443", "only-tcp80", "only-tls443"]
URLS = {
    "udp80": f"turn:{HOST}:80?transport=udp",
    "udp443": f"turn:{HOST}:443?transport=udp",
    "tcp80": f"turn:{HOST}:80?transport=tcp",
    "tls443": f"turns:{HOST}:443?transport=tcp",
}
TRANSPORT = {URLS["udp80"]: "udp", URLS["udp443"]: "udp", URLS["tcp80"]: "tcp",
             URLS["tls443"]: "tls"}  # fmt: skip
# Destination ports dropped on top of the base rules: (udp, tcp).
BLOCKS: dict[Network, tuple[tuple[int, ...], tuple[int, ...]]] = {
    "open": ((), ()),
    "udp-blocked": ((80, 443), ()),
    "only-udp80": ((443,), (80, 443)),
    "only-udp443": ((80,), (80, 443)),
    "only-tcp80": ((80, 443), (443,)),
    "only-tls443": ((80, 443), (80,)),
}
MIN_RELAYED_MEDIA_PACKETS = 20  # 1.5 s of ~25 fps video and 50 audio packets/s: ~100


@dataclass(frozen=True)
class Cell:
    id: str
    sender: SenderName = "emulator"
    codec: str = "H264"
    command: Command = "probe"
    suffix: str = ".mp4"  # record only
    policy: Literal["all", "relay"] = "all"
    shape: Shape | None = None  # None: no proxy, the sender's own answer
    network: Network = "open"

    def turn_urls(self) -> set[str]:
        """TURN URLs the selected relay candidate may come from."""
        if self.network.startswith("only-"):
            return {URLS[self.network.removeprefix("only-")]}
        if self.network == "udp-blocked":
            return {URLS["tcp80"], URLS["tls443"]}
        return set(URLS.values())


ONLY_ONE_URL: tuple[Network, ...] = ("only-udp80", "only-udp443", "only-tcp80", "only-tls443")
SHAPED: tuple[Shape, ...] = ("first", "last", "every", "ice-lite", "tcp-only", "trickle")

# fmt: off
EMULATOR_CELLS = [
    Cell("emulator-h264-probe-all"),
    Cell("emulator-h264-probe-relay", policy="relay"),
    Cell("emulator-vp8-probe-relay", codec="VP8", policy="relay"),
    *(Cell(f"emulator-{net}", policy="relay", network=net) for net in ONLY_ONE_URL),
    Cell("emulator-udp-blocked", network="udp-blocked"),
    Cell("emulator-h264-record-mp4", command="record"),
    Cell("emulator-vp8-record-webm", codec="VP8", command="record", suffix=".webm",
         policy="relay", network="udp-blocked"),
    Cell("emulator-h264-record-mkv", command="record", suffix=".mkv", policy="relay"),
]
SHAPE_CELLS = [
    Cell("emulator-shape-plain", policy="relay", shape="plain"),
    *(Cell(f"emulator-shape-{shape}", policy="relay", shape=shape) for shape in SHAPED),
    *(Cell(f"gstreamer-shape-{shape}", sender="gstreamer", policy="relay", shape=shape)
      for shape in SHAPED),
]
SENDER_CELLS = [
    Cell("gstreamer-h264-probe-all", sender="gstreamer"),
    Cell("gstreamer-vp8-probe-relay", sender="gstreamer", codec="VP8", policy="relay"),
    Cell("gstreamer-vp8-record-mkv", sender="gstreamer", codec="VP8", command="record",
         suffix=".mkv", network="udp-blocked"),
    Cell("chromium-h264-probe-relay", sender="chromium", policy="relay"),
    Cell("chromium-vp8-probe-all", sender="chromium", codec="VP8"),
    Cell("chromium-h264-record-mp4", sender="chromium", command="record", policy="relay",
         network="udp-blocked"),
]
# fmt: on
CELLS = [*EMULATOR_CELLS, *SENDER_CELLS, *SHAPE_CELLS]


def test_without_turn_the_client_cannot_connect(topology: Topology) -> None:
    """Sanity of the firewall: with no TURN server (the emulator's placeholder host) the
    client has only its host candidates, the direct UDP path is dropped, and it fails."""
    emulator = topology.emulator(EmulatorConfig(turn=False))
    before = topology.firewall.counters()
    run, _ = topology.client(emulator, "probe", codec="H264", connect_timeout=6.0)
    after = topology.firewall.counters()
    assert run.returncode == ConnectError.exit_code, run.context()
    assert "ConnectTimeoutError" in run.stderr or "ConnectError" in run.stderr, run.context()
    assert after["dropped_udp"] > before["dropped_udp"], (before, after)
    assert after["relay_media_in"] == before["relay_media_in"], (before, after)


@pytest.mark.parametrize("cell", CELLS, ids=[cell.id for cell in CELLS])
def test_cell(topology: Topology, cell: Cell) -> None:
    _require_sender(cell.sender)
    emulator = topology.whep_emulator(cell.sender, cell.codec, cell.shape)
    udp, tcp = BLOCKS[cell.network]
    before = topology.firewall.counters()
    with topology.firewall.blocking(udp=udp, tcp=tcp):
        run, out = topology.client(
            emulator, cell.command, codec=cell.codec, policy=cell.policy, suffix=cell.suffix
        )
    after = topology.firewall.counters()
    delta = {name: after[name] - before[name] for name in after}
    context = f"{cell}\ncounters {delta}, {run.seconds:.1f} s\n{run.context()}"
    if cell.shape is not None:
        context += "\n--- proxy ---\n" + topology.proxy().log(10)

    assert run.returncode == 0, context
    assert run.pair is not None, context
    assert run.pair["local_type"] == "relay", context
    assert run.pair["relay_url"] in cell.turn_urls(), context
    assert run.pair["relay_transport"] == TRANSPORT[run.pair["relay_url"]], context
    if cell.command == "probe":
        _assert_probe_media(run, cell.codec, context)
    else:
        assert out is not None
        _assert_recording(run, out, cell.codec, context)
    assert delta["relay_media_in"] >= MIN_RELAYED_MEDIA_PACKETS, context
    if udp or tcp:  # the blocked transports were tried and died
        assert delta["blocked_udp"] + delta["blocked_tcp"] > 0, context
    if cell.policy == "all":  # the client's host candidate was tried directly and died
        assert delta["dropped_udp"] > 0, context
    if cell.shape is not None:  # the proxy passed the client's DELETE on to the sender
        log = topology.proxy().log(200)
        assert f"DELETE {cell.shape} " in log, context


def _require_sender(sender: SenderName) -> None:
    if sender == "gstreamer":
        problem = gstreamer_problem()
        require(problem is None, problem or "")
    elif sender == "chromium":
        require_tool("chromium")


def _assert_probe_media(run: ClientRun, codec: str, context: str) -> None:
    report = run.report
    assert report is not None and report["state"] == "connected", context
    assert report["video"]["frames"] > 0, context
    assert report["video"]["codec"].upper() == codec, context
    assert report["audio"]["frames"] > 0, context


def _assert_recording(run: ClientRun, out: Path, codec: str, context: str) -> None:
    report = run.report
    assert report is not None and report["error"] is None, context
    assert report["streams"]["video"]["frames"] > 0, context
    ffprobe = require_tool("ffprobe")
    result = subprocess.run(
        [ffprobe, "-v", "error", "-count_packets", "-show_streams", "-show_format", "-of",
         "json", str(out)],
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    probed = json.loads(result.stdout)
    video = [s for s in probed["streams"] if s["codec_type"] == "video"]
    audio = [s for s in probed["streams"] if s["codec_type"] == "audio"]
    assert video and video[0]["codec_name"] == codec.lower(), (probed, context)
    assert int(video[0]["nb_read_packets"]) > 0, (probed, context)
    assert audio and int(audio[0]["nb_read_packets"]) > 0, (probed, context)
    assert float(probed["format"]["duration"]) > 0.5, (probed, context)
