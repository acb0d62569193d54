"""PED on the aerial scenario (`kestrel fmv synth --scenario aerial`: real aerial texture, traffic
entering and leaving the view, turning, stopping and passing, camera panning and zooming, CRF 26
plus noise), the issue-9 detector against the previous one (`mti-v1`) on the same seeded clips.

Two seeds, 8 s, 4 vehicles, 720x480 (not the seeds the settings were chosen on: 11-20, 301-306).
With the tracker's border births (sixth pass; the 2-thread clips): precision 0.813 / 0.931, recall 0.815 /
0.879, IDF1 0.776 / 0.870, false tracks 2 / 1 (fifth pass on the same clips: 0.818 / 0.908, 0.857 / 0.865,
0.790 / 0.866, 2 / 2): floors unchanged.
With the tracker's back-fill (fifth pass), on two encodings of each clip (libx264's output varies with
its thread count): precision 0.818-0.835 / 0.908-0.925, recall 0.823-0.857 / 0.865-0.879, IDF1
0.790-0.800 / 0.866, false tracks 1-2 / 1-2 (fourth pass: 0.824-0.850 / 0.911-0.927, 0.801-0.809 /
0.840-0.852, 0.776-0.796 / 0.855, 0-1 / 1-2): the recall floor 0.785 -> 0.80.
Measured with the tracker's third pass (parts, gather, stale hosts) on the detector of 885eca1:
precision 0.815 / 0.912, recall 0.791 / 0.825, IDF1 0.776 / 0.854, 2 / 1 false tracks.
Measured (issue 9, detector's third pass: `min_size_m` 2, `fuse_fragments`; tracker at 3d87620):
precision 0.811 / 0.912, recall 0.787 / 0.825, IDF1 0.772 / 0.854, 1 / 2 false tracks (second
pass, same tracker: 0.798 / 0.869, 0.773 / 0.840, 0.765 / 0.830, 1 / 1).
Earlier (detector at 88343f6 and tracker): new precision 0.795 / 0.830, recall
0.771 / 0.823, IDF1 0.764 / 0.817, 2 / 2 false tracks (15 per minute); before the tracker work:
0.806 / 0.631, 0.561 / 0.669, 0.662 / 0.649, 0 / 30 per minute. Seed 401's precision fell from
0.843 to 0.795 with the detector's 4fa9e1b (shorter pairs, fragments fused) under this tracker:
its floor was 0.78; previous 0.236 / 0.156, 0.638 / 0.538, 0.281 / 0.224,
105 / 368 per minute. The issue's floors (precision, recall >= 0.9, IDF1 >= 0.8, <= 1 false track
per minute, reported within 0.5 s) are NOT met: these floors are what holds today, so a
regression turns them red; docs/ped.md has the per-scenario table. Run with -s for the rows."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from kestrel.cli import main as kestrel
from kestrel.ped.detect.mti import MtiConfig, MtiDetector
from kestrel.ped.pipeline import run
from kestrel.ped.score import Score, format_row, load_truth, score

SEEDS = (401, 402)


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> dict[int, tuple[Path, Path]]:
    d = tmp_path_factory.mktemp("aerial")
    out = {}
    for seed in SEEDS:
        ts, truth = d / f"a{seed}.ts", d / f"a{seed}.json"
        assert kestrel(["fmv", "synth", str(ts), "--scenario", "aerial", "--seconds", "8", "--targets", "4",
                        "--seed", str(seed), "--truth", str(truth)]) == 0
        out[seed] = (ts, truth)
    return out


@pytest.fixture(scope="module")
def scores(clips: dict[int, tuple[Path, Path]]) -> dict[tuple[int, str], Score]:
    out = {}
    for seed, (ts, truth) in clips.items():
        gt = load_truth(truth)
        for det in ("mti-v1", "mti"):
            res = run(ts, detector=det)
            assert res.geolocated and res.frames == 240
            out[(seed, det)] = score(res.tracks, gt, delay_frames=res.delay_frames, emitted_at=res.emitted_at)
    for (seed, det), s in out.items():
        print(format_row(f"{seed} {det}", s))
    return out


def test_new_detector_floors(scores: dict[tuple[int, str], Score]) -> None:
    for seed in SEEDS:
        s = scores[(seed, "mti")]
        assert s.precision >= 0.81, (seed, s.row())
        assert s.recall >= 0.80, (seed, s.row())
        assert s.idf1 >= 0.77, (seed, s.row())
        assert s.false_tracks <= 2, (seed, s.row())  # 8 s clips: 15 per minute
        assert s.ground_error_median_m is not None and s.ground_error_median_m <= 2.0, (seed, s.row())


def test_new_detector_beats_the_previous_one_on_the_same_clips(scores: dict[tuple[int, str], Score]) -> None:
    for seed in SEEDS:
        new, old = scores[(seed, "mti")], scores[(seed, "mti-v1")]
        assert new.precision >= old.precision + 0.3, (seed, new.row(), old.row())
        assert new.idf1 >= old.idf1 + 0.2, (seed, new.row(), old.row())
        assert new.false_tracks_per_min * 3 <= old.false_tracks_per_min, (seed, new.row(), old.row())


def _registration_errors(ts: Path, det: MtiDetector) -> np.ndarray:
    """Per frame while the camera slews (the true picture shift > 1.5 px): the largest distance, over 25
    points spread to the picture's edges, between where the detector's homography (previous frame ->
    this one) puts a point and where the clip's exact KLV puts it (previous pixel -> ground -> pixel)."""
    from kestrel.fmv.ingest import VideoReader
    from kestrel.geo.build import from_metadata

    pts = np.array([[x, y] for x in (5, 60, 360, 660, 715) for y in (5, 60, 240, 420, 475)], np.float64)
    models, out = {}, []
    for f in VideoReader(ts):
        models[f.index] = from_metadata(f.metadata, f.width, f.height)
        for d in det.detect(f, models[f.index]):
            if d.homography is None or d.frame_index - 1 not in models:
                continue
            ground = models[d.frame_index - 1].pixels_to_ground(pts, 0.0)
            true = models[d.frame_index].grounds_to_pixels(ground)[:, :2]
            got = np.c_[pts, np.ones(len(pts))] @ np.asarray(d.homography).T
            if np.hypot(*(true - pts).T).mean() > 1.5:
                out.append(float(np.hypot(*(got[:, :2] / got[:, 2:] - true).T).max()))
    return np.array(out)


