"""PED tracker quality: the previous tracker (`TrackerConfig.previous()`), the defaults after earlier
passes (`TrackerConfig.third_pass()` ... `seventh_pass()`) beside the current default, behind the same
detector (MTI) on the same clips, in the same run.

One command:  .venv/bin/python bench/ped_track.py [--aerial-seconds 8] [--seeds 4] [--keep DIR]
              [--trackers previous,pass3,pass4,new] [--aerial-seeds 301-306,11-20] [--scenarios aerial]
              [--why]

For each scenario (aerial: real aerial texture, traffic entering/leaving, stops, turns, passes;
crossing; orbit) and seed it writes a `kestrel fmv synth` clip once, runs the default MTI detector
on it once (its output kept beside the clip, `<clip>.det.pkl`, and reused while the clip is), then
`kestrel.ped.pipeline.run` once per tracker with that recorded output replayed (`Recorded`: the
same boxes for every tracker, decoded pictures and sensor models as in a real run; the detector
is deterministic on a non-live run, so this is the run the tracker would get) and scores each
with `kestrel.ped.score` (box IoU >= 0.3, targets wholly in view). Aerial clips longer than 8 s
get one vehicle per 2.5 s (at least 4). `--why` prints one line per false track (see `explain`). Prints per-clip rows, then the
medians per scenario as previous / new, and the tracker stage's CPU cost per frame. The issue-9
floors (precision, recall >= 0.9, IDF1 >= 0.8, <= 1 false track per minute, reported within 0.5 s)
are printed beside the aerial medians. `bench/ped.py --quality` compares detectors (mti-v1 with
the previous tracker vs mti with the new one); this one isolates the tracker.
"""

from __future__ import annotations

import argparse
import copy
import pickle
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ped import QUALITY as COLS  # noqa: E402
from ped import SCENARIOS, _fmt, scenario_clip, seeds  # noqa: E402

FLOORS = {"precision": ">= 0.9", "recall": ">= 0.9", "IDF1": ">= 0.8", "false_tracks_per_min": "<= 1",
          "ttfr_med_s": "<= 0.5"}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--aerial-seconds", type=float, default=8.0)
    ap.add_argument("--seeds", type=int, default=4, help="aerial clips (crossing and orbit: 2 each)")
    ap.add_argument("--keep", help="directory for the clips (default: a temporary one)")
    ap.add_argument("--trackers", default="previous,pass3,pass4,new", help="comma-separated subset of " + ",".join(TRACKERS))
    ap.add_argument("--aerial-seeds", help="aerial seeds instead of --seeds from 301, e.g. 301-306,11-20")
    ap.add_argument("--scenarios", help="comma-separated subset of " + ",".join(SCENARIOS))
    ap.add_argument("--why", action="store_true", help="one line per false track (what it sat on)")
    args = ap.parse_args()
    names = args.trackers.split(",")
    for x in names:
        if x not in TRACKERS:
            ap.error(f"--trackers: unknown tracker {x!r} (choose from {', '.join(TRACKERS)})")
    scen = args.scenarios.split(",") if args.scenarios else list(SCENARIOS)
    for x in scen:
        if x not in SCENARIOS:
            ap.error(f"--scenarios: unknown scenario {x!r} (choose from {', '.join(SCENARIOS)})")
    try:
        aerial = seeds(args.aerial_seeds) if args.aerial_seeds else list(range(301, 301 + args.seeds))
    except ValueError:
        ap.error(f"--aerial-seeds: want e.g. 301-306,11 (got {args.aerial_seeds!r})")
    scratch = None if args.keep else tempfile.TemporaryDirectory(prefix="ped-track-bench-")
    tmp = Path(args.keep) if args.keep else Path(scratch.name)  # type: ignore[union-attr]
    tmp.mkdir(parents=True, exist_ok=True)
    try:
        return _run(tmp, args.aerial_seconds, aerial, names, scen, args.why)
    finally:
        if scratch is not None:
            scratch.cleanup()


