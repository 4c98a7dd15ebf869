"""Codec negotiation never depends on the file's container.

Every codec we can receive is offered whatever the extension; the recorder then copies what
arrived when the container holds it (mp4: H264; mkv: H264 or VP8; webm: VP8) and re-encodes the
video otherwise. The senders are emulator processes that send one video codec only (as the live
service does: H264). An explicit codec the sender cannot send is a typed error naming both.
"""

from __future__ import annotations

import asyncio
import io
import json
import signal
import subprocess
import sys
import time
from argparse import Namespace
from collections.abc import Iterator
from contextlib import redirect_stdout
from pathlib import Path

import pytest
from aiohttp import web
from aiortc.exceptions import OperationError

from avatar_rtc import AvatarSession, SessionOptions
from avatar_rtc.cli import record_cmd
from avatar_rtc.cli.common import Target
from avatar_rtc.cli.main import main
from avatar_rtc.emulator import Emulator
from avatar_rtc.emulator.media import AvatarMedia, AvatarMediaOptions
from avatar_rtc.emulator.media.options import VideoCodec
from avatar_rtc.errors import CodecNegotiationError, WhepError
from avatar_rtc.record import RecordedStreamStats, RecorderStats, StreamAction, StreamRoute
from avatar_rtc.redact import Secret
from avatar_rtc.rtc.codec_negotiation import (
    RECEIVABLE_VIDEO_CODECS,
    check_answer,
    raise_if_refused,
    raise_if_rejected,
    video_answer,
)
from avatar_rtc.rtc.connection import MediaConnection
from tests.cli.test_emulator_cmd import _start as start_emulator
from tests.cli.test_record_cmd import cli_env
from tests.record.filecheck import decodes_cleanly, ffprobe_streams, spans
from tests.rtc.whep_sender import AiortcWhepSender
from tests.support import LOOPBACK_ICE, emulator_options, require_tool

SECONDS = 2.0
# (sender codec, extension) -> (action, codec in the file)
EXPECTED: dict[tuple[str, str], tuple[StreamAction, str]] = {
    ("H264", "mp4"): ("copy", "h264"),
    ("H264", "mkv"): ("copy", "h264"),
    ("H264", "webm"): ("transcode", "vp8"),
    ("VP8", "mp4"): ("transcode", "h264"),
    ("VP8", "mkv"): ("copy", "vp8"),
    ("VP8", "webm"): ("copy", "vp8"),
}
ENCODER = {"h264": "libx264", "vp8": "libvpx"}


# --- senders ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def senders() -> Iterator[dict[str, dict[str, str]]]:
    """One emulator process per video codec, each sending that codec only: codec -> env."""
    procs: list[subprocess.Popen[str]] = []
    found: dict[str, dict[str, str]] = {}
    try:
        for codec in ("H264", "VP8"):
            proc, urls = start_emulator("--video-codec", codec, "--tts", "builtin")
            procs.append(proc)
            found[codec] = {k: urls[k] for k in ("AVATAR_API_URL", "AVATAR_KS")}
        yield found
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGINT)
            proc.communicate(timeout=15)


def _session(
    sender: dict[str, str], video_codecs: tuple[str, ...] = RECEIVABLE_VIDEO_CODECS
) -> AvatarSession:
    return AvatarSession(
        SessionOptions(
            api_url=sender["AVATAR_API_URL"],
            ks=Secret(sender["AVATAR_KS"]),
            ice=LOOPBACK_ICE,
            video_codecs=video_codecs,
        )
    )


def _record_cli(sender: dict[str, str], out: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "avatar_rtc.cli", "record", str(out), "--no-progress",
         "--host-address", "127.0.0.1", *argv],
        capture_output=True, text=True, timeout=90, env={**cli_env(), **sender},
    )  # fmt: skip


def _assert_file(out: Path, video_codec: str, recorded: float) -> None:
    """ffprobe sees the container's codecs; FFmpeg decodes all of it; both streams last what
    the recorder reported, at least SECONDS (more when a busy machine delayed the writer: what
    was queued at the stop is still written)."""
    codecs = {str(s["codec_type"]): s["codec_name"] for s in ffprobe_streams(out)}
    assert codecs == {"video": video_codec, "audio": "opus"}
    assert decodes_cleanly(out) == ""
    span = spans(out)
    assert recorded >= SECONDS - 0.05, recorded
    assert span["video"].duration == pytest.approx(recorded, abs=0.1), (span, recorded)
    assert span["audio"].duration == pytest.approx(recorded, abs=0.1), (span, recorded)


@pytest.mark.parametrize("codec", ["H264", "VP8"])
async def test_the_emulator_answers_its_one_codec_to_the_full_offer(codec: VideoCodec) -> None:
    media_options = AvatarMediaOptions(video_codec=codec, tts="builtin")
    async with Emulator(media_options=media_options) as emulator:
        options = emulator_options(emulator)
        session = AvatarSession(options)
        async with session:
            assert session.session_id is not None
            media = emulator.session(session.session_id).media
            assert isinstance(media, AvatarMedia)
            (viewer,) = media.viewers.values()
            assert viewer.answer_sdp is not None
            answer = video_answer(viewer.answer_sdp)
    assert answer is not None and answer.codecs == (codec,)


