"""PED throughput and quality: frames/s per stage and end to end (MTI), against decode-only as
the baseline; precision/recall/IDF1/... per scenario, the new detector beside the previous ones
on the same clips in the same run: `mti-v1` (before issue 9), `mti-prev` (the default before
the far reference and the shorter pairs, `MtiConfig.before_far()`) and `mti-2p` (the default after
that second pass, before the third: `MtiConfig.second_pass()`).

One command:  .venv/bin/python bench/ped.py [--seconds 8] [--repeats 3] [--keep DIR]
              .venv/bin/python bench/ped.py --quality [--aerial-seconds 20] [--seeds 3] [--keep DIR]

For each size (720x480 and 1280x720) it writes a `kestrel fmv synth` clip once, then alternates,
`--repeats` times: a decode-only pass (kestrel.fmv.ingest.read_frames: demux + KLV + decode to
BGR, nothing else: the baseline, what the pipeline cannot beat) and a full `kestrel.ped.pipeline.run`
(decode in its thread, detect, geolocate, track), the previous default (`mti-2p`) and the default
detector with the tracker before back-fill (`TrackerConfig.fourth_pass()`) the same way.
Prints medians, the ratio end-to-end / decode and new / previous default.
Per-stage rates are frames / seconds spent in that stage (decode is measured inside its own
thread, so it overlaps the others; end to end = frames / wall time).
Floors (2-core machine, MTI): >= 60 fps end to end at 720x480, >= 30 fps at 1280x720.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

FLOORS = {(720, 480): 60.0, (1280, 720): 30.0}


def decode_only(path: Path) -> float:
    from kestrel.fmv.ingest import read_frames

    t0 = time.perf_counter()
    n = 0
    for _frame in read_frames(str(path)):
        n += 1
    return n / (time.perf_counter() - t0)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=8.0)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--keep", help="directory for the clips (default: a temporary one)")
    ap.add_argument("--quality", action="store_true", help="quality per scenario, previous vs new detector")
    ap.add_argument("--aerial-seconds", type=float, default=20.0)
    ap.add_argument("--seeds", type=int, default=3, help="clips per scenario")
    ap.add_argument("--aerial-seeds", help="aerial seeds instead of --seeds from 301, e.g. 311-313 (--quality)")
    ap.add_argument("--scenarios", help="comma-separated subset of " + ",".join(SCENARIOS) + " (--quality)")
    ap.add_argument("--detectors", help="comma-separated, default " + ",".join(DETECTORS) +
                    "; also " + ",".join(p for p in PRESETS if p not in DETECTORS) + " (--quality)")
    args = ap.parse_args()
    scratch = None if args.keep else tempfile.TemporaryDirectory(prefix="ped-bench-")
    tmp = Path(args.keep) if args.keep else Path(scratch.name)  # type: ignore[union-attr]
    tmp.mkdir(parents=True, exist_ok=True)
    try:
        if args.quality:
            scen = args.scenarios.split(",") if args.scenarios else None
            dets = args.detectors.split(",") if args.detectors else None
            for x in scen or []:
                if x not in SCENARIOS:
                    ap.error(f"--scenarios: unknown scenario {x!r} (choose from {', '.join(SCENARIOS)})")
            for x in dets or []:
                if x not in DETECTORS and x not in PRESETS:
                    ap.error(f"--detectors: unknown detector {x!r}")
            try:
                aerial = seeds(args.aerial_seeds) if args.aerial_seeds else None
            except ValueError:
                ap.error(f"--aerial-seeds: want e.g. 301-306,11 (got {args.aerial_seeds!r})")
            return _quality(tmp, args.aerial_seconds, args.seeds, scen, dets, aerial)
        return _measure(tmp, args.seconds, args.repeats)
    finally:
        if scratch is not None:
            scratch.cleanup()


def _measure(tmp: Path, seconds: float, repeats: int) -> int:
    from kestrel.fmv.synth import Scenario, synthesize
    from kestrel.ped.detect.mti import MtiConfig, MtiDetector
    from kestrel.ped.pipeline import run
    from kestrel.ped.track import TrackerConfig

    rows = []
    ok = True
    for (w, h), floor in FLOORS.items():
        clip = tmp / f"bench_{w}x{h}.ts"
        if not clip.exists():
            synthesize(clip, Scenario(seconds=seconds, width=w, height=h, targets=4, seed=7))
        dec: list[float] = []
        e2e: list[float] = []
        prev: list[float] = []  # the previous default (MtiConfig.second_pass()), same clip
        pass4: list[float] = []  # the default detector with the tracker before back-fill (TrackerConfig.fourth_pass())
        stages: dict[str, list[float]] = {"decode": [], "detect": [], "geolocate": [], "track": []}
        tracks = 0
        for _ in range(repeats):
            dec.append(decode_only(clip))
            prev.append(run(clip, detector=MtiDetector(MtiConfig.second_pass())).fps["end_to_end"])
            pass4.append(run(clip, tracker=TrackerConfig.fourth_pass()).fps["end_to_end"])
            res = run(clip)
            e2e.append(res.fps["end_to_end"])
            for k in stages:
                stages[k].append(res.fps[k])
            tracks = len(res.tracks)
        med = statistics.median
        row: dict[str, Any] = {"size": f"{w}x{h}", "frames": res.frames, "decode_only": med(dec),
               **{k: med(v) for k, v in stages.items()}, "end_to_end": med(e2e), "prev": med(prev), "pass4": med(pass4),
               "floor": floor,
               "tracks": tracks}
        row["ratio"] = row["end_to_end"] / row["decode_only"]
        row["pass"] = row["end_to_end"] >= floor
        ok &= bool(row["pass"])
        rows.append(row)
    print(f"\nPED benchmark (MTI), medians of {repeats} runs; fps = frames per second")
    head = ("size", "frames", "decode-only", "decode*", "detect", "geolocate", "track", "end-to-end",
            "e2e/decode", "mti-2p e2e", "new/2p", "pass4 tracker e2e", "new/pass4", "floor", "ok")
    print(" | ".join(head))
    print(" | ".join("---" for _ in head))
    for r in rows:
        print(f"{r['size']} | {r['frames']} | {r['decode_only']:.1f} | {r['decode']:.1f} | {r['detect']:.1f} | "
              f"{r['geolocate']:.0f} | {r['track']:.0f} | {r['end_to_end']:.1f} | {r['ratio']:.2f} | "
              f"{r['prev']:.1f} | {r['end_to_end'] / r['prev']:.2f} | {r['pass4']:.1f} | {r['end_to_end'] / r['pass4']:.2f} | "
              f">= {r['floor']:.0f} | {'PASS' if r['pass'] else 'FAIL'}")
    print("decode* = the pipeline's decode thread (overlaps the other stages)")
    return 0 if ok else 1


SCENARIOS = {  # name: (synth scenario, seconds (None: --aerial-seconds), targets, first seed)
    "aerial": ("aerial", None, None, 301),
    "crossing": ("crossing", 8.0, 4, 201),
    "orbit": ("orbit", 6.0, 3, 101),
}
DETECTORS = ("mti-v1", "mti-prev", "mti-2p", "mti")
# bench names of MtiConfig presets (`mti-early`: the opt-in start-up, not in the default run)
PRESETS = {"mti-prev": "before_far", "mti-2p": "second_pass", "mti-early": "early_start", "mti-6p": "sixth_pass", "mti-7p": "seventh_pass"}
QUALITY = ("precision", "recall", "IDF1", "MOTA", "IDsw", "false_tracks_per_min", "ttfr_med_s", "late_targets")
# first report split by when the target came into view: in view in the clip's first frame (the detector's
# start-up) / entered later; per clip the median of its targets, in the medians row pooled over all
# clips' targets; late_*: targets reported > 0.5 s after coming into view (or never) / targets
SPLIT = ("ttfr_start_s", "late_start", "ttfr_later_s", "late_later")


def scenario_clip(tmp: Path, name: str, seed: int, aerial_s: float,
                  aerial_targets: int | None = None) -> tuple[Path, list[Any]]:
    """The seeded clip of SCENARIOS[name] in `tmp` (synthesized once) and its truth frames."""
    from kestrel.fmv.synth import Scenario, synthesize
    from kestrel.ped.score import load_truth

    scen, secs, targets, _ = SCENARIOS[name]
    seconds = secs if secs is not None else aerial_s
    if targets is None:
        targets = aerial_targets if aerial_targets is not None else max(4, int(seconds / 2.5))
    clip, truth = tmp / f"{name}_{seed}.ts", tmp / f"{name}_{seed}.json"
    if not clip.exists():
        synthesize(clip, Scenario(seconds=seconds, targets=targets, seed=seed, scenario=scen), truth)
    return clip, load_truth(truth)


def seeds(spec: str) -> list[int]:
    """'301-306,11' -> [301, ..., 306, 11] (ValueError on anything else)."""
    out: list[int] = []
    for part in spec.split(","):
        a, _, b = part.partition("-")
        out += list(range(int(a), int(b or a) + 1))
    return out


def _quality(tmp: Path, aerial_s: float, n_seeds: int, scenarios: list[str] | None = None,
             detectors: list[str] | None = None, aerial: list[int] | None = None) -> int:
    """Per scenario and seed: synthesize once, run `mti-v1`, `mti-prev`, `mti-2p` and `mti` (new) (or
    `detectors`) on the same clip, score each; print per-clip rows and per-scenario medians."""
    from kestrel.ped.detect.mti import MtiConfig, MtiDetector
    from kestrel.ped.pipeline import run
    from kestrel.ped.score import score

    med = statistics.median
    dets = detectors or list(DETECTORS)
    names = scenarios or list(SCENARIOS)
    cols = (*QUALITY, *SPLIT, "fps")
    print("\nPED quality (box IoU >= 0.3, targets wholly in view), " + " / ".join(dets) + ", same clips")
    head = ("scenario", "clip", "detector", *cols)
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    summary: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for name in names:
        seed0 = SCENARIOS[name][3]
        for seed in (aerial if name == "aerial" and aerial else range(seed0, seed0 + n_seeds)):
            clip, gt = scenario_clip(tmp, name, seed, aerial_s)
            at_start = set(gt[0].ids) if gt else set()
            for det in dets:
                preset = PRESETS.get(det)
                res = run(clip, detector=MtiDetector(getattr(MtiConfig, preset)()) if preset else det)
                s = score(res.tracks, gt, delay_frames=res.delay_frames, emitted_at=res.emitted_at)
                start = [v for g, v in s.first_report_s.items() if g in at_start]
                later = [v for g, v in s.first_report_s.items() if g not in at_start]
                row = {**s.row(), "fps": res.fps["end_to_end"], "_start": start, "_later": later,
                       **_split(start, later)}
                summary.setdefault((name, det), []).append(row)
                print("| " + " | ".join([name, str(seed), det] + [_fmt(row[c]) for c in cols]) + " |")
    print("\nMedians per scenario (" + " / ".join(dets) + "; " + ", ".join(SPLIT) + " pooled over the clips' targets):")
    print("| scenario | " + " | ".join(f"{c}" for c in cols) + " |")
    print("|" + "---|" * (len(cols) + 1))
    for name in names:
        rows = [summary[(name, d)] for d in dets]
        pooled = [_split([v for r in rs for v in r["_start"]], [v for r in rs for v in r["_later"]]) for rs in rows]
        cells = [" / ".join(_fmt(p[c]) if c in SPLIT else _fmt(med([r[c] for r in rs]))
                            for rs, p in zip(rows, pooled, strict=True)) for c in cols]
        print(f"| {name} | " + " | ".join(cells) + " |")
    return 0


def _split(start: list[float], later: list[float]) -> dict[str, Any]:
    """First-report columns for targets in view at the start / entering later (median s, late / all)."""
    med = statistics.median
    return {"ttfr_start_s": med(start) if start else float("nan"),
            "late_start": f"{sum(v > 0.5 for v in start)}/{len(start)}",
            "ttfr_later_s": med(later) if later else float("nan"),
            "late_later": f"{sum(v > 0.5 for v in later)}/{len(later)}"}


def _fmt(v: Any) -> str:
    return f"{v:.3f}" if isinstance(v, float) else str(v)


if __name__ == "__main__":
    sys.exit(main())
