"""The scorer itself (`kestrel.ped.score`): a perfect hypothesis scores 1.0, a shifted one scores
what plain arithmetic says it should, don't-care regions, false tracks, time to first report, and
MOTA / IDF1 / ID switches cross-checked against trackeval (a second outside implementation)."""

from __future__ import annotations

import numpy as np
import pytest

from kestrel.ped.records import Track, TrackPoint, TrackState
from kestrel.ped.score import TruthFrame, score

FPS = 30.0


def _truth(n_frames: int = 60, seed: int = 0) -> list[TruthFrame]:
    """Three targets of different sizes moving right; target 3 enters at frame 20."""
    rng = np.random.default_rng(seed)
    sizes = [(20.0, 10.0), (33.0, 14.0), (15.0, 15.0)]
    starts = [(50.0, 60.0), (100.0, 200.0), (300.0, 300.0)]
    out = []
    for i in range(n_frames):
        ids, boxes = [], []
        for k, ((w, h), (x, y)) in enumerate(zip(sizes, starts, strict=True)):
            if k == 2 and i < 20:
                continue
            x0 = x + 2.0 * i + float(rng.uniform(-0.2, 0.2))
            ids.append(k + 1)
            boxes.append([x0, y, x0 + w, y + h])
        b = np.array(boxes, np.float64)
        out.append(TruthFrame(i, i / FPS, ids, b, np.zeros((len(ids), 2)), np.full((len(ids), 2), np.nan)))
    return out


def _tracks_from(truth: list[TruthFrame], shift: float = 0.0, id_of: dict[int, int] | None = None) -> list[Track]:
    tracks: dict[int, Track] = {}
    for tf in truth:
        for gid, box in zip(tf.ids, tf.boxes, strict=True):
            tid = (id_of or {}).get(gid, gid)
            tr = tracks.setdefault(tid, Track(tid, TrackState.CONFIRMED, confirmed_frame=tf.index))
            x1, y1, x2, y2 = (float(v) for v in box)
            tr.points.append(TrackPoint(tf.index, tf.pts, (x1 + shift, y1, x2 + shift, y2), 1.0))
    return list(tracks.values())


def test_perfect_hypothesis_scores_one() -> None:
    truth = _truth()
    s = score(_tracks_from(truth), truth)
    assert (s.precision, s.recall, s.idf1, s.mota) == (1.0, 1.0, 1.0, 1.0)
    assert s.switches == 0 and s.false_tracks == 0 and s.false_positives == 0 and s.misses == 0
    assert s.first_report_s == {1: 0.0, 2: 0.0, 3: 0.0}  # each reported in the frame it came into view
    assert s.reported_late == 0 and s.targets == 3


@pytest.mark.parametrize("shift", [4.0, 7.0, 9.0, 12.0])
def test_shifted_hypothesis_scores_what_it_should(shift: float) -> None:
    """Every box moved `shift` px right. A w-wide box then overlaps its own by IoU (w - s) / (w + s);
    it matches when that is >= 0.3. Expected figures from counting, not from the scorer."""
    truth = _truth()
    n = sum(len(tf.ids) for tf in truth)
    matched = sum(1 for tf in truth for b in tf.boxes
                  if (b[2] - b[0] - shift) / (b[2] - b[0] + shift) >= 0.3)
    s = score(_tracks_from(truth, shift=shift), truth, iou_gate=0.3)
    assert s.recall == pytest.approx(matched / n)
    assert s.precision == pytest.approx(matched / n)
    assert s.mota == pytest.approx(1 - 2 * (n - matched) / n)  # each unmatched box: one miss + one FP
    assert s.idf1 == pytest.approx(matched / n)
    assert s.switches == 0
    # a track that matches in fewer than half its points is a false track
    per_target = {g: [0, 0] for g in (1, 2, 3)}
    for tf in truth:
        for g, b in zip(tf.ids, tf.boxes, strict=True):
            per_target[g][1] += 1
            per_target[g][0] += (b[2] - b[0] - shift) / (b[2] - b[0] + shift) >= 0.3
    assert s.false_tracks == sum(m < 0.5 * k for m, k in per_target.values())


def test_id_swap_false_track_and_late_report() -> None:
    truth = _truth()
    tracks = _tracks_from(truth)
    a, b = tracks[0], tracks[1]  # swap identities half-way: two switches
    half_a = [p for p in a.points if p.frame_index >= 30]
    half_b = [p for p in b.points if p.frame_index >= 30]
    a.points = [p for p in a.points if p.frame_index < 30] + half_b
    b.points = [p for p in b.points if p.frame_index < 30] + half_a
    tracks[2].confirmed_frame = 20 + 9  # target 3 enters at frame 20, its track confirms 9 frames later
    ghost = Track(99, TrackState.CONFIRMED, confirmed_frame=0,
                  points=[TrackPoint(i, i / FPS, (600.0, 400.0, 620.0, 410.0), 1.0) for i in range(40)])
    s = score(tracks + [ghost], truth, delay_frames=6)
    assert s.switches == 2
    assert s.false_tracks == 1 and s.false_track_ids == (99,) and s.false_positives == 40
    assert s.false_tracks_per_min == pytest.approx(1 / (60 / FPS / 60))
    assert s.first_report_s[3] == pytest.approx((9 + 6) / FPS)
    assert s.first_report_s[1] == pytest.approx(6 / FPS)