# --- the matrix: sender codec x container, through the CLI and the library --------------------


@pytest.mark.slow
@pytest.mark.parametrize("codec,extension", sorted(EXPECTED))
def test_cli_records_whatever_arrives(
    senders: dict[str, dict[str, str]], tmp_path: Path, codec: str, extension: str
) -> None:
    require_tool("ffprobe")
    action, output = EXPECTED[codec, extension]
    out = tmp_path / f"cli.{extension}"
    result = _record_cli(senders[codec], out, "--duration", str(SECONDS), "--json")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    video = summary["streams"]["video"]
    assert (video["action"], video["source_codec"], video["codec"]) == (
        action, codec.lower(), output,
    )  # fmt: skip
    assert video["encoder"] == (ENCODER[output] if action == "transcode" else None)
    _assert_file(out, output, summary["duration"])


@pytest.mark.slow
@pytest.mark.parametrize("codec,extension", sorted(EXPECTED))
async def test_library_records_whatever_arrives(
    senders: dict[str, dict[str, str]], tmp_path: Path, codec: str, extension: str
) -> None:
    require_tool("ffprobe")
    action, output = EXPECTED[codec, extension]
    out = tmp_path / f"lib.{extension}"
    async with _session(senders[codec]) as session:  # the default offer: every codec
        await session.wait_first_frame(timeout=20)
        recorder = session.record(out)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            stats = recorder.stats()
            if record_cmd.recorded_seconds(stats.video, stats.audio) >= SECONDS:
                break
            await asyncio.sleep(0.02)
        final = await recorder.astop()
        in_session = session.stats().recorders[0]
    encoder = ENCODER[output] if action == "transcode" else None
    assert in_session.video_route == StreamRoute(action, codec.lower(), output, encoder)
    assert in_session.audio_route == StreamRoute("copy", "opus", "opus")
    assert in_session.transcoded_video is (action == "transcode")
    _assert_file(out, output, final.duration)


# --- an explicit codec the sender cannot send ---------------------------------------------------


@pytest.mark.slow
async def test_explicit_codec_the_sender_cannot_send_is_a_typed_error(
    senders: dict[str, dict[str, str]],
) -> None:
    with pytest.raises(CodecNegotiationError) as caught:
        async with _session(senders["H264"], video_codecs=("VP8",)):
            pass
    error = caught.value
    assert (error.offered, error.status) == (("VP8",), 400)
    # The emulator's refusal names what it sends; ours what we offered and what would work.
    assert "offer of video VP8 only" in str(error) and "sends H264 only" in str(error)
    assert "offer H264/VP8" in str(error)


@pytest.mark.slow
def test_cli_explicit_codec_the_sender_cannot_send(
    senders: dict[str, dict[str, str]], tmp_path: Path
) -> None:
    out = tmp_path / "never.mkv"
    result = _record_cli(senders["VP8"], out, "--codec", "H264", "--duration", "1")
    # The exit status is the error's (see errors.py), whatever the CLI maps it to: not success.
    assert result.returncode not in (0, 130, 143), result.stderr
    line = result.stderr.strip().splitlines()[-1]
    assert line.startswith("avatar-rtc record: CodecNegotiationError: "), result.stderr
    assert "offer of video H264 only" in line and "sends VP8 only" in line
    assert "Traceback" not in result.stderr and not out.exists()


async def test_live_like_502_to_a_narrowed_offer_is_a_codec_error() -> None:
    """The live service answers 502 to a VP8-only offer; with the full offer a 502 stays a
    plain WhepError (then it says nothing about codecs)."""

    async def bad_gateway(request: web.Request) -> web.StreamResponse:
        return web.Response(status=502, text="upstream failed")

    async with AiortcWhepSender(before_post=bad_gateway) as sender:
        with pytest.raises(CodecNegotiationError, match=r"VP8 only \(HTTP 502: upstream") as c:
            await MediaConnection(sender.url, ice=LOOPBACK_ICE, video_codecs=("VP8",)).connect()
        assert isinstance(c.value.__cause__, WhepError) and c.value.status == 502
        with pytest.raises(WhepError) as plain:
            await MediaConnection(sender.url, ice=LOOPBACK_ICE).connect()
        assert not isinstance(plain.value, CodecNegotiationError)


# --- the offer ---------------------------------------------------------------------------------


