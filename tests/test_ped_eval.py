"""End-to-end PED score on `kestrel fmv synth` clips, by outside tools (motmetrics, trackeval).

Three seeds the detector and tracker were NOT tuned on (tuning used seeds 0-3), 720x480, 6 s,
3 targets each. Tracks scored: every track the tracker confirmed (the evaluation plays the
analyst who confirms what the tracker confirmed). Floors from the issue: precision and recall
>= 0.9, IDF1 >= 0.8, median ground position error <= 5 m. Run with `-s` to see the table."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from kestrel.cli import main as kestrel
from kestrel.ped.pipeline import run
from kestrel.ped.records import Detections, Track, TrackPoint
from kestrel.ped.score import iou_matrix, load_truth, score

SEEDS = (101, 102, 103)


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> dict[int, tuple[Path, Path]]:
    d = tmp_path_factory.mktemp("synth")
    out = {}
    for seed in SEEDS:
        ts, truth = d / f"s{seed}.ts", d / f"s{seed}.json"
        rc = kestrel(["fmv", "synth", str(ts), "--seconds", "6", "--targets", "3", "--seed", str(seed),
                      "--size", "720x480", "--truth", str(truth)])
        assert rc == 0
        out[seed] = (ts, truth)
    return out


def test_synthetic_clips_meet_the_floors(clips: dict[int, tuple[Path, Path]]) -> None:
    rows = []
    for seed, (ts, truth) in clips.items():
        res = run(ts)
        assert res.geolocated and res.frames == 180
        s = score(res.tracks, load_truth(truth))
        rows.append((seed, s))
    print("\nseed  MOTA   IDF1   HOTA   prec   recall IDsw  FP  FN  ground err med/p90 (m)  "
          "speed err (m/s)  heading err (deg)  tracks")
    for seed, s in rows:
        print(f"{seed:<5} {s.mota:.3f}  {s.idf1:.3f}  {s.hota or float('nan'):.3f}  {s.precision:.3f}  "
              f"{s.recall:.3f}  {s.switches:<4} {s.false_positives:<3} {s.misses:<3} "
              f"{s.ground_error_median_m:.2f} / {s.ground_error_p90_m:.2f}            "
              f"{s.speed_error_median_mps:.2f}             {s.heading_error_median_deg:.1f}              {s.tracks}")
    for seed, s in rows:
        assert s.precision >= 0.9, (seed, s.row())
        assert s.recall >= 0.9, (seed, s.row())
        assert s.idf1 >= 0.8, (seed, s.row())
        assert s.ground_error_median_m is not None and s.ground_error_median_m <= 5.0, (seed, s.row())
        assert s.hota is not None and 0.0 < s.hota <= 1.0
        # speed and heading from the ground track (no floor in the issue; guards against regressions;
        # the heading lags on the targets' tight circles, a constant-velocity filter's price)
        assert s.speed_error_median_mps is not None and s.speed_error_median_mps <= 1.5, (seed, s.row())
        assert s.heading_error_median_deg is not None and s.heading_error_median_deg <= 25.0, (seed, s.row())


def test_without_klv_pixel_tracks_score_the_same(clips: dict[int, tuple[Path, Path]]) -> None:
    """The same clip with its metadata withheld: tracking in (camera-compensated) pixels."""
    from kestrel.fmv.ingest import read_frames

    ts, truth = clips[SEEDS[0]]

    def bare():
        for f in read_frames(ts):
            f.metadata = None
            yield f

    res = run(bare())
    assert not res.geolocated and res.geolocation_reason == "no KLV metadata in the stream"
    s = score(res.tracks, load_truth(truth))
    print(f"\npixel mode, seed {SEEDS[0]}: {s.row()}")
    assert s.precision >= 0.9 and s.recall >= 0.9 and s.idf1 >= 0.8
    assert s.ground_error_median_m is None


def test_scorer_is_not_a_rubber_stamp(clips: dict[int, tuple[Path, Path]]) -> None:
    """The same scorer on deliberately broken tracks: truth itself scores perfectly; swapped
    identities, shifted boxes and wrong ground positions are caught."""
    truth = load_truth(clips[SEEDS[0]][1])

    def tracks_from_truth(shift_px: float = 0.0, swap_at: int | None = None, ground_off: float = 0.0) -> list[Track]:
        by_id: dict[int, Track] = {}
        for tf in truth:
            for gid, box, g in zip(tf.ids, tf.boxes, tf.ground, strict=True):
                tid = gid
                if swap_at is not None and tf.index >= swap_at and gid in (1, 2):
                    tid = 3 - gid
                x1, y1, x2, y2 = (float(v) + shift_px for v in box)
                by_id.setdefault(tid, Track(id=tid)).points.append(
                    TrackPoint(tf.index, tf.pts, (x1, y1, x2, y2), 1.0, float(g[0]) + ground_off, float(g[1])))
        return list(by_id.values())

    perfect = score(tracks_from_truth(), truth)
    assert perfect.mota == pytest.approx(1.0) and perfect.idf1 == pytest.approx(1.0)
    assert perfect.ground_error_median_m == pytest.approx(0.0, abs=1e-6)
    assert perfect.hota == pytest.approx(1.0)
    swapped = score(tracks_from_truth(swap_at=90), truth)
    assert swapped.switches >= 2 and swapped.idf1 < 0.8
    shifted = score(tracks_from_truth(shift_px=20.0), truth)
    assert shifted.recall == 0.0 and shifted.precision == 0.0
    off = score(tracks_from_truth(ground_off=1e-4), truth)  # 1e-4 deg latitude ~ 11 m
    assert off.ground_error_median_m == pytest.approx(11.1, abs=0.3)


def test_iou_matrix() -> None:
    a = np.array([[0, 0, 10, 10]], float)
    b = np.array([[0, 0, 10, 10], [5, 0, 15, 10], [20, 20, 30, 30]], float)
    np.testing.assert_allclose(iou_matrix(a, b), [[1.0, 50 / 150, 0.0]])
    assert iou_matrix(a, np.zeros((0, 4))).shape == (1, 0)
    assert len(Detections.empty()) == 0


def test_real_aphill_clip_runs_and_confirms_little(ref_data: Path) -> None:
    """Real aerial MPEG-2 (360x240, 1 fps, EG 0104 KLV), a mostly static scene: every confirmed
    track counts as false (no truth; a few people walk there, too slow and too rarely sampled at
    1 fps to confirm). Reported per minute; the bound only guards against regressions."""
    res = run(ref_data / "fmv" / "aphill_klv_10s.ts")
    assert res.frames == 10 and res.geolocated
    minutes = (res.detections[-1].pts - res.detections[0].pts + 1.0) / 60.0
    per_min = len(res.tracks) / minutes
    print(f"\naphill_klv_10s.ts: {res.frames} frames, {sum(len(d) for d in res.detections)} detections, "
          f"{len(res.tracks)} confirmed tracks = {per_min:.1f} false confirmed tracks per minute")
    assert per_min <= 12.0


def test_score_command_prints_a_table(clips: dict[int, tuple[Path, Path]], capsys: pytest.CaptureFixture[str]) -> None:
    from kestrel.ped.score import main

    ts, truth = clips[SEEDS[1]]
    assert main([str(ts), str(truth)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("| clip | precision | recall | IDF1 | MOTA")
    cells = [c.strip() for c in out[2].split("|")[1:-1]]
    assert cells[0] == ts.name and float(cells[3]) >= 0.8  # IDF1
