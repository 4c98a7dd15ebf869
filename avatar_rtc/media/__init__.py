"""Step 3 of the data path: decoded frames and the streams that deliver them."""

from ..rtc.encoded_frame import FrameSource
from .decoder import DecodedFrame, DecoderStats, TrackDecoder, decoder_for
from .formats import AudioFormat, PixelFormat, SampleFormat, VideoFormat
from .frames import AudioFrame, AudioRechunker, VideoFrame
from .streams import AudioStream, Policy, StreamStats, VideoStream
from .sync_iter import BackgroundLoop, FrameIterator, iter_audio, iter_video

__all__ = [
    "AudioFormat",
    "AudioFrame",
    "AudioRechunker",
    "AudioStream",
    "BackgroundLoop",
    "DecodedFrame",
    "DecoderStats",
    "FrameIterator",
    "FrameSource",
    "PixelFormat",
    "Policy",
    "SampleFormat",
    "StreamStats",
    "TrackDecoder",
    "VideoFormat",
    "VideoFrame",
    "VideoStream",
    "decoder_for",
    "iter_audio",
    "iter_video",
]
