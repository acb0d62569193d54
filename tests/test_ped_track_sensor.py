"""Tracker with the frame's sensor model (ground mode): a moving track's box is at least a small
vehicle laid along its course, projected into the picture at its place (`min_vehicle_m`)."""

from __future__ import annotations

import math

import numpy as np

from kestrel.geo.geodesy import LocalFrame
from kestrel.geo.sensor import PinholeModel
from kestrel.ped.records import Detections
from kestrel.ped.score import iou_matrix
from kestrel.ped.track import Tracker, TrackerConfig

FPS = 30.0
W, H = 720, 480


def _camera() -> PinholeModel:
    """Looking down at 45° from 1 km slant height, north up the picture (about 0.2 m per pixel
    across, 0.3 m up the picture: an oblique view like the aerial scenario's)."""
    return PinholeModel.from_angles(lat=36.2, lon=-115.9, hae=700.0, heading=0.0, pitch=0.0, roll=0.0, az=0.0,
                                    el=-45.0, sensor_roll=0.0, hfov=8.0, vfov=8.0 * H / W, width=W, height=H)


def _diagonal_car(cam: PinholeModel) -> tuple[list[Detections], list[np.ndarray]]:
    """An 8 m x 2.6 m car driving north-east at 2.5 m/s whose every blob is its front corner
    (a slow car overlaps itself in the references: only its leading corner differs)."""
    centre = cam.pixels_to_ground(np.array([[W / 2, H / 2]]))[0]
    lf = LocalFrame(float(centre[0]), float(centre[1]), 0.0)
    heading = math.radians(45.0)  # clockwise from north
    fwd = np.array([math.sin(heading), math.cos(heading)])
    side = np.array([fwd[1], -fwd[0]])
    frames, truth = [], []
    for i in range(90):
        c = fwd * (-6.0 + 2.5 * i / FPS)
        corners = [c + fwd * a * 4.0 + side * b * 1.3 for a in (-1, 1) for b in (-1, 1)]
        llh = np.array([lf.to_geodetic(e, n, 0.0) for e, n in corners])
        uv = cam.grounds_to_pixels(llh)
        car = np.array([*uv.min(axis=0), *uv.max(axis=0)])
        lead = np.array([uv[:, 0].max(), uv[:, 1].min()])  # moving right and up the picture
        blob = np.array([lead[0] - 14.0, lead[1], lead[0], lead[1] + 6.0])  # 14 x 6 px
        g = cam.pixels_to_ground(np.array([[(blob[0] + blob[2]) / 2, (blob[1] + blob[3]) / 2]]))
        frames.append(Detections(blob[None], [1.0], [0], g, frame_index=i, pts=i / FPS))
        truth.append(car)
    return frames, truth


def _track(frames: list[Detections], cfg: TrackerConfig, sensor: PinholeModel | None) -> list:
    trk = Tracker(cfg)
    for d in frames:
        trk.update(d, None, sensor)
    return trk.finish()


def test_a_car_seen_only_as_its_front_corner_gets_a_vehicle_sized_box_on_it() -> None:
    cam = _camera()
    frames, truth = _diagonal_car(cam)
    assert (truth[0][2] - truth[0][0]) > 2.5 * 14  # the car is far bigger than its blob

    def ious(tracks: list) -> list[float]:
        (tr,) = tracks
        return [float(iou_matrix(truth[p.frame_index][None], np.array([p.xyxy]))[0, 0])
                for p in tr.points if p.frame_index >= 20]

    grown = ious(_track(frames, TrackerConfig(), cam))
    assert len(grown) == 70 and min(grown) >= 0.33, grown[:5]  # a 4.5 m floor on an 8 m car
    # what the blob alone gives (no sensor model, or the floor off): below the scoring IoU of 0.3
    assert max(ious(_track(frames, TrackerConfig(), None))) < 0.3
    assert max(ious(_track(frames, TrackerConfig(min_vehicle_m=(0.0, 0.0)), cam))) < 0.3


def test_the_floor_never_shrinks_a_bigger_box_and_ignores_a_track_standing_still() -> None:
    cam = _camera()
    frames, _truth = _diagonal_car(cam)
    big = []
    for d in frames:  # the whole car's box, 60 x 60 px: already more than a small vehicle
        c = d.centers[0]
        big.append(Detections(np.array([[c[0] - 30, c[1] - 30, c[0] + 30, c[1] + 30]]), [1.0], [0], d.ground,
                              frame_index=d.frame_index, pts=d.pts))
    (tr,) = _track(big, TrackerConfig(), cam)
    assert all(abs((p.xyxy[2] - p.xyxy[0]) - 60) < 1e-3 for p in tr.points)
    trk = Tracker()
    assert trk._vehicle_px(np.array([0.0, 0.0, 10.0, 10.0]), np.zeros(2), 0.0) is None  # no course: no floor
