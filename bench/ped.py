"""PED throughput: frames/s per stage and end to end (MTI), against decode-only as the baseline.

One command:  .venv/bin/python bench/ped.py [--seconds 8] [--repeats 3] [--keep DIR]

For each size (720x480 and 1280x720) it writes a `kestrel fmv synth` clip once, then alternates,
`--repeats` times: a decode-only pass (kestrel.fmv.ingest.read_frames: demux + KLV + decode to
BGR, nothing else: the baseline, what the pipeline cannot beat) and a full `kestrel.ped.pipeline.run`
(decode in its thread, detect, geolocate, track). Prints medians and the ratio end-to-end / decode.
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
    args = ap.parse_args()
    scratch = None if args.keep else tempfile.TemporaryDirectory(prefix="ped-bench-")
    tmp = Path(args.keep) if args.keep else Path(scratch.name)  # type: ignore[union-attr]
    tmp.mkdir(parents=True, exist_ok=True)
    try:
        return _measure(tmp, args.seconds, args.repeats)
    finally:
        if scratch is not None:
            scratch.cleanup()


def _measure(tmp: Path, seconds: float, repeats: int) -> int:
    from kestrel.fmv.synth import Scenario, synthesize
    from kestrel.ped.pipeline import run

    rows = []
    ok = True
    for (w, h), floor in FLOORS.items():
        clip = tmp / f"bench_{w}x{h}.ts"
        if not clip.exists():
            synthesize(clip, Scenario(seconds=seconds, width=w, height=h, targets=4, seed=7))
        dec: list[float] = []
        e2e: list[float] = []
        stages: dict[str, list[float]] = {"decode": [], "detect": [], "geolocate": [], "track": []}
        tracks = 0
        for _ in range(repeats):
            dec.append(decode_only(clip))
            res = run(clip)
            e2e.append(res.fps["end_to_end"])
            for k in stages:
                stages[k].append(res.fps[k])
            tracks = len(res.tracks)
        med = statistics.median
        row: dict[str, Any] = {"size": f"{w}x{h}", "frames": res.frames, "decode_only": med(dec),
               **{k: med(v) for k, v in stages.items()}, "end_to_end": med(e2e), "floor": floor,
               "tracks": tracks}
        row["ratio"] = row["end_to_end"] / row["decode_only"]
        row["pass"] = row["end_to_end"] >= floor
        ok &= bool(row["pass"])
        rows.append(row)
    print(f"\nPED benchmark (MTI), medians of {repeats} runs; fps = frames per second")
    head = ("size", "frames", "decode-only", "decode*", "detect", "geolocate", "track", "end-to-end",
            "e2e/decode", "floor", "ok")
    print(" | ".join(head))
    print(" | ".join("---" for _ in head))
    for r in rows:
        print(f"{r['size']} | {r['frames']} | {r['decode_only']:.1f} | {r['decode']:.1f} | {r['detect']:.1f} | "
              f"{r['geolocate']:.0f} | {r['track']:.0f} | {r['end_to_end']:.1f} | {r['ratio']:.2f} | "
              f">= {r['floor']:.0f} | {'PASS' if r['pass'] else 'FAIL'}")
    print("decode* = the pipeline's decode thread (overlaps the other stages)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