def test_partly_visible_targets_are_dont_care() -> None:
    truth = _truth(10)
    edge = np.array([[-5.0, 100.0, 15.0, 110.0]])  # a target half out of the picture
    truth = [TruthFrame(tf.index, tf.pts, tf.ids, tf.boxes, tf.ground, tf.motion, edge) for tf in truth]
    on_edge = Track(50, TrackState.CONFIRMED, confirmed_frame=0,
                    points=[TrackPoint(i, i / FPS, (0.0, 100.0, 15.0, 110.0), 1.0) for i in range(10)])
    s = score(_tracks_from(truth) + [on_edge], truth)
    assert s.precision == 1.0 and s.false_positives == 0 and s.false_tracks == 0


def _trackeval(truth: list[TruthFrame], tracks: list[Track], gate: float) -> dict[str, float]:
    from trackeval.metrics import CLEAR, Identity

    from kestrel.ped.score import iou_matrix

    by_frame: dict[int, list[tuple[int, tuple[float, ...]]]] = {}
    for tr in tracks:
        for p in tr.points:
            by_frame.setdefault(p.frame_index, []).append((tr.id, p.xyxy))
    gmap: dict[int, int] = {}
    hmap: dict[int, int] = {}
    data: dict = {"gt_ids": [], "tracker_ids": [], "similarity_scores": []}
    for tf in truth:
        hs = by_frame.get(tf.index, [])
        data["gt_ids"].append(np.array([gmap.setdefault(g, len(gmap)) for g in tf.ids], int))
        data["tracker_ids"].append(np.array([hmap.setdefault(h, len(hmap)) for h, _ in hs], int))
        data["similarity_scores"].append(iou_matrix(tf.boxes, np.array([b for _, b in hs]).reshape(-1, 4)))
    data.update(num_gt_ids=len(gmap), num_tracker_ids=len(hmap), num_timesteps=len(truth),
                num_gt_dets=sum(len(g) for g in data["gt_ids"]),
                num_tracker_dets=sum(len(t) for t in data["tracker_ids"]))
    cfg = {"THRESHOLD": gate, "PRINT_CONFIG": False}
    clear = CLEAR(cfg).eval_sequence(data)
    ident = Identity(cfg).eval_sequence(data)
    return {"MOTA": float(clear["MOTA"]), "IDSW": float(clear["IDSW"]), "IDF1": float(ident["IDF1"]),
            "recall": float(clear["CLR_Re"]), "precision": float(clear["CLR_Pr"])}


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_metrics_agree_with_trackeval(seed: int) -> None:
    """A messy hypothesis (jitter, dropouts, an id swap, a ghost) scored by us (motmetrics) and by
    trackeval's CLEAR and Identity on the same boxes."""
    rng = np.random.default_rng(seed)
    truth = _truth(90, seed)
    tracks = _tracks_from(truth)
    for tr in tracks:
        tr.points = [TrackPoint(p.frame_index, p.pts, tuple(float(v) + float(rng.normal(0, 3)) for v in p.xyxy), 1.0)
                     for p in tr.points if rng.random() > 0.15]  # type: ignore[misc]
    cut = 45
    a, b = tracks[0], tracks[1]
    a.points, b.points = ([p for p in a.points if p.frame_index < cut] + [p for p in b.points if p.frame_index >= cut],
                          [p for p in b.points if p.frame_index < cut] + [p for p in a.points if p.frame_index >= cut])
    tracks.append(Track(77, TrackState.CONFIRMED, points=[
        TrackPoint(i, i / FPS, (400.0, 50.0, 420.0, 60.0), 1.0) for i in range(0, 90, 3)]))
    ours = score(tracks, truth, iou_gate=0.3)
    ref = _trackeval(truth, tracks, 0.3)
    assert ours.mota == pytest.approx(ref["MOTA"], abs=1e-9)
    assert ours.idf1 == pytest.approx(ref["IDF1"], abs=1e-9)
    assert ours.switches == ref["IDSW"]
    assert ours.recall == pytest.approx(ref["recall"], abs=1e-9)
    assert ours.precision == pytest.approx(ref["precision"], abs=1e-9)


def test_cli_score_prints_a_table_and_rejects_missing_and_bad_files(tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    from kestrel.cli import main

    ts, truth = tmp_path / "a.ts", tmp_path / "a.json"
    assert main(["fmv", "synth", str(ts), "--seconds", "1", "--targets", "1", "--seed", "4",
                 "--truth", str(truth)]) == 0
    capsys.readouterr()
    assert main(["ped", "score", str(ts), str(truth)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("| clip | precision | recall | IDF1 | MOTA | IDsw | false_tracks_per_min")
    assert out[2].startswith("| a.ts |")
    assert main(["ped", "score", str(ts), str(tmp_path / "nope.json")]) == 2
    assert "nope.json: no such file" in capsys.readouterr().err
    # a file that is not a truth file: one line naming it, exit 2, before any PED run
    bad, partial = tmp_path / "bad.json", tmp_path / "partial.json"
    bad.write_text("not json")
    partial.write_text('{"frames": [{"index": 0}]}')
    assert main(["ped", "score", str(ts), str(bad)]) == 2
    assert capsys.readouterr().err.strip() == f"kestrel: error: {bad}: not JSON"
    assert main(["ped", "score", str(ts), str(partial)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"kestrel: error: {partial}: not a truth file") and "\n" not in err
    # no frames at all is no truth either; a bad second pair fails before the first pair's run (no table)
    empty = tmp_path / "empty.json"
    empty.write_text('{"frames": []}')
    assert main(["ped", "score", str(ts), str(truth), str(ts), str(empty)]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.strip() == f"kestrel: error: {empty}: not a truth file (no frames)"
