"""Audio and video presentation times against what the emulator sent: within 20 ms.

Every frame the emulator sends is logged with its RTP timestamp and its time on the sender's
media clock (shared by audio and video). For each received frame, ``presentation_time -
media_time`` is the clock's offset for that frame; A/V alignment holds when the video frames'
offsets equal the audio frames' offsets, from the first frame on (arrival timing) through the
switch to RTCP sender-report timing.
"""

from __future__ import annotations

import asyncio
import statistics

from avatar_rtc import AvatarSession, IceOptions
from avatar_rtc.emulator import Emulator
from avatar_rtc.emulator.media import AvatarMedia
from avatar_rtc.rtc.encoded_frame import EncodedFrame

TOLERANCE = 0.020


async def test_presentation_times_match_what_the_emulator_sent() -> None:
    received: list[EncodedFrame] = []
    async with Emulator() as emulator:
        session = AvatarSession(
            api_url=emulator.api_url,
            ks=emulator.ks,
            ice=IceOptions(host_addresses=("127.0.0.1",)),
        )
        async with session:
            session.video_pipeline.subscribe(received.append)
            session.audio_pipeline.subscribe(received.append)
            await session.say("Audio and video stay together.")
            await asyncio.sleep(4.5)  # past the switch from arrival to sender-report timing
            assert session.session_id is not None
            media = emulator.session(session.session_id).media
            assert isinstance(media, AvatarMedia)
            sent = {(f.kind, f.rtp_timestamp): f.media_time for f in media.sent_frames}

    offsets: dict[str, list[tuple[float, float]]] = {"audio": [], "video": []}
    for frame in received:
        media_time = sent.get((frame.kind, frame.rtp_timestamp & 0xFFFFFFFF))
        if media_time is not None:
            offsets[frame.kind].append((frame.arrival_time, frame.presentation_time - media_time))
    assert len(offsets["video"]) > 50 and len(offsets["audio"]) > 100, {
        k: len(v) for k, v in offsets.items()
    }
    assert {f.clock_source for f in received[-20:]} == {"rtcp-sr"}

    # Audio is the master clock: its offset is one constant (sample-exact timestamps).
    audio = [offset for _, offset in offsets["audio"]]
    assert max(audio) - min(audio) < 0.002, (min(audio), max(audio))
    reference = statistics.median(audio)
    worst = max(offsets["video"], key=lambda item: abs(item[1] - reference))
    assert abs(worst[1] - reference) <= TOLERANCE, (
        f"video off by {(worst[1] - reference) * 1000:.1f} ms against audio"
    )
