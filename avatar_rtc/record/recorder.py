"""Recorder: the session's frames into a playable file, written off the event loop.

The producer side (``write*``, usually called on the event loop or a decoder thread) only
puts the frame in a bounded queue; one writer thread muxes or encodes and writes the file.
"""

from __future__ import annotations

import asyncio
import atexit
import logging
import os
import threading
import weakref
from collections.abc import Callable
from pathlib import Path
from types import TracebackType

import av

from ..media.decoder import DecodedFrame, TrackDecoder
from ..rtc.encoded_frame import EncodedFrame, FrameSource
from .encoder import EncodeMuxer, resolve_codecs
from .errors import RecordError
from .muxer import CopyMuxer
from .options import RecordMode, RecordOptions, container_for_path, piece_seconds
from .queue import ByteBoundedQueue
from .stats import RecorderStats, StatsBook

__all__ = ["FrameSource", "Recorder"]

log = logging.getLogger(__name__)

# The writer thread takes what is queued once per piece of the file (a fragment or cluster,
# 0.5 s by default: ``piece_seconds``), not at a wake-up per frame (the wake-up cost the event
# loop more than the frame's whole receive path: ``queue.py``). Data reaches the readable file
# a piece at a time anyway; looking more often cost more: 8 copy-recording sessions in one
# process (``scripts/profile_receive.py --modes copy-record --sessions 8 --rate 1``), writer
# threads 0.20-0.23 % of a core per session every 0.1 s, 0.10-0.13 % every 0.5 s.


_Item = (
    tuple[str, EncodedFrame, float]
    | tuple[str, av.VideoFrame, float]
    | tuple[str, av.AudioFrame, float]
    | None  # stop marker
)


# Recorders started and not stopped: finalised at interpreter exit (the writer thread is a
# daemon, so a forgotten stop() would otherwise cut the file at its last fragment).
_LIVE: weakref.WeakSet[Recorder] = weakref.WeakSet()


@atexit.register
def _stop_live_recorders() -> None:
    for recorder in list(_LIVE):
        try:
            recorder.stop(timeout=10.0)
        except Exception:
            log.exception("recorder %s: finalising at exit failed", recorder.path)


def _planes_bytes(frame: av.VideoFrame | av.AudioFrame) -> int:
    return sum(plane.buffer_size for plane in frame.planes)


