"""`pipeline.run` over frames rendered in the tests (no KLV: pixel tracks, geolocation refused)."""

from __future__ import annotations

import time

import numpy as np

from kestrel.ped.detect.mti import MtiDetector
from kestrel.ped.pipeline import FrameUpdate, run
from kestrel.ped.records import TrackState
from tests.test_ped_detect import make_clip


def test_pixel_tracks_without_klv_and_reason() -> None:
    frames = make_clip(n=60, targets=3, seed=3)
    seen: list[FrameUpdate] = []
    res = run(frames, on_frame=seen.append)
    assert res.frames == 60 and res.frames_dropped == 0
    assert [u.frame_index for u in seen] == list(range(60))
    assert [d.frame_index for d in res.detections] == list(range(60))
    assert res.geolocated is False and res.geolocation_reason == "no KLV metadata in the stream"
    # each true mover becomes one confirmed track (no duplicates, no strays)
    assert len(res.tracks) == len(frames[0].truth) == 3
    for tr in res.tracks:
        assert tr.state in (TrackState.CONFIRMED, TrackState.LOST)
        assert len(tr.points) >= 30
        assert tr.points[0].lat is None and tr.speed_mps is None
    assert sorted(t.id for t in res.tracks) == [1, 2, 3]
    rep = res.report()
    assert rep["frames"] == 60 and set(rep["fps"]) == {"decode", "detect", "geolocate", "track", "end_to_end"}


def test_max_frames() -> None:
    res = run(make_clip(n=30), max_frames=12)
    assert res.frames == 12 and len(res.detections) == 12


def test_live_mode_drops_rather_than_falls_behind() -> None:
    frames = make_clip(n=80)

    def paced():  # a 200 fps source, faster than the slow consumer below
        for f in frames:
            time.sleep(0.005)
            yield f

    def slow(_u: FrameUpdate) -> None:
        time.sleep(0.03)

    res = run(paced(), live=True, on_frame=slow, detector=MtiDetector(lag_s=0.1))
    assert res.frames_dropped > 10
    assert res.frames + res.frames_dropped == 80
    idx = [d.frame_index for d in res.detections]
    assert idx == sorted(idx) and len(idx) == res.frames


def test_source_error_propagates() -> None:
    def broken():
        yield make_clip(n=1)[0]
        raise ValueError("damaged.ts: boom")

    try:
        run(broken())
    except ValueError as exc:
        assert "boom" in str(exc)
    else:
        raise AssertionError("error swallowed")


def test_detections_are_numpy_records() -> None:
    res = run(make_clip(n=30, seed=4))
    d = next(d for d in res.detections if len(d))
    assert d.xyxy.dtype == np.float32 and d.xyxy.shape == (len(d), 4)
    sub = d[d.confidence > 2.0]
    assert len(sub) == 0 and sub.frame_index == d.frame_index
