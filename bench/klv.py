"""KLV benchmark: ST 0601 packets decoded per second on one core (issue 3 floor: 50,000/s).

Run: .venv/bin/python bench/klv.py [--packets N] [--repeats R]
Prints a table of medians over R repeats, timed in CPU seconds of this process (the machine is
shared; wall-clock rates under load are lower). Baselines in the same run over the same bytes:
the checksum alone, and a bare key/BER/tag split loop with no value decoding.
The demux section (`bench_demux`) belongs to the fmv helper.
"""

from __future__ import annotations

import argparse
import re
import statistics
import time
from collections.abc import Callable
from pathlib import Path

from kestrel.klv import decode_one, st0601
from kestrel.klv.ber import KlvError, read_ber_length, read_ber_oid
from kestrel.klv.mapping import checksum16

SHARED = Path(__file__).resolve().parents[1] / "tests" / "data"


def typical_packets(n: int) -> list[bytes]:
    """n distinct ~200-byte ST 0601 packets: a platform/sensor/frame-centre/corner set."""
    out = []
    for i in range(n):
        f = i / max(n, 1)
        vals = {5: 360 * f, 6: -5 + f, 7: 10 * f - 5, 13: 38.0 + f, 14: -77.0 - f, 15: 3000 + f, 16: 10 + f,
                17: 7 + f, 18: 90 * f, 19: -30 - f, 20: f, 21: 5000 + f, 23: 38.1 + f, 24: -77.1 - f, 25: 100 + f,
                26: 0.01, 27: -0.01, 28: 0.01, 29: 0.01, 30: -0.01, 31: 0.01, 32: -0.01, 33: -0.01,
                3: "MISSION01", 10: "MQ-9", 11: "EO", 12: "Geodetic WGS84", 56: 40.0, 75: 3030 + f,
                82: 38.11 + f, 83: -77.11 - f, 84: 38.11 + f, 85: -77.09 - f, 86: 38.09 + f, 87: -77.09 - f}
        out.append(st0601.encode(vals, timestamp_us=1_700_000_000_000_000 + i * 33_333))
    return out


def iter_local_set(buf: bytes, pos: int, end: int) -> list[tuple[int, int, int]]:
    """Split a local set body into (tag, value_start, value_end); raises on truncation.

    The split-only baseline: `kestrel.klv.localset.decode_body` runs this loop inlined, decoding
    values in the same pass (the hot path); here it only splits, so the ratio says what decoding costs.

    Single pass, O(n) in the body length.
    """
    out: list[tuple[int, int, int]] = []
    append = out.append
    while pos < end:
        tag = buf[pos]
        pos += 1
        if tag >= 0x80:
            tag, pos = read_ber_oid(buf, pos - 1, end)
        if pos >= end:
            raise KlvError(f"tag {tag}: truncated length")
        n = buf[pos]
        pos += 1
        if n >= 0x80:
            n, pos = read_ber_length(buf, pos - 1, end)
        vend = pos + n
        if vend > end:
            raise KlvError(f"tag {tag}: value runs past the end of the set")
        append((tag, pos, vend))
        pos = vend
    return out


def split_only(pkt: bytes) -> int:
    n, p = read_ber_length(pkt, 16, len(pkt))
    return len(iter_local_set(pkt, p, p + n))


def run(fn: Callable[[bytes], object], pkts: list[bytes], repeats: int) -> float:
    """Median packets per CPU-second of this process (process_time: other processes sharing the
    machine do not count against us; one thread = one core)."""
    rates = []
    for _ in range(repeats):
        t0 = time.process_time()
        for p in pkts:
            fn(p)
        rates.append(len(pkts) / (time.process_time() - t0))
    return statistics.median(rates)


