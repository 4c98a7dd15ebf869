"""Video codec negotiation failures, turned into one typed error that names the codecs.

A WHEP server that cannot send any of the offered video codecs shows it in one of three ways:
it refuses the POST (the live service: 502 to a VP8-only offer; the emulator: 400), it answers
with the video section rejected (port 0) or with codecs we never offered, or aiortc refuses the
answer in ``setRemoteDescription``. A 406 counter-offer whose video we cannot receive is the
same failure told the other way round. Each becomes :class:`CodecNegotiationError`.

No aiortc at import time: the WHEP client (SDP text only) uses :func:`check_counter_offer`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ..errors import CodecNegotiationError, WhepError
from ..redact import redact, redact_exception
from .video_codecs import RECEIVABLE_VIDEO_CODECS

__all__ = [
    "RECEIVABLE_VIDEO_CODECS",
    "VideoAnswer",
    "check_answer",
    "check_counter_offer",
    "raise_if_refused",
    "raise_if_rejected",
    "video_answer",
]

# Payload formats that repair or protect a codec rather than being one.
_HELPERS = frozenset({"RTX", "RED", "ULPFEC", "FLEXFEC-03"})
# Refusals that say "not who/where/when" (auth, no such session, busy, rate limit) are no
# codec problem; these may be one.
_CLIENT_REFUSALS = frozenset({400, 406, 422, 488})
_NAMES_EXCERPT = 120


@dataclass(frozen=True, slots=True)
class VideoAnswer:
    """The video section of an answer: its port (0 = rejected) and codec names (upper case)."""

    port: int
    codecs: tuple[str, ...]


def video_answer(sdp: str) -> VideoAnswer | None:
    """The first video section of ``sdp``; None when there is none."""
    port: int | None = None
    names: dict[str, str] = {}
    formats: list[str] = []
    for line in sdp.splitlines():
        if line.startswith("m="):
            if port is not None:
                break  # the video section ended
            fields = line[2:].split()
            if fields and fields[0] == "video" and len(fields) >= 3:
                # isascii: "²".isdigit() is True but int() refuses it.
                port = int(fields[1]) if fields[1].isascii() and fields[1].isdigit() else 0
                formats = fields[3:]
        elif port is not None and line.startswith("a=rtpmap:"):
            payload, _, encoding = line[len("a=rtpmap:") :].partition(" ")
            names[payload] = encoding.split("/")[0].upper()
    if port is None:
        return None
    codecs = [names.get(pt, pt) for pt in formats]
    return VideoAnswer(port, tuple(dict.fromkeys(c for c in codecs if c not in _HELPERS)))


def _names(codecs: Sequence[str]) -> str:
    """For messages: names come from the server's SDP (masked, a bounded excerpt)."""
    text = redact("/".join(codecs)) if codecs else "none"
    return text if len(text) <= _NAMES_EXCERPT else text[:_NAMES_EXCERPT] + "..."


def _offered(offered: Sequence[str]) -> tuple[str, ...]:
    return tuple(c.upper() for c in offered)


def check_answer(offered: Sequence[str], answer_sdp: str) -> None:
    """Raise :class:`CodecNegotiationError` unless the answer sends an offered video codec."""
    ours = _offered(offered)
    video = video_answer(answer_sdp)
    if video is None or video.port == 0:
        answered = video.codecs if video is not None else ()
        raise CodecNegotiationError(
            f"the WHEP server rejected the video of an offer of {_names(ours)} "
            f"({'no video section' if video is None else 'port 0'}): it sends none of "
            f"these codecs{_hint(ours)}",
            offered=ours,
            answered=answered,
        )
    if not set(video.codecs) & set(ours):
        raise CodecNegotiationError(
            f"the WHEP server answered video {_names(video.codecs)} to an offer of "
            f"{_names(ours)}{_hint(ours)}",
            offered=ours,
            answered=video.codecs,
        )


def check_counter_offer(
    offer_sdp: str, receivable: Sequence[str] = RECEIVABLE_VIDEO_CODECS
) -> None:
    """Raise :class:`CodecNegotiationError` when a 406 counter-offer's video section offers
    none of the ``receivable`` codecs (or rejects its video: port 0). A counter-offer without
    video passes: it offers nothing we would refuse."""
    ours = _offered(receivable)
    video = video_answer(offer_sdp)
    if video is None or (video.port != 0 and set(video.codecs) & set(ours)):
        return
    raise CodecNegotiationError(
        f"the WHEP server's counter-offer (HTTP 406) has video {_names(video.codecs)}"
        f"{' (port 0)' if video.port == 0 else ''}; we can receive {_names(ours)} only",
        offered=ours,
        answered=video.codecs,
        status=406,
    )


def raise_if_refused(offered: Sequence[str], exc: WhepError) -> None:
    """Raise :class:`CodecNegotiationError` (from ``exc``) when a refused WHEP POST was
    probably about codecs: the offer was narrowed to fewer codecs than we can receive and
    the status is a plain refusal (400/406/422/488) or a server error (5xx)."""
    ours = _offered(offered)
    narrowed = set(ours) < set(RECEIVABLE_VIDEO_CODECS)
    if not narrowed or not (exc.status in _CLIENT_REFUSALS or exc.status >= 500):
        return
    said = f": {exc.body}" if exc.body else ""
    raise CodecNegotiationError(
        f"the WHEP server refused an offer of video {_names(ours)} only "
        f"(HTTP {exc.status}{said}); it may not send {_names(ours)}{_hint(ours)}",
        offered=ours,
        status=exc.status,
    ) from exc


def raise_if_rejected(offered: Sequence[str], answer_sdp: str, exc: Exception) -> None:
    """Raise :class:`CodecNegotiationError` (from ``exc``) when aiortc refused the answer for
    its video codecs (same names but parameters it cannot take, e.g. an H264 profile)."""
    from aiortc.exceptions import OperationError  # here: importing aiortc is slow

    if not isinstance(exc, OperationError) or "video" not in str(exc):
        return  # aiortc: "Failed to set remote video description send parameters"
    ours = _offered(offered)
    video = video_answer(answer_sdp)
    answered = video.codecs if video is not None else ()
    raise CodecNegotiationError(
        f"cannot receive the video the WHEP server answered ({_names(answered)}, offered "
        f"{_names(ours)}): {redact(str(exc))}",
        offered=ours,
        answered=answered,
    ) from redact_exception(exc)


def _hint(offered: tuple[str, ...]) -> str:
    if set(offered) >= set(RECEIVABLE_VIDEO_CODECS):
        return ""
    return f"; offer {_names(RECEIVABLE_VIDEO_CODECS)} (the default: no --codec / video_codecs)"
