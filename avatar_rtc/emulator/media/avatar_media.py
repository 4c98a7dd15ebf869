"""AvatarMedia: the media of one emulated session (face + speech + encoders + viewers).

One media clock per session: audio advances in 20 ms frames, video frames fall on it at
``fps``. The clock runs while a viewer is connected or speech is pending, and sleeps otherwise
(an avatar nobody watches and nobody talks to costs nothing). Rendering and encoding happen
only while a viewer's sender pulls, once per frame for all viewers, in one worker thread.

Lip sync: the speech goes onto a tape (:class:`~.tape.SpeechTape`) read by two heads, the sound
``LATENCY`` behind the player and the mouth as far, its opening measured over a window centred
on the frame's time: mouth and sound carry the same instant of speech (no smoothing lag). The
sound is read ``CODEC_DELAY`` early, as Opus delays it by as much. An injected A/V offset moves
one head further back (:mod:`.media_faults`). Audio events are at the media time a receiver
*hears* them (the RTP time of their frame plus the codec delay), video events at their frame's.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
import uuid
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from aiortc import RTCConfiguration

from avatar_rtc.emulator.media.audio_decode import SAMPLE_RATE, decode_audio
from avatar_rtc.emulator.media.encoder import (
    AUDIO_FRAME,
    CODEC_DELAY,
    AudioEncoder,
    EncodedPacket,
    VideoEncoder,
    video_pts,
)
from avatar_rtc.emulator.media.envelope import Samples, opening_for, rms_dbfs
from avatar_rtc.emulator.media.face import FaceRenderer
from avatar_rtc.emulator.media.media_faults import (
    MAX_OFFSET_MS,
    FaultPlan,
    MediaFaults,
    Transition,
    VideoAction,
)
from avatar_rtc.emulator.media.options import AvatarMediaOptions
from avatar_rtc.emulator.media.pacing import wait_until_due
from avatar_rtc.emulator.media.speech import PlayerEvent, Segment, SpeechPlayer
from avatar_rtc.emulator.media.tape import SpeechTape
from avatar_rtc.emulator.media.timeline import MediaKind, SentFrame, Timeline, TimelineEvent
from avatar_rtc.emulator.media.tracks import PacketTrack
from avatar_rtc.emulator.media.tts import Synthesizer, make_synthesizer
from avatar_rtc.emulator.media.viewer import MediaClosedError, Viewer
from avatar_rtc.emulator.media.viewer_slot import check_room, negotiate_reserved
from avatar_rtc.tasks import cancel_and_wait

logger = logging.getLogger(__name__)

FRAME_SECONDS = AUDIO_FRAME / SAMPLE_RATE
ONSET_DB = -40.0  # an audio frame above this level is the turn's audible onset
MOUTH_OPEN = 0.15  # mouth opening that counts as "open" for the timeline
MAX_PENDING_VIDEO = 3  # frames queued to the worker before new ones are skipped
MIN_KEYFRAME_GAP = 0.1  # seconds between two forced keyframes
# Samples both tape heads trail the player: the mouth's window reaches this far past its centre.
LATENCY = AUDIO_FRAME
MOUTH_HALF_WINDOW = AUDIO_FRAME  # the mouth opening is the speech level of 2 x 20 ms around it
TAPE_SECONDS = 1.0 + MAX_OFFSET_MS / 1000  # history kept: the largest head distance + margin


@dataclass
class MediaStats:
    """Counters, written by the worker thread (plain ints/floats: fine under the GIL).

    Encode times are CPU seconds of the worker thread (``time.thread_time``).
    """

    video_frames: int = 0
    video_encode_seconds: float = 0.0
    video_bytes: int = 0
    keyframes: int = 0
    video_frames_skipped: int = 0
    video_frames_withheld: int = 0  # by an injected fault (freeze, fps drop)
    audio_frames: int = 0
    audio_frames_withheld: int = 0  # by an injected fault
    audio_encode_seconds: float = 0.0
    keyframe_requests: int = 0
    clock_skips: int = 0  # times the loop was held up so long that media time was skipped
    skipped_seconds: float = 0.0

    @property
    def video_ms_per_frame(self) -> float:
        """Render + encode time per video frame, in ms."""
        return 1000.0 * self.video_encode_seconds / self.video_frames if self.video_frames else 0.0

    @property
    def audio_ms_per_frame(self) -> float:
        return 1000.0 * self.audio_encode_seconds / self.audio_frames if self.audio_frames else 0.0


_Encoded = tuple[list[EncodedPacket], list[EncodedPacket]]  # audio, video packets


@dataclass(frozen=True, slots=True)
class _VideoJob:
    opening: float
    index: int
    keyframe: bool
    time: float  # media time (idle motion)
    action: VideoAction  # render, repeat the last picture, or black


@dataclass(frozen=True)
class _SpeechJob:
    turn_id: str
    generation: int
    is_final: bool
    text: str | None = None
    pcm: Samples | None = None


class AvatarMedia:
    """Synthetic talking avatar of one session."""

    def __init__(
        self, options: AvatarMediaOptions | None = None, *, synthesizer: Synthesizer | None = None
    ) -> None:
        self.options = options or AvatarMediaOptions()
        self.closed = False
        self.stats = MediaStats()
        self._timeline = Timeline()
        self._player = SpeechPlayer()
        self._tape = SpeechTape(round(TAPE_SECONDS * SAMPLE_RATE))
        self._tape_events: deque[tuple[int, PlayerEvent]] = deque()  # (tape index, event)
        self._mouth_turns: deque[tuple[int, str]] = deque()  # (tape index, turn) of turn starts
        self._sound_turn: str | None = None
        self._mouth_turn: str | None = None
        self._delayed: set[str] = set()  # turns in their injected speech delay
        self._opening = 0.0
        self._faults = FaultPlan()
        self._synth = synthesizer or make_synthesizer(
            self.options.tts, voice=self.options.espeak_voice
        )
        self._jobs: asyncio.Queue[_SpeechJob] = asyncio.Queue()
        self._synth_turn: str | None = None
        self._generation = 0
        self._viewers: dict[str, Viewer] = {}
        self._video_tracks: list[PacketTrack] = []
        self._audio_tracks: list[PacketTrack] = []
        self._executor: ThreadPoolExecutor | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._closing: set[asyncio.Future[bool]] = set()
        self._wake = asyncio.Event()
        self._audio_index = 0
        self._clock_base = 0.0  # monotonic time of media time 0 (set by the clock task)
        self._video_index = 0
        self._force_keyframe = True
        self._last_keyframe_time = float("-inf")
        self._pending_video = 0
        self._awaiting_onset: set[str] = set()
        self._awaiting_mouth: set[str] = set()
        # Created lazily in the worker thread (first frame with a viewer).
        self._renderer: FaceRenderer | None = None
        self._video_encoder: VideoEncoder | None = None
        self._audio_encoder: AudioEncoder | None = None
        self._yuv: npt.NDArray[np.uint8] | None = None
        if self.options.faults != MediaFaults():
            self.inject_faults(self.options.faults)

    # ------------------------------------------------------------------ public API

    @property
    def timeline(self) -> list[TimelineEvent]:
        """Per-turn events so far (oldest first)."""
        return list(self._timeline.events)

    def events(self, turn_id: str, kind: str | None = None) -> list[TimelineEvent]:
        return [
            e
            for e in self._timeline.events
            if e.turn_id == turn_id and (kind is None or e.kind == kind)
        ]

    @property
    def sent_frames(self) -> list[SentFrame]:
        """The most recent sent frames (bounded ring): RTP timestamp + monotonic send time."""
        return list(self._timeline.frames)

    @property
    def on_frame_sent(self) -> Callable[[SentFrame], None] | None:
        return self._timeline.on_frame_sent

    @on_frame_sent.setter
    def on_frame_sent(self, hook: Callable[[SentFrame], None] | None) -> None:
        self._timeline.on_frame_sent = hook

    @property
    def speaking(self) -> bool:
        """True while speech audio is playing or ready to play."""
        return self._player.speaking or bool(self._tape_events)

    @property
    def mouth(self) -> float:
        """Mouth opening 0..1 of the last video frame (the speech level around its time)."""
        return self._opening

    @property
    def faults(self) -> MediaFaults:
        """The faults armed last (see :meth:`inject_faults`)."""
        return self._faults.faults

    def inject_faults(self, faults: MediaFaults) -> None:
        """Arm ``faults``, replacing the armed ones (``MediaFaults()`` clears them).

        Settings act at once (arm an A/V offset between turns: changing it mid-speech skips or
        repeats that much sound); windows wait for the start of the next turn, then run once.
        A window already running finishes. Everything is logged on the :attr:`timeline`.
        """
        self._faults.arm(faults)
        self._player.lead_in = round(faults.speech_delay_ms * SAMPLE_RATE / 1000)
        loss = self._video_loss()
        for viewer in self._viewers.values():
            viewer.tap.video_loss = loss
        settings = {
            "av_offset_ms": faults.av_offset_ms,
            "speech_delay_ms": faults.speech_delay_ms,
            "video_packet_loss": loss,
        }
        for name, value in settings.items():
            self._timeline.add("fault_set", "", self.media_time, fault=name, value=value)
        logger.info("media faults armed: %s", faults)

    @property
    def media_time(self) -> float:
        """Seconds on this session's media clock."""
        return self._audio_index * FRAME_SECONDS

    @property
    def viewers(self) -> dict[str, Viewer]:
        return dict(self._viewers)

    @property
    def synthesizer_name(self) -> str:
        return self._synth.name

    async def start(self) -> None:
        """Start the clock and speech tasks (idempotent). Rendering waits for a viewer."""
        if self.closed:
            raise MediaClosedError("media closed")
        if self._tasks:
            return
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="avatar-media")
        self._tasks = [
            asyncio.create_task(self._run_clock(), name="avatar-media-clock"),
            asyncio.create_task(self._run_speech(), name="avatar-media-speech"),
        ]

    async def say_text(self, text: str, *, turn_id: str, is_final: bool = True) -> None:
        """Queue ``text`` for speech (synthesis happens in the background, in order)."""
        await self.start()
        self._timeline.add("queued", turn_id, self.media_time)
        self._jobs.put_nowait(_SpeechJob(turn_id, self._generation, is_final, text=text))

    async def say_audio(
        self,
        audio: bytes,
        *,
        duration: float | None = None,
        turn_id: str,
        filename: str | None = None,
    ) -> None:
        """Decode ``audio`` (any format PyAV reads; raises AudioDecodeError) and queue it."""
        await self.start()
        generation = self._generation
        pcm = await asyncio.to_thread(decode_audio, audio)
        actual = pcm.size / SAMPLE_RATE
        if duration is not None and abs(duration - actual) > 0.5:
            logger.info(
                "say-audio %s: declared %.2f s, decoded %.2f s",
                filename or turn_id,
                duration,
                actual,
            )
        self._timeline.add("queued", turn_id, self.media_time)
        self._jobs.put_nowait(_SpeechJob(turn_id, generation, True, pcm=pcm))

    def interrupt(self) -> None:
        """Stop the current speech, drop everything queued; the mouth closes at once."""
        self._generation += 1
        while not self._jobs.empty():
            self._jobs.get_nowait()
        turn = self._player.clear() or self._synth_turn
        # Nothing already played may still be heard or seen: wipe the tape.
        self._tape.erase()
        self._tape_events.clear()
        self._mouth_turns.clear()
        self._delayed.clear()
        self._sound_turn = self._mouth_turn = None
        self._opening = 0.0
        self._awaiting_onset.clear()
        self._awaiting_mouth.clear()
        if turn is not None:
            self._timeline.add("interrupted", turn, self.media_time)

    def request_keyframe(self) -> None:
        """Make the next video frame a keyframe (PLI/FIR from a viewer, new viewer...)."""
        self.stats.keyframe_requests += 1
        self._force_keyframe = True

    def drop_next_video_packets(self, n: int) -> None:
        """Drop the next ``n`` outgoing video RTP packets of the connected viewers, on purpose.

        The sender keeps them in its history, so a NACK gets them retransmitted.
        """
        for viewer in self._viewers.values():
            viewer.tap.drop_video += n

    async def connect_viewer(
        self, offer_sdp: str, *, configuration: RTCConfiguration | None = None
    ) -> Viewer:
        """Negotiate a new viewer; raises MediaClosedError / ViewerLimitError / NegotiationError."""
        check_room(self, len(self._viewers), self.options.max_viewers)
        await self.start()
        resource_id = uuid.uuid4().hex
        video = PacketTrack(
            "video",
            maxsize=8,
            on_start=self._track_started,
            on_overflow=lambda _t: self.request_keyframe(),
            on_stop=self._track_stopped,
        )
        audio = PacketTrack(
            "audio", maxsize=25, on_start=self._track_started, on_stop=self._track_stopped
        )
        viewer = Viewer(
            resource_id,
            video=video,
            audio=audio,
            video_codec=self.options.video_codec,
            on_keyframe_request=self.request_keyframe,
            on_frame_sent=self._timeline.frame_sent,
            on_closed=self._viewer_closed,
            configuration=configuration,
            connect_timeout=self.options.viewer_connect_timeout,
            host_addresses=self.options.host_addresses,
            capture_time=self.capture_time,
        )
        viewer.tap.video_loss = self._video_loss()
        if self._renderer is None and self._executor is not None:
            # Build the face and encoders while ICE/DTLS run, not on the first frame.
            self._executor.submit(self._prepare_video)
        # Reserve the slot before the first await: a concurrent POST must see it (409).
        self._viewers[resource_id] = viewer
        self._video_tracks.append(video)
        self._audio_tracks.append(audio)
        await negotiate_reserved(self, viewer, offer_sdp)
        logger.info("viewer %s negotiated (%s)", resource_id, self.options.video_codec)
        return viewer

    async def disconnect_viewer(self, resource_id: str) -> bool:
        """Close a viewer's peer connection; False if unknown."""
        viewer = self._viewers.pop(resource_id, None)
        if viewer is None:
            return False
        await viewer.close()
        if not self._viewers:
            self._timeline.drop_pending()
        return True

    async def close(self) -> None:
        """Stop everything; viewers are disconnected. Idempotent."""
        if self.closed:
            return
        self.interrupt()
        self.closed = True
        for task in self._tasks:
            task.cancel()  # all at once, then each awaited
        for task in self._tasks:
            await cancel_and_wait(task)
        self._tasks = []
        for resource_id in list(self._viewers):
            await self.disconnect_viewer(resource_id)
        if self._executor is not None:
            executor, self._executor = self._executor, None
            await asyncio.to_thread(executor.shutdown, wait=True, cancel_futures=True)

    # ------------------------------------------------------------------ viewers/tracks

    def _video_loss(self) -> float:
        armed = self._faults.faults.video_packet_loss
        return self.options.video_packet_loss if armed is None else armed

    def _track_started(self, track: PacketTrack) -> None:
        if track.kind == "video":
            self.request_keyframe()  # the viewer's first picture must be decodable
        self._wake.set()

    def _track_stopped(self, track: PacketTrack) -> None:
        for tracks in (self._video_tracks, self._audio_tracks):
            if track in tracks:
                tracks.remove(track)

    def _viewer_closed(self, viewer: Viewer) -> None:
        task = asyncio.ensure_future(self.disconnect_viewer(viewer.resource_id))
        self._closing.add(task)  # keep a reference until done
        task.add_done_callback(self._closing.discard)

    def _live(self, tracks: list[PacketTrack]) -> list[PacketTrack]:
        return [t for t in tracks if t.started and t.readyState == "live"]

    # ------------------------------------------------------------------ speech

    async def _run_speech(self) -> None:
        while True:
            job = await self._jobs.get()
            if job.generation != self._generation:
                continue
            pcm = job.pcm
            if pcm is None and job.text is not None:
                self._synth_turn = job.turn_id
                try:
                    pcm = await self._synth.synthesize(job.text)
                except asyncio.CancelledError:
                    raise
                except Exception:
                    logger.exception("speech synthesis failed for turn %s", job.turn_id)
                    continue
                finally:
                    self._synth_turn = None
            if pcm is None or job.generation != self._generation:
                continue  # interrupted while synthesizing
            self._player.enqueue(Segment(job.turn_id, pcm, job.is_final))
            self._wake.set()

    # ------------------------------------------------------------------ clock

    def _active(self) -> bool:
        return bool(
            self._live(self._video_tracks) or self._live(self._audio_tracks) or self.speaking
        )

    def capture_time(self, media_time: float) -> float:
        """``time.monotonic()`` at which ``media_time`` is (was) produced."""
        return self._clock_base + media_time

    def _on_grid(self, base: float) -> float:
        """``base`` moved on to the next instant of the emulator-wide frame grid.

        Every session's clock starts on a common multiple of the audio and video frame
        periods of ``time.monotonic()`` (of the video period alone where that multiple is over
        0.1 s, a start delay to avoid): sessions of one emulator send their frames at the same
        instants, so viewers of two sessions compared side by side (us and Chromium in an
        impairment cell) meet an outage at the same phase of their streams."""
        grid = 1 / math.gcd(self.options.fps, round(1 / FRAME_SECONDS))
        if grid > 0.1:
            grid = 1 / self.options.fps
        return math.ceil(base / grid - 1e-9) * grid

    async def _run_clock(self) -> None:
        loop = asyncio.get_running_loop()  # its time() is time.monotonic()
        self._clock_base = self._on_grid(loop.time())
        while True:
            if not self._active():
                self._wake.clear()
                await self._wake.wait()
                # Continue the media clock where it stopped; wall time while asleep is skipped.
                self._clock_base = self._on_grid(loop.time() - self._audio_index * FRAME_SECONDS)
                continue
            due = self._clock_base + self._audio_index * FRAME_SECONDS
            skipped = await wait_until_due(due, FRAME_SECONDS)
            if skipped:
                self._skip(skipped)
            try:
                self._tick()
            except Exception:
                logger.exception("media tick failed")

    def _skip(self, ticks: int) -> None:
        """The loop was held up: skip ``ticks`` audio frames (and their video) rather than
        burst them. The media clock keeps pace with the wall clock, as a real sender's capture
        clock does: re-basing it instead would move the RTP/NTP mapping of the sender reports,
        and a receiver aligning audio and video on them would be thrown off for seconds. The
        speech of the skipped time is played (lost), so the tape stays on the media clock."""
        logger.debug("media clock %.0f ms late; skipping ahead", ticks * FRAME_SECONDS * 1000)
        self.stats.clock_skips += 1
        self.stats.skipped_seconds += ticks * FRAME_SECONDS
        for _ in range(ticks):
            self._play_onto_tape()
        self._audio_index += ticks
        self._video_index = math.ceil(self._audio_index * FRAME_SECONDS * self.options.fps - 1e-6)

    def _tick(self) -> None:
        n = self._audio_index
        t = n * FRAME_SECONDS
        audio_tracks = self._live(self._audio_tracks)
        video_tracks = self._live(self._video_tracks)
        sound_head, mouth_head = self._heads()
        self._play_onto_tape()

        # Sound: heard from sample ``heard`` of the media clock on (the codec delays it), it is
        # the tape ``sound_head`` samples back; then the audio faults.
        heard = n * AUDIO_FRAME + CODEC_DELAY
        t_heard = heard / SAMPLE_RATE
        tape_from = heard - sound_head
        pcm = self._tape.read(tape_from, AUDIO_FRAME)
        while self._tape_events and self._tape_events[0][0] < tape_from + AUDIO_FRAME:
            index, ev = self._tape_events.popleft()
            # max(): an offset armed mid-speech moved the head past the event.
            at = max(index + sound_head, heard) / SAMPLE_RATE
            self._sound_event(ev, at, n, bool(audio_tracks))
        withhold, cuts, changes = self._faults.audio_frame(t_heard, t_heard + FRAME_SECONDS)
        for a, b in zip(cuts[::2], cuts[1::2], strict=True):
            pcm[round((a - t_heard) * SAMPLE_RATE) : round((b - t_heard) * SAMPLE_RATE)] = 0.0
        self._log_faults(changes, "audio", n * AUDIO_FRAME, bool(audio_tracks))
        level = rms_dbfs(pcm)
        turn = self._sound_turn
        if turn in self._awaiting_onset and level > ONSET_DB:
            self._awaiting_onset.discard(turn)
            self._timeline.add(
                "audio_onset",
                turn,
                t_heard,
                frame_kind="audio",
                pts=n * AUDIO_FRAME,
                await_send=bool(audio_tracks),
            )
        if withhold:
            self.stats.audio_frames_withheld += 1
        audio_pcm = pcm if audio_tracks and not withhold else None
        self._audio_index += 1

        # Video frames whose time falls in this 20 ms tick, encoded in the same worker job.
        frames: list[_VideoJob] = []
        fps = self.options.fps
        while self._video_index / fps < t + FRAME_SECONDS - 1e-9:
            k = self._video_index
            self._video_index += 1
            opening = self._mouth_at(k / fps, mouth_head, k, bool(video_tracks))
            action, changes = self._faults.video_frame(k / fps)
            self._log_faults(changes, "video", video_pts(k, fps), bool(video_tracks))
            if not video_tracks:
                continue
            if action == "withhold":
                self.stats.video_frames_withheld += 1
                continue
            if self._pending_video >= MAX_PENDING_VIDEO:
                self.stats.video_frames_skipped += 1  # worker behind: skip, don't queue up
                continue
            since_key = k / fps - self._last_keyframe_time
            # Requests (PLI/FIR, new viewer) are served on the next frame, but at most one
            # forced keyframe per MIN_KEYFRAME_GAP so a PLI storm cannot make every frame one.
            keyframe = (
                self._force_keyframe and since_key >= MIN_KEYFRAME_GAP
            ) or since_key >= self.options.keyframe_interval
            if keyframe:
                self._force_keyframe = False
                self._last_keyframe_time = k / fps
            frames.append(_VideoJob(opening, k, keyframe, k / fps, action))
        if audio_pcm is None and not frames:
            return
        assert self._executor is not None
        if frames:
            self._pending_video += 1
        future = asyncio.get_running_loop().run_in_executor(
            self._executor, self._encode_tick, audio_pcm, n, frames
        )
        future.add_done_callback(lambda f: self._deliver(f, bool(frames)))

    def _heads(self) -> tuple[int, int]:
        """How many samples the sound and the mouth trail the player (their difference is the
        armed A/V offset: positive, the mouth trails more, the sound comes first)."""
        offset = round(self._faults.faults.av_offset_ms * SAMPLE_RATE / 1000)
        return LATENCY + max(0, -offset), LATENCY + max(0, offset)

    def _play_onto_tape(self) -> None:
        """The player's next 20 ms onto the tape, with its turn boundaries."""
        base = self._tape.end
        pcm, events = self._player.next_chunk(AUDIO_FRAME)
        self._tape.write(pcm)
        for ev in events:
            self._tape_events.append((base + ev.offset, ev))
            if ev.kind == "turn_start":
                self._mouth_turns.append((base + ev.offset, ev.turn_id))

    def _sound_event(self, ev: PlayerEvent, at: float, n: int, has_viewer: bool) -> None:
        """A turn boundary reached the sound head (heard at media time ``at``)."""
        pts = n * AUDIO_FRAME
        if ev.kind == "turn_due":  # the injected speech delay begins
            self._delayed.add(ev.turn_id)
            self._timeline.add(
                "fault_start",
                ev.turn_id,
                at,
                frame_kind="audio",
                pts=pts,
                await_send=has_viewer,
                fault="speech_delay",
                value=self._faults.faults.speech_delay_ms,
            )
            return
        self._timeline.add(
            ev.kind, ev.turn_id, at, frame_kind="audio", pts=pts, await_send=has_viewer
        )
        if ev.kind == "turn_end":
            if self._sound_turn == ev.turn_id:
                self._sound_turn = None
            return
        self._sound_turn = ev.turn_id
        self._awaiting_onset.add(ev.turn_id)
        self._faults.turn_started(ev.turn_id, at)
        if ev.turn_id in self._delayed:
            self._delayed.discard(ev.turn_id)
            self._timeline.add(
                "fault_end",
                ev.turn_id,
                at,
                frame_kind="audio",
                pts=pts,
                await_send=has_viewer,
                fault="speech_delay",
            )

    def _mouth_at(self, t: float, head: int, k: int, has_viewer: bool) -> float:
        """The mouth opening of video frame ``k`` (media time ``t``): the speech level of the
        tape around ``head`` samples before ``t``; logs the turn's first open mouth."""
        centre = round(t * SAMPLE_RATE) - head
        window = self._tape.read(centre - MOUTH_HALF_WINDOW, 2 * MOUTH_HALF_WINDOW)
        self._opening = opening = opening_for(rms_dbfs(window))
        while self._mouth_turns and self._mouth_turns[0][0] <= centre + MOUTH_HALF_WINDOW:
            self._mouth_turn = self._mouth_turns.popleft()[1]
            self._awaiting_mouth.add(self._mouth_turn)
        turn = self._mouth_turn
        if turn in self._awaiting_mouth and opening >= MOUTH_OPEN:
            self._awaiting_mouth.discard(turn)
            self._timeline.add(
                "mouth_open",
                turn,
                t,
                frame_kind="video",
                pts=video_pts(k, self.options.fps),
                await_send=has_viewer,
            )
        return opening

    def _log_faults(
        self, changes: list[Transition], kind: MediaKind, pts: int, has_viewer: bool
    ) -> None:
        for change in changes:
            w = change.window
            self._timeline.add(
                change.kind,
                w.turn_id,
                change.at,
                frame_kind=kind,
                pts=pts,
                await_send=has_viewer,
                fault=w.name,
                value=w.fps,
            )

    def _deliver(self, future: asyncio.Future[_Encoded], has_video: bool) -> None:
        if has_video:
            self._pending_video -= 1
        if future.cancelled():
            return
        exc = future.exception()
        if exc is not None:
            logger.error("encode failed", exc_info=exc)
            self.request_keyframe()
            return
        audio, video = future.result()
        for packet in audio:
            for track in self._audio_tracks:
                track.push(packet)
        for packet in video:
            for track in self._video_tracks:
                track.push(packet)

    # ------------------------------------------------------------------ worker thread

    def _prepare_video(self) -> tuple[FaceRenderer, VideoEncoder]:
        o = self.options
        if self._renderer is None or self._video_encoder is None:
            self._renderer = FaceRenderer(o.width, o.height)
            self._video_encoder = VideoEncoder(
                o.video_codec,
                o.width,
                o.height,
                o.fps,
                bitrate=o.video_bitrate,
                threads=o.encoder_threads,
            )
            self._yuv = None
        return self._renderer, self._video_encoder

    def _encode_tick(
        self, pcm: Samples | None, audio_index: int, frames: list[_VideoJob]
    ) -> _Encoded:
        # CPU time of this thread (not wall time): what the encode costs, even on a busy box.
        audio: list[EncodedPacket] = []
        video: list[EncodedPacket] = []
        if pcm is not None:
            start = time.thread_time()
            if self._audio_encoder is None:
                self._audio_encoder = AudioEncoder(self.options.audio_bitrate)
            audio = self._audio_encoder.encode(pcm, audio_index)
            self.stats.audio_encode_seconds += time.thread_time() - start
            self.stats.audio_frames += 1
        for job in frames:
            renderer, encoder = self._prepare_video()
            start = time.thread_time()
            if job.action != "repeat" or self._yuv is None:  # repeat: the last picture again
                self._yuv = renderer.render(job.opening, out=self._yuv, t=job.time)
            if job.action == "black":
                luma = self.options.height  # rows of Y; the U and V planes follow
                self._yuv[:luma] = 16  # BT.601 limited-range black
                self._yuv[luma:] = 128
            packets = encoder.encode(self._yuv, job.index, job.keyframe)
            self.stats.video_encode_seconds += time.thread_time() - start
            self.stats.video_frames += 1
            self.stats.keyframes += sum(1 for p in packets if p.is_keyframe)
            self.stats.video_bytes += sum(p.size for p in packets)
            video.extend(packets)
        return audio, video
