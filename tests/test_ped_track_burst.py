"""Tracker: no track confirms just after a burst of births (`burst_births`, `burst_s`; opt-in)."""

from __future__ import annotations

import numpy as np

from kestrel.ped.records import Detections
from kestrel.ped.track import Tracker, TrackerConfig

FPS = 30.0
PICTURE = np.zeros((240, 320), np.uint8)  # flat: nothing to hold or follow back on


def run(cfg: TrackerConfig | None = None) -> list:
    """Six blobs born in one frame (10) that move together for 0.33 s and vanish (the MTI losing the
    ground's registration), and two cars that come into view together later (frame 40)."""
    trk = Tracker(cfg)
    for i in range(80):
        boxes = []
        if 10 <= i < 20:
            boxes += [[60 + 30 * k + 2 * (i - 10), 60 + 20 * k, 72 + 30 * k + 2 * (i - 10), 68 + 20 * k] for k in range(6)]
        if i >= 40:
            boxes += [[100 + 2 * (i - 40), 190, 120 + 2 * (i - 40), 200], [200 - 2 * (i - 40), 40, 220 - 2 * (i - 40), 50]]
        b = np.array(boxes, np.float64).reshape(-1, 4)
        trk.update(Detections(b, np.ones(len(b)), np.zeros(len(b)), frame_index=i, pts=i / FPS), PICTURE)
    return trk.finish()


def test_a_burst_of_births_confirms_nothing_but_two_cars_coming_in_together_do() -> None:
    found = run(TrackerConfig(burst_births=4))
    assert sorted(tr.points[0].frame_index for tr in found) == [40, 40]
    assert all(tr.confirmed_frame is not None and tr.confirmed_frame <= 46 for tr in found)
    assert len(run()) == 8  # without the rule (the default: off) the burst's blobs are six tracks