class Recorder:
    """Records to ``path`` (``.mp4`` fragmented, ``.mkv`` or ``.webm``).

    ``options.mode="copy"`` (default) writes the received compressed frames (:meth:`write`, or
    :meth:`attach` to a receive pipeline) without decoding. ``mode="encode"`` re-encodes
    decoded frames given to :meth:`write_video` / :meth:`write_audio` with ``options.encode``.

    Copy mode keeps the original codecs when the container can hold them (mp4: H264; mkv: H264
    or VP8; webm: VP8; Opus everywhere). Video it cannot hold (H264 for .webm, VP8 for .mp4) is
    re-encoded (video only; audio still copied) or, with ``incompatible_video="error"``, fails.
    ``stats().video_route`` / ``audio_route`` say which happened (copy / transcode / encode).
    When the received video's codec parameters change (a reconnect to another encoder: new
    codec, resolution or H264 parameter sets), the file is finished and the recording goes on
    in ``OUT.part2.ext`` (``stats().parts``; see :mod:`avatar_rtc.record.muxer`).

    Writing starts at the first video keyframe (copy) / video frame (encode); earlier audio is
    trimmed to it. File timestamps come from the frames' presentation times only, so freezes and
    losses never move audio against video (copy mode fills audio holes with Opus silence).
    :meth:`stop` (idempotent; also run at interpreter exit) writes the trailer; a process killed
    outright still leaves a playable file up to its last fragment/cluster, which lags the
    input by up to twice ``fragment_seconds`` / ``cluster_seconds`` (the writer takes frames
    once per piece; 0.5 s each by default).

    The write methods only queue (never block, never touch the disk): call them from the event
    loop or any thread. Frames handed over belong to the recorder from then on.
    """

    def __init__(self, path: str | os.PathLike[str], options: RecordOptions | None = None) -> None:
        if options is not None and not isinstance(options, RecordOptions):
            raise TypeError(f"options must be a RecordOptions, not {options!r}")
        self.path = Path(path)
        self.options = options or RecordOptions()
        self.mode: RecordMode = self.options.mode
        self.spec = container_for_path(self.path)
        if self.mode == "encode":
            resolve_codecs(self.spec, self.options.encode)  # fail now, not in the thread
        self._book = StatsBook()
        self._queue: ByteBoundedQueue[_Item] = ByteBoundedQueue(
            self.options.max_queue_bytes,
            self.options.max_queue_items,
            batch_delay=piece_seconds(self.spec, self.options),
        )
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._accepting = False
        self._stopped = False
        self._error_raised = False  # by the first stop() that found the file finished
        self._told_empty = False  # the stop that found nothing written said so
        self._stop_lock = threading.Lock()
        self._unsubscribe: list[Callable[[], None]] = []
        self._error: BaseException | None = None
        self._dropped = 0
        self._dropped_bytes = 0
        self._late = 0
        self._overflowing = False
        self._video_resync = False  # a video frame was dropped: wait for a keyframe
        self._closed = threading.Event()

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self) -> Recorder:
        """Start the writer thread. The file is created when the first frame is written."""
        with self._lock:
            if self._thread is not None:
                raise RecordError("recorder already started")
            if any(other.path.resolve() == self.path.resolve() for other in tuple(_LIVE)):
                # Two writers of one file corrupt it (each believing it wrote its frames).
                raise RecordError(f"{self.path} is being recorded already")
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:  # (a file where a folder should be, no permission...)
                raise RecordError(f"cannot create the folder of {self.path}: {exc}") from exc
            self._thread = threading.Thread(
                target=self._run, name=f"recorder:{self.path.name}", daemon=True
            )
            self._accepting = True
        self._thread.start()
        _LIVE.add(self)
        return self

    def attach(self, source: FrameSource) -> Callable[[], None]:
        """Subscribe to ``source`` (copy mode); returns the unsubscribe (also done by stop)."""
        if self.mode != "copy":
            raise RecordError("attach() feeds encoded frames: use mode='copy'")
        unsubscribe = source.subscribe(self._on_frame)
        self._unsubscribe.append(unsubscribe)
        return unsubscribe

    def attach_decoded(self, decoder: TrackDecoder) -> Callable[[], None]:
        """Feed ``decoder``'s frames (encode mode); returns the remover (also done by stop,
        so that the decoder stops with the last of its sinks, not with the session)."""
        if self.mode != "encode":
            raise RecordError("attach_decoded() feeds decoded frames: use mode='encode'")
        write = self.write_video if decoder.kind == "video" else self.write_audio

        def sink(decoded: DecodedFrame) -> None:
            write(decoded.frame, decoded.encoded.presentation_time)

        remove = decoder.add_sink(sink)
        self._unsubscribe.append(remove)
        return remove

    def stop(self, timeout: float | None = None) -> RecorderStats:
        """Stop taking frames, write everything queued, finalise the file; idempotent.

        Blocks until the file is complete (or ``timeout``: :class:`RecordError`, the file
        is finished regardless). If the writer failed, the first call that finds the file
        finished raises :class:`RecordError`; later calls just return the stats.
        """
        self._begin_stop()
        if not self._closed.wait(timeout):
            raise RecordError(f"recorder did not finish writing {self.path} in {timeout} s")
        return self._stopped_stats()

    async def astop(self) -> RecorderStats:
        """:meth:`stop` without blocking the event loop while the file is finalised.

        Bound the wait with ``asyncio.timeout`` if needed: the file is finished regardless,
        and a later call still raises the writer's error.
        """
        self._begin_stop()
        await asyncio.to_thread(self._closed.wait)
        return self._stopped_stats()

    def _begin_stop(self) -> None:
        with self._stop_lock:
            first = not self._stopped
            self._stopped = True
            if first:
                for unsubscribe in self._unsubscribe:
                    try:
                        unsubscribe()
                    except Exception:  # the source may already be closed
                        log.debug("unsubscribe failed", exc_info=True)
                self._unsubscribe.clear()
                with self._lock:
                    self._accepting = False
                    thread = self._thread
                if thread is None:
                    self._closed.set()
                else:
                    self._queue.put_force(None)
        _LIVE.discard(self)

    def _stopped_stats(self) -> RecorderStats:
        """The stats of the finished file; the writer's error, the first time it is seen."""
        with self._stop_lock:
            error = self._error if not self._error_raised else None
            self._error_raised = self._error_raised or error is not None
        if error is not None:
            raise RecordError(f"recording to {self.path} failed: {error}") from error
        stats = self.stats()
        with self._stop_lock:
            tell = not stats.started and not self._told_empty and self._error is None
            self._told_empty = True
        if tell:  # (no frame at all, or no keyframe: the muxer was never opened)
            log.warning("nothing recorded to %s (the file was not created): no video keyframe "
                        "(audio-only: no audio) came before the recording stopped",
                        self.path)  # fmt: skip
        return stats

    def __enter__(self) -> Recorder:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    async def __aenter__(self) -> Recorder:
        return self.start()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.astop()

    # -- producer side (cheap: no I/O, no codec work) ------------------------------------------
    def write(self, frame: EncodedFrame) -> bool:
        """Queue a received compressed frame (copy mode). False when it was not queued."""
        if self.mode != "copy":
            raise RecordError("write() takes encoded frames: use write_video/write_audio")
        is_video = frame.kind == "video"
        return self._put(("enc", frame, 0.0), len(frame.data), is_video, frame.keyframe)

    def write_video(self, frame: av.VideoFrame, pts_seconds: float) -> bool:
        """Queue a decoded video frame shown at ``pts_seconds`` (shared clock; encode mode)."""
        self._require_encode()
        return self._put(("video", frame, pts_seconds), _planes_bytes(frame), True, True)

    def write_audio(self, frame: av.AudioFrame, pts_seconds: float) -> bool:
        """Queue decoded audio whose first sample plays at ``pts_seconds`` (encode mode)."""
        self._require_encode()
        return self._put(("audio", frame, pts_seconds), _planes_bytes(frame), False, True)

    def _on_frame(self, frame: EncodedFrame) -> None:
        self.write(frame)

    def _require_encode(self) -> None:
        if self.mode != "encode":
            raise RecordError("write_video/write_audio take decoded frames: use mode='encode'")

    def _put(self, item: _Item, size: int, is_video: bool, keyframe: bool) -> bool:
        with self._lock:
            if not self._accepting:
                if self._thread is None:
                    raise RecordError("Recorder.start() was not called")
                self._late += 1
                return False
            if is_video and self._video_resync and not keyframe:
                self._count_drop(size)
                return False
            if not self._queue.put(item, size):
                self._count_drop(size)
                if is_video and self.mode == "copy":
                    self._video_resync = True
                return False
            if self._overflowing:
                self._overflowing = False
                log.warning(
                    "recorder %s: writer caught up (%d frames dropped so far)",
                    self.path.name,
                    self._dropped,
                )
            if is_video and keyframe:
                self._video_resync = False
            return True

    def _count_drop(self, size: int) -> None:
        self._dropped += 1
        self._dropped_bytes += size
        if not self._overflowing:
            self._overflowing = True
            items, nbytes, _, _ = self._queue.depth()
            log.error(
                "recorder %s: writer is behind (%d frames, %d bytes queued): dropping frames",
                self.path.name,
                items,
                nbytes,
            )

    # -- writer thread -------------------------------------------------------------------------
    def _run(self) -> None:
        sink: CopyMuxer | EncodeMuxer | None = None
        try:
            if self.mode == "copy":
                sink = CopyMuxer(self.path, self.spec, self.options, self._book)
            else:
                sink = EncodeMuxer(self.path, self.spec, self.options, self._book)
        except BaseException as exc:
            self._fail(exc)
        while True:
            item = self._queue.get()
            if item is None:
                break
            if sink is None or self._error is not None:
                with self._lock:
                    self._dropped += 1
                continue
            try:
                self._handle(sink, item)
            except BaseException as exc:
                self._fail(exc)
        try:
            if sink is not None:
                sink.close()
        except BaseException as exc:
            self._fail(exc)
        finally:
            self._closed.set()

    @staticmethod
    def _handle(sink: CopyMuxer | EncodeMuxer, item: tuple[str, object, float]) -> None:
        kind, frame, t = item
        if isinstance(sink, CopyMuxer):
            assert isinstance(frame, EncodedFrame)
            sink.write(frame)
        elif kind == "video":
            assert isinstance(frame, av.VideoFrame)
            sink.write_video(frame, t)
        else:
            assert isinstance(frame, av.AudioFrame)
            sink.write_audio(frame, t)

    def _fail(self, exc: BaseException) -> None:
        if self._error is None:
            self._error = exc
            # One line: stop() raises it to the caller (the CLI prints it); the traceback
            # is for -v.
            log.error("recorder %s failed: %s", self.path, exc)
            log.debug("recorder %s failed", self.path, exc_info=exc)
        else:
            log.debug("recorder %s: further error %s", self.path, exc)

    # -- observation ---------------------------------------------------------------------------
    @property
    def error(self) -> BaseException | None:
        """The writer's first error, if any."""
        return self._error

    def stats(self) -> RecorderStats:
        """A consistent snapshot of the counters (cheap; any thread).

        The writer takes queued frames once per fragment/cluster; a call also wakes it, so
        the next snapshot (e.g. a poll 20 ms later) counts everything received until now.
        """
        self._queue.wake()
        items, nbytes, peak_items, peak_bytes = self._queue.depth()
        with self._book.lock:
            book = self._book
            video, audio = book.video.snapshot(), book.audio.snapshot()
            started = book.started
            transcoded = book.transcoded_video
            video_route, audio_route = book.video_route, book.audio_route
            parts, part_starts = tuple(book.parts), tuple(book.part_starts)
            skipped, skipped_rate, fixups, fills, overlaps = (
                book.skipped_before_start,
                book.skipped_rate,
                book.timestamp_fixups,
                book.audio_fill_packets,
                book.audio_overlap_drops,
            )
        with self._lock:
            dropped, dropped_bytes, late = self._dropped, self._dropped_bytes, self._late
        ends = [s.end for s in (video, audio) if s.end is not None]
        starts = [s.start for s in (video, audio) if s.start is not None]
        return RecorderStats(
            path=str(self.path),
            mode=self.mode,
            started=started,
            closed=self._closed.is_set(),
            video=video,
            audio=audio,
            duration=max(ends) - min(starts) if ends and starts else 0.0,
            queued=items,
            queued_bytes=nbytes,
            peak_queued=peak_items,
            peak_queued_bytes=peak_bytes,
            dropped=dropped,
            dropped_bytes=dropped_bytes,
            skipped_before_start=skipped,
            skipped_rate=skipped_rate,
            timestamp_fixups=fixups,
            audio_overlap_drops=overlaps,
            audio_fill_packets=fills,
            transcoded_video=transcoded,
            late_writes=late,
            error=None if self._error is None else str(self._error),
            video_route=video_route,
            audio_route=audio_route,
            parts=parts,
            part_starts=part_starts,
        )
