"""Tracker: a box that rides on a confirmed track's box is a piece of that vehicle, whatever its size
(`TrackerConfig.companion_touch`); one just beside it is the ghost of where the vehicle was unless its
own look moves with it (`ghost_pad`); a car following another is still a car.

Seen on the minute-long aerial clips: 323's slow truck had a second track for 5 s, its box as big as
the truck's own and on the truck's corner; boxes of bare ground just behind slow vehicles (where they
had been) rode along with them as tracks of their own (312, 323).
"""

from __future__ import annotations

import numpy as np

from kestrel.ped.records import Detections
from kestrel.ped.track import Tracker, TrackerConfig
from tests.track_support import painted, scene

FPS = 30.0


def _box(x: float, y: float) -> list[float]:
    return [x - 15, y - 7, x + 15, y + 7]


def _tracks(cfg: TrackerConfig, rider: tuple[float, float], car_behind: bool = False) -> list:
    """A 30x14 car driving right at 2 px a frame; from frame 20 a second 30x14 box at offset `rider`
    from it, moving with it: a car painted there too when `car_behind`, else bare ground."""
    trk = Tracker(cfg)
    ground = scene(np.random.default_rng(11))
    for i in range(90):
        x, y = 40 + 2.0 * i, 100.0
        img = painted(ground, x, y)
        boxes = [_box(x, y)]
        if i >= 20:
            boxes.append(_box(x + rider[0], y + rider[1]))
            if car_behind:
                img = painted(img, x + rider[0], y + rider[1])
        b = np.array(boxes, np.float64)
        trk.update(Detections(b, np.ones(len(b)), np.zeros(len(b)), frame_index=i, pts=i / FPS,
                              homography=np.eye(3)), img)  # a still camera
    return trk.finish()


def test_a_box_riding_on_a_cars_box_is_no_second_track() -> None:
    on_corner = (24.0, -9.0)  # overlaps the car's box by 6 x 5 px: 0.07 of its area
    assert len(_tracks(TrackerConfig(), on_corner)) == 1
    assert len(_tracks(TrackerConfig(companion_touch=0.0), on_corner)) == 2  # before: a second track


def test_bare_ground_riding_just_behind_a_car_is_no_track_but_a_car_there_is() -> None:
    behind = (-38.0, 0.0)  # 8 px behind the car, same size, same speed
    assert len(_tracks(TrackerConfig(), behind)) == 1  # ground: what it shows stays put
    assert len(_tracks(TrackerConfig(ghost_pad=0.0), behind)) == 2  # before: a track of bare ground
    assert len(_tracks(TrackerConfig(), behind, car_behind=True)) == 2  # a car following closely is a car


def test_a_car_following_with_a_gap_is_a_car() -> None:
    assert len(_tracks(TrackerConfig(), (-60.0, 0.0), car_behind=True)) == 2  # 30 px behind it
