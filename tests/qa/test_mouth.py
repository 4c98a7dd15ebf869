"""Face and mouth: found on a photograph, the frame centre without a face, a steady box."""

from __future__ import annotations

import cv2
import numpy as np
from matplotlib import cbook
from matplotlib import image as mpimage

from avatar_rtc.qa.analysis import analysis_size
from avatar_rtc.qa.mouth import SEARCH_FRAMES, Box, FaceFinder, MouthTracker

LIPS = (270, 277)  # where the lips meet in the 512x600 photograph


def hopper() -> tuple[np.ndarray, float]:
    """The grey photograph at analysis size, and the scale from the original."""
    path = cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)
    rgb = np.ascontiguousarray(mpimage.imread(path)[:, :, :3])
    h, w = rgb.shape[:2]
    size = analysis_size(w, h)
    gray = cv2.resize(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY), size, interpolation=cv2.INTER_AREA)
    return gray, size[0] / w


def test_the_mouth_box_of_a_photographed_face_holds_the_lips() -> None:
    gray, scale = hopper()
    tracker = MouthTracker()
    features = tracker.feed(gray, 0.0)
    assert tracker.source == "face" and tracker.face is not None
    assert features is not None and features.motion is None  # no previous frame yet
    box = tracker.face.part((0.25, 0.62, 0.75, 0.92))
    x, y = LIPS[0] * scale, LIPS[1] * scale
    assert box.x0 < x < box.x1 and box.y0 < y < box.y1


class NoFace(FaceFinder):
    def __init__(self) -> None:
        self.calls = 0

    def find(self, gray: np.ndarray) -> Box | None:
        self.calls += 1
        return None


def test_without_a_face_the_lower_middle_of_the_frame_is_measured() -> None:
    finder = NoFace()
    tracker = MouthTracker(finder)
    frames = [np.full((200, 200), i, dtype=np.uint8) for i in range(SEARCH_FRAMES + 3)]
    out = [tracker.feed(f, i / 25) for i, f in enumerate(frames)]
    assert all(o is None for o in out[: SEARCH_FRAMES - 1])
    assert tracker.source == "frame"
    last = out[-1]
    assert last is not None and last.motion is not None
    assert last.motion == 1.0  # the whole picture got one level brighter
    assert last.prev_time == (len(frames) - 2) / 25  # motion belongs between the two frames
    assert finder.calls == SEARCH_FRAMES // 5  # looked every 5th frame, then gave up


class Jittery(FaceFinder):
    """A face that wobbles by 3 px, then really moves by 40 px."""

    def __init__(self) -> None:
        self.calls = 0

    def find(self, gray: np.ndarray) -> Box | None:
        self.calls += 1
        if self.calls > 3:
            return Box(140, 100, 240, 200)
        wobble = 3 * (self.calls % 2)
        return Box(100 + wobble, 100, 200 + wobble, 200)


def test_detection_jitter_does_not_move_the_box_a_real_move_does() -> None:
    tracker = MouthTracker(Jittery())
    frame = np.zeros((300, 300), dtype=np.uint8)
    boxes = []
    for i in range(4):
        tracker.feed(frame, i * 2.0)  # one detection per call (every 2 s)
        boxes.append(tracker.face)
    assert boxes[0] == boxes[1] == boxes[2] == Box(103, 100, 203, 200)
    assert boxes[3] == Box(140, 100, 240, 200)
