"""Tracker: a box that rides on a confirmed track's box is a piece of that vehicle, whatever its size
(`TrackerConfig.companion_touch`); a car following another with a gap is still a car.

Seen on the minute-long aerial clip 323: a slow truck's track, and beside it a box as big as the
truck's own that overlapped its corner and moved with it for 5 s (a piece the detector saw of the
truck): a second track on the truck, false in the score, that the size-limited companion test let
through.
"""

from __future__ import annotations

import numpy as np

from kestrel.ped.records import Detections
from kestrel.ped.track import Tracker, TrackerConfig

FPS = 30.0


def _box(x: float, y: float) -> list[float]:
    return [x - 15, y - 7, x + 15, y + 7]


def _tracks(cfg: TrackerConfig, rider: tuple[float, float]) -> list:
    """A 30x14 car driving right at 3 px a frame; from frame 20 a second 30x14 box at offset `rider`
    from it, moving with it."""
    trk = Tracker(cfg)
    for i in range(90):
        x, y = 40 + 3.0 * i, 100.0
        boxes = [_box(x, y)] + ([_box(x + rider[0], y + rider[1])] if i >= 20 else [])
        b = np.array(boxes, np.float64)
        trk.update(Detections(b, np.ones(len(b)), np.zeros(len(b)), frame_index=i, pts=i / FPS))
    return trk.finish()


def test_a_box_riding_on_a_cars_box_is_no_second_track() -> None:
    on_corner = (24.0, -9.0)  # overlaps the car's box by 6 x 5 px: 0.07 of its area
    assert len(_tracks(TrackerConfig(), on_corner)) == 1
    assert len(_tracks(TrackerConfig(companion_touch=0.0), on_corner)) == 2  # before: a second track


def test_a_car_following_with_a_gap_is_a_car() -> None:
    assert len(_tracks(TrackerConfig(), (-42.0, 0.0))) == 2  # 12 px behind it, same size, same speed