@pytest.mark.parametrize("extension", ["mp4", "mkv", "webm"])
def test_the_cli_offer_never_depends_on_the_extension(
    extension: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    offers: list[tuple[str, ...]] = []
    monkeypatch.chdir(tmp_path)  # o.* must not exist: record refuses to overwrite a file

    async def connect_nowhere(args: Namespace, target: Target, encode: object, stop: object) -> int:
        offers.append(target.options.video_codecs)
        return 0

    for name in ("AVATAR_KS", "AVATAR_API_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(record_cmd, "_record", connect_nowhere)
    assert main(["record", f"o.{extension}"]) == 0
    assert main(["record", f"o.{extension}", "--codec", "VP8"]) == 0
    assert main(["record", f"o.{extension}", "--codec", "H264"]) == 0
    assert offers == [("H264", "VP8"), ("VP8",), ("H264",)]


# --- the negotiation checks on their own ------------------------------------------------------


def _answer(video_port: int, *rtpmaps: str) -> str:
    payloads = " ".join(m.split()[0] for m in rtpmaps)
    lines = ["v=0", f"m=video {video_port} UDP/TLS/RTP/SAVPF {payloads}"]
    lines += [f"a=rtpmap:{m}" for m in rtpmaps]
    lines += ["m=audio 9 UDP/TLS/RTP/SAVPF 111", "a=rtpmap:111 opus/48000/2", ""]
    return "\r\n".join(lines)


def test_video_answer_reads_port_and_codecs() -> None:
    found = video_answer(_answer(9, "109 H264/90000", "110 rtx/90000"))
    assert found is not None and (found.port, found.codecs) == (9, ("H264",))
    assert video_answer("v=0\r\nm=audio 9 x 111\r\na=rtpmap:111 opus/48000/2\r\n") is None


def test_check_answer() -> None:
    check_answer(("H264", "VP8"), _answer(9, "109 H264/90000", "110 rtx/90000"))
    with pytest.raises(CodecNegotiationError, match="answered video H264 to an offer of VP8") as c:
        check_answer(("VP8",), _answer(9, "109 H264/90000"))
    assert (c.value.offered, c.value.answered, c.value.status) == (("VP8",), ("H264",), None)
    with pytest.raises(CodecNegotiationError, match=r"rejected the video.*\(port 0\)"):
        check_answer(("VP8",), _answer(0, "97 VP8/90000"))
    with pytest.raises(CodecNegotiationError, match="no video section"):
        check_answer(("VP8",), "v=0\r\nm=audio 9 x 111\r\na=rtpmap:111 opus/48000/2\r\n")


@pytest.mark.parametrize("status", [400, 406, 488, 500, 502, 503])
def test_refusals_of_a_narrowed_offer_are_codec_errors(status: int) -> None:
    refused = WhepError("WHEP POST failed", status=status, body="error=no H264")
    with pytest.raises(CodecNegotiationError, match=r"H264 only .*error=no H264.*offer H264/VP8"):
        raise_if_refused(["h264"], refused)


@pytest.mark.parametrize(
    "offered,status",
    [(("H264", "VP8"), 502), (("VP8", "H264"), 400), (("VP8",), 401), (("VP8",), 404),
     (("VP8",), 409), (("VP8",), 429)],
)  # fmt: skip
def test_other_refusals_stay_what_they_are(offered: tuple[str, ...], status: int) -> None:
    raise_if_refused(offered, WhepError("WHEP POST failed", status=status))  # no raise


def test_aiortc_refusing_the_answered_video_is_a_codec_error() -> None:
    answer = _answer(9, "109 H264/90000")
    refused = OperationError("Failed to set remote video description send parameters")
    with pytest.raises(CodecNegotiationError, match=r"answered \(H264, offered H264\)") as c:
        raise_if_rejected(("H264",), answer, refused)
    assert c.value.__cause__ is refused
    raise_if_rejected(("H264",), answer, ValueError("video"))  # not aiortc's: left alone
    raise_if_rejected(("H264",), answer, OperationError("Failed to set remote audio ..."))


# --- the summary --------------------------------------------------------------------------------


def test_summary_says_copy_or_transcode(tmp_path: Path) -> None:
    stats = RecorderStats(
        path=str(tmp_path / "x.webm"), mode="copy", started=True, closed=True,
        video=RecordedStreamStats("libvpx", 50, 1000, 0.0, 2.0),
        audio=RecordedStreamStats("opus", 100, 500, 0.0, 2.0),
        duration=2.0, queued=0, queued_bytes=0, peak_queued=1, peak_queued_bytes=1, dropped=0,
        dropped_bytes=0, skipped_before_start=0, skipped_rate=0, timestamp_fixups=0,
        audio_overlap_drops=0, audio_fill_packets=0, transcoded_video=True, late_writes=0,
        error=None, video_route=StreamRoute("transcode", "h264", "vp8", "libvpx"),
        audio_route=StreamRoute("copy", "opus", "opus"),
    )  # fmt: skip
    outcome = record_cmd._Outcome("duration")
    streams = record_cmd.summary(stats, outcome, 3.0)["streams"]
    assert streams["video"]["codec"] == "vp8" and streams["video"]["action"] == "transcode"
    assert streams["audio"]["action"] == "copy" and streams["audio"]["source_codec"] == "opus"
    text = io.StringIO()
    with redirect_stdout(text):
        record_cmd._print_summary(Namespace(json=False), Target("emulator"), stats, outcome, 3.0)
    assert "  video: h264 -> vp8 (transcode, libvpx), 50 frames" in text.getvalue()
    assert "  audio: opus (copy), 100 frames" in text.getvalue()
