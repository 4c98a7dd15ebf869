"""Any audio file as MP3, for say-audio: the one format the service was verified to accept.

The service's say-audio is undocumented; MP3 is the only format seen to work live (IA-SDK),
and the official demo encodes its recordings to MP3 (mono, 44.1 kHz, 128 kbit/s) before it
sends them. A WAV or OGG sent as is may be refused or play as silence, and the emulator
(which decodes whatever PyAV reads) would not show it. :func:`to_mp3` encodes the same way
the demo does.
"""

from __future__ import annotations

import io

import av

__all__ = ["MP3_BIT_RATE", "MP3_SAMPLE_RATE", "is_mp3", "to_mp3"]

MP3_SAMPLE_RATE = 44100
MP3_BIT_RATE = 128_000


def is_mp3(data: bytes) -> bool:
    """Whether ``data`` is an MP3 file, by its content as FFmpeg probes it (a name or a first
    byte can lie: AAC's ADTS header starts like an MPEG audio frame). Raises
    :class:`ValueError` when the data is not readable media."""
    try:
        with av.open(io.BytesIO(data), mode="r") as container:
            audio = container.streams.audio
            codec = audio[0].codec_context.name if audio else None
            return container.format.name == "mp3" and codec in ("mp3", "mp3float")
    except av.FFmpegError as exc:
        raise ValueError(f"not readable audio: {exc}") from exc


def to_mp3(data: bytes) -> tuple[bytes, float]:
    """The first audio stream of ``data`` (a file's bytes) as a mono MP3, and its length in
    seconds (of the input: the MP3's encoder padding is not counted).

    Blocking (decodes and encodes the whole stream); call it through ``asyncio.to_thread``.
    Raises :class:`ValueError` when the data is not readable audio.
    """
    out = io.BytesIO()
    samples = 0
    sample_rate = 0
    try:
        with av.open(io.BytesIO(data), mode="r") as source:
            if not source.streams.audio:
                raise ValueError("no audio stream")
            with av.open(out, mode="w", format="mp3") as sink:
                stream = sink.add_stream("libmp3lame", rate=MP3_SAMPLE_RATE, layout="mono")
                stream.bit_rate = MP3_BIT_RATE
                resampler = av.AudioResampler(format="s16p", layout="mono", rate=MP3_SAMPLE_RATE)
                for frame in source.decode(source.streams.audio[0]):
                    samples += frame.samples
                    sample_rate = frame.sample_rate
                    frame.pts = None  # the encoder counts its own samples
                    for chunk in resampler.resample(frame):
                        sink.mux(stream.encode(chunk))
                if samples == 0 or sample_rate == 0:
                    raise ValueError("the audio has no samples")
                for chunk in resampler.resample(None):
                    sink.mux(stream.encode(chunk))
                sink.mux(stream.encode(None))
    except av.FFmpegError as exc:
        raise ValueError(f"not readable audio: {exc}") from exc
    return out.getvalue(), samples / sample_rate
