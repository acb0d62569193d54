"""Micro-benchmark of the CoT core: events/s for XML and TAK protobuf, parse and encode.

One command: `.venv/bin/python bench/cot.py [--seconds S]`. Prints a table of medians (5 runs) on a
typical ATAK SA event and on the ATAK example files, with outside baselines run in the same process:
lxml `fromstring` (parse only, no Event built) and takproto (google-protobuf) encode/parse.

`--codec`: Kestrel's TAK protobuf codec (bytes -> Event, Event -> bytes: the `protobuf` package plus
the Event mapping, typed detail and codec-edge checks) against the raw package alone (ParseFromString /
SerializeToString of takproto's generated TakMessage) on the same messages: medians of CPU time over
interleaved rounds and the ratio, i.e. what our mapping costs on top of the wire work.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from kestrel.cot.proto import decode_payload, encode_payload  # noqa: E402
from kestrel.cot.xml import encode_event, parse_event  # noqa: E402

SA = (
    b"<?xml version='1.0' encoding='UTF-8' standalone='yes'?>\n"
    b"<event version='2.0' uid='ANDROID-0123456789abcdef' type='a-f-G-U-C' time='2024-05-01T12:00:00.000Z'"
    b" start='2024-05-01T12:00:00.000Z' stale='2024-05-01T12:06:00.000Z' how='h-e'>"
    b"<point lat='38.8433530598' lon='-77.0544003254' hae='12.5' ce='9.9' le='9999999.0'/><detail>"
    b"<takv os='33' version='4.10.0.5 (abcd).1700000000-CIV' device='GOOGLE PIXEL 7' platform='ATAK-CIV'/>"
    b"<contact endpoint='*:-1:stcp' callsign='HOPE'/><uid Droid='HOPE'/>"
    b"<precisionlocation altsrc='GPS' geopointsrc='GPS'/><__group role='Team Member' name='Cyan'/>"
    b"<status battery='88'/><track course='132.5' speed='1.25'/></detail></event>"
)


def rate(fn: Callable[[], object], seconds: float) -> float:
    n = 0
    t0 = time.perf_counter()
    end = t0 + seconds
    while time.perf_counter() < end:
        for _ in range(50):
            fn()
        n += 50
    return n / (time.perf_counter() - t0)


def cpu_rate(fn: Callable[[], object], n: int) -> float:
    """Calls per CPU-second of this process (other processes on a shared machine do not count)."""
    t0 = time.process_time()
    for _ in range(n):
        fn()
    return n / (time.process_time() - t0)


def codec(rounds: int, n: int) -> None:
    """Kestrel's TAK protobuf codec (the `protobuf` package plus the Event mapping and the codec-edge
    checks) against the raw package alone (takproto's generated classes), on the same messages."""
    import os

    from google.protobuf.internal import api_implementation
    from takproto.proto import TakMessage

    examples = sorted((ROOT / "tests" / "data" / "cot" / "atak-examples").glob("*.cot"))
    events = [("ATAK SA (typed fields)", parse_event(SA))] + [(p.stem, parse_event(p.read_bytes())) for p in examples]
    rows = []
    for name, ev in events:
        payload = encode_payload(ev)
        msg = TakMessage()
        msg.ParseFromString(payload)
        assert msg.SerializeToString(deterministic=True) == payload  # the same bytes both ways
        cases = {
            "decode kestrel": partial(decode_payload, payload), "decode raw": partial(TakMessage().ParseFromString, payload),
            "encode kestrel": partial(encode_payload, ev), "encode raw": partial(msg.SerializeToString, deterministic=True),
        }
        samples: dict[str, list[float]] = {k: [] for k in cases}
        for _ in range(rounds):  # interleaved: load from other processes hits every case alike
            for k, fn in cases.items():
                samples[k].append(cpu_rate(fn, n))
        med = {k: statistics.median(v) for k, v in samples.items()}
        rows.append((name, len(payload), med))
    print(f"protobuf {api_implementation.Type()}; medians of {rounds} rounds x {n} calls, CPU time; "
          f"load average {os.getloadavg()[0]:.1f}")
    print("| message | bytes | decode kestrel/s | decode raw package/s | kestrel / raw | encode kestrel/s | "
          "encode raw package/s | kestrel / raw |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for name, size, m in rows:
        print(f"| {name} | {size} | {m['decode kestrel']:,.0f} | {m['decode raw']:,.0f} | "
              f"{m['decode kestrel'] / m['decode raw']:.2f} | {m['encode kestrel']:,.0f} | "
              f"{m['encode raw']:,.0f} | {m['encode kestrel'] / m['encode raw']:.2f} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--seconds", type=float, default=0.3, help="per measurement (5 runs each)")
    ap.add_argument("--codec", action="store_true", help="only the kestrel codec vs raw protobuf-package table")
    ap.add_argument("--rounds", type=int, default=7, help="--codec: interleaved rounds (median)")
    ap.add_argument("--calls", type=int, default=2000, help="--codec: calls per case per round")
    args = ap.parse_args()
    if args.codec:
        codec(args.rounds, args.calls)
        return
    try:
        import takproto
        from lxml import etree
    except ImportError:  # pragma: no cover
        takproto = None  # type: ignore[assignment]
        etree = None  # type: ignore[assignment]
    examples = sorted((ROOT / "tests" / "data" / "cot" / "atak-examples").glob("*.cot"))
    inputs = [("ATAK SA (typed fields)", SA)] + [(p.stem, p.read_bytes()) for p in examples[:1]]
    cases: list[tuple[str, str, Callable[[], object]]] = []
    for name, raw in inputs:
        ev = parse_event(raw)
        payload = encode_payload(ev)
        cases += [
            (name, "kestrel XML parse", partial(parse_event, raw)),
            (name, "kestrel XML encode", partial(encode_event, ev)),
            (name, "kestrel proto encode", partial(encode_payload, ev)),
            (name, "kestrel proto decode", partial(decode_payload, payload)),
        ]
        if etree is not None and takproto is not None:
            msg = takproto.parse_proto(bytearray(b"\xbf\x01\xbf" + payload))
            cases += [
                (name, "baseline lxml fromstring", partial(etree.fromstring, raw)),
                (name, "baseline takproto xml2proto", partial(takproto.xml2proto, raw)),
                (name, "baseline google-protobuf parse", partial(msg.ParseFromString, payload)),
            ]
    # Rounds interleave every case, so load from other processes hits all of them alike.
    samples: dict[tuple[str, str], list[float]] = {(n, lab): [] for n, lab, _ in cases}
    for _ in range(5):
        for name, label, fn in cases:
            samples[(name, label)].append(rate(fn, args.seconds))
    rows = [(n, lab, statistics.median(samples[(n, lab)])) for n, lab, _ in cases]
    print(f"{'input':<26} {'operation':<32} {'events/s (median of 5)':>24}")
    for name, label, r in rows:
        print(f"{name:<26} {label:<32} {r:>24,.0f}")
    by = {(n, lab): r for n, lab, r in rows}
    for name, _ in inputs:
        xml = 1 / (1 / by[(name, "kestrel XML parse")] + 1 / by[(name, "kestrel XML encode")])
        pb = 1 / (1 / by[(name, "kestrel proto decode")] + 1 / by[(name, "kestrel proto encode")])
        print(f"{name}: parse+encode XML {xml:,.0f}/s, protobuf {pb:,.0f}/s, ratio proto/XML {pb / xml:.2f}")
        if (name, "baseline lxml fromstring") in by:
            x2p = 1 / (1 / by[(name, "kestrel XML parse")] + 1 / by[(name, "kestrel proto encode")])
            print(f"{name}: kestrel XML parse / lxml fromstring = "
                  f"{by[(name, 'kestrel XML parse')] / by[(name, 'baseline lxml fromstring')]:.2f}; "
                  f"XML->protobuf kestrel (parse+encode) / takproto xml2proto = "
                  f"{x2p / by[(name, 'baseline takproto xml2proto')]:.2f}")


if __name__ == "__main__":
    main()
