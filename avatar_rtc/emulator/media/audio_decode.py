"""Decode any audio container/codec PyAV understands into mono float32 PCM at 48 kHz."""

from __future__ import annotations

import io

import av
import numpy as np

from avatar_rtc.emulator.media.envelope import Samples

SAMPLE_RATE = 48_000


class AudioDecodeError(ValueError):
    """The bytes are not audio PyAV can decode."""


def decode_audio(data: bytes) -> Samples:
    """Blocking (run it in a thread): the first audio stream of ``data``, mono, 48 kHz."""
    chunks: list[Samples] = []
    try:
        with av.open(io.BytesIO(data), mode="r") as container:
            if not container.streams.audio:
                raise AudioDecodeError("no audio stream")
            resampler = av.AudioResampler(format="flt", layout="mono", rate=SAMPLE_RATE)
            for frame in container.decode(audio=0):
                for out in resampler.resample(frame):
                    chunks.append(out.to_ndarray().reshape(-1).astype(np.float32, copy=False))
            for out in resampler.resample(None):
                chunks.append(out.to_ndarray().reshape(-1).astype(np.float32, copy=False))
    except AudioDecodeError:
        raise
    except (av.FFmpegError, ValueError) as exc:
        raise AudioDecodeError(f"cannot decode audio: {exc}") from exc
    if not chunks:
        raise AudioDecodeError("no audio samples decoded")
    return np.concatenate(chunks)
