"""Score PED tracks against ground truth (`kestrel fmv synth --truth truth.json`) with outside tools.

CLEAR MOT and identity metrics come from **motmetrics** (`MOTAccumulator` + `metrics.compute`),
HOTA from **trackeval** when it imports. We build the distance matrices ourselves (1 - IoU, NaN
where IoU < `iou_gate`) because motmetrics 1.4's `iou_matrix` calls `np.asfarray`, removed in
NumPy 2. The ground error is the geodesic distance between a matched track point's ground
position and the target's true position, over the pairs motmetrics matched.

Which tracks: every track the tracker confirmed (`PedResult.tracks`), all of its points — the
evaluation plays the analyst who confirms what the tracker confirmed. Truth per frame: targets
whose centre is inside the image (`visible`). Frames the tracker coasted through are not points,
so they count as misses. Cost: O(frames * targets * tracks).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from kestrel.ped.records import Track


@dataclass(slots=True)
class TruthFrame:
    index: int
    pts: float
    ids: list[int]
    boxes: npt.NDArray[np.float64]  # [K, 4] xyxy pixels
    ground: npt.NDArray[np.float64]  # [K, 2] lat, lon
    motion: npt.NDArray[np.float64]  # [K, 2] speed m/s, heading deg (NaN when not given)


def load_truth(path: str | Path) -> list[TruthFrame]:
    doc = json.loads(Path(path).read_text())
    out = []
    for fr in doc["frames"]:
        tg = [t for t in fr["targets"] if t.get("visible", True)]
        out.append(TruthFrame(int(fr["index"]), float(fr["pts"]), [int(t["id"]) for t in tg],
                              np.array([t["box"] for t in tg], np.float64).reshape(-1, 4),
                              np.array([[t["lat"], t["lon"]] for t in tg], np.float64).reshape(-1, 2),
                              np.array([[t.get("speed", np.nan), t.get("heading", np.nan)] for t in tg],
                                       np.float64).reshape(-1, 2)))
    return out


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
    extra: dict[str, Any] = field(default_factory=dict)

    def row(self) -> dict[str, Any]:
        return {
            "MOTA": self.mota, "IDF1": self.idf1, "HOTA": self.hota, "precision": self.precision,
            "recall": self.recall, "IDsw": self.switches, "FP": self.false_positives, "FN": self.misses,
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


def score(tracks: list[Track], truth: list[TruthFrame], *, iou_gate: float = 0.5) -> Score:
    """Score confirmed tracks against truth frames (see module doc)."""
    import motmetrics as mm

    from kestrel.geo.geodesy import distance_bearing

    hyp = _hypotheses(tracks)
    acc = mm.MOTAccumulator(auto_id=False)
    hota_steps: list[tuple[list[int], list[int], npt.NDArray[np.float64]]] = []
    ground_pairs: dict[tuple[int, int, int], tuple[float, float, float, float]] = {}
    motion_pairs: dict[tuple[int, int, int], tuple[float, float, float, float]] = {}
    for tf in truth:
        hs = hyp.get(tf.index, [])
        hids = [h[0] for h in hs]
        hboxes = np.array([h[1] for h in hs], np.float64).reshape(-1, 4)
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


def main(argv: list[str] | None = None) -> int:
    """`python -m kestrel.ped.score CLIP.ts TRUTH.json [...]`: run PED on each clip, print scores."""
    import argparse

    from kestrel.ped.pipeline import run

    ap = argparse.ArgumentParser(prog="python -m kestrel.ped.score", description=main.__doc__)
    ap.add_argument("pairs", nargs="+", help="CLIP.ts TRUTH.json, repeated")
    ap.add_argument("--iou", type=float, default=0.5, help="IoU gate for a match (default 0.5)")
    args = ap.parse_args(argv)
    if len(args.pairs) % 2:
        ap.error("give CLIP.ts TRUTH.json pairs")
    cols = ("MOTA", "IDF1", "HOTA", "precision", "recall", "IDsw", "ground_err_med_m", "speed_err_med_mps",
            "heading_err_med_deg", "tracks")
    print("| clip | " + " | ".join(cols) + " |")
    print("|---" * (len(cols) + 1) + "|")
    for clip, truth in zip(args.pairs[::2], args.pairs[1::2], strict=True):
        row = score(run(clip).tracks, load_truth(truth), iou_gate=args.iou).row()
        cells = [f"{row[c]:.3f}" if isinstance(row[c], float) else str(row[c]) for c in cols]
        print(f"| {Path(clip).name} | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