# previous: before issue 9; pass3: the default before its fourth pass (vehicle floor, late pictures); pass4:
# the default before back-fill (`TrackerConfig.fourth_pass()`); pass5: before border births
# (`TrackerConfig.fifth_pass()`); pass6: before corners in the motion test (`sixth_pass()`); pass7: holds
# on other tracks' detections too (`seventh_pass()`); new: the default; burst: the default
# with the opt-in burst rule (`TrackerConfig(burst_births=4)`)
TRACKERS = ("previous", "pass3", "pass4", "pass5", "pass6", "pass7", "new", "burst")


class Recorded:
    """A detector that returns, call by call, what the real one returned on the same clip
    (`record`): copies, so every tracker replayed gets the boxes untouched."""

    finds_movers = True

    def __init__(self, path: Path) -> None:
        doc = pickle.loads(path.read_bytes())
        self.delay, self.registration_failures = doc["delay"], doc["registration_failures"]
        self._calls: list[list[Any]] = doc["calls"]
        self._flush: list[Any] = doc["flush"]
        self._i = 0

    def detect(self, frame: Any, sensor: Any = None) -> list[Any]:
        self._i += 1
        return copy.deepcopy(self._calls[self._i - 1])

    def flush(self) -> list[Any]:
        return copy.deepcopy(self._flush)


class _Recorder:
    """Wraps the real detector and keeps a copy of each call's output (before the tracker tags it)."""

    finds_movers = True

    def __init__(self, det: Any) -> None:
        self.det, self.calls, self.last = det, [], []  # type: ignore[var-annotated]
        self.delay = det.delay

    @property
    def registration_failures(self) -> int:
        return int(getattr(self.det, "registration_failures", 0))

    def detect(self, frame: Any, sensor: Any = None) -> list[Any]:
        out = self.det.detect(frame, sensor)
        self.calls.append(copy.deepcopy(out))
        self.delay = self.det.delay
        return out

    def flush(self) -> list[Any]:
        out = self.det.flush()
        self.last = copy.deepcopy(out)
        return out


def record(clip: Path) -> Path:
    """Run the default detector on `clip` once (tracker: the default) and keep its output beside the
    clip (`<clip>.det.pkl`, redone when the clip is newer)."""
    from kestrel.ped.detect import make_detector
    from kestrel.ped.pipeline import run

    out = clip.with_suffix(".det.pkl")
    if out.exists() and out.stat().st_mtime >= clip.stat().st_mtime:
        return out
    rec = _Recorder(make_detector("mti"))
    run(clip, detector=rec)  # type: ignore[arg-type]
    out.write_bytes(pickle.dumps({"delay": rec.delay, "registration_failures": rec.registration_failures,
                                  "calls": rec.calls, "flush": rec.last}))
    return out


def replay(clip: Path, cfg: Any) -> Any:
    """`kestrel.ped.pipeline.run` of `clip` with tracker `cfg`, the detector's recorded output replayed."""
    from kestrel.ped.pipeline import run

    return run(clip, detector=Recorded(record(clip)), tracker=cfg)  # type: ignore[arg-type]


def explain(tracks: list[Any], truth: list[Any], ids: set[int]) -> list[str]:
    """One line per track in `ids`: frames, its box size, how far its box moved in the picture
    and on the ground, and the best IoU any target's box had with it (median over its points)."""
    from kestrel.ped.score import iou_matrix

    by = {tf.index: tf for tf in truth}
    lines = []
    for tr in tracks:
        if tr.id not in ids:
            continue
        pts = tr.points
        xy = np.array([p.xyxy for p in pts], np.float64)
        c = (xy[:, :2] + xy[:, 2:]) / 2
        ious = [float(iou_matrix(by[p.frame_index].boxes, np.array([p.xyxy])).max(initial=0.0))
                for p in pts if p.frame_index in by and len(by[p.frame_index].boxes)]
        held = sum(p.held for p in pts)
        gm = "?"
        if pts[0].lat is not None and pts[-1].lat is not None:
            from kestrel.geo.geodesy import distance_bearing

            gm = f"{distance_bearing(pts[0].lat, pts[0].lon, pts[-1].lat, pts[-1].lon)[0]:.1f} m"
        lines.append(f"track {tr.id}: frames {pts[0].frame_index}-{pts[-1].frame_index} ({len(pts)} points, "
                     f"{held} held), confirmed at {tr.confirmed_frame}, box {np.median(xy[:, 2] - xy[:, 0]):.0f}x"
                     f"{np.median(xy[:, 3] - xy[:, 1]):.0f} px, centre {c[0].round()} -> {c[-1].round()}, "
                     f"ground {gm}, target IoU median {np.median(ious) if ious else 0.0:.2f}")
    return lines


