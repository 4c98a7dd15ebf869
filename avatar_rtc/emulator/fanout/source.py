"""FanoutSource: one clock, one encoded loop, every viewer of every fan-out session.

A single task ticks every 20 ms on an absolute schedule: the audio packet of the tick, and the
video frame falling in it, go to every ready :class:`~.outlet.Outlet` in turn. RTP timestamps
are the fan-out clock's (``epoch``: ``time.monotonic()`` of RTP time 0, for every viewer and
for the life of the source), so a benchmark on this machine reads a frame's send time off its
timestamp. Each viewer plays the loop from its own position (``Outlet.shift``), moved back to a
keyframe when it asks for one. The task runs while there are outlets, and stops with the last.

``ticks_per_wakeup`` > 1 sends that many ticks' media at each wake-up, the later ones early
(their timestamps unchanged): most of a few viewers' CPU is the loop waking 50 times a second
(2 ticks: 1.4-1.6 % of a core for one viewer instead of 2.2-2.5 %, ``bench_scale.py``,
2026-12-07). A viewer then gets its audio packets in pairs, and 40 ms bursts cost a receiver
less than the same packets spread out (plain aiortc's the most): not for benchmarks.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from dataclasses import dataclass

from avatar_rtc.emulator.fanout.loop import AUDIO_FRAMES_PER_SECOND, EncodedLoop, encoded_loop
from avatar_rtc.emulator.fanout.outlet import Outlet
from avatar_rtc.emulator.media.encoder import AUDIO_CLOCK, AUDIO_FRAME, VIDEO_CLOCK, video_pts
from avatar_rtc.emulator.media.options import AvatarMediaOptions
from avatar_rtc.emulator.media.pacing import wait_until_due
from avatar_rtc.emulator.media.timeline import MediaKind
from avatar_rtc.tasks import cancel_and_wait

__all__ = ["FanoutSource", "FanoutStats"]

logger = logging.getLogger(__name__)

TICK = AUDIO_FRAME / AUDIO_CLOCK  # 20 ms


@dataclass
class FanoutStats:
    """``send_seconds``: CPU time of the event-loop thread spent in ticks (``thread_time``)."""

    ticks: int = 0
    wakeups: int = 0  # ticks / ticks_per_wakeup
    packets: int = 0
    bytes: int = 0
    send_seconds: float = 0.0
    skipped_ticks: int = 0
    send_errors: int = 0
    keyframe_jumps: int = 0


class FanoutSource:
    """Shared by the fan-out sessions of one emulator (see the module docstring)."""

    def __init__(self, options: AvatarMediaOptions, *, ticks_per_wakeup: int = 1) -> None:
        if ticks_per_wakeup < 1:
            raise ValueError(f"ticks_per_wakeup must be at least 1, got {ticks_per_wakeup}")
        self.options = options
        self.ticks_per_wakeup = ticks_per_wakeup
        self.stats = FanoutStats()
        self.epoch = time.monotonic()
        self._outlets: list[Outlet] = []
        self._loop: EncodedLoop | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def outlets(self) -> list[Outlet]:
        return list(self._outlets)

    async def encoded(self) -> EncodedLoop:
        """The loop (encoded once per process, off the event loop)."""
        if self._loop is None:
            o = self.options
            self._loop = await asyncio.to_thread(
                encoded_loop, o.width, o.height, o.fps, o.video_codec, o.video_bitrate
            )
        return self._loop

    def rtp_time(self, kind: MediaKind, monotonic: float) -> int:
        """The RTP timestamp of ``monotonic`` on the fan-out clock (sender reports)."""
        rate = VIDEO_CLOCK if kind == "video" else AUDIO_CLOCK
        return round((monotonic - self.epoch) * rate)

    def add(self, outlet: Outlet) -> None:
        """Start sending to ``outlet`` (once it is ready); starts the clock if needed."""
        if self._loop is None:
            raise RuntimeError("encoded() first")
        self._outlets.append(outlet)
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(self._loop), name="fanout-clock")

    async def remove(self, outlet: Outlet) -> None:
        outlet.close()
        if outlet in self._outlets:
            self._outlets.remove(outlet)
        if not self._outlets and self._task is not None:
            task, self._task = self._task, None
            await cancel_and_wait(task)

    async def _run(self, loop: EncodedLoop) -> None:
        clock = asyncio.get_running_loop()  # its time() is time.monotonic()
        tick = math.ceil((clock.time() - self.epoch) / TICK)  # the clock runs on while idle
        while True:
            skipped = await wait_until_due(self.epoch + tick * TICK, TICK)
            self.stats.skipped_ticks += skipped
            tick += skipped
            started = time.thread_time()
            for each in range(tick, tick + self.ticks_per_wakeup):
                try:
                    await self._tick(loop, each)
                except Exception:  # one bad tick must not stop every viewer's media
                    logger.exception("fan-out tick failed")
            self.stats.send_seconds += time.thread_time() - started
            self.stats.ticks += self.ticks_per_wakeup
            self.stats.wakeups += 1
            tick += self.ticks_per_wakeup

    async def _tick(self, loop: EncodedLoop, tick: int) -> None:
        """Audio packet ``tick`` and the video frames whose time falls in this tick."""
        fps = loop.fps
        first = -(-tick * fps // AUDIO_FRAMES_PER_SECOND)  # first frame at or after the tick
        frames = range(first, -(-(tick + 1) * fps // AUDIO_FRAMES_PER_SECOND))
        audio_ts = (tick * AUDIO_FRAME) & 0xFFFFFFFF
        for outlet in tuple(self._outlets):
            if not outlet.ready:
                continue
            try:
                for frame in frames:
                    await self._send_video(loop, outlet, frame)
                await self._send_audio(loop, outlet, tick, audio_ts)
            except ConnectionError:  # the viewer's DTLS closed: its WHEP DELETE follows
                self.stats.send_errors += 1
                outlet.closed = True

    async def _send_video(self, loop: EncodedLoop, outlet: Outlet, frame: int) -> None:
        stream = outlet.video
        if stream is None:
            return
        index = (frame - outlet.shift) % len(loop.video)
        if outlet.keyframe_wanted:
            outlet.keyframe_wanted = False
            back = index - loop.keyframe_at_or_before(index)
            outlet.shift += back
            index -= back
            self.stats.keyframe_jumps += 1
        timestamp = video_pts(frame, loop.fps) & 0xFFFFFFFF
        payloads = loop.video[index].payloads
        last = len(payloads) - 1
        for i, payload in enumerate(payloads):
            await outlet.send(stream, payload, timestamp, i == last)
            self.stats.bytes += len(payload)
        self.stats.packets += len(payloads)

    async def _send_audio(self, loop: EncodedLoop, outlet: Outlet, tick: int, ts: int) -> None:
        stream = outlet.audio
        if stream is None:
            return
        # The audio plays from the same loop position as the video.
        shift = outlet.shift * AUDIO_FRAMES_PER_SECOND // loop.fps
        payload = loop.audio[(tick - shift) % len(loop.audio)]
        await outlet.send(stream, payload, ts, False)
        self.stats.packets += 1
        self.stats.bytes += len(payload)
