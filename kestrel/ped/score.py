"""Score PED tracks against ground truth (`kestrel fmv synth --truth truth.json`) with outside tools.

CLEAR MOT and identity metrics come from **motmetrics** (`MOTAccumulator` + `metrics.compute`),
HOTA from **trackeval** when it imports. We build the distance matrices ourselves (1 - IoU, NaN
where IoU < `iou_gate`) because motmetrics 1.4's `iou_matrix` calls `np.asfarray`, removed in
NumPy 2. The ground error is the geodesic distance between a matched track point's ground
position and the target's true position, over the pairs motmetrics matched.

Which tracks: every track the tracker confirmed (`PedResult.tracks`), all of its points — the
evaluation plays the analyst who confirms what the tracker confirmed. Truth per frame: targets
wholly inside the image (`in_view`; truth files without it: centre inside, `visible`). Targets
partly in the picture are "don't care": a hypothesis on one (IoU >= gate, or half its box inside
it) is neither a match nor a false positive. Frames the tracker coasted through are not points,
so they count as misses. Cost: O(frames * targets * tracks).

Beyond CLEAR/identity: **false tracks** (confirmed tracks with scored points of which fewer than
half match any target), per minute of video; **time to first report** per target: from the first
frame it is wholly in view to the moment a confirmed track first covers it — the later of that
frame and the track's confirmation frame, taken when that frame's result came out of the
pipeline (`PedResult.emitted_at`; else plus the detector's look-ahead `delay_frames`), i.e. when
a live run could have shown it. Never reported: infinite.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from kestrel.errors import BadInput
from kestrel.ped.records import Track


@dataclass(slots=True)
class TruthFrame:
    index: int
    pts: float
    ids: list[int]
    boxes: npt.NDArray[np.float64]  # [K, 4] xyxy pixels
    ground: npt.NDArray[np.float64]  # [K, 2] lat, lon
    motion: npt.NDArray[np.float64]  # [K, 2] speed m/s, heading deg (NaN when not given)
    ignore: npt.NDArray[np.float64] = field(default_factory=lambda: np.zeros((0, 4)))  # [J, 4] partly in view


def load_truth(path: str | Path) -> list[TruthFrame]:
    """The truth frames of a `kestrel fmv synth --truth` file. Raises BadInput (naming the file) for
    anything else: not JSON, or JSON without the frames and targets the generator writes."""
    try:
        frames = _truth_frames(json.loads(Path(path).read_text()))
    except (ValueError, KeyError, TypeError, IndexError) as exc:
        what = "not JSON" if isinstance(exc, json.JSONDecodeError) else f"not a truth file ({type(exc).__name__}: {exc})"
        raise BadInput(f"{path}: {what}") from exc
    if not frames:
        raise BadInput(f"{path}: not a truth file (no frames)")
    return frames


def _truth_frames(doc: Any) -> list[TruthFrame]:
    out = []
    for fr in doc["frames"]:
        tg, ign = [], []
        for t in fr["targets"]:
            counted = t["in_view"] if "in_view" in t else t.get("visible", True)
            if counted:
                tg.append(t)
            elif "in_view" in t and _touches(t["box"], doc["scenario"]):
                ign.append(t["box"])
        out.append(TruthFrame(int(fr["index"]), float(fr["pts"]), [int(t["id"]) for t in tg],
                              np.array([t["box"] for t in tg], np.float64).reshape(-1, 4),
                              np.array([[t["lat"], t["lon"]] for t in tg], np.float64).reshape(-1, 2),
                              np.array([[t.get("speed", np.nan), t.get("heading", np.nan)] for t in tg],
                                       np.float64).reshape(-1, 2),
                              np.array(ign, np.float64).reshape(-1, 4)))
    return out


def _touches(box: list[float], scenario: dict[str, Any]) -> bool:
    """Does the box overlap the image at all?"""
    w, h = scenario.get("width", 0), scenario.get("height", 0)
    return bool(box[2] > 0 and box[3] > 0 and box[0] < w and box[1] < h)


def iou_matrix(a: npt.NDArray[Any], b: npt.NDArray[Any]) -> npt.NDArray[np.float64]:
    """IoU between xyxy boxes a [N, 4] and b [M, 4] -> [N, M]."""
    a = np.asarray(a, np.float64).reshape(-1, 4)
    b = np.asarray(b, np.float64).reshape(-1, 4)
    x1 = np.maximum(a[:, None, 0], b[None, :, 0])
    y1 = np.maximum(a[:, None, 1], b[None, :, 1])
    x2 = np.minimum(a[:, None, 2], b[None, :, 2])
    y2 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = area_a[:, None] + area_b[None, :] - inter
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, inter / union, 0.0)


@dataclass(slots=True)
class Score:
    mota: float
    idf1: float
    precision: float
    recall: float
    motp_iou: float  # mean IoU of matched pairs
    switches: int
    false_positives: int
    misses: int
    matches: int
    hota: float | None = None
    ground_error_median_m: float | None = None
    ground_error_p90_m: float | None = None
    speed_error_median_mps: float | None = None  # |track speed - true speed| over matched points
    heading_error_median_deg: float | None = None
    tracks: int = 0
    targets: int = 0
    false_tracks: int = 0
    false_track_ids: tuple[int, ...] = ()  # ... which they are (track ids, ascending)
    minutes: float = 0.0  # video scored
    first_report_s: dict[int, float] = field(default_factory=dict)  # target id -> s (inf: never)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def false_tracks_per_min(self) -> float:
        return self.false_tracks / self.minutes if self.minutes > 0 else 0.0

    @property
    def first_report_median_s(self) -> float:
        v = list(self.first_report_s.values())
        return float(np.median(v)) if v else 0.0

    @property
    def first_report_max_s(self) -> float:
        return max(self.first_report_s.values(), default=0.0)

    @property
    def reported_late(self) -> int:
        """Targets reported more than 0.5 s after coming into view, or never."""
        return sum(v > 0.5 for v in self.first_report_s.values())

    def row(self) -> dict[str, Any]:
        return {
            "MOTA": self.mota, "IDF1": self.idf1, "HOTA": self.hota, "precision": self.precision,
            "recall": self.recall, "IDsw": self.switches, "FP": self.false_positives, "FN": self.misses,
            "false_tracks": self.false_tracks, "false_tracks_per_min": self.false_tracks_per_min,
            "ttfr_med_s": self.first_report_median_s, "ttfr_max_s": self.first_report_max_s,
            "late_targets": self.reported_late,
            "ground_err_med_m": self.ground_error_median_m, "ground_err_p90_m": self.ground_error_p90_m,
            "speed_err_med_mps": self.speed_error_median_mps, "heading_err_med_deg": self.heading_error_median_deg,
            "tracks": self.tracks, "targets": self.targets,
        }


def _hypotheses(tracks: list[Track]) -> dict[int, list[Any]]:
    """frame -> [(track id, xyxy, lat, lon, speed, heading)] of every track point."""
    by_frame: dict[int, list[Any]] = {}
    for tr in tracks:
        for p in tr.points:
            by_frame.setdefault(p.frame_index, []).append((tr.id, p.xyxy, p.lat, p.lon, p.speed_mps, p.heading_deg))
    return by_frame


def _not_ignored(tf: TruthFrame, hboxes: npt.NDArray[np.float64], iou_gate: float) -> npt.NDArray[np.bool_]:
    """Hypotheses to score: all but those on a partly visible target (and on no counted one)."""
    keep = np.ones(len(hboxes), bool)
    if len(tf.ignore) == 0 or len(hboxes) == 0:
        return keep
    on_counted = (iou_matrix(tf.boxes, hboxes) >= iou_gate).any(axis=0) if len(tf.boxes) else keep & False
    a = np.asarray(hboxes, np.float64)
    g = tf.ignore
    ix = np.clip(np.minimum(a[:, None, 2], g[None, :, 2]) - np.maximum(a[:, None, 0], g[None, :, 0]), 0, None)
    iy = np.clip(np.minimum(a[:, None, 3], g[None, :, 3]) - np.maximum(a[:, None, 1], g[None, :, 1]), 0, None)
    area = np.maximum((a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1]), 1e-9)
    inside = ((ix * iy) / area[:, None] >= 0.5).any(axis=1) | (iou_matrix(a, g) >= iou_gate).any(axis=1)
    return on_counted | ~inside


def score(tracks: list[Track], truth: list[TruthFrame], *, iou_gate: float = 0.3,
          delay_frames: int = 0, emitted_at: dict[int, int] | None = None) -> Score:
    """Score confirmed tracks against truth frames (see module doc). `emitted_at` (frame ->
    newest frame when its result came out, `PedResult.emitted_at`) overrides `delay_frames`."""
    import motmetrics as mm

    from kestrel.geo.geodesy import distance_bearing

    hyp = _hypotheses(tracks)
    acc = mm.MOTAccumulator(auto_id=False)
    hota_steps: list[tuple[list[int], list[int], npt.NDArray[np.float64]]] = []
    ground_pairs: dict[tuple[int, int, int], tuple[float, float, float, float]] = {}
    motion_pairs: dict[tuple[int, int, int], tuple[float, float, float, float]] = {}
    scored: dict[int, int] = {}  # track id -> scored points
    for tf in truth:
        hs = hyp.get(tf.index, [])
        hboxes = np.array([h[1] for h in hs], np.float64).reshape(-1, 4)
        keep = _not_ignored(tf, hboxes, iou_gate)
        hs = [h for h, k in zip(hs, keep, strict=True) if k]
        hboxes = hboxes[keep]
        hids = [h[0] for h in hs]
        for hid in hids:
            scored[hid] = scored.get(hid, 0) + 1
        iou = iou_matrix(tf.boxes, hboxes)
        dist = np.where(iou >= iou_gate, 1.0 - iou, np.nan)
        acc.update(tf.ids, hids, dist, frameid=tf.index)
        hota_steps.append((tf.ids, hids, iou))
        for gi, gid in enumerate(tf.ids):
            for hi, h in enumerate(hs):
                if h[2] is not None and h[3] is not None:
                    ground_pairs[(tf.index, gid, hids[hi])] = (tf.ground[gi, 0], tf.ground[gi, 1], h[2], h[3])
                if h[4] is not None and h[5] is not None:
                    motion_pairs[(tf.index, gid, hids[hi])] = (tf.motion[gi, 0], tf.motion[gi, 1], h[4], h[5])
    mh = mm.metrics.create()
    names = ["mota", "idf1", "precision", "recall", "motp", "num_switches", "num_false_positives",
             "num_misses", "num_matches"]
    summ = mh.compute(acc, metrics=names, name="run")
    r = {k: float(summ[k].iloc[0]) for k in names}
    # ground error over the matched pairs, exactly as motmetrics matched them
    ev = acc.mot_events
    m = ev[ev["Type"].isin(["MATCH", "SWITCH", "TRANSFER", "ASCEND", "MIGRATE"])]
    errs = []
    speed_errs, heading_errs = [], []
    for (frame, _e), row in m.iterrows():
        key = (int(frame), int(row["OId"]), int(row["HId"]))
        if key in motion_pairs:
            ts, th, hs_, hh = motion_pairs[key]
            if np.isfinite(ts):
                speed_errs.append(abs(hs_ - ts))
            if np.isfinite(th):
                heading_errs.append(abs((hh - th + 180.0) % 360.0 - 180.0))
        if key in ground_pairs:
            lat1, lon1, lat2, lon2 = ground_pairs[key]
            d, _b = distance_bearing(lat1, lon1, lat2, lon2)
            errs.append(float(d))
    matched: dict[int, int] = {}
    pts_of = {tf.index: tf.pts for tf in truth}
    dt = float(np.median(np.diff([tf.pts for tf in truth]))) if len(truth) > 1 else 0.0
    confirm_frame = {tr.id: (tr.confirmed_frame if tr.confirmed_frame is not None
                             else (tr.points[0].frame_index if tr.points else 0)) for tr in tracks}
    first_seen: dict[int, float] = {}
    for tf in truth:
        for g in tf.ids:
            first_seen.setdefault(g, tf.pts)
    reported: dict[int, float] = {}
    for (frame, _e), row in m.iterrows():
        hid, oid = int(row["HId"]), int(row["OId"])
        matched[hid] = matched.get(hid, 0) + 1
        shown = max(int(frame), confirm_frame.get(hid, int(frame)))
        if emitted_at is not None:
            at = pts_of.get(emitted_at.get(shown, shown), shown * dt)
        else:
            at = pts_of.get(shown, shown * dt) + delay_frames * dt
        reported[oid] = min(reported.get(oid, float("inf")), at)
    first_report = {g: reported.get(g, float("inf")) - t0 for g, t0 in first_seen.items()}
    false_ids = tuple(sorted(hid for hid, n in scored.items() if matched.get(hid, 0) < 0.5 * n))
    minutes = (len(truth) * dt) / 60.0 if truth else 0.0
    nan = float("nan")
    return Score(
        mota=r["mota"], idf1=r["idf1"], precision=r["precision"] if np.isfinite(r["precision"]) else 0.0,
        recall=r["recall"], motp_iou=1.0 - r["motp"] if np.isfinite(r["motp"]) else nan,
        switches=int(r["num_switches"]), false_positives=int(r["num_false_positives"]),
        misses=int(r["num_misses"]), matches=int(r["num_matches"]), hota=hota(hota_steps),
        ground_error_median_m=float(np.median(errs)) if errs else None,
        ground_error_p90_m=float(np.percentile(errs, 90)) if errs else None,
        speed_error_median_mps=float(np.median(speed_errs)) if speed_errs else None,
        heading_error_median_deg=float(np.median(heading_errs)) if heading_errs else None,
        tracks=len(tracks), targets=len({g for tf in truth for g in tf.ids}),
        false_tracks=len(false_ids), false_track_ids=false_ids, minutes=minutes, first_report_s=first_report,
    )


def hota(steps: list[tuple[list[int], list[int], npt.NDArray[np.float64]]]) -> float | None:
    """HOTA (averaged over its alpha thresholds) by trackeval, from per-frame ids and IoU; None if
    trackeval is not installed."""
    try:
        from trackeval.metrics import HOTA
    except Exception:  # optional outside tool
        return None
    gt_map: dict[int, int] = {}
    tr_map: dict[int, int] = {}
    data: dict[str, Any] = {"gt_ids": [], "tracker_ids": [], "similarity_scores": []}
    for gids, hids, iou in steps:
        data["gt_ids"].append(np.array([gt_map.setdefault(g, len(gt_map)) for g in gids], int))
        data["tracker_ids"].append(np.array([tr_map.setdefault(h, len(tr_map)) for h in hids], int))
        data["similarity_scores"].append(np.asarray(iou, float).reshape(len(gids), len(hids)))
    data["num_gt_ids"], data["num_tracker_ids"] = len(gt_map), len(tr_map)
    data["num_gt_dets"] = int(sum(len(g) for g in data["gt_ids"]))
    data["num_tracker_dets"] = int(sum(len(t) for t in data["tracker_ids"]))
    data["num_timesteps"] = len(steps)
    res = HOTA().eval_sequence(data)
    return float(np.mean(res["HOTA"]))


COLUMNS = ("precision", "recall", "IDF1", "MOTA", "IDsw", "false_tracks_per_min", "ttfr_med_s", "ttfr_max_s",
           "late_targets", "ground_err_med_m", "tracks", "targets")


def score_clip(clip: str | Path, truth: str | Path | list[TruthFrame], *, detector: str = "mti", iou_gate: float = 0.3) -> tuple[Score, Any]:
    """Run PED on a clip and score it against `truth` (a truth file, or its frames): (Score, PedResult)."""
    from kestrel.ped.pipeline import run

    gt = load_truth(truth) if isinstance(truth, str | Path) else truth  # a bad file fails before the run
    res = run(clip, detector=detector)
    return score(res.tracks, gt, iou_gate=iou_gate, delay_frames=res.delay_frames, emitted_at=res.emitted_at), res


def format_row(name: str, s: Score, cols: tuple[str, ...] = COLUMNS) -> str:
    row = s.row()
    cells = [f"{row[c]:.3f}" if isinstance(row[c], float) else ("-" if row[c] is None else str(row[c])) for c in cols]
    return f"| {name} | " + " | ".join(cells) + " |"


def main(argv: list[str] | None = None) -> int:
    """`python -m kestrel.ped.score CLIP.ts TRUTH.json [...]` (also `kestrel ped score`): run PED on
    each clip, print one table row per clip."""
    import argparse

    ap = argparse.ArgumentParser(prog="kestrel ped score", description=main.__doc__)
    add_arguments(ap)
    return run_cli(ap.parse_args(argv), ap.error)


def add_arguments(ap: Any) -> None:
    ap.add_argument("pairs", nargs="+", help="CLIP.ts TRUTH.json, repeated (truth from `kestrel fmv synth --truth`)")
    ap.add_argument("--iou", type=float, default=0.3, help="IoU gate for a match (default 0.3)")
    ap.add_argument("--detector", default="mti", help="mti (default) or mti-v1 (the previous MTI + tracker)")
    ap.add_argument("--json", action="store_true", help="one JSON object per clip instead of a table")


def run_cli(args: Any, error: Any) -> int:
    if len(args.pairs) % 2:
        error("give CLIP.ts TRUTH.json pairs")
    truths = [load_truth(t) for t in args.pairs[1::2]]  # every truth file read before any PED run
    if not args.json:
        print("| clip | " + " | ".join(COLUMNS) + " |")
        print("|---" * (len(COLUMNS) + 1) + "|")
    for clip, truth in zip(args.pairs[::2], truths, strict=True):
        s, res = score_clip(clip, truth, detector=args.detector, iou_gate=args.iou)
        if args.json:
            print(json.dumps({"clip": str(clip), **s.row(), "fps": res.fps["end_to_end"],
                              "first_report_s": {str(k): v for k, v in s.first_report_s.items()}}))
        else:
            print(format_row(Path(clip).name, s))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