def _run(tmp: Path, aerial_s: float, aerial: list[int], names: list[str], scenarios: list[str], why: bool) -> int:
    from kestrel.ped.score import score
    from kestrel.ped.track import TrackerConfig

    every = {"previous": TrackerConfig.previous(), "pass3": TrackerConfig.third_pass(),
             "pass4": TrackerConfig.fourth_pass(), "pass5": TrackerConfig.fifth_pass(),
             "pass6": TrackerConfig.sixth_pass(), "pass7": TrackerConfig.seventh_pass(), "new": TrackerConfig(),
             "burst": TrackerConfig(burst_births=4)}
    trackers = {n: every[n] for n in names}
    print("\nPED tracker quality (MTI detector both times; box IoU >= 0.3, targets wholly in view)")
    head = ("scenario", "clip", "tracker", *COLS, "track ms/frame")
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    summary: dict[tuple[str, str], list[dict[str, Any]]] = {}
    notes: list[str] = []
    for name in scenarios:
        seed0 = SCENARIOS[name][3]
        for seed in (aerial if name == "aerial" else range(seed0, seed0 + 2)):
            clip, gt = scenario_clip(tmp, name, seed, aerial_s, aerial_targets=4 if aerial_s <= 8 else None)
            for tname, cfg in trackers.items():
                res = replay(clip, cfg)
                s = score(res.tracks, gt, delay_frames=res.delay_frames, emitted_at=res.emitted_at)
                row = {**s.row(), "track_ms": 1000.0 * res.seconds["track"] / max(res.frames, 1)}
                summary.setdefault((name, tname), []).append(row)
                print("| " + " | ".join([name, str(seed), tname] + [_fmt(row[c]) for c in (*COLS, "track_ms")]) + " |")
                if why and s.false_tracks:
                    notes += [f"{name} {seed} {tname}: {x}" for x in explain(res.tracks, gt, set(s.false_track_ids))]
    med = statistics.median
    print("\nMedians per scenario (" + " / ".join(trackers) + "):")
    print("| scenario | " + " | ".join(COLS) + " | track ms/frame |")
    print("|" + "---|" * (len(COLS) + 2))
    for name in scenarios:
        rows = [summary[(name, tname)] for tname in trackers]
        cells = [" / ".join(_fmt(med([r[c] for r in rs])) for rs in rows) for c in (*COLS, "track_ms")]
        print(f"| {name} | " + " | ".join(cells) + " |")
    print("| issue-9 floor | " + " | ".join(FLOORS.get(c, "") for c in COLS) + " | |")
    worst = {"precision": min, "recall": min, "IDF1": min, "false_tracks_per_min": max}  # the floors hold per clip
    if "aerial" not in scenarios:
        return 0
    falses = " / ".join(str(sum(r["false_tracks"] for r in summary[("aerial", t)])) for t in trackers)
    print(f"\nFalse tracks over the {len(aerial)} aerial clips ({' / '.join(trackers)}): {falses}")
    for line in notes:
        print(line)
    print("\nWorst aerial clip (" + " / ".join(trackers) + "): " + ", ".join(
        f"{c} {' / '.join(_fmt(f(r[c] for r in summary[('aerial', tname)])) for tname in trackers)}"
        for c, f in worst.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
