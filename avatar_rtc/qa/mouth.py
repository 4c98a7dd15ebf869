"""Where the mouth is, and how open and how much moving it is, frame by frame.

The face is found by OpenCV's Haar cascade (``haarcascade_frontalface_default.xml``, shipped
inside ``opencv-python-headless`` < 5: nothing is downloaded). The mouth box is a fixed part
of the face box (the lower third, middle half): a frontal talking head is what the cascade
finds and what an avatar is. Faces are looked for in the first frames, then every 2 s (a talking
head moves slowly); the box only moves when the face moved by more than a tenth of its size, so
detection jitter is not taken for mouth motion.

When no face is found at the start (e.g. a drawn face without a nose), the mouth box falls
back to the lower middle of the frame, where a centred head-and-shoulders framing has it.

Per frame: **openness** = how dark the mouth box is (an open mouth shows its dark inside);
**motion** = mean absolute change of the mouth box since the previous frame (same box on both):
it belongs to the interval between the two frames, not to either frame.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Literal

import cv2
import numpy as np
import numpy.typing as npt

from .video import GrayImage

__all__ = ["Box", "MouthFeatures", "MouthTracker"]

logger = logging.getLogger(__name__)

MouthSource = Literal["face", "frame"]

CASCADE = "haarcascade_frontalface_default.xml"
DETECT_EVERY = 2.0  # seconds between two face detections once a face is known
SEARCH_FRAMES = 25  # frames looked at for a face before falling back to the frame centre
SEARCH_STRIDE = 5  # of which every n-th
MOVE_FRACTION = 0.1  # of the face size: smaller detection changes keep the box
MIN_FACE = 0.2  # of the frame's smaller side (a talking head fills more)
SCALE_STEP = 1.15  # between the face sizes tried
# The mouth box, as fractions of the face box (x0, y0, x1, y1).
MOUTH_IN_FACE = (0.25, 0.62, 0.75, 0.92)
# ... and of the frame when no face is found.
MOUTH_IN_FRAME = (0.30, 0.55, 0.70, 0.80)
PATCH = (48, 24)  # the mouth box is resized to this (w, h) before measuring


@dataclass(frozen=True, slots=True)
class Box:
    x0: int
    y0: int
    x1: int
    y1: int

    @property
    def size(self) -> int:
        return max(self.x1 - self.x0, self.y1 - self.y0)

    def part(self, fractions: tuple[float, float, float, float]) -> Box:
        w, h = self.x1 - self.x0, self.y1 - self.y0
        fx0, fy0, fx1, fy1 = fractions
        return Box(
            self.x0 + round(fx0 * w),
            self.y0 + round(fy0 * h),
            self.x0 + round(fx1 * w),
            self.y0 + round(fy1 * h),
        )

    def moved_from(self, other: Box) -> float:
        """Largest corner displacement, in pixels."""
        return float(
            max(
                abs(self.x0 - other.x0),
                abs(self.y0 - other.y0),
                abs(self.x1 - other.x1),
                abs(self.y1 - other.y1),
            )
        )


@dataclass(frozen=True, slots=True)
class MouthFeatures:
    """Openness at ``time``; motion between ``prev_time`` and ``time`` (None: first frame)."""

    time: float
    openness: float
    motion: float | None
    prev_time: float


class FaceFinder:
    """The largest frontal face in a grey frame, or None."""

    def __init__(self) -> None:
        path = str(cv2.data.haarcascades) + CASCADE  # type: ignore[attr-defined]
        self._cascade = cv2.CascadeClassifier(path)
        if self._cascade.empty():
            raise RuntimeError(f"cannot load the face cascade {path}")

    def find(self, gray: GrayImage) -> Box | None:
        side = min(gray.shape)
        min_size = max(int(side * MIN_FACE), 24)
        faces = self._cascade.detectMultiScale(
            gray, scaleFactor=SCALE_STEP, minNeighbors=4, minSize=(min_size, min_size)
        )
        if len(faces) == 0:
            return None
        x, y, w, h = max(faces, key=lambda f: int(f[2]) * int(f[3]))
        return Box(int(x), int(y), int(x + w), int(y + h))


class MouthTracker:
    """Feed grey frames in order; get :class:`MouthFeatures` for each."""

    def __init__(self, finder: FaceFinder | None = None) -> None:
        self._finder = finder or FaceFinder()
        self.source: MouthSource | None = None  # decided after the first frames
        self.face: Box | None = None
        self._frames = 0
        self._last_detect = float("-inf")
        self._prev: tuple[GrayImage, float] | None = None

    def feed(self, gray: GrayImage, t: float) -> MouthFeatures | None:
        """Features of this frame; None while still searching the face (first frames)."""
        self._frames += 1
        self._locate(gray, t)
        if self.source is None:
            self._prev = (gray, t)
            return None
        box = self._mouth_box(gray.shape)
        patch = _patch(gray, box)
        motion = None
        prev_t = t
        if self._prev is not None and self._prev[0].shape == gray.shape:
            prev_gray, prev_t = self._prev
            motion = float(np.mean(np.abs(patch - _patch(prev_gray, box))))
        self._prev = (gray, t)
        return MouthFeatures(t, 255.0 - float(patch.mean()), motion, prev_t)

    def _locate(self, gray: GrayImage, t: float) -> None:
        if self.source is None:
            if (self._frames - 1) % SEARCH_STRIDE == 0:
                face = self._finder.find(gray)
                if face is not None:
                    self.face, self.source, self._last_detect = face, "face", t
                    logger.debug("face found at %s", face)
            if self.source is None and self._frames >= SEARCH_FRAMES:
                self.source = "frame"
                logger.info("no face found: measuring the lower middle of the frame")
            return
        if self.source == "face" and t - self._last_detect >= DETECT_EVERY:
            self._last_detect = t
            face = self._finder.find(gray)
            moved = (
                face is not None
                and self.face is not None
                and (face.moved_from(self.face) > MOVE_FRACTION * self.face.size)
            )
            if moved:
                self.face = face

    def _mouth_box(self, shape: tuple[int, ...]) -> Box:
        h, w = shape[:2]
        if self.source == "face" and self.face is not None:
            box = self.face.part(MOUTH_IN_FACE)
        else:
            box = Box(0, 0, w, h).part(MOUTH_IN_FRAME)
        return Box(max(box.x0, 0), max(box.y0, 0), min(box.x1, w), min(box.y1, h))


def _patch(gray: GrayImage, box: Box) -> npt.NDArray[np.float32]:
    crop = gray[box.y0 : box.y1, box.x0 : box.x1]
    resized = cv2.resize(crop, PATCH, interpolation=cv2.INTER_AREA)
    return resized.astype(np.float32)
