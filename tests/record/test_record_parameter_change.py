"""Copy recording across a reconnect to an encoder with another resolution.

An aiortc WHEP sender (tests/rtc/whep_sender.py) sends 320x240; it drops our viewer, and the
session's reconnect gets a new encoder at 480x360 (new H264 SPS/PPS, or a new VP8 keyframe
size). A file's header holds one set of parameters, so the recording must finish the first
file and carry on in ``OUT.part2.ext``: both play on their own (ffprobe: one size each; FFmpeg
decodes them without an error), together they hold every video frame the recorder counted,
each starts at 0, and ``part_starts`` places the second on the recording's timeline. A
reconnect with the same parameters keeps one file (tests/record/test_reconnect_record.py).
A codec change (H264, then VP8) does the same, offline with synthetic frames.
"""

from __future__ import annotations

import dataclasses
import itertools
from pathlib import Path

import pytest

from avatar_rtc.options import SessionOptions
from avatar_rtc.record import Recorder
from avatar_rtc.record.options import RecordOptions
from avatar_rtc.rtc.reconnect import Outage
from avatar_rtc.session import AvatarSession, SessionEvent
from tests.record.filecheck import decodes_cleanly, ffprobe_streams
from tests.record.synth import Scenario, encoded_frames
from tests.rtc.outage_scenario import packet_times, visible_gap
from tests.rtc.whep_sender import AiortcWhepSender
from tests.support import LOOPBACK_ICE, require_tool, wait_until

BEFORE, AFTER = (320, 240), (480, 360)


def _video(path: Path) -> dict[str, object]:
    (video,) = [s for s in ffprobe_streams(path) if s["codec_type"] == "video"]
    return video


@pytest.mark.asyncio
@pytest.mark.parametrize(("codec", "ext"), [("H264", "mp4"), ("VP8", "webm")])
async def test_a_new_resolution_after_a_reconnect_continues_in_a_second_part(
    tmp_path: Path, codec: str, ext: str
) -> None:
    require_tool("ffmpeg")
    require_tool("ffprobe")
    out = tmp_path / f"resize.{ext}"
    outages: list[Outage] = []
    async with AiortcWhepSender() as sender:
        sender.video_size = BEFORE
        options = SessionOptions(whep_url=sender.url, ice=LOOPBACK_ICE, detect_speech=False,
                                 video_codecs=(codec,))  # fmt: skip

        def on_reconnected(event: SessionEvent) -> None:
            assert isinstance(event.data, Outage)
            outages.append(event.data)

        async with AvatarSession(options) as session:
            session.on("reconnected", on_reconnected)
            recorder = session.record(out, RecordOptions(mode="copy"))
            await wait_until(lambda: recorder.stats().video.frames >= 20, 20)
            sender.video_size = AFTER
            await sender.drop_all()  # the reconnect's new connection gets a new encoder
            # Counted from the switch to the second part, not from the reconnect: frames of
            # the first part may still come after it (ci95: 22 + 19 frames, of the 20 after
            # the reconnect one short in the second part).
            await wait_until(lambda: bool(outages and recorder.stats().parts), 20)
            before = recorder.stats().video.frames
            await wait_until(lambda: recorder.stats().video.frames >= before + 20, 20)
            stats = await recorder.astop()
    assert outages[0].replaced
    part2 = tmp_path / f"resize.part2.{ext}"
    assert stats.error is None and stats.parts == (str(part2),), stats
    assert stats.path == str(out)
    first, second = _video(out), _video(part2)
    assert (first["width"], first["height"]) == BEFORE, first
    assert (second["width"], second["height"]) == AFTER, second
    assert first["codec_name"] == second["codec_name"] == codec.lower()
    assert decodes_cleanly(out) == "" and decodes_cleanly(part2) == ""
    times1, times2 = packet_times(out, "v"), packet_times(part2, "v")
    # No frame lost at the switch: the parts hold every frame the recorder wrote.
    assert len(times1) + len(times2) == stats.video.frames, (len(times1), len(times2), stats)
    assert len(times1) >= 20 and len(times2) >= 20
    # Each part its own timeline from 0; part_starts places part 2 after part 1 and the gap.
    assert times1[0] == times2[0] == 0.0
    assert all(b > a for a, b in itertools.pairwise(times1))
    assert all(b > a for a, b in itertools.pairwise(times2))
    (start2,) = stats.part_starts
    assert outages[0].seconds is not None
    assert start2 - times1[-1] >= visible_gap(outages[0].seconds), (start2, times1[-1], outages)
    assert stats.duration == pytest.approx(start2 + times2[-1], abs=0.2)
    assert packet_times(part2, "a"), "part 2 has audio too"


def test_a_codec_change_continues_in_a_second_part(tmp_path: Path) -> None:
    """H264 for 2 s, a 1 s gap, then VP8 (a reconnect negotiated another codec): nothing is
    skipped, the .mkv is finished and ``.part2.mkv`` holds the VP8."""
    require_tool("ffprobe")
    h264 = [f for f in encoded_frames(Scenario(duration=2.0)) if f.kind == "video"]
    later = 3.0
    vp8 = [
        dataclasses.replace(f, presentation_time=f.presentation_time + later)
        for f in encoded_frames(Scenario(duration=2.0, video_codec="VP8"))
        if f.kind == "video"
    ]
    out = tmp_path / "codec.mkv"
    recorder = Recorder(out, RecordOptions(audio=False)).start()
    for frame in h264 + vp8:
        recorder.write(frame)
    stats = recorder.stop(timeout=30)
    part2 = tmp_path / "codec.part2.mkv"
    assert stats.error is None and stats.parts == (str(part2),)
    (start2,) = stats.part_starts
    assert start2 == pytest.approx(later, abs=0.05)
    assert _video(out)["codec_name"] == "h264" and _video(part2)["codec_name"] == "vp8"
    assert len(packet_times(out, "v")) == len(h264) and len(packet_times(part2, "v")) == len(vp8)
    assert stats.video.frames == len(h264) + len(vp8) and stats.skipped_before_start == 0
    assert decodes_cleanly(out) == "" and decodes_cleanly(part2) == ""
