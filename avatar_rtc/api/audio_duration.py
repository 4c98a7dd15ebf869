"""Length of an audio file, for the ``duration`` field of say-audio.

The service does not probe the audio itself, and a wrong duration desyncs the mouth,
so the length is measured by decoding (PyAV): header estimates of VBR MP3 can be far off.
"""

from __future__ import annotations

import io
from pathlib import Path

import av

__all__ = ["audio_duration"]


def audio_duration(source: str | Path | bytes) -> float:
    """Seconds of audio in the first audio stream of ``source`` (a path or the file's bytes).

    Blocking (decodes the whole stream); call it through ``asyncio.to_thread``.
    Raises :class:`ValueError` when the data is not readable audio.
    """
    file: str | io.BytesIO = io.BytesIO(source) if isinstance(source, bytes) else str(source)
    samples = 0
    sample_rate = 0
    try:
        with av.open(file, mode="r") as container:
            if not container.streams.audio:
                raise ValueError("no audio stream")
            stream = container.streams.audio[0]
            for frame in container.decode(stream):
                samples += frame.samples
                sample_rate = frame.sample_rate
    except OSError:
        raise  # a missing or unreadable file is not a format problem
    except av.FFmpegError as exc:
        raise ValueError(f"not readable audio: {exc}") from exc
    if samples == 0 or sample_rate == 0:
        raise ValueError("the audio has no samples")
    return samples / sample_rate