def bench_demux(repeats: int = 5) -> list[tuple[str, float, str]]:
    """Demux throughput (frames per CPU-second, medians) on aphill_klv_10s.ts and a synthetic
    720x480 H.264 clip with one ST 0601 packet per frame.

    Baseline in the same run, interleaved run by run with ours: PyAV decode + BGR conversion of
    the same file with no KLV work. `VideoReader` adds the TS/PES parse of every byte, KLV decode
    and alignment; `scan_klv` is the KLV-only fast path (no video decode). CPU time of the whole
    process (decoder threads included), so other jobs on the machine do not skew the ratio.
    """
    import tempfile

    import av

    from kestrel.fmv.ingest import VideoReader, scan_klv
    from kestrel.fmv.synth import Scenario, synthesize

    def decode_only(path: Path) -> int:
        with av.open(str(path)) as c:
            vs = c.streams.video[0]
            vs.thread_type = "AUTO"
            return sum(1 for f in c.decode(vs) if f.to_ndarray(format="bgr24") is not None)

    def ours(path: Path) -> int:
        return sum(1 for _ in VideoReader(path))

    def scan(path: Path) -> int:
        return scan_klv(path).video_pes

    def one(fn: Callable[[Path], int], path: Path) -> float:
        t0 = time.process_time()
        n = fn(path)
        return n / max(time.process_time() - t0, 1e-9)

    rows: list[tuple[str, float, str]] = []
    with tempfile.TemporaryDirectory() as tmp:
        synth = Path(tmp) / "synth.ts"
        synthesize(synth, Scenario(seconds=5, targets=3, seed=1))
        clips = [("aphill 360x240 MPEG-2", SHARED / "fmv" / "aphill_klv_10s.ts", 4 * repeats),
                 ("synthetic 720x480 H.264", synth, repeats)]
        for label, path, reps in clips:
            if not path.is_file():
                continue
            fns = {"base": decode_only, "ours": ours, "scan": scan}
            runs: dict[str, list[float]] = {k: [] for k in fns}
            for _ in range(reps):
                for k, fn in fns.items():
                    runs[k].append(one(fn, path))
            base, full, fast = (statistics.median(runs[k]) for k in ("base", "ours", "scan"))
            rows += [(f"demux {label}: baseline PyAV decode-only", base, "frames/CPU-s"),
                     (f"demux {label}: VideoReader (frames + KLV)", full, "frames/CPU-s"),
                     (f"demux {label}: VideoReader / baseline", 100.0 * full / base, "%"),
                     (f"demux {label}: scan_klv (KLV only, no decode)", fast, "frames/CPU-s")]
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--packets", type=int, default=20000)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    pkts = typical_packets(args.packets)
    sizes = sorted(len(p) for p in pkts)
    example = SHARED / "fmv" / "st0601_example_packet.md"
    rows: list[tuple[str, float, str]] = []
    base_split = run(split_only, pkts, args.repeats)
    base_sum = run(lambda p: checksum16(p[:-2]), pkts, args.repeats)
    full = run(decode_one, pkts, args.repeats)
    rows += [("baseline: checksum only", base_sum, "pkt/CPU-s"), ("baseline: key+BER+tag split only", base_split, "pkt/CPU-s"),
             ("decode_one (full ST 0601 decode + checksum)", full, "pkt/CPU-s")]
    if example.is_file():
        data = bytes.fromhex("".join(re.findall(r"^[0-9A-F]+$", example.read_text(), re.M)))
        rows.append(("decode_one, MISB worked example (228 B, nested ST 0102)",
                     run(decode_one, [data] * args.packets, args.repeats), "pkt/CPU-s"))
    rows += bench_demux()
    print(f"ST 0601 packets: {len(pkts)} x {args.repeats} repeats, size median {sizes[len(sizes) // 2]} B "
          f"(min {sizes[0]}, max {sizes[-1]}); one core, medians")
    print(f"{'measure':58} {'median':>12}  unit")
    for name, val, unit in rows:
        print(f"{name:58} {val:12,.0f}  {unit}")
    print(f"{'ratio full decode / split-only baseline':58} {full / base_split:12.2f}")
    print(f"{'floor 50,000 pkt/s met':58} {'yes' if full >= 50_000 else 'NO':>12}")


if __name__ == "__main__":
    main()
