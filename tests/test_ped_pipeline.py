"""`pipeline.run`: frames rendered in the tests, and real TS files / a live UDP stream from `kestrel fmv synth`."""

from __future__ import annotations

import socket
import threading
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
    """The consumer is stuck on its first result until the source has produced every frame: live
    mode keeps only the newest frame meanwhile, counts the rest as dropped, and never blocks the
    source. Synchronised on events, not on the clock."""
    frames = make_clip(n=80)
    all_made = threading.Event()

    def source():
        yield from frames
        all_made.set()  # runs when the reader asks for frame 81: all 80 were handed over

    first: list[int] = []

    def stuck(u: FrameUpdate) -> None:
        if not first:
            first.append(u.frame_index)
            assert all_made.wait(60), "the source was blocked by a slow consumer"

    res = run(source(), live=True, on_frame=stuck, detector=MtiDetector(lag_s=0.1))
    assert res.frames + res.frames_dropped == 80
    assert res.frames_dropped >= 80 - res.frames > 0 and res.frames < 40
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
    """The TS over loopback UDP in 7-packet datagrams, each sent once the previous one arrived (so
    a loaded machine loses none): every frame decoded, both movers tracked and geolocated, as from
    the file. Keeping up with a real-time feed is a speed claim: bench/live.py measures it."""
    from kestrel.fmv.ingest import read_frames
    from kestrel.fmv.live import UdpSource

    src = UdpSource("127.0.0.1", 0, idle_timeout=120.0)  # a safety net: the sender ends the stream
    data = clip.read_bytes()
    chunk = 7 * 188
    problems: list[str] = []

    def send() -> None:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            for i in range(0, len(data), chunk):
                s.sendto(data[i:i + chunk], src.address)
                if not src.wait_received(min(i + chunk, len(data)), timeout=120.0):
                    problems.append(f"datagram at byte {i} never arrived")
                    break
        src.close()  # end of stream: the reader drains what arrived, then stops

    sender = threading.Thread(target=send)
    sender.start()
    try:
        res = run(read_frames(src))
    finally:
        sender.join()
        src.close()
    assert problems == [] and src.received_bytes == len(data) and src.dropped_bytes == 0
    assert (res.frames, res.frames_dropped) == (120, 0)
    assert res.geolocated and len(res.tracks) == 2


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
