"""Tracker births at the picture's border and blobs fixed in the picture (`edge_px`, kestrel/ped/birth.py)."""

from __future__ import annotations

import numpy as np

from kestrel.ped.birth import border_gap, enters
from kestrel.ped.records import Detections
from kestrel.ped.track import Tracker, TrackerConfig

FPS = 30.0
W, H = 320, 240
PICTURE = np.zeros((H, W), np.uint8)  # flat: nothing to hold or follow back on


def frame(i: int, boxes: list[list[float]], pan: float) -> Detections:
    b = np.array(boxes, np.float64).reshape(-1, 4)
    d = Detections(b, np.ones(len(b)), np.zeros(len(b)), frame_index=i, pts=i / FPS)
    d.homography = np.array([[1, 0, -pan], [0, 1, 0], [0, 0, 1]], float) if i else None  # ground moves left
    return d


def tracks(frames: list[Detections], cfg: TrackerConfig | None = None) -> list:
    trk = Tracker(cfg)
    for d in frames:
        trk.update(d, PICTURE)
    return trk.finish()


def test_border_gap_and_enters() -> None:
    assert border_gap(np.array([[2, 30, 20, 40]]), (W, H)).tolist() == [[2, 30, 300, 200]]
    fixed = np.array([[100, 230, 112, 238]] * 6, float)  # at the bottom border, not moving in the picture
    assert not enters(fixed, (W, H), 24, 3)
    coming = np.array([[0, 100, 4 + 3 * i, 110] for i in range(6)], float)  # cut by the left border, growing in
    assert enters(coming, (W, H), 24, 3)
    leaving = np.array([[10 - 2 * i, 100, 22 - 2 * i, 110] for i in range(6)], float)
    assert not enters(leaving, (W, H), 24, 3)
    assert enters(fixed - [0, 100, 0, 100], (W, H), 24, 3)  # inside: no question


def test_a_blob_at_the_border_that_does_not_come_in_is_no_track_but_a_car_coming_in_is() -> None:
    """Half a second of a blob fixed in the picture at its bottom border while the camera pans (it
    moves over the ground exactly against the camera) and of a piece leaving through the right
    border: no track. A car coming in through the left border: a track, from its first hits; a blob
    that stays at the border longer than `edge_wait_s` (a car standing there, driving along it): a track."""
    frames = []
    pan = 1.0
    for i in range(60):
        boxes = []
        if 10 <= i < 25:
            boxes.append([200, 228, 212, 236])  # pinned to the bottom border
            boxes.append([300 + 1.5 * (i - 10), 60, 312 + 1.5 * (i - 10), 68])  # leaving on the right
        if i >= 20:
            x = -20 + 2.0 * (i - 20)  # coming in from the left, 2 px per frame in the picture
            boxes.append([max(0.0, x), 150, x + 20, 160])
        if i >= 30:
            boxes.append([10 + 0.5 * (i - 30), 2, 24 + 0.5 * (i - 30), 10])  # along the top border, 1 s
        frames.append(frame(i, boxes, pan))
    found = tracks(frames)
    firsts = sorted((tr.points[0].frame_index, round(tr.points[0].xyxy[1])) for tr in found)
    assert firsts == [(20, 150), (30, 2)], firsts
    car = next(tr for tr in found if tr.points[0].frame_index == 20)
    assert car.confirmed_frame is not None and car.confirmed_frame <= 30  # not held back: it comes in
    edge = next(tr for tr in found if tr.points[0].frame_index == 30)
    assert edge.confirmed_frame is not None and edge.confirmed_frame >= 30 + 0.7 * FPS
    assert len(tracks(frames, TrackerConfig(edge_px=0.0))) == 4  # without the rule: both blobs are tracks
