"""`pipeline.run`: frames rendered in the tests, and real TS files / a live UDP stream from `kestrel fmv synth`."""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from kestrel.cli import main as kestrel
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


# ---- real transport streams (kestrel fmv synth) -------------------------------------------------



@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("clip") / "c.ts"
    assert kestrel(["fmv", "synth", str(out), "--seconds", "4", "--targets", "2", "--seed", "5"]) == 0
    return out


def test_ts_without_klv_gives_pixel_tracks_and_says_why(clip: Path, tmp_path: Path) -> None:
    from kestrel.fmv.ingest import read_frames
    from kestrel.fmv.mux import TsWriter

    bare = tmp_path / "noklv.ts"
    with TsWriter(bare, 720, 480, fps=30, klv=False) as w:
        for f in read_frames(clip):
            w.write(f.image)
    res = run(bare)
    assert res.frames == 120
    assert res.geolocated is False and "no KLV" in (res.geolocation_reason or "")
    assert len(res.tracks) == 2
    assert all(p.lat is None for t in res.tracks for p in t.points)
    assert all(d.ground is None for d in res.detections)


def test_corrupted_ts_keeps_going(clip: Path, tmp_path: Path) -> None:
    data = bytearray(clip.read_bytes())
    mid = len(data) // 2
    data[mid:mid + 40_000] = np.random.default_rng(0).integers(0, 256, 40_000, dtype=np.uint8).tobytes()
    bad = tmp_path / "bad.ts"
    bad.write_bytes(bytes(data))
    res = run(bad)
    assert 60 < res.frames <= 120  # decoding went on past the damage
    assert res.detections[-1].pts is not None and res.detections[-1].pts > 3.0
    assert res.geolocated and len(res.tracks) >= 2


def test_live_udp_stream(clip: Path) -> None:
    """The TS sent over loopback UDP at real-time pace; the pipeline keeps up (30 fps source)."""
    from kestrel.fmv.ingest import read_frames
    from kestrel.fmv.live import UdpSource

    src = UdpSource("127.0.0.1", 0, idle_timeout=1.0)
    data = clip.read_bytes()
    chunk = 7 * 188
    rate = len(data) / 4.0  # bytes per second for a 4 s clip

    def send() -> None:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        t0 = time.perf_counter()
        for i in range(0, len(data), chunk):
            lag = i / rate - (time.perf_counter() - t0)
            if lag > 0:
                time.sleep(lag)
            s.sendto(data[i:i + chunk], src.address)
        s.close()

    sender = threading.Thread(target=send)
    sender.start()
    try:
        res = run(read_frames(src), live=True)
    finally:
        sender.join()
        src.close()
    assert res.frames + res.frames_dropped >= 110
    assert res.frames_dropped <= 0.2 * (res.frames + res.frames_dropped)
    # Both movers are tracked; on a loaded machine dropped frames or lost datagrams (damaged
    # pictures) may split a track in two, so allow one split per mover, not more.
    assert res.geolocated and 2 <= len(res.tracks) <= 4


def test_stop_event_ends_a_run_cleanly() -> None:
    stop = threading.Event()
    frames = make_clip(n=90, targets=2, seed=6)

    def endless():  # a live source that never ends by itself
        i = 0
        while True:
            f = frames[i % 90]
            yield type(f)(i, i / 30.0, f.image, None, f.truth)
            i += 1

    def on_frame(u: FrameUpdate) -> None:
        if u.frame_index >= 60:
            stop.set()

    res = run(endless(), stop=stop, on_frame=on_frame, detector=MtiDetector(lag_s=0.3))
    assert res.interrupted and res.report()["interrupted"] is True
    assert 60 <= res.frames < 200
    assert [d.frame_index for d in res.detections] == list(range(res.frames))  # flushed to the end
    assert len(res.tracks) >= 1


def test_klv_without_enough_geometry_says_why() -> None:
    from kestrel.klv.metadata import SensorMetadata

    frames = make_clip(n=20)
    for f in frames:
        f.metadata = SensorMetadata(platform_heading=10.0)  # no position, no angles, no corners
    res = run(frames)
    assert res.geolocated is False
    assert (res.geolocation_reason or "").startswith("KLV present but not enough for a sensor model")
