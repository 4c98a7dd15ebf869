"""Recorder settings: mode, container choice, queue bound, encode parameters."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, get_args

from ..errors import ConfigurationError

__all__ = [
    "ContainerSpec",
    "EncodeOptions",
    "RecordMode",
    "RecordOptions",
    "container_for_path",
]

RecordMode = Literal["copy", "encode"]
VideoEncoderName = Literal["libx264", "libvpx", "libvpx-vp9"]
AudioEncoderName = Literal["aac", "libopus"]


@dataclass(frozen=True, slots=True)
class EncodeOptions:
    """Parameters of ``encode`` mode. ``None`` size/fps keep what the frames have."""

    width: int | None = None
    height: int | None = None
    fps: float | None = None  # caps the frame rate (extra frames are skipped, never duplicated)
    video_codec: VideoEncoderName | None = None  # None: libx264 for mp4/mkv, libvpx for webm
    audio_codec: AudioEncoderName | None = None  # None: aac for mp4, libopus for mkv/webm
    video_bitrate: int = 1_500_000
    audio_bitrate: int = 96_000
    preset: str = "veryfast"  # libx264 only
    gop_seconds: float = 2.0
    # Explicit thread count: FFmpeg's "auto" has caused CPU blow-ups with many sessions.
    # libvpx (VP8) always gets one: its threads spin-wait (see ``add_video_encoder``).
    threads: int = 2


@dataclass(frozen=True, slots=True)
class RecordOptions:
    """Recorder settings.

    ``mode``: ``"copy"`` (default) writes the received compressed frames without decoding them;
    ``"encode"`` re-encodes decoded frames with ``encode``.

    ``max_queue_bytes`` / ``max_queue_items`` bound what waits for the writer thread. Nothing
    is dropped silently: when the bound is hit the new item is refused, counted in
    ``stats().dropped``, and an error is logged; after a dropped video frame the copy path
    also skips video until the next keyframe so the file never holds a broken reference chain.
    """

    mode: RecordMode = "copy"
    video: bool = True  # expect a video track: writing starts at its first keyframe
    audio: bool = True  # expect an audio track
    max_queue_bytes: int = 256 * 1024 * 1024
    max_queue_items: int = 50_000
    # Fragmented MP4: also cut a fragment every this many seconds (WebRTC keyframes can be
    # minutes apart; a fragment only reaches the file when it is cut). The writer thread takes
    # queued frames as often (``piece_seconds``).
    fragment_seconds: float = 0.5
    # Matroska: close a cluster at least this often (a cluster is buffered until closed); the
    # writer's period too.
    cluster_seconds: float = 0.5
    # Longest wait for the other stream before the muxer writes anyway (FFmpeg interleaving).
    max_interleave_seconds: float = 1.0
    # Audio received before the first video keyframe is kept for at most this long, then
    # trimmed to the keyframe's time so both streams start together.
    pre_start_audio_seconds: float = 5.0
    # Copy mode: write Opus silence packets into holes in the audio (loss, DTX) so players
    # that play audio back to back stay in sync with video.
    fill_audio_gaps: bool = True
    # Copy mode, video the container cannot hold (H264 for .webm, VP8 for .mp4): "transcode"
    # re-encodes just the video (to VP8 / H264, with ``encode`` settings; audio stays copied)
    # and logs a warning; "error" fails the recording with a RecordError.
    incompatible_video: Literal["transcode", "error"] = "transcode"
    encode: EncodeOptions = field(default_factory=EncodeOptions)

    def __post_init__(self) -> None:
        if self.mode not in get_args(RecordMode):
            raise ConfigurationError(f"unknown record mode {self.mode!r} (use 'copy' or 'encode')")
        for name in ("fragment_seconds", "cluster_seconds"):
            value = getattr(self, name)
            if not 0 < value <= 60:  # also refuses NaN
                raise ConfigurationError(f"{name} must be > 0 and <= 60 s, not {value!r}")


@dataclass(frozen=True, slots=True)
class ContainerSpec:
    """The FFmpeg muxer for a file extension and what it accepts in copy mode."""

    extension: str
    format_name: str
    video_codecs: frozenset[str]  # lower-case FFmpeg codec names
    audio_codecs: frozenset[str]
    video_encoder: str  # for video that has to be re-encoded to fit


_SPECS = {
    ".mp4": ContainerSpec(
        ".mp4", "mp4", frozenset({"h264", "vp9"}), frozenset({"opus", "aac"}), "libx264"
    ),
    ".mkv": ContainerSpec(
        ".mkv",
        "matroska",
        frozenset({"h264", "vp8", "vp9"}),
        frozenset({"opus", "aac"}),
        "libx264",
    ),
    ".webm": ContainerSpec(
        ".webm", "webm", frozenset({"vp8", "vp9"}), frozenset({"opus"}), "libvpx"
    ),
}


def container_for_path(path: str | Path) -> ContainerSpec:
    """The container chosen by the file extension (.mp4, .mkv, .webm)."""
    suffix = Path(path).suffix.lower()
    try:
        return _SPECS[suffix]
    except KeyError:
        known = ", ".join(sorted(_SPECS))
        raise ConfigurationError(
            f"cannot record to {str(path)!r}: unknown extension {suffix!r} (use {known})"
        ) from None


def piece_seconds(spec: ContainerSpec, options: RecordOptions) -> float:
    """How often the file gains a readable piece: an MP4 fragment, a Matroska cluster."""
    return options.fragment_seconds if spec.format_name == "mp4" else options.cluster_seconds


def container_options(spec: ContainerSpec, options: RecordOptions) -> dict[str, str]:
    """FFmpeg muxer options that keep a file playable when the process is killed."""
    opts = {
        # Every muxed packet is pushed to the OS at once: a SIGKILL loses only what the muxer
        # itself still holds (one fragment / cluster at most).
        "flush_packets": "1",
        "max_interleave_delta": str(int(options.max_interleave_seconds * 1_000_000)),
    }
    if spec.format_name == "mp4":
        # (No delay_moov, for an edit list: it holds the whole file in memory until every
        # track has a packet, and audio may never come. The muxer starts the audio track at
        # the origin instead.)
        opts["movflags"] = "frag_keyframe+empty_moov+default_base_moof"
        opts["frag_duration"] = str(int(piece_seconds(spec, options) * 1_000_000))
    else:
        opts["cluster_time_limit"] = str(int(piece_seconds(spec, options) * 1000))
    return opts
