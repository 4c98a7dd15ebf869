"""What say-text and say-audio send besides the words: turn ids, the audio's MIME type and
its duration (the audio's measured length is in :mod:`.audio_duration`)."""

from __future__ import annotations

import math
import secrets
import string
import time
from pathlib import Path

__all__ = ["duration_text", "guess_audio_type", "new_turn_id"]

_BASE36 = string.digits + string.ascii_lowercase
_AUDIO_TYPES = {
    ".mp3": "audio/mpeg",
    ".wav": "audio/wav",
    ".ogg": "audio/ogg",
    ".opus": "audio/ogg",
    ".m4a": "audio/mp4",
    ".flac": "audio/flac",
}


def new_turn_id() -> str:
    """A fresh turn id shaped like the docs' example: ``turn-<epoch ms>-<9 base36 chars>``."""
    suffix = "".join(secrets.choice(_BASE36) for _ in range(9))
    return f"turn-{int(time.time() * 1000)}-{suffix}"


def guess_audio_type(filename: str, data: bytes) -> str:
    """MIME type of an audio file from its name, else from its first bytes."""
    by_suffix = _AUDIO_TYPES.get(Path(filename).suffix.lower())
    if by_suffix:
        return by_suffix
    if data[:4] == b"RIFF" and data[8:12] == b"WAVE":
        return "audio/wav"
    if data[:3] == b"ID3" or (len(data) > 1 and data[0] == 0xFF and data[1] & 0xE0 == 0xE0):
        return "audio/mpeg"  # ID3 tag or an MPEG audio frame sync
    if data[:4] == b"OggS":
        return "audio/ogg"
    return "application/octet-stream"


def duration_text(duration: float) -> str:
    """``duration`` as the decimal string say-audio expects (e.g. ``"1.5"``)."""
    text = f"{duration:.6f}".rstrip("0").rstrip(".")
    if not math.isfinite(duration) or float(text) <= 0:
        raise ValueError(f"say-audio duration must be a positive number of seconds, not {duration}")
    return text
