"""Test media with faults of known size, written with PyAV: a talking face and its speech.

The face is either the emulator's drawing (:class:`~avatar_rtc.emulator.media.face.FaceRenderer`)
or a photograph shipped inside matplotlib (Grace Hopper, US Navy, public domain) whose jaw is
opened by warping the picture below the lips and showing a dark mouth inside. The mouth opening
of a frame follows the speech level at the frame's time (a centred window, so no lag of its
own); a small square moving along the top edge makes every frame differ from the one before,
as a live avatar's idle motion does (a picture that never changes would be a freeze).

Faults (:class:`Faults`): an A/V offset (positive: the sound comes first), a freeze by
repeated or by withheld frames, a black run, an audio dropout (digital silence).
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Literal, cast

import av
import cv2
import numpy as np
import numpy.typing as npt
from matplotlib import cbook
from matplotlib import image as mpimage

from avatar_rtc.emulator.media.face import FaceRenderer, rgb_to_yuv420
from avatar_rtc.emulator.media.tts import EspeakSynthesizer

RATE = 48_000
FPS = 25
LEAD_IN = 1.0  # seconds of silence before the speech (room for negative offsets)
TAIL = 1.0
MOUTH_LEVELS = 33
SILENT_DB, OPEN_DB = -45.0, -12.0  # speech level of a closed and of a wide open mouth
WINDOW = 0.04  # seconds of speech the opening of one frame is measured on

TEXT = (
    "The quick brown fox jumps over the lazy dog. Artificial avatars must keep their lips "
    "in sync with the voice, or viewers notice at once. We measure the offset between the "
    "mouth and the sound, in milliseconds."
)
OTHER_TEXT = (
    "Seven silver swans swam silently seaward. A lighthouse keeper counted every wave "
    "until the morning came, then slept through the whole afternoon without a dream."
)

Yuv = npt.NDArray[np.uint8]  # one yuv420p frame as an (h * 3 / 2, w) array
Face = Literal["drawn", "photo"]
FreezeKind = Literal["repeated", "withheld"]


@dataclass(frozen=True)
class Faults:
    offset: float = 0.0  # seconds, positive: the sound comes before the picture
    freeze: tuple[float, float] | None = None  # (start, length) in seconds from the first frame
    freeze_kind: FreezeKind = "repeated"
    black: tuple[float, float] | None = None
    dropout: tuple[float, float] | None = None  # audio digital silence


@functools.cache
def speech(text: str = TEXT) -> npt.NDArray[np.float32]:
    """Mono 48 kHz espeak-ng speech of ``text``."""
    return asyncio.run(EspeakSynthesizer().synthesize(text))


def mouth_track(pcm: npt.NDArray[np.float32], times: npt.NDArray[np.float64]) -> list[float]:
    """Opening 0..1 at each time: speech level over a window centred on it."""
    half = round(WINDOW * RATE / 2)
    out = []
    for t in times:
        i = round(t * RATE)
        window = pcm[max(i - half, 0) : max(i + half, 0)]
        ms = float(np.mean(np.square(window, dtype=np.float64))) if window.size else 0.0
        db = 10 * np.log10(ms) if ms > 1e-12 else -120.0
        out.append(float(np.clip((db - SILENT_DB) / (OPEN_DB - SILENT_DB), 0.0, 1.0)))
    return out


class PhotoFace:
    """Grace Hopper with her jaw opened by ``opening`` (pre-rendered in levels)."""

    MOUTH = (270, 277)  # centre of the lips in the 512x600 photograph
    HALF_WIDTH = 26.0  # of the opening's gaussian profile across the mouth
    MAX_GAP = 24.0  # pixels the lower lip drops when wide open
    MIN_GAP = 1.5  # narrower than this, the lips still touch
    JAW = 90.0  # the displacement fades out this far below the lips
    INSIDE = (45, 12, 18)

    def __init__(self) -> None:
        path = cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)
        rgb = np.ascontiguousarray(mpimage.imread(path)[:, :, :3])
        self.height, self.width = rgb.shape[:2]
        self._levels = [
            rgb_to_yuv420(self._open(rgb, i / (MOUTH_LEVELS - 1))) for i in range(MOUTH_LEVELS)
        ]

    def _open(self, rgb: npt.NDArray[np.uint8], opening: float) -> npt.NDArray[np.uint8]:
        cx, cy = self.MOUTH
        yy, xx = np.mgrid[0 : self.height, 0 : self.width].astype(np.float32)
        across = np.exp(-(((xx - cx) / self.HALF_WIDTH) ** 2))
        down = np.clip(1.0 - (yy - cy) / self.JAW, 0.0, 1.0)
        shift = opening * self.MAX_GAP * across * np.where(yy >= cy, down, 0.0)
        source_y = (yy - shift).astype(np.float32)
        out = cast(npt.NDArray[np.uint8], cv2.remap(rgb, xx, source_y, cv2.INTER_LINEAR))
        inside = (yy >= cy) & (source_y < cy) & (shift >= self.MIN_GAP)
        out[inside] = self.INSIDE
        return out

    def render(self, opening: float) -> Yuv:
        y, u, v = self._levels[round(min(max(opening, 0.0), 1.0) * (MOUTH_LEVELS - 1))]
        return np.concatenate([y.ravel(), u.ravel(), v.ravel()]).reshape(-1, self.width)


def _renderer(face: Face) -> tuple[Callable[[float], Yuv], int, int]:
    if face == "photo":
        photo = _photo()
        return photo.render, photo.width, photo.height
    drawn = _drawn()
    return (lambda opening: drawn.render(opening).copy()), drawn.width, drawn.height


@functools.cache
def _photo() -> PhotoFace:
    return PhotoFace()


@functools.cache
def _drawn() -> FaceRenderer:
    return FaceRenderer(512, 512)


def _tick(frame: Yuv, width: int, index: int) -> None:
    """The idle-motion square: 16 px, moving 8 px a frame along the top edge."""
    x = 80 + (index * 8) % (width - 176)
    frame[4:20, x : x + 16] = 235


def _sway(frame: Yuv, width: int, height: int, t: float, pixels: float) -> Yuv:
    """The picture moved as a head sways: a slow sub-pixel drift (periods 3.7 s and 5.3 s)."""
    dx = pixels * np.sin(2 * np.pi * t / 3.7)
    dy = 0.5 * pixels * np.sin(2 * np.pi * t / 5.3)
    out = np.empty_like(frame)
    planes = [
        (0, height, 1.0),
        (height, height + height // 4, 0.5),
        (height + height // 4, None, 0.5),
    ]
    for top, bottom, scale in planes:
        plane = (
            frame[top:bottom].reshape(-1, int(width * scale)) if scale < 1 else frame[top:bottom]
        )
        m = np.array([[1, 0, dx * scale], [0, 1, dy * scale]], dtype=np.float32)
        moved = cv2.warpAffine(plane, m, plane.shape[::-1], borderMode=cv2.BORDER_REPLICATE)
        out[top:bottom] = moved.reshape(out[top:bottom].shape)
    return out


def _black(frame: Yuv, width: int, height: int) -> None:
    frame[:height] = 16
    frame[height:] = 128


def write_media(
    path: Path,
    *,
    face: Face = "drawn",
    faults: Faults = Faults(),
    text: str = TEXT,
    mouth_text: str | None = None,
    video_codec: str = "libx264",
    sway: float = 0.0,
) -> float:
    """Write a talking-face file; the mouth speaks ``mouth_text`` (default: ``text``, which is
    what is heard). ``sway``: pixels the head drifts to each side. Returns the file's duration
    in seconds."""
    heard = speech(text)
    seen = speech(mouth_text or text)
    duration = LEAD_IN + max(len(heard), len(seen)) / RATE + TAIL
    n_frames = round(duration * FPS)
    times = np.arange(n_frames) / FPS
    openings = mouth_track(seen, times - LEAD_IN)
    render, width, height = _renderer(face)

    container = av.open(str(path), "w")
    video = container.add_stream(video_codec, rate=FPS)
    assert isinstance(video, av.VideoStream)
    video.width, video.height, video.pix_fmt = width, height, "yuv420p"
    video.codec_context.time_base = Fraction(1, FPS)
    if video_codec == "libx264":
        video.codec_context.options = {"preset": "ultrafast", "crf": "20"}
    else:
        video.codec_context.bit_rate = 1_500_000
        video.codec_context.options = {"deadline": "realtime", "cpu-used": "8"}
    audio = container.add_stream("libopus", rate=RATE, layout="stereo")

    last: Yuv | None = None
    for i, t in enumerate(times):
        if faults.freeze and faults.freeze[0] <= t < sum(faults.freeze) - 1e-9:
            if faults.freeze_kind == "withheld":
                continue
            assert last is not None
            yuv = last
        else:
            yuv = render(openings[i])
            if sway:
                yuv = _sway(yuv, width, height, t, sway)
            _tick(yuv, width, i)
            if faults.black and faults.black[0] <= t < sum(faults.black) - 1e-9:
                _black(yuv, width, height)
        last = yuv
        frame = av.VideoFrame.from_ndarray(yuv, format="yuv420p")
        frame.pts = i
        frame.time_base = Fraction(1, FPS)
        container.mux(video.encode(frame))
    container.mux(video.encode(None))

    total = round(duration * RATE)
    pcm = np.zeros(total, dtype=np.float32)
    # What is heard at file time t is speech time t - LEAD_IN + offset.
    start = round((LEAD_IN - faults.offset) * RATE)
    lo, hi = max(start, 0), min(start + len(heard), total)
    pcm[lo:hi] = heard[lo - start : hi - start]
    if faults.dropout:
        a = round(faults.dropout[0] * RATE)
        pcm[a : a + round(faults.dropout[1] * RATE)] = 0.0
    stereo = np.repeat(pcm[None, :], 2, axis=0)
    step = 960
    for k in range(0, total - step + 1, step):
        chunk = np.ascontiguousarray(stereo[:, k : k + step].T.reshape(1, -1))
        sound = av.AudioFrame.from_ndarray(chunk, format="flt", layout="stereo")
        sound.sample_rate = RATE
        sound.pts = k
        sound.time_base = Fraction(1, RATE)
        container.mux(audio.encode(sound))
    container.mux(audio.encode(None))
    container.close()
    return duration
