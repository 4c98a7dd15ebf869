"""The synthetic face: static parts rendered once, only the mouth and the eyes change per frame.

Rendering works in yuv420p directly (what the encoders take), so a frame costs one copy of the
static planes, one precomputed mouth patch and a small eye patch drawn for the frame's time.
Eyes wide open depend on the gaze's phase alone, which at a whole frame rate takes a few
hundred values (125 at 25 fps: two turns of 2.5 s): those patches are drawn once per process
and size, and shared (a 512x512 idle frame: 611 -> 46 µs of CPU, ``scripts/bench_face.py``).

Idle motion: the eyes look slowly around (the pupils circle, one turn per ``GAZE_PERIOD``) and
blink every ``BLINK_PERIOD``. The gaze moves on every frame, enough for a frame-change detector
to see a new picture each time (a face that holds still between turns would read as a frozen
picture, W3C webrtc-stats' rule); it stays out of the mouth, whose motion is the lip-sync signal.

Known colours at known places let client tests check decoded video: four solid squares in the
corners (``MARKERS``) on a mid-grey background, and a dark mouth interior whose height
:func:`mouth_opening` measures from a decoded RGB frame.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

RgbImage = npt.NDArray[np.uint8]
Color = tuple[int, int, int]

BACKGROUND: Color = (128, 128, 128)
SKIN: Color = (224, 172, 105)
LIPS: Color = (150, 50, 50)
MOUTH_INSIDE: Color = (40, 0, 10)
EYE_WHITE: Color = (250, 250, 250)
PUPIL: Color = (30, 30, 60)

MARKER_SIZE = 64
GAZE_PERIOD = 2.5  # seconds per turn of the pupils' circle
GAZE_X, GAZE_Y = 0.014, 0.009  # its radii, as fractions of the frame width / height
BLINK_PERIOD = 4.3  # seconds between blinks
# Seconds the lids take to close; they open at once. Closing and opening at the same pace would
# give two frames with the lids at the same place around the middle of the blink (the pupils
# hidden): the same picture twice, a repeated frame to a freeze detector.
BLINK_CLOSE = 0.12
EYES_X = (0.40, 0.60)  # eye centres, fractions of the width
EYE_Y = 0.40
EYE_RX, EYE_RY, PUPIL_R = 0.055, 0.035, 0.022  # fractions of the width / height / width
# Levels of mouth opening that are pre-rendered; the envelope is quantised to these.
MOUTH_LEVELS = 33
OPEN_EYES_CACHED = 1024  # open-eye patches kept per process (gaze phases x frame sizes)

YuvPatch = tuple[npt.NDArray[np.uint8], ...]
# (width, height, gaze phase in µs) -> the open eyes' patch, read-only: shared by every face
_open_eyes: dict[tuple[int, int, int], YuvPatch] = {}
_open_eyes_lock = threading.Lock()  # renderers run on encoder threads


@dataclass(frozen=True)
class Marker:
    """A solid colour square: ``x``/``y`` is its top-left corner, in pixels."""

    name: str
    x: int
    y: int
    size: int
    rgb: Color

    def region(self, inset: int = 0) -> tuple[slice, slice]:
        """(rows, cols) slices of the square, shrunk by ``inset`` pixels on each side."""
        return (
            slice(self.y + inset, self.y + self.size - inset),
            slice(self.x + inset, self.x + self.size - inset),
        )


def markers_for(width: int, height: int) -> tuple[Marker, ...]:
    """The four corner markers of a ``width`` x ``height`` frame."""
    s = MARKER_SIZE
    return (
        Marker("red", 0, 0, s, (255, 0, 0)),
        Marker("green", width - s, 0, s, (0, 255, 0)),
        Marker("blue", 0, height - s, s, (0, 0, 255)),
        Marker("white", width - s, height - s, s, (255, 255, 255)),
    )


#: Corner markers of the default 512x512 picture.
MARKERS: tuple[Marker, ...] = markers_for(512, 512)


@dataclass(frozen=True)
class MouthGeometry:
    """Where the mouth is, relative to the frame size (so it works on resized frames too)."""

    cx: float
    cy: float
    half_width: float
    max_height: float

    @classmethod
    def for_size(cls, width: int, height: int) -> MouthGeometry:
        return cls(
            cx=width * 0.5, cy=height * 0.68, half_width=width * 0.12, max_height=height * 0.14
        )


def _ellipse_mask(
    h: int, w: int, cx: float, cy: float, rx: float, ry: float, *, y0: int = 0, x0: int = 0
) -> npt.NDArray[np.bool_]:
    yy, xx = np.mgrid[y0 : y0 + h, x0 : x0 + w]
    if rx <= 0 or ry <= 0:
        return np.zeros((h, w), dtype=bool)
    return ((xx + 0.5 - cx) / rx) ** 2 + ((yy + 0.5 - cy) / ry) ** 2 <= 1.0  # type: ignore[no-any-return]


def rgb_to_yuv420(rgb: RgbImage) -> tuple[npt.NDArray[np.uint8], ...]:
    """BT.601 limited range (what decoders assume by default); even-sized input."""
    f = rgb.astype(np.float32)
    r, g, b = f[..., 0], f[..., 1], f[..., 2]
    y = 16 + 0.257 * r + 0.504 * g + 0.098 * b
    u = 128 - 0.148 * r - 0.291 * g + 0.439 * b
    v = 128 + 0.439 * r - 0.368 * g - 0.071 * b
    h, w = y.shape

    def sub(p: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        return p.reshape(h // 2, 2, w // 2, 2).mean(axis=(1, 3))  # type: ignore[no-any-return]

    return tuple(np.clip(np.rint(p), 0, 255).astype(np.uint8) for p in (y, sub(u), sub(v)))


class FaceRenderer:
    """Renders yuv420p frames (as one ``(h*3/2, w)`` uint8 array) for a given mouth opening."""

    def __init__(self, width: int = 512, height: int = 512) -> None:
        if width % 2 or height % 2:
            raise ValueError("frame size must be even")
        self.width = width
        self.height = height
        self.markers = markers_for(width, height)
        self.mouth = MouthGeometry.for_size(width, height)
        rgb = self._static_rgb()
        y, u, v = rgb_to_yuv420(rgb)
        self._static = np.concatenate([y.ravel(), u.ravel(), v.ravel()]).reshape(
            height * 3 // 2, width
        )
        self._build_mouth_patches(rgb)
        self._eyes = _Eyes(rgb, width, height)

    def _static_rgb(self) -> RgbImage:
        w, h = self.width, self.height
        img = np.empty((h, w, 3), dtype=np.uint8)
        img[:] = BACKGROUND
        img[_ellipse_mask(h, w, w * 0.5, h * 0.5, w * 0.30, h * 0.38)] = SKIN
        for m in self.markers:
            img[m.region()] = m.rgb
        return img

    def _build_mouth_patches(self, rgb: RgbImage) -> None:
        m = self.mouth
        pad = 6
        # Even-aligned box so the patch maps onto whole chroma samples.
        x0 = int(m.cx - m.half_width - pad) & ~1
        x1 = (int(np.ceil(m.cx + m.half_width + pad)) + 1) & ~1
        y0 = int(m.cy - m.max_height / 2 - pad) & ~1
        y1 = (int(np.ceil(m.cy + m.max_height / 2 + pad)) + 1) & ~1
        self._box = (y0, y1, x0, x1)
        base = rgb[y0:y1, x0:x1]
        ph, pw = base.shape[:2]
        self._patches: list[tuple[npt.NDArray[np.uint8], ...]] = []
        for level in range(MOUTH_LEVELS):
            patch = base.copy()
            opening = level / (MOUTH_LEVELS - 1)
            ry = max(opening * m.max_height / 2, 0.0)
            lip = 3.0
            outer = _ellipse_mask(ph, pw, m.cx, m.cy, m.half_width + lip, ry + lip, y0=y0, x0=x0)
            patch[outer] = LIPS
            if ry >= 1.0:
                inner = _ellipse_mask(ph, pw, m.cx, m.cy, m.half_width, ry, y0=y0, x0=x0)
                patch[inner] = MOUTH_INSIDE
            self._patches.append(rgb_to_yuv420(patch))

    def render(
        self, opening: float, out: npt.NDArray[np.uint8] | None = None, *, t: float = 0.0
    ) -> npt.NDArray[np.uint8]:
        """A yuv420p frame with the mouth ``opening`` (0 closed .. 1 wide open), the eyes as
        they are at ``t`` seconds (idle motion)."""
        frame = out if out is not None else np.empty_like(self._static)
        np.copyto(frame, self._static)
        level = round(min(max(opening, 0.0), 1.0) * (MOUTH_LEVELS - 1))
        self._paste(frame, self._box, self._patches[level])
        self._paste(frame, self._eyes.box, self._eyes.draw(t))
        return frame

    def _paste(
        self,
        frame: npt.NDArray[np.uint8],
        box: tuple[int, int, int, int],
        yuv: tuple[npt.NDArray[np.uint8], ...],
    ) -> None:
        y0, y1, x0, x1 = box  # even-aligned
        w, h = self.width, self.height
        frame[y0:y1, x0:x1] = yuv[0]
        # The U and V planes sit below Y in the flat buffer, each (h/2, w/2).
        u_plane = frame[h : h + h // 4].reshape(h // 2, w // 2)
        v_plane = frame[h + h // 4 :].reshape(h // 2, w // 2)
        u_plane[y0 // 2 : y1 // 2, x0 // 2 : x1 // 2] = yuv[1]
        v_plane[y0 // 2 : y1 // 2, x0 // 2 : x1 // 2] = yuv[2]


def clear_open_eyes() -> None:
    """Forget the open-eye patches drawn so far (tests)."""
    with _open_eyes_lock:
        _open_eyes.clear()


def blink_closure(t: float) -> float:
    """How closed the eyelids are at ``t`` seconds: 0 open .. 1 shut (a blink per period)."""
    phase = t % BLINK_PERIOD
    return phase / BLINK_CLOSE if phase < BLINK_CLOSE else 0.0


class _Eyes:
    """Both eyes, drawn per frame in one small even-aligned patch (gaze + blink)."""

    def __init__(self, rgb: RgbImage, width: int, height: int) -> None:
        self._size = (width, height)
        rx, ry, self._pupil = EYE_RX * width, EYE_RY * height, PUPIL_R * width
        self._gaze = (GAZE_X * width, GAZE_Y * height)
        pad = 4
        x0 = int(EYES_X[0] * width - rx - pad) & ~1
        x1 = (int(np.ceil(EYES_X[1] * width + rx + pad)) + 1) & ~1
        y0 = int(EYE_Y * height - ry - pad) & ~1
        y1 = (int(np.ceil(EYE_Y * height + ry + pad)) + 1) & ~1
        self.box = (y0, y1, x0, x1)
        self._base = rgb[y0:y1, x0:x1].astype(np.float32)
        yy, xx = np.mgrid[y0:y1, x0:x1].astype(np.float32)
        self._yy, self._xx = yy + 0.5, xx + 0.5
        self._centres = [(ex * width, EYE_Y * height) for ex in EYES_X]
        self._whites = [
            _ellipse_mask(y1 - y0, x1 - x0, cx, cy, rx, ry, y0=y0, x0=x0)
            for cx, cy in self._centres
        ]
        self._top = EYE_Y * height - ry
        self._eye_height = 2 * ry

    def draw(self, t: float) -> YuvPatch:
        """The eyes at ``t`` seconds; don't write into the arrays (they may be shared)."""
        phase = t % GAZE_PERIOD
        closure = blink_closure(t)
        if closure > 0.0:
            return self._draw(phase, closure)
        key = (*self._size, round(phase * 1e6))
        patch = _open_eyes.get(key)
        if patch is None:
            patch = self._draw(phase, 0.0)
            for plane in patch:
                plane.setflags(write=False)
            with _open_eyes_lock:
                if len(_open_eyes) < OPEN_EYES_CACHED:
                    _open_eyes[key] = patch
        return patch

    def _draw(self, phase: float, closure: float) -> YuvPatch:
        angle = 2 * np.pi * phase / GAZE_PERIOD
        dx, dy = self._gaze[0] * np.cos(angle), self._gaze[1] * np.sin(angle)
        lid = self._top + closure * self._eye_height  # the lid's edge
        img = self._base.copy()
        for (cx, cy), white in zip(self._centres, self._whites, strict=True):
            img[white] = EYE_WHITE
            # Anti-aliased pupil: its edge moves by fractions of a pixel from frame to frame.
            dist = np.hypot(self._xx - cx - dx, self._yy - cy - dy)
            alpha = np.clip(self._pupil + 0.5 - dist, 0.0, 1.0) * white
            img += alpha[..., None] * (np.array(PUPIL, np.float32) - img)
            img[white & (self._yy < lid)] = SKIN
        return rgb_to_yuv420(np.clip(np.rint(img), 0, 255).astype(np.uint8))


def mouth_opening(rgb: npt.NDArray[Any]) -> float:
    """How open the mouth is in a decoded RGB frame (``(h, w, 3)`` uint8): 0 closed .. 1 open.

    Counts the rows of dark mouth interior in the central third of the mouth, relative to the
    fully open height. Works on any frame size (geometry is relative).
    """
    h, w = rgb.shape[:2]
    m = MouthGeometry.for_size(w, h)
    x0 = int(m.cx - m.half_width / 3)
    x1 = int(m.cx + m.half_width / 3) + 1
    y0 = max(int(m.cy - m.max_height / 2 - 4), 0)
    y1 = min(int(m.cy + m.max_height / 2 + 4), h)
    region = rgb[y0:y1, x0:x1].astype(np.int16)
    dark = (region.max(axis=2) < 90) & (region.sum(axis=2) < 150)
    rows = int(np.count_nonzero(dark.mean(axis=1) > 0.5))
    return float(min(rows / m.max_height, 1.0))
