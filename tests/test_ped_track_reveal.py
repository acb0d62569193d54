"""Tracker: a car the camera pans onto is a box that grows from its front as ground comes into view;
its motion test looks at the box's corners too (`TrackerConfig.mover_corners`)."""

from __future__ import annotations

import numpy as np

from kestrel.ped.records import Detections, Track
from kestrel.ped.track import Tracker, TrackerConfig

FPS = 30.0
PICTURE = np.zeros((480, 720), np.uint8)  # flat: nothing to hold or follow back on
PAN = np.array([[1.0, 0, -7.0], [0, 1.0, 0], [0, 0, 1.0]])  # the camera pans 7 px a frame


def run(cfg: TrackerConfig, frames: int = 40) -> list[Track]:
    """The measured case (minute-long aerial clip 312, car 14): the camera pans 7 px a frame, the car
    drives 1.5 px a frame the same way over the ground, 50 px long. The detector sees its front and the
    ground just revealed behind it, so the box's back edge runs with the reveal (3.3 px a frame over
    the ground, the other way) until the car is whole: the box centre hardly moves over the ground for
    the first 10 frames."""
    rng = np.random.default_rng(5)
    trk = Tracker(cfg)
    for i in range(frames):
        front = 620.0 - 1.5 * i  # ground-fixed pixels (frame 0's)
        back = min(front + 50.0, front + 16.0 + 3.3 * i)
        box = np.array([[front, 200.0, back, 218.0]]) - [7.0 * i, 0, 7.0 * i, 0] + rng.normal(0, 0.7, (1, 4))
        dets = Detections(box, np.ones(1), np.zeros(1), frame_index=i, pts=i / FPS, homography=PAN if i else None)
        trk.update(dets, PICTURE)
    return trk.finish()


def test_a_car_revealed_by_a_pan_is_reported_from_its_front_corner() -> None:
    (track,) = run(TrackerConfig())
    assert track.points[0].frame_index == 0
    assert track.confirmed_frame is not None and track.confirmed_frame <= 6
    # on the box centres alone (the previous default) it waits until the box stops growing
    (old,) = run(TrackerConfig.sixth_pass())
    assert old.confirmed_frame is not None and old.confirmed_frame >= 12


def test_corners_are_only_tried_on_a_growing_box() -> None:
    """The corner test is for boxes that grow (1.5x in area since the track's first hit): with the
    bar out of reach, the revealed car waits as it did before."""
    (track,) = run(TrackerConfig(mover_corners=100.0))
    assert track.confirmed_frame is not None and track.confirmed_frame >= 12
