"""The fan-out stream: a few seconds of the talking avatar, encoded and packetized once.

Every viewer of every fan-out session is sent these very RTP payloads, so the load generator
costs a header and an SRTP protect per packet and nothing per frame. The loop starts on a
keyframe and has one every ``GOP_SECONDS``, so a viewer can start (or restart after a picture
loss) at a keyframe no more than that far back.
"""

from __future__ import annotations

import functools
import logging
import time
from dataclasses import dataclass

import numpy as np
from aiortc import RTCRtpCodecParameters
from aiortc.codecs import get_encoder

from avatar_rtc.emulator.media.encoder import (
    AUDIO_CLOCK,
    AUDIO_FRAME,
    VIDEO_CLOCK,
    AudioEncoder,
    VideoEncoder,
)
from avatar_rtc.emulator.media.envelope import Envelope, rms_dbfs
from avatar_rtc.emulator.media.face import FaceRenderer
from avatar_rtc.emulator.media.options import VideoCodec
from avatar_rtc.emulator.media.tts import BuiltinSynthesizer

__all__ = ["AUDIO_FRAMES_PER_SECOND", "EncodedLoop", "VideoUnit", "encoded_loop"]

logger = logging.getLogger(__name__)

LOOP_SECONDS = 4  # whole seconds: the audio and video loops then have whole frame counts
GOP_SECONDS = 1.0
AUDIO_FRAMES_PER_SECOND = AUDIO_CLOCK // AUDIO_FRAME  # 50 Opus packets of 20 ms
# Said once per loop (about 2.5 s of the 4), so a receiver hears speech and sees the mouth move.
SPEECH = "Hello! I am the fan-out avatar, the same for every viewer."


@dataclass(frozen=True, slots=True)
class VideoUnit:
    """One video frame as RTP payloads (the last one carries the marker bit)."""

    payloads: tuple[bytes, ...]
    keyframe: bool


@dataclass(frozen=True)
class EncodedLoop:
    """``video``: ``fps`` frames a second; ``audio``: one Opus packet per 20 ms."""

    codec: VideoCodec
    fps: int
    video: tuple[VideoUnit, ...]
    audio: tuple[bytes, ...]
    encode_seconds: float  # CPU time the one-off encode took

    def keyframe_at_or_before(self, index: int) -> int:
        """The index of the closest keyframe at or before frame ``index`` of the loop."""
        while not self.video[index].keyframe:
            index -= 1  # frame 0 is a keyframe: this ends
        return index


@functools.lru_cache(maxsize=4)
def encoded_loop(
    width: int, height: int, fps: int, codec: VideoCodec, bitrate: int = 1_000_000
) -> EncodedLoop:
    """Render, encode and packetize the loop (blocking, ~0.5 s at 512x512; cached per process)."""
    started = time.process_time()
    pcm = _speech(LOOP_SECONDS * AUDIO_CLOCK)
    audio_frames = pcm.reshape(-1, AUDIO_FRAME)
    envelope = Envelope()
    openings = [envelope.update(rms_dbfs(chunk)) for chunk in audio_frames]

    audio_encoder = AudioEncoder()
    audio = tuple(
        bytes(packet)
        for index, chunk in enumerate(audio_frames)
        for packet in audio_encoder.encode(chunk, index)
    )

    renderer = FaceRenderer(width, height)
    video_encoder = VideoEncoder(codec, width, height, fps, bitrate=bitrate)
    codec_parameters = RTCRtpCodecParameters(mimeType=f"video/{codec}", clockRate=VIDEO_CLOCK)
    packetizer = get_encoder(codec_parameters)
    gop = max(1, round(GOP_SECONDS * fps))
    rng = np.random.default_rng(0)
    video: list[VideoUnit] = []
    for index in range(LOOP_SECONDS * fps):
        opening = openings[index * AUDIO_FRAMES_PER_SECOND // fps]
        keyframe = index % gop == 0
        yuv = renderer.render(opening)
        # A strip of fresh noise under the chin: the picture alone compresses to half the
        # bitrate, and the packet rate is what a receiver pays for.
        strip = yuv[height * 7 // 8 : height * 15 // 16, width // 4 : width * 3 // 4]
        strip[:] = rng.integers(0, 256, strip.shape, dtype=np.uint8)
        payloads: list[bytes] = []
        for packet in video_encoder.encode(yuv, index, keyframe):
            payloads += packetizer.pack(packet)[0]
        video.append(VideoUnit(tuple(payloads), keyframe))
    seconds = time.process_time() - started
    logger.info(
        "fan-out loop: %d video frames, %d audio packets, encoded in %.2f s CPU",
        len(video),
        len(audio),
        seconds,
    )
    return EncodedLoop(codec, fps, tuple(video), audio, seconds)


def _speech(samples: int) -> np.ndarray[tuple[int], np.dtype[np.float32]]:
    """``SPEECH`` from the built-in synthesizer (deterministic), padded with silence."""
    speech = BuiltinSynthesizer().render(SPEECH)[:samples]
    out = np.zeros(samples, dtype=np.float32)
    out[: speech.size] = speech
    return out
