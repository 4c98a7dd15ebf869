"""End to end: embedded emulator -> WHEP (MediaConnection) -> ReceivePipeline -> numpy."""

from __future__ import annotations

import asyncio

import numpy as np

from avatar_rtc.api.client import ControlClient
from avatar_rtc.emulator import Emulator
from avatar_rtc.emulator.catalog import DEFAULT_VISUAL_ID
from avatar_rtc.media import AudioFrame, AudioStream, VideoFrame, VideoStream
from avatar_rtc.media.formats import AudioFormat, VideoFormat
from avatar_rtc.rtc.clock import AvClock
from avatar_rtc.rtc.connection import MediaConnection
from avatar_rtc.rtc.receiver import ReceivePipeline
from tests.support import LOOPBACK_ICE


async def test_emulator_to_numpy_frames() -> None:
    clock = AvClock()
    pipelines = {
        "video": ReceivePipeline("video", clock=clock),
        "audio": ReceivePipeline("audio", clock=clock),
    }
    async with Emulator() as emu, ControlClient(emu.api_url, emu.ks) as api:
        handle = await api.create(DEFAULT_VISUAL_ID)
        config = await api.init_client(handle)
        connection = MediaConnection(
            config.whep_url,
            ice=LOOPBACK_ICE,
            on_receiver=lambda receiver, kind: pipelines[kind].attach(receiver),
        )
        async with connection:
            video = VideoStream(pipelines["video"], VideoFormat("rgb24", size=(160, 120)))
            audio = AudioStream(pipelines["audio"], AudioFormat(sample_rate=16000))
            frames: list[VideoFrame] = []
            while len(frames) < 10:
                frames.append(await asyncio.wait_for(video.__anext__(), 10))
            chunk = await asyncio.wait_for(audio.__anext__(), 10)
            assert isinstance(chunk, AudioFrame) and chunk.data.shape == (320, 1)
            assert all(f.array.shape == (120, 160, 3) for f in frames)
            assert frames[-1].array.dtype == np.uint8 and frames[-1].array.std() > 1.0
            pts = [f.presentation_time for f in frames]
            assert pts == sorted(pts)
            st = pipelines["video"].stats()
            assert st.frames >= 10 and st.keyframes >= 1
            assert st.codec in ("H264", "VP8")
            video.close()
            audio.close()
        await api.end(handle)
