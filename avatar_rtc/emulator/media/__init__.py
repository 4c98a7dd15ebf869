"""The synthetic talking avatar of the emulator.

One :class:`AvatarMedia` per emulated session: a numpy-rendered face whose mouth follows the
speech envelope, speech from espeak-ng or a built-in synthesizer, encoded once per frame in a
worker thread and handed to aiortc senders as ready-made packets.

For client tests: :data:`MARKERS` (solid corner squares at known places, default 512x512;
:func:`markers_for` for other sizes) and :func:`mouth_opening` (0 closed .. 1 open, measured on
a decoded RGB frame) tell what a correctly decoded picture shows; ``AvatarMedia.timeline``
tells when each turn's audio and mouth movement were sent.

For QA tests: ``AvatarMedia.inject_faults(MediaFaults(...))`` injects faults of known size (A/V
offset, freezes, black, audio dropouts, speech delay, packet loss, fps drop), logged as truth on
the timeline; see :mod:`.media_faults`.
"""

from avatar_rtc.emulator.media.audio_decode import AudioDecodeError, decode_audio
from avatar_rtc.emulator.media.avatar_media import AvatarMedia, MediaStats
from avatar_rtc.emulator.media.face import (
    BACKGROUND,
    MARKERS,
    FaceRenderer,
    Marker,
    markers_for,
    mouth_opening,
)
from avatar_rtc.emulator.media.media_faults import FaultWindow, FpsDrop, MediaFaults
from avatar_rtc.emulator.media.options import AvatarMediaOptions, VideoCodec
from avatar_rtc.emulator.media.timeline import SentFrame, TimelineEvent
from avatar_rtc.emulator.media.viewer import (
    MediaClosedError,
    NegotiationError,
    Viewer,
    ViewerError,
    ViewerLimitError,
)

__all__ = [
    "BACKGROUND",
    "MARKERS",
    "AudioDecodeError",
    "AvatarMedia",
    "AvatarMediaOptions",
    "FaceRenderer",
    "FaultWindow",
    "FpsDrop",
    "Marker",
    "MediaClosedError",
    "MediaFaults",
    "MediaStats",
    "NegotiationError",
    "SentFrame",
    "TimelineEvent",
    "VideoCodec",
    "Viewer",
    "ViewerError",
    "ViewerLimitError",
    "decode_audio",
    "markers_for",
    "mouth_opening",
]
