"""Fuzz the codec edge for longer than the suite does: the properties of tests/test_cot_fuzz.py
(CoT XML and TAK protobuf decoders, the stream state machine, the router's detail reader), each
with `--per-property` random cases (default 20,000; 6 properties = 120,000 cases).

    .venv/bin/python bench/fuzz.py [--per-property N] [--seed S]

Prints one row per property: cases, failures, seconds, cases/s. Exit 1 if any property failed
(the falsifying example is printed by Hypothesis).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--per-property", type=int, default=20_000, help="cases per property (default 20000)")
    ap.add_argument("--seed", type=int, help="Hypothesis seed (default: random)")
    args = ap.parse_args(argv)
    os.environ["KESTREL_FUZZ_EXAMPLES"] = str(args.per_property)
    sys.path.insert(0, str(ROOT))
    from hypothesis import seed as hseed
    from hypothesis import settings

    settings.register_profile("bench-fuzz", database=None, derandomize=False, print_blob=True)
    settings.load_profile("bench-fuzz")
    import tests.test_cot_fuzz as fz

    props = [(name, fn) for name, fn in vars(fz).items() if name.startswith("test_") and callable(fn)]
    rows = []
    failed = 0
    for name, fn in props:
        if args.seed is not None:
            fn = hseed(args.seed)(fn)
        t0 = time.perf_counter()
        ok = True
        try:
            fn()
        except Exception as exc:  # a falsified property: report it, go on with the others
            ok = False
            failed += 1
            print(f"{name}: FAILED: {type(exc).__name__}: {str(exc)[:300]}", file=sys.stderr)
        dt = time.perf_counter() - t0
        rows.append((name.removeprefix("test_"), args.per_property, 0 if ok else 1, dt))
    total = sum(r[1] for r in rows)
    print("| property | cases | failures | seconds | cases/s |\n|---|---|---|---|---|")
    for name, n, f, dt in rows:
        print(f"| {name} | {n} | {f} | {dt:.1f} | {n / dt:.0f} |")
    print(f"| **total** | {total} | {failed} | {sum(r[3] for r in rows):.1f} | |")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
