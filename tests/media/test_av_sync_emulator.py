"""Audio and video presentation times against what the emulator sent: within 20 ms.

Every frame the emulator sends is logged with its RTP timestamp and its time on the sender's
media clock (shared by audio and video). For each received frame, ``presentation_time -
media_time`` is the clock's offset for that frame; A/V alignment holds when the video frames'
offsets equal the audio frames' offsets:

- from the first frame on (arrival timing), within ``TOLERANCE`` plus what the arrivals of this
  run keep even a correct clock from knowing (``tests.media.av_sync``: the start-up burst, a busy
  machine delaying sender or receiver, a video that always leaves the sender later than its
  audio);
- with RTCP sender-report timing (the emulator stamps its reports from its capture clock),
  within ``TOLERANCE`` alone, however busy the machine.
"""

from __future__ import annotations

import statistics

import pytest

from avatar_rtc import AvatarSession
from avatar_rtc.emulator import Emulator
from avatar_rtc.emulator.media import AvatarMedia
from avatar_rtc.emulator.media.timeline import SentFrame
from avatar_rtc.rtc.encoded_frame import EncodedFrame
from tests.media.av_sync import TOLERANCE, arrival_allowance
from tests.support import emulator_options, wait_until

SR_SECONDS = 2.5  # of sender-report timing: the switch's residue slews away, then exact


@pytest.mark.slow
async def test_presentation_times_match_what_the_emulator_sent() -> None:
    received: list[EncodedFrame] = []
    sent: list[SentFrame] = []
    async with Emulator() as emulator:
        session = AvatarSession(emulator_options(emulator))
        # From the first frame the clock maps: the yardstick replays the arrivals the clock saw.
        session.video_pipeline.subscribe(received.append)
        session.audio_pipeline.subscribe(received.append)
        async with session:
            await session.say("Audio and video stay together.")
            assert session.session_id is not None
            media = emulator.session(session.session_id).media
            assert isinstance(media, AvatarMedia)
            sent.extend(media.sent_frames)  # the ring so far, then every frame as it is sent
            media.on_frame_sent = sent.append

            def sr_timed_long_enough() -> bool:
                sr = [f.arrival_time for f in received if f.clock_source == "rtcp-sr"]
                return bool(sr) and sr[-1] - sr[0] > SR_SECONDS

            await wait_until(sr_timed_long_enough, within=60.0)  # hang guard; ~5 s when idle

    media_times = {(f.kind, f.rtp_timestamp): f.media_time for f in sent}
    offsets: dict[str, list[tuple[EncodedFrame, float]]] = {"audio": [], "video": []}
    rtp_to_media: dict[str, list[float]] = {"audio": [], "video": []}
    for frame in received:
        media_time = media_times.get((frame.kind, frame.rtp_timestamp & 0xFFFFFFFF))
        if media_time is not None:
            offsets[frame.kind].append((frame, frame.presentation_time - media_time))
            rtp_to_media[frame.kind].append(media_time - frame.rtp_timestamp / frame.clock_rate)
    assert len(offsets["video"]) > 50 and len(offsets["audio"]) > 100, {
        k: len(v) for k, v in offsets.items()
    }

    # Audio is the master clock: its offset is one constant (sample-exact timestamps).
    audio = [offset for _, offset in offsets["audio"]]
    assert max(audio) - min(audio) < 0.002, (min(audio), max(audio))
    reference = statistics.median(audio)

    # The sender's capture times, so that a video that always leaves later than its audio
    # (encoding on a busy machine) counts as what arrival timing cannot know.
    media_offset = {kind: statistics.median(values) for kind, values in rtp_to_media.items()}
    allowance = arrival_allowance(received, media_offset)
    errors = [(f, offset - reference, allowance[f.rtp_timestamp]) for f, offset in offsets["video"]]
    exact = [abs(error) for f, error, extra in errors if f.clock_source == "rtcp-sr" and not extra]
    worst = max(errors, key=lambda item: abs(item[1]))
    fastest = {  # transit: arrival - media time (= presentation time - offset)
        kind: min(f.arrival_time - f.presentation_time + offset for f, offset in pairs)
        for kind, pairs in offsets.items()
    }
    skew = fastest["video"] - fastest["audio"]
    beyond = max(abs(error) - extra for _, error, extra in errors)
    print(f"largest error beyond what arrivals allow: {beyond * 1000:+.1f} ms")
    print(f"video's fastest transit against audio's: {skew * 1000:+.1f} ms (the sender's skew)")
    print(
        f"video worst {worst[1] * 1000:+.1f} ms ({worst[0].clock_source}, allowed "
        f"{(TOLERANCE + worst[2]) * 1000:.1f}); SR-timed on TOLERANCE alone: worst "
        f"{max(exact, default=0.0) * 1000:.2f} ms over {len(exact)} frames"
    )
    for f, error, extra in errors:
        assert abs(error) <= TOLERANCE + extra, (
            f"video frame {f.index} ({f.clock_source}) off by {error * 1000:.1f} ms against "
            f"audio; allowed {(TOLERANCE + extra) * 1000:.1f} ms"
        )
    assert len(exact) >= 25, len(exact)  # at least 1 s of video held to TOLERANCE alone
