"""What TAK users see of a PED run (issue 9 defects): track points timed at the video, a real
error estimate, one UAV per platform across runs, and the footprint pushed live."""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest

from kestrel.cli import main as kestrel_main
from kestrel.cot.xml import encode_event
from kestrel.ped import cot
from kestrel.ped.review import PlatformState, StoredTrack


def _platform(**kw: Any) -> PlatformState:
    base = dict(frame=10, t=1.0, lat=36.2, lon=-115.9, alt=1000.0, heading=90.0, sensor_az=0.0,
                sensor_el=-45.0, hfov=6.0, vfov=4.0, slant_range=1414.2)
    base.update(kw)
    return PlatformState(**base)  # type: ignore[arg-type]


def test_track_point_time_is_the_video_time_and_ce_le_are_estimated() -> None:
    t = StoredTrack(7, lat=36.2001, lon=-115.9001, state="confirmed", label="vehicle", last_utc=1_767_268_812.5)
    opts = cot.CotOptions("run1", stale_s=120.0, image_width=720)
    now_ms = 1_767_268_900_000  # the push happens ~88 s after the video frame
    ev = cot.track_event(t, opts, now_ms, _platform())
    assert ev is not None
    assert ev.time == ev.start == 1_767_268_812_500 and ev.stale == ev.time + 120_000
    # the error model by hand: pointing 0.25 deg and 2 px of a 6 deg / 720 px view at 1414.2 m,
    # stretched along the ground by 1 / sin(depression) (sin = 1000 / 1414.2)
    ang = math.hypot(math.radians(0.25), 2 * math.radians(6.0) / 720)
    cross = 1414.2 * ang
    along = cross / (1000.0 / 1414.2)
    assert ev.ce == pytest.approx(math.hypot(cross, along), rel=1e-9)
    assert ev.le == pytest.approx(along, rel=1e-3)  # 45 deg: the height error equals the along error
    assert 5.0 < ev.ce < 20.0 and ev.ce != 9999999.0
    root = ET.fromstring(encode_event(ev, prolog=False))
    assert root.get("time", "").startswith("2026-01-01T12:00:12.5")


def test_no_video_time_or_geometry_falls_back() -> None:
    t = StoredTrack(8, lat=36.2, lon=-115.9, state="confirmed")
    ev = cot.track_event(t, cot.CotOptions("r"), 1000, None)
    assert ev is not None and ev.time == 1000 and ev.ce == 9999999.0


def test_uav_uid_is_the_platform_not_the_run() -> None:
    a = cot.CotOptions("run-a", platform_id="SYNTH-UAS")
    b = cot.CotOptions("run-b", platform_id="SYNTH-UAS")
    assert a.platform_uid == b.platform_uid == "kestrel-uav-SYNTH-UAS"
    assert cot.CotOptions("x", platform_id="/data/my clip.ts").platform_uid == "kestrel-uav-data-my-clip.ts"
    assert a.track_uid(1) != b.track_uid(1)  # tracks stay per run


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("clip")
    assert kestrel_main(["fmv", "synth", str(d / "c.ts"), "--seconds", "1.5", "--targets", "2", "--seed", "9"]) == 0
    return d / "c.ts"


def test_two_runs_of_one_platform_show_one_uav(clip: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    uids = []
    for name in ("r1", "r2"):
        assert kestrel_main(["ped", "run", str(clip), "--out", str(tmp_path / name), "--max-frames", "12",
                             "--no-vmti"]) == 0
        capsys.readouterr()
        assert kestrel_main(["ped", "disseminate", str(tmp_path / name), "--push", "tcp://127.0.0.1:1",
                             "--dry-run", "--release", "auto"]) == 0
        events = [ET.fromstring(x[x.index("<event"):]) for x in capsys.readouterr().out.splitlines() if "<event" in x]
        uids.append({e.get("uid") for e in events if e.get("type") == cot.PLATFORM_TYPE})
    assert uids[0] == uids[1] == {"kestrel-uav-SYNTH-UAS"}  # the KLV platform designation (tag 10)


class _Pusher:
    def __init__(self) -> None:
        self.batches: list[list[Any]] = []

    def offer(self, events: list[Any]) -> None:
        self.batches.append(list(events))


def test_live_push_carries_the_newest_footprint(clip: Path, tmp_path: Path) -> None:
    """Frames between stored footprints still push the platform and a footprint of the newest
    metadata (before: the latest stored row had none, so no footprint went out)."""
    from kestrel.fmv.ingest import read_frames
    from kestrel.geo.build import from_metadata
    from kestrel.ped.pipeline import FrameUpdate
    from kestrel.ped.records import Detections
    from kestrel.ped.review import ReviewStore
    from kestrel.ped.runner import _Recorder

    store = ReviewStore(tmp_path / "live")
    pusher = _Pusher()
    rec = _Recorder(store, pusher, cot.CotOptions("live1"))
    newest = None
    for f in read_frames(str(clip)):
        if f.index > 20:
            break
        sensor = from_metadata(f.metadata, f.width, f.height)
        rec(FrameUpdate(f.index, f.pts, f.metadata, sensor, Detections.empty(f.index, f.pts), []))
        newest = sensor
    assert newest is not None
    rec.push_live()
    store.close()
    last = pusher.batches[-1]
    kinds = {e.type for e in last}
    assert {cot.PLATFORM_TYPE, cot.FOOTPRINT_TYPE} <= kinds
    fp = next(e for e in last if e.type == cot.FOOTPRINT_TYPE)
    c_lat, c_lon = cot.centroid(newest.footprint())
    assert fp.lat == pytest.approx(c_lat, abs=1e-9) and fp.lon == pytest.approx(c_lon, abs=1e-9)
    assert next(e for e in last if e.type == cot.PLATFORM_TYPE).uid == "kestrel-uav-SYNTH-UAS"
