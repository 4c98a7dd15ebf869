"""Step 3 of the data path: decoded frames, streams and the shared A/V clock."""

from .clock import AvClock, ClockSource
from .decoder import DecodedFrame, DecoderStats, FrameSource, TrackDecoder, decoder_for
from .frames import AudioFrame, AudioRechunker, PixelFormat, SampleFormat, VideoFrame
from .streams import AudioStream, Policy, StreamStats, VideoStream
from .sync_iter import BackgroundLoop, FrameIterator, iter_audio, iter_video

__all__ = [
    "AudioFrame",
    "AudioRechunker",
    "AudioStream",
    "AvClock",
    "BackgroundLoop",
    "ClockSource",
    "DecodedFrame",
    "DecoderStats",
    "FrameIterator",
    "FrameSource",
    "PixelFormat",
    "Policy",
    "SampleFormat",
    "StreamStats",
    "TrackDecoder",
    "VideoFrame",
    "VideoStream",
    "decoder_for",
    "iter_audio",
    "iter_video",
]
