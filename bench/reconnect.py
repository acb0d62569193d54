"""What a huge-event sender reconnecting in a tight loop costs everyone else (the evidence for or
against a per-address penalty after an oversize close; docs/server.md).

    .venv/bin/python bench/reconnect.py                    # 50 clients, 0 / 1 / 4 attackers, 30 s, 2 rounds

Each phase starts `kestrel serve` with the default `[limits]` (loopback only), connects `--clients`
well-behaved raw-TCP clients (bench/_loadgen.py: one SA per second each, every receiver counts
deliveries and latency) and, in another process, N attackers from the same address: each opens a
connection, writes an event of 2 MB that never ends (over `max_event_bytes`) as fast as the server
reads, and reconnects at once when it is closed, with no pause. Reported per phase: delivery, p50 /
p99, server CPU, oversize closes per second (from /metrics) and the bytes the server read for them.
Phases alternate per round; compare the ratio against the 0-attacker phase of the same run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:] = [*sys.path, str(ROOT / "bench"), str(ROOT)]

import _loadgen as lg  # noqa: E402, I001
import fanout  # noqa: E402
import soak  # noqa: E402

CONFIG = "[server]\nmetrics_port = 0\n[limits]\noversize_penalty_s = {penalty}\n"  # other limits: the defaults


async def _attacker(port: int, i: int, until: float, wait: bool, chunks: int) -> tuple[int, int]:
    closes = written = 0
    chunk = b"<x>" + b"y" * 65_536 + b"</x>"
    while time.monotonic() < until:
        try:
            r, w = await asyncio.open_connection("127.0.0.1", port)
            now = time.time()
            w.write(f'<event version="2.0" uid="RECON-{i}" type="b-m-p-s-m" time="{soak._iso(now)}" '
                    f'start="{soak._iso(now)}" stale="{soak._iso(now + 600)}"><point lat="0" lon="0"/>'
                    f"<detail>".encode())
            for _ in range(chunks):
                if r.at_eof() or w.is_closing() or time.monotonic() >= until:
                    break
                w.write(chunk)
                written += len(chunk)
                await w.drain()
            if wait:  # until the server closes it (oversize), reading whatever it sends meanwhile
                while await asyncio.wait_for(r.read(65536), max(0.1, until - time.monotonic())):
                    pass
            w.close()  # reset mode: at once, with the 2 MB unread by the server (no oversize close)
        except (TimeoutError, ConnectionError, OSError):
            pass
        closes += 1
    return closes, written


async def attack(port: int, n: int, seconds: float, wait: bool, chunks: int) -> dict[str, int]:
    until = time.monotonic() + seconds
    done = await asyncio.gather(*(_attacker(port, k, until, wait, chunks) for k in range(n)))
    return {"connections": sum(c for c, _ in done), "written": sum(w for _, w in done)}


async def measure(tg: lg.Target, proc: Any, n: int, seconds: int, attackers: int, data: Path,
                  mode: str, chunks: int) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    run = lg.Run(steady=range(n))
    clients, _ = await lg.connect_many(tg, lambda i: lg.Client(i, run, True), range(n))
    for c in clients:
        c.send(lg.make_sa(c.sid, 0))
    await asyncio.sleep(1.0)
    child = None
    if attackers:
        child = subprocess.Popen([sys.executable, __file__, "--attack", str(tg.port), str(attackers), str(seconds + 1), mode, str(chunks)],
                                 stdout=subprocess.PIPE, text=True)
        await asyncio.sleep(0.5)
    before = await loop.run_in_executor(None, soak._metrics, data)
    meter = lg.Meter(proc)
    run.t_start = time.time_ns()
    start = loop.time() + 0.05
    meter.start()
    rng = random.Random(n)
    sent = sum(await asyncio.gather(*(lg.send_loop(c, start, rng.random(), seconds) for c in clients)))
    usage = meter.stop()
    after = await loop.run_in_executor(None, soak._metrics, data)
    expected = sent * (n - 1)
    await lg.drain(run, expected)
    out: dict[str, int] = {}
    if child is not None:
        text, _ = await loop.run_in_executor(None, child.communicate)
        out = json.loads(text.strip().splitlines()[-1])
    for c in clients:
        c.close()
    closed = after.get("closed:oversize", 0) - before.get("closed:oversize", 0)
    return {"attackers": attackers, **lg.summarize(run, expected), **usage, "oversize_per_s": closed / seconds,
            "conns_per_s": out.get("connections", 0) / (seconds + 1), "attack": out}


def phase(w: Path, label: str, n: int, seconds: int, attackers: int, mode: str, penalty: float,
          chunks: int) -> dict[str, Any]:
    cfg = w / f"{label}.toml"
    cfg.write_text(CONFIG.format(penalty=penalty))
    with fanout.server("kestrel", w, label, extra=("--config", str(cfg))) as (tg, proc):
        res = fanout.run_async(measure(tg, proc, n, seconds, attackers, w / f"data-{label}", mode, chunks))
    res["phase"], res["penalty"] = label, penalty
    print(f"  {label}: p99 {res['p99_ms']:.1f} ms, {res['oversize_per_s']:.1f} oversize closes/s", file=sys.stderr)
    return res


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "--attack":
        port, n, seconds = int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
        print(json.dumps(asyncio.run(attack(port, n, seconds, sys.argv[5] == "wait", int(sys.argv[6])))))
        return 0
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clients", type=int, default=50)
    ap.add_argument("--attackers", default="0,1,4", help="attacker counts, comma list (default %(default)s)")
    ap.add_argument("--penalties", default="0,1", help="oversize_penalty_s values, comma list (0: off; default %(default)s)")
    ap.add_argument("--seconds", type=int, default=30)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--mode", choices=("wait", "reset"), default="wait",
                    help="wait: each connection writes until the server closes it as oversize; reset: writes 2 MB "
                         "and resets it at once (never an oversize close) (default %(default)s)")
    ap.add_argument("--chunks", type=int, default=32, help="64 KiB chunks of the endless event per connection "
                    "(default %(default)s: 2 MB; 0: connect and close only)")
    args = ap.parse_args()
    fanout.raise_nofile()
    counts = [int(x) for x in args.attackers.split(",")]
    pens = [float(x) for x in args.penalties.split(",")]
    kinds = [(a, p) for a in counts for p in (pens if a else pens[:1])]
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="kestrel-reconnect-") as tmp:
        for k in range(args.rounds):
            for a, pen in kinds if k % 2 == 0 else kinds[::-1]:
                rows.append(phase(Path(tmp), f"a{a}p{pen:g}r{k}", args.clients, args.seconds, a, args.mode, pen, args.chunks))
    base = statistics.median(r["p99_ms"] for r in rows if r["attackers"] == 0) if 0 in counts else float("nan")
    print("| attackers | penalty s | delivered | p50 ms | p99 ms | p99 / 0 attackers | server CPU | attack connections/s | oversize closes/s |")
    print("|---|---|---|---|---|---|---|---|---|")
    for a, pen in kinds:
        rs = [r for r in rows if r["attackers"] == a and r["penalty"] == pen]
        p99 = statistics.median(r["p99_ms"] for r in rs)
        closes = statistics.median(r["oversize_per_s"] for r in rs)
        conns = statistics.median(r["conns_per_s"] for r in rs)
        print(f"| {a} | {pen:g} | {statistics.median(r['delivered'] for r in rs):.2%} | "
              f"{statistics.median(r['p50_ms'] for r in rs):.1f} | {p99:.1f} | {p99 / base:.2f} | "
              f"{statistics.median(r['srv_cpu'] for r in rs):.0%} | {conns:.1f} | {closes:.1f} |")
    print(f"mode {args.mode}, {args.chunks} x 64 KiB per connection, {args.clients} clients, medians of {args.rounds} rounds; per round p99 ms: "
          + ", ".join(f"{r['phase']} {r['p99_ms']:.0f}" for r in rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
