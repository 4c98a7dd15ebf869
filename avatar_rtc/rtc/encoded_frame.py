"""The contract between the receive pipeline and its sinks (decoder, recorder).

:class:`EncodedFrame`: one complete compressed frame as reassembled from RTP, before any
decoding. :class:`FrameSource`: what a sink needs from the pipeline that delivers them
(``rtc.receiver.ReceivePipeline``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, Protocol

from .clock import ClockSource

__all__ = ["EncodedFrame", "FrameSource", "MediaKind"]

MediaKind = Literal["video", "audio"]


@dataclass(frozen=True, slots=True)
class EncodedFrame:
    """A compressed access unit handed from the receive pipeline to its sinks.

    - ``codec``: ``"H264"``, ``"VP8"`` or ``"opus"`` (the negotiated codec's mimeType subtype).
    - ``data``: H264 as an Annex-B access unit (with SPS/PPS when the sender sent them),
      VP8 as one frame, Opus as one packet.
    - ``rtp_timestamp``: the sender's RTP timestamp, unwrapped to 64 bits, not rebased.
    - ``clock_rate``: 90000 for video, 48000 for Opus.
    - ``presentation_time``: seconds on the session's shared A/V clock (see ``rtc.clock``).
    - ``clock_source``: ``"rtcp-sr"`` when mapped through RTCP sender reports, else ``"arrival"``.
    - ``arrival_time``: ``time.monotonic()`` when the last packet of the frame arrived.
    - ``index``: 0, 1, 2... per track, in release order.
    - ``concealed``: video released after a loss without the keyframe that repairs it (it
      references a lost picture; decoders draw it over the stale one, with artefacts).
    """

    kind: MediaKind
    codec: str
    data: bytes
    rtp_timestamp: int
    clock_rate: int
    keyframe: bool
    presentation_time: float
    clock_source: ClockSource
    arrival_time: float
    index: int
    concealed: bool = False


class FrameSource(Protocol):
    """Delivers the encoded frames of one track to subscribers."""

    @property
    def kind(self) -> MediaKind: ...

    def subscribe(self, callback: Callable[[EncodedFrame], None]) -> Callable[[], None]:
        """Call ``callback`` with every frame (on the event loop); returns the unsubscribe."""
        ...

    def request_keyframe(self) -> None:
        """Ask the sender for a keyframe (video)."""
        ...
