"""The tracker sees the picture of every frame, also those a detector finishes late (its warm-up,
a look-ahead): a car that stops while the detector warms up is held on its appearance."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import numpy.typing as npt

from kestrel.ped import pipeline
from kestrel.ped.records import Detections
from kestrel.ped.track import TrackerConfig

FPS = 30.0
WARM = 90  # the detector finishes frames 0..WARM when frame WARM arrives, then each frame at once


@dataclass
class _Frame:
    index: int
    pts: float
    image: npt.NDArray[np.uint8]
    metadata: None = None


class _WarmingDetector:
    """Reports the car's box while it moves and nothing while it stands (a motion detector), and
    finishes nothing before frame WARM arrives (its warm-up)."""

    delay = 0
    finds_movers = True

    def __init__(self, xs: list[float], moving: list[bool]) -> None:
        self.xs, self.moving, self.waiting = xs, moving, []

    def _dets(self, i: int) -> Detections:
        x = self.xs[i]
        box = np.array([[x - 15, 113, x + 15, 127]]) if self.moving[i] else np.zeros((0, 4))
        return Detections(box, np.ones(len(box)), np.zeros(len(box)), frame_index=i, pts=i / FPS)

    def detect(self, frame: _Frame, sensor: object = None) -> list[Detections]:
        self.waiting.append(frame.index)
        if frame.index < WARM:
            return []
        out = [self._dets(i) for i in self.waiting]
        self.waiting = []
        return out

    def flush(self) -> list[Detections]:
        out = [self._dets(i) for i in self.waiting]
        self.waiting = []
        return out


def test_a_car_stopping_during_the_detectors_warm_up_is_held_through_its_stop() -> None:
    rng = np.random.default_rng(5)
    ground = np.asarray(cv2.GaussianBlur(rng.integers(20, 200, (240, 400), dtype=np.uint8), (0, 0), 1.5), np.uint8)
    xs, moving = [], []
    x = 60.0
    for i in range(160):  # 15 px/s, brakes from frame 40, stands 55..110 (no blob 45..110), drives on
        v = 0.5 if i < 40 else (max(0.0, 0.5 - 0.035 * (i - 40)) if i < 110 else min(0.5, 0.035 * (i - 110)))
        x += v
        xs.append(x)
        moving.append(not 45 <= i < 110)
    frames = []
    for i, x in enumerate(xs):
        img = ground.copy()
        x0 = int(round(x - 15))
        img[113:127, x0:x0 + 30] = 210  # light body, dark windscreen
        img[116:124, x0 + 18:x0 + 23] = 40
        frames.append(_Frame(i, i / FPS, cv2.cvtColor(img, cv2.COLOR_GRAY2BGR)))
    res = pipeline.run(frames, detector=_WarmingDetector(xs, moving))
    (tr,) = res.tracks  # one track through the stop, not a second one when the car drives on
    held = [p.frame_index for p in tr.points if p.held]
    assert set(range(45, WARM)) <= set(held)  # frames finished during the warm-up: held on the picture
    assert {p.frame_index for p in tr.points} == set(range(160))
    for p in tr.points:
        assert abs((p.xyxy[0] + p.xyxy[2]) / 2 - xs[p.frame_index]) <= 2.0, p
    # the newest frame's picture only (before): no picture before frame WARM, the stopped car's
    # track coasts out and the car gets a second track when it drives on
    old = pipeline.run(frames, detector=_WarmingDetector(xs, moving), tracker=TrackerConfig(hold_late_frames=False))
    assert len(old.tracks) == 2