@pytest.fixture(scope="module")
def slewing(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Seed 301, 8 s: a 47 m/s slew from 4.5 s, after the corners first found have aged 4 s."""
    ts = tmp_path_factory.mktemp("slew") / "a301.ts"
    assert kestrel(["fmv", "synth", str(ts), "--scenario", "aerial", "--seconds", "8", "--targets", "4",
                    "--seed", "301"]) == 0
    return ts


def test_camera_motion_holds_to_the_picture_edges_through_a_slew(slewing: Path) -> None:
    """The MTI's frame-to-frame homography, checked against the clip's exact KLV: through the slew its
    error stays under 0.5 px at p90 everywhere in the picture (measured 0.28). The previous default
    (corners tracked until fewer than half are left, `MtiConfig.sixth_pass`) lets them drift off with
    the view and extrapolates over the side new ground comes in: measured 0.67."""
    new = _registration_errors(slewing, MtiDetector())
    old = _registration_errors(slewing, MtiDetector(MtiConfig.sixth_pass()))
    print("p50, p90, p99 new", np.percentile(new, [50, 90, 99]), "old", np.percentile(old, [50, 90, 99]))
    assert len(new) >= 30 and len(new) == len(old)
    assert np.percentile(new, 90) < 0.5
    assert np.percentile(old, 90) > 0.5  # the check can fail: the previous default does
