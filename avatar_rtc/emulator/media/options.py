"""Options of the synthetic avatar media (one set per emulated session)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from avatar_rtc.emulator.media.media_faults import MediaFaults

VideoCodec = Literal["H264", "VP8"]
TtsMode = Literal["auto", "espeak-ng", "builtin"]


@dataclass(frozen=True)
class AvatarMediaOptions:
    """What the emulated avatar sends.

    ``keyframe_interval`` is the periodic keyframe interval in seconds (PLI forces one
    earlier); client tests use a long one (e.g. 10.0) to prove PLI handling works.
    ``tts`` chooses the speech synthesizer: ``"auto"`` uses espeak-ng when installed.
    ``video_packet_loss`` drops that fraction of outgoing video RTP packets at random (seeded;
    NACK retransmissions can still repair them); ``AvatarMedia.drop_next_video_packets(n)``
    drops an exact number. ``max_viewers`` beyond which WHEP answers 409 (the service: 1).
    ``host_addresses`` pins the addresses of the emulator's ICE host candidates (aioice leaves
    127.0.0.1 out by default; an emulator bound to loopback pins it, see ``Emulator``).
    ``faults``: media faults armed when the session starts (``avatar-rtc emulator`` flags); see
    :mod:`~avatar_rtc.emulator.media.media_faults`, and ``AvatarMedia.inject_faults`` to arm
    them later.
    """

    width: int = 512
    height: int = 512
    fps: int = 25
    video_codec: VideoCodec = "H264"
    video_bitrate: int = 1_000_000
    keyframe_interval: float = 2.0
    audio_bitrate: int = 48_000
    tts: TtsMode = "auto"
    espeak_voice: str = "en"
    encoder_threads: int = 1
    video_packet_loss: float = 0.0
    max_viewers: int = 1
    viewer_connect_timeout: float = 30.0
    host_addresses: tuple[str, ...] | None = None
    faults: MediaFaults = field(default_factory=MediaFaults)

    def __post_init__(self) -> None:
        if not 1 <= self.fps <= 60:
            raise ValueError(f"fps must be within 1..60, got {self.fps}")
        if self.width < 160 or self.height < 160 or self.width % 2 or self.height % 2:
            raise ValueError(
                f"size must be even and at least 160x160, got {self.width}x{self.height}"
            )
        if self.video_codec not in ("H264", "VP8"):
            raise ValueError(f"unsupported video codec {self.video_codec!r}")
        if not 0.0 <= self.video_packet_loss < 1.0:
            raise ValueError("video_packet_loss must be within [0, 1)")
        if self.keyframe_interval <= 0:
            raise ValueError("keyframe_interval must be positive")
