"""PED tracker quality: the previous tracker (`TrackerConfig.previous()`), the third- and fourth-pass
defaults (`TrackerConfig.third_pass()`, `fourth_pass()`) beside the current default, behind the same
detector (MTI) on the same clips, in the same run.

One command:  .venv/bin/python bench/ped_track.py [--aerial-seconds 8] [--seeds 4] [--keep DIR]
              [--trackers previous,pass3,pass4,new]

For each scenario (aerial: real aerial texture, traffic entering/leaving, stops, turns, passes;
crossing; orbit) and seed it writes a `kestrel fmv synth` clip once, runs `kestrel.ped.pipeline.run`
once per tracker (detector the default MTI each time) and scores each with
`kestrel.ped.score` (box IoU >= 0.3, targets wholly in view). Prints per-clip rows, then the
medians per scenario as previous / new, and the tracker stage's CPU cost per frame. The issue-9
floors (precision, recall >= 0.9, IDF1 >= 0.8, <= 1 false track per minute, reported within 0.5 s)
are printed beside the aerial medians. `bench/ped.py --quality` compares detectors (mti-v1 with
the previous tracker vs mti with the new one); this one isolates the tracker.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ped import QUALITY as COLS  # noqa: E402
from ped import SCENARIOS, _fmt, scenario_clip  # noqa: E402

FLOORS = {"precision": ">= 0.9", "recall": ">= 0.9", "IDF1": ">= 0.8", "false_tracks_per_min": "<= 1",
          "ttfr_med_s": "<= 0.5"}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--aerial-seconds", type=float, default=8.0)
    ap.add_argument("--seeds", type=int, default=4, help="aerial clips (crossing and orbit: 2 each)")
    ap.add_argument("--keep", help="directory for the clips (default: a temporary one)")
    ap.add_argument("--trackers", default="previous,pass3,pass4,new", help="comma-separated subset of " + ",".join(TRACKERS))
    args = ap.parse_args()
    names = args.trackers.split(",")
    for x in names:
        if x not in TRACKERS:
            ap.error(f"--trackers: unknown tracker {x!r} (choose from {', '.join(TRACKERS)})")
    scratch = None if args.keep else tempfile.TemporaryDirectory(prefix="ped-track-bench-")
    tmp = Path(args.keep) if args.keep else Path(scratch.name)  # type: ignore[union-attr]
    tmp.mkdir(parents=True, exist_ok=True)
    try:
        return _run(tmp, args.aerial_seconds, args.seeds, names)
    finally:
        if scratch is not None:
            scratch.cleanup()


# previous: before issue 9; pass3: the default before its fourth pass (vehicle floor, late pictures); pass4:
# the default before back-fill (`TrackerConfig.fourth_pass()`); new: the default
TRACKERS = ("previous", "pass3", "pass4", "new")


def _run(tmp: Path, aerial_s: float, seeds: int, names: list[str]) -> int:
    from kestrel.ped.pipeline import run
    from kestrel.ped.score import score
    from kestrel.ped.track import TrackerConfig

    every = {"previous": TrackerConfig.previous(), "pass3": TrackerConfig.third_pass(),
             "pass4": TrackerConfig.fourth_pass(), "new": TrackerConfig()}
    trackers = {n: every[n] for n in names}
    print("\nPED tracker quality (MTI detector both times; box IoU >= 0.3, targets wholly in view)")
    head = ("scenario", "clip", "tracker", *COLS, "track ms/frame")
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    summary: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for name, (_scen, _secs, _targets, seed0) in SCENARIOS.items():
        for seed in range(seed0, seed0 + (seeds if name == "aerial" else 2)):
            clip, gt = scenario_clip(tmp, name, seed, aerial_s, aerial_targets=4)
            for tname, cfg in trackers.items():
                res = run(clip, tracker=cfg)
                s = score(res.tracks, gt, delay_frames=res.delay_frames, emitted_at=res.emitted_at)
                row = {**s.row(), "track_ms": 1000.0 * res.seconds["track"] / max(res.frames, 1)}
                summary.setdefault((name, tname), []).append(row)
                print("| " + " | ".join([name, str(seed), tname] + [_fmt(row[c]) for c in (*COLS, "track_ms")]) + " |")
    med = statistics.median
    print("\nMedians per scenario (" + " / ".join(trackers) + "):")
    print("| scenario | " + " | ".join(COLS) + " | track ms/frame |")
    print("|" + "---|" * (len(COLS) + 2))
    for name in SCENARIOS:
        rows = [summary[(name, tname)] for tname in trackers]
        cells = [" / ".join(_fmt(med([r[c] for r in rs])) for rs in rows) for c in (*COLS, "track_ms")]
        print(f"| {name} | " + " | ".join(cells) + " |")
    print("| issue-9 floor | " + " | ".join(FLOORS.get(c, "") for c in COLS) + " | |")
    worst = {"precision": min, "recall": min, "IDF1": min, "false_tracks_per_min": max}  # the floors hold per clip
    print("\nWorst aerial clip (" + " / ".join(trackers) + "): " + ", ".join(
        f"{c} {' / '.join(_fmt(f(r[c] for r in summary[('aerial', tname)])) for tname in trackers)}"
        for c, f in worst.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
