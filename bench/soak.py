"""Soak: well-behaved TAK clients beside abusive ones, against the same run without abusers.

    .venv/bin/python bench/soak.py                       # 200 clients, 20 abusers, 5 min per phase
    .venv/bin/python bench/soak.py --seconds 60 --rounds 3   # shorter, medians of 3 alternating rounds
    .venv/bin/python bench/soak.py --interleave 30           # paired: abusers on/off every 30 s, one server

Each phase starts its own `kestrel serve` (loopback only) from the config below, then:
- 200 well-behaved raw-TCP clients (bench/_loadgen.py) in group Blue: each stores one marker
  (`KB-MK-i`), then sends an ATAK-style SA at 1 Hz; every receiver counts deliveries and latency;
- "attack" phases add 20 abusers in their own process (so their CPU does not skew the
  measurement): 5 flooders (Blue: SA as fast as TCP takes them), 5 slowloris (Blue: one byte of an
  event every 0.5 s, reconnecting), 5 huge-event senders (Blue: 2 MB without an end, reconnecting),
  5 spoofers (group `open` on another listener: the well-behaved clients' uids and callsigns, deletes
  and overwrites of their markers, and 900 KB markers filling their own group's budget);
- at the end a fresh client joins Blue and checks that every well-behaved marker and SA is in its
  picture, unchanged.

Pass: well-behaved delivery 100 % in every phase, median p99 of the attack phases <= 1.5 x that of
the baseline phases, server peak RSS under the stated bound (derived from the config:
`rss_bound_mb`), no well-behaved stored item lost.
`--interleave W` measures the same thing as one paired run per round: one server and the same 200
clients for 2 x `--seconds`, the abusers' process on in every other W-second window (`--seconds` of
abuse in all), each SA's latency counted for the window it was sent in (not the first second of a
window, when abusers start or leave): p99 with against p99 without abusers, minutes apart at most,
so a machine whose background load drifts between 5-minute phases does not decide the ratio.
The load generator and the server share this machine: compare the ratio, not the absolute numbers.
On a machine with two or more CPUs (`--pin auto`, the default) the server runs alone on the first
CPU and every client process (the well-behaved load generator and the abusers, the abusers at
nice 10) on the others: in the field the clients are other machines, so an abuser's own CPU must
not show up as the server's latency. `--pin off` lets the kernel place everything (the server then
also competes with the clients for the same cores).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import statistics
import subprocess
import sys
import tempfile
import time
from array import array
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:] = [*sys.path, str(ROOT / "bench"), str(ROOT)]

import urllib.request  # noqa: E402, I001

import _loadgen as lg  # noqa: E402
import fanout  # noqa: E402

RETAINED_BUDGET = 32 << 20
CONFIG = """
[server]
metrics_port = 0
[groups.listeners]
tcp = ["Blue"]
[[listeners]]
name = "open"
kind = "tcp"
port = {open_port}
groups = ["open"]
[limits]
events_per_s_per_client = 2         # well-behaved clients send 1/s (+ one marker at connect)
events_burst_per_client = 300       # a load generator that fell behind catches up in a burst
retained_bytes_per_group = {budget}
incomplete_event_timeout_s = 10
bytes_per_s_per_client = {byte_rate}   # well-behaved clients send ~0.5 KB/s
bytes_burst_per_client = 1048576
"""
BYTE_RATE = 128 << 10


def rss_bound_mb(baseline_mb: float, abusers: int) -> tuple[float, str]:
    """The memory the config allows beyond the baseline: the retained picture (2 x the per-group
    budget + 64 MB, the issue's rule for a full picture) plus what each abusive connection may hold
    at once: its outbound queue (`queue_bytes`), one unfinished event (`max_event_bytes`), the
    transport's write buffer (64 KiB) and two read chunks (StreamReader + framer)."""
    from kestrel.server.config import Limits

    lim = Limits()
    per_conn = lim.queue_bytes + lim.max_event_bytes + (64 << 10) + 2 * lim.read_chunk
    bound = baseline_mb + 2 * (RETAINED_BUDGET >> 20) + 64 + abusers * per_conn / (1 << 20)
    why = (f"baseline {baseline_mb:.0f} MB + 2 x {RETAINED_BUDGET >> 20} MB budget + 64 MB + {abusers} abusers x "
           f"{per_conn / (1 << 20):.2f} MB (queue_bytes + max_event_bytes + write buffer + 2 read chunks)")
    return bound, why


def _iso(t: float) -> str:
    return lg._iso(t)


def marker(uid: str, remarks: str, pad: int = 0, stale_s: float = 3600) -> bytes:
    now = time.time()
    return (
        f'<?xml version="1.0" encoding="UTF-8"?><event version="2.0" uid="{uid}" type="b-m-p-s-m" how="h-g-i-g-o" '
        f'time="{_iso(now)}" start="{_iso(now)}" stale="{_iso(now + stale_s)}">'
        f'<point lat="38.9" lon="-77.0" hae="0" ce="9" le="9"/><detail><contact callsign="{uid}"/>'
        f"<remarks>{remarks}{'x' * pad}</remarks></detail></event>"
    ).encode()


def delete(uid: str, target: str) -> bytes:
    now = time.time()
    return (
        f'<event version="2.0" uid="{uid}" type="t-x-d-d" how="h-g-i-g-o" time="{_iso(now)}" start="{_iso(now)}" '
        f'stale="{_iso(now + 60)}"><point lat="0" lon="0" hae="0" ce="9" le="9"/><detail>'
        f'<link uid="{target}" relation="none" type="none"/><__forcedelete/></detail></event>'
    ).encode()


def flood_sa(i: int, seq: int) -> bytes:
    now = time.time()
    return (
        f'<event version="2.0" uid="FLOOD-{i}" type="a-f-G-U-C" how="m-g" time="{_iso(now)}" start="{_iso(now)}" '
        f'stale="{_iso(now + 60)}"><point lat="38.{seq % 1000:03d}" lon="-77.0" hae="0" ce="9" le="9"/>'
        f'<detail><contact callsign="FLOOD-{i}"/></detail></event>'
    ).encode()


# -- abusers (run in their own process: `soak.py --abuse ...`) -------------------------------------


async def _drain(w: asyncio.StreamWriter, until: float) -> None:
    """Wait for the server to take our bytes, but not past `until`: a throttled abuser stops on time
    (the server may read it a few KiB per second; its process must not outlive the phase)."""
    try:
        await asyncio.wait_for(w.drain(), max(0.01, until - time.monotonic()))
    except TimeoutError:
        w.transport.abort()


async def _flooder(host: str, port: int, i: int, until: float) -> int:
    sent = 0
    while time.monotonic() < until:
        try:
            _, w = await asyncio.open_connection(host, port)
            while time.monotonic() < until and not w.is_closing():
                w.write(b"".join(flood_sa(i, sent + k) for k in range(50)))
                sent += 50
                await _drain(w, until)
            await asyncio.sleep(0.5)  # closed on us: reconnect as before
        except (ConnectionError, OSError):
            await asyncio.sleep(0.5)
    return sent


async def _slowloris(host: str, port: int, i: int, until: float) -> int:
    closed = 0
    body = f'<event version="2.0" uid="SLOW-{i}" type="a-f-G" '.encode() + b" " * 1_000_000
    while time.monotonic() < until:
        try:
            r, w = await asyncio.open_connection(host, port)
            for b in body:
                # (at_eof() alone misses a close: the group's broadcasts we never read fill the buffer)
                if time.monotonic() >= until or r.at_eof() or w.is_closing():
                    break
                w.write(bytes([b]))
                await asyncio.sleep(0.5)
            w.close()
        except (ConnectionError, OSError):
            pass
        closed += 1
        await asyncio.sleep(0.2)
    return closed


async def _huge(host: str, port: int, i: int, until: float) -> int:
    sent = 0
    chunk = b"<x>" + b"y" * 65_536 + b"</x>"
    while time.monotonic() < until:
        try:
            r, w = await asyncio.open_connection(host, port)
            now = time.time()
            w.write(f'<event version="2.0" uid="HUGE-{i}" type="b-m-p-s-m" time="{_iso(now)}" start="{_iso(now)}" '
                    f'stale="{_iso(now + 600)}"><point lat="0" lon="0"/><detail>'.encode())
            for _ in range(32):  # 2 MB, never finished; the server closes at max_event_bytes
                if r.at_eof() or w.is_closing():  # closed on us: stop writing into a dead socket
                    break
                w.write(chunk)
                await _drain(w, until)
            w.close()
            sent += 1
        except (ConnectionError, OSError):
            sent += 1
        await asyncio.sleep(0.5)
    return sent


async def _spoofer(host: str, port: int, i: int, until: float, victims: int) -> int:
    sent = 0
    rng = random.Random(i)
    while time.monotonic() < until:
        try:
            _, w = await asyncio.open_connection(host, port)
            while time.monotonic() < until and not w.is_closing():
                v = rng.randrange(victims)
                w.write(lg.make_sa(v, 1))  # a well-behaved client's uid and callsign
                w.write(delete(f"SPOOF-DEL-{i}-{sent}", f"KB-MK-{v}"))
                w.write(marker(f"KB-MK-{v}", "spoofed overwrite"))
                if sent % 10 == 0:
                    w.write(marker(f"SPOOF-BIG-{i}-{sent}", "fills its own group", pad=900_000))
                sent += 1
                await _drain(w, until)
                await asyncio.sleep(0.05)
            await asyncio.sleep(0.5)  # closed on us: reconnect as before
        except (ConnectionError, OSError):
            await asyncio.sleep(0.5)
    return sent


KINDS = ("flood", "slowloris", "huge", "spoof")


async def abuse(host: str, port: int, open_port: int, seconds: float, n: int, victims: int,
                kinds: tuple[str, ...] = KINDS) -> dict[str, int]:
    until = time.monotonic() + seconds
    tasks = []
    for k in range(n):
        kind = kinds[k % len(kinds)]
        if kind == "flood":
            tasks.append(_flooder(host, port, k, until))
        elif kind == "slowloris":
            tasks.append(_slowloris(host, port, k, until))
        elif kind == "huge":
            tasks.append(_huge(host, port, k, until))
        else:
            tasks.append(_spoofer(host, open_port, k, until, victims))
    done = await asyncio.gather(*tasks)
    out: dict[str, int] = {}
    for k, v in enumerate(done):
        out[kinds[k % len(kinds)]] = out.get(kinds[k % len(kinds)], 0) + v
    return out


# -- one phase ---------------------------------------------------------------------------------------


async def _audit(port: int, n: int) -> dict[str, int]:
    """Join Blue as a newcomer: which well-behaved markers and SA are in the picture, unchanged."""
    r, w = await asyncio.open_connection("127.0.0.1", port, limit=1 << 22)
    markers = sas = changed = 0
    try:
        while True:
            ev = await asyncio.wait_for(r.readuntil(b"</event>"), 300)
            if b"t-x-takp-v" in ev:
                break
            m = re.search(rb'uid="KB-MK-(\d+)"', ev)
            if m:
                markers += 1
                changed += b"kb marker" not in ev
            elif re.search(rb'uid="KB-\d{5}"', ev):
                sas += 1
    finally:
        w.close()
    return {"markers_kept": markers - changed, "markers_changed": changed, "sa_kept": sas,
            "markers_lost": n - (markers - changed)}


def _children_cpu() -> float:
    """CPU seconds of this process's reaped children (the abusers' process once it has exited)."""
    import resource

    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def _metrics(data: Path) -> dict[str, float]:
    from kestrel.server import datadir

    where = datadir.read_info(data).get("metrics")
    if not where:
        return {}
    with urllib.request.urlopen(f"http://{where}/metrics", timeout=10) as resp:
        text = resp.read().decode()
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            out[name.replace("kestrel_", "").replace("_total{reason=", ":").replace('"', "").replace("}", "")] = float(value)
    return out


def _spawn_abusers(tg: lg.Target, open_port: int, seconds: float, abusers: int, n: int, kinds: str) -> subprocess.Popen[str]:
    return subprocess.Popen(  # inherits this process's CPUs (pinned: the clients' side)
        [sys.executable, __file__, "--abuse", str(tg.port), str(open_port), str(seconds), str(abusers), str(n), kinds],
        stdout=subprocess.PIPE, text=True, preexec_fn=(lambda: os.nice(ABUSER_NICE)) if PIN else None,
    )


def _abuse_result(out: str) -> dict[str, int]:
    return json.loads(out.strip().splitlines()[-1]) if out.strip() else {}


async def _abuse_windows(tg: lg.Target, open_port: int, t0: float, window: float, count: int, abusers: int,
                         n: int, kinds: str) -> dict[str, int]:
    """Windows 1, 3, 5, ... of `count` (each `window` s from loop time `t0`): a fresh abusers' process
    for the window; windows 0, 2, 4, ... without abusers. Returns what the abusers did, summed."""
    loop = asyncio.get_running_loop()
    total: dict[str, int] = {}
    for w in range(1, count, 2):
        await asyncio.sleep(max(0.0, t0 + w * window - loop.time()))
        # Its process starts in the window and stops at the window's end (its sockets close with it).
        child = _spawn_abusers(tg, open_port, max(0.5, t0 + (w + 1) * window - loop.time()), abusers, n, kinds)
        out, _ = await loop.run_in_executor(None, child.communicate)
        for k, v in _abuse_result(out).items():
            total[k] = total.get(k, 0) + v
    return total


SETTLE_S = 1.0  # the first second of every window counts for neither side (abusers starting or leaving)


def split_windows(run: lg.Run, window: float) -> dict[str, float]:
    """p99 of the deliveries sent in windows without abusers (even) and with them (odd), pooled, and
    the median of the windows' own p99s; SAs sent in a window's first SETTLE_S are left out of both."""
    import numpy as np

    assert run.sent_ms is not None
    lat = np.frombuffer(run.lat_us, dtype=np.int64) / 1000.0
    sent = np.frombuffer(run.sent_ms, dtype=np.int64)
    idx = sent // int(window * 1000)
    settled = sent - idx * int(window * 1000) >= int(SETTLE_S * 1000)
    out: dict[str, float] = {}
    for name, parity in (("off", 0), ("on", 1)):
        sel = (idx % 2 == parity) & settled
        per = [float(np.percentile(lat[sel & (idx == w)], 99)) for w in np.unique(idx[sel])]
        out[f"p99_{name}_ms"] = float(np.percentile(lat[sel], 99)) if sel.any() else 0.0
        out[f"p50_{name}_ms"] = float(np.percentile(lat[sel], 50)) if sel.any() else 0.0
        out[f"p99_{name}_windows_ms"] = float(np.median(per)) if per else 0.0
        out[f"windows_{name}"] = len(per)
    return out


async def measure(tg: lg.Target, proc: Any, n: int, seconds: int, abusers: int, open_port: int,
                  data: Path, kinds: str, window: float = 0.0) -> dict[str, Any]:
    """One phase. `window` > 0 (interleaved): 2 x `seconds` of clients, the abusers on in every other
    `window`-second window (so `seconds` of abuse), latency split by the window each SA was sent in."""
    loop = asyncio.get_running_loop()
    run = lg.Run(steady=range(n))
    interleaved = window > 0 and abusers > 0
    if interleaved:
        run.sent_ms = array("q")
    clients, failures = await lg.connect_many(tg, lambda i: lg.Client(i, run, True), range(n))
    if len(clients) < n:
        raise RuntimeError(f"only {len(clients)}/{n} clients connected")
    for c in clients:  # like ATAK on connect: its SA, then the marker it placed
        c.send(lg.make_sa(c.sid, 0))
        c.send(marker(f"KB-MK-{c.sid}", f"kb marker {c.sid}"))
    await asyncio.sleep(1.0)
    child = None
    abuse_cpu0 = _children_cpu()
    if abusers and not interleaved:
        child = _spawn_abusers(tg, open_port, seconds + 2, abusers, n, kinds)
        await asyncio.sleep(1.0)  # the abusers are at it before the measurement starts
    if os.environ.get("KESTREL_SOAK_PROBE"):
        subprocess.Popen([sys.executable, os.environ["KESTREL_SOAK_PROBE"], str(tg.port)])
    rss_before_mb = proc.memory_info().rss / 2**20  # the clients and their markers in, no abuser yet
    meter = lg.Meter(proc)
    run.t_start = time.time_ns()
    start = loop.time() + 0.05
    meter.start()
    rng = random.Random(n)
    span = 2 * seconds if interleaved else seconds
    windows = None
    if interleaved:
        windows = loop.create_task(_abuse_windows(tg, open_port, start - 0.05, window, int(span // window), abusers, n, kinds))
    tasks = [loop.create_task(lg.send_loop(c, start, rng.random(), span)) for c in clients]
    sent = sum(await asyncio.gather(*tasks))
    usage = meter.stop()
    expected = sent * (n - 1)
    await lg.drain(run, expected)
    abuse_out: dict[str, int] = {}
    if child is not None:
        out, _ = await loop.run_in_executor(None, child.communicate)
        usage["abuser_cpu"] = (_children_cpu() - abuse_cpu0) / (seconds + 3)  # cores, the abusers' process
        abuse_out = _abuse_result(out)
    if windows is not None:
        abuse_out = await windows
        usage["abuser_cpu"] = (_children_cpu() - abuse_cpu0) / seconds  # cores while the abusers were on
        usage.update(split_windows(run, window))
    audit = await _audit(tg.port, n)
    counters = await loop.run_in_executor(None, _metrics, data)
    for c in clients:
        c.close()
    await asyncio.sleep(0.2)
    return {"n": n, "abusers": abusers, "seconds": seconds, "sent": sent, "connect_retries": failures, "rss_before_mb": rss_before_mb,
            **lg.summarize(run, expected), **usage, **audit, "abuse": abuse_out, "counters": counters}


def phase(workdir: Path, label: str, n: int, seconds: int, abusers: int, kinds: str = ",".join(KINDS),
          window: float = 0.0) -> dict[str, Any]:
    open_port = lg_free_port()
    cfg = workdir / f"{label}.toml"
    cfg.write_text(CONFIG.format(open_port=open_port, budget=RETAINED_BUDGET, byte_rate=BYTE_RATE))
    t = time.monotonic()
    with fanout.server("kestrel", workdir, label, extra=("--config", str(cfg))) as (tg, proc):
        if PIN:
            pin(proc.pid, PIN[0])
        res = fanout.run_async(measure(tg, proc, n, seconds, abusers, open_port, workdir / f"data-{label}", kinds,
                                       window))
    res.update(phase=label, took_s=time.monotonic() - t)
    split = (f" (without abusers {res['p99_off_ms']:.1f}, with {res['p99_on_ms']:.1f})" if "p99_on_ms" in res else "")
    print(f"  {label}: delivered {res['delivered']:.4%} p99 {res['p99_ms']:.1f} ms{split} rss {res['srv_rss_mb']:.0f} MB "
          f"markers lost {res['markers_lost']} in {res['took_s']:.0f} s", file=sys.stderr, flush=True)
    return res


ABUSER_NICE = 10
PIN: tuple[set[int], set[int]] | None = None  # (server's CPUs, clients' CPUs) when pinned


def plan_pins(mode: str) -> tuple[set[int], set[int]] | None:
    """`auto`: the server alone on the first CPU this process may use, the clients on the rest."""
    cpus = sorted(os.sched_getaffinity(0))
    if mode == "off" or len(cpus) < 2:
        return None
    return {cpus[0]}, set(cpus[1:])


def pin(pid: int, cpus: set[int]) -> None:
    """Every thread of `pid` onto `cpus` (threads it starts later inherit it from theirs)."""
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            os.sched_setaffinity(int(tid), cpus)
        except (ProcessLookupError, PermissionError):  # a thread that just ended
            pass


def lg_free_port() -> int:
    return fanout.free_port()


def _verdict(lines: list[str], rows: list[dict[str, Any]], ratio_line: str, ratio: float, rss_label: str,
             rss_max: float, bound_mb: float, bound_why: str) -> tuple[str, bool]:
    """The checks both layouts share: the p99 ratio, peak RSS under its bound, 100 % delivery and no
    well-behaved stored item lost in every phase; then each phase's counters."""
    ok_delivery = all(r["received"] == r["expected"] and r["echoes"] == 0 for r in rows)
    ok_lost = all(r["markers_lost"] == 0 for r in rows)
    ok = ok_delivery and ratio <= 1.5 and rss_max <= bound_mb and ok_lost
    lines += ["", f"{ratio_line}, ratio {ratio:.2f} (pass <= 1.5)",
              f"{rss_label} {rss_max:.0f} MB (bound {bound_mb:.0f} MB = {bound_why})",
              f"delivery 100 % in every phase: {ok_delivery}; well-behaved stored items lost: "
              f"{sum(r['markers_lost'] for r in rows)}"]
    for r in rows:  # baseline phases too: a drop there is the server's or the load generator's, not an abuser's
        c = {k: int(v) for k, v in r["counters"].items() if ":" in k or k.startswith("retained_evicted")}
        did = f"abusers did {r['abuse']}; " if r["abusers"] else ""
        lines.append(f"{r['phase']}: {did}server counters {c}; well-behaved connections the server closed: "
                     f"{r['dropped']}")
    lines.append(f"PASS: {ok}")
    return "\n".join(lines), ok


def report(rows: list[dict[str, Any]], bound_mb: float, bound_why: str) -> tuple[str, bool]:
    base = [r for r in rows if not r["abusers"]]
    att = [r for r in rows if r["abusers"]]
    p99_base = statistics.median(r["p99_ms"] for r in base)
    p99_att = statistics.median(r["p99_ms"] for r in att)
    lines = ["| phase | clients | abusers | delivered | p50 ms | p99 ms | max ms | server CPU | loadgen CPU | abusers CPU "
             "| peak RSS MB | markers kept | SA kept |", "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['phase']} | {r['n']} | {r['abusers']} | {r['received']}/{r['expected']} "
                     f"({r['delivered']:.2%}) | {r['p50_ms']:.1f} | {r['p99_ms']:.1f} | {r['max_ms']:.0f} "
                     f"| {r['srv_cpu']:.0%} | {r['gen_cpu']:.0%} | {r.get('abuser_cpu', 0):.0%} | {r['srv_rss_mb']:.0f} | {r['markers_kept']}/{r['n']} | {r['sa_kept']} |")
    ratio = p99_att / p99_base if p99_base else float("inf")
    return _verdict(lines, rows, f"median p99: baseline {p99_base:.1f} ms, attack {p99_att:.1f} ms", ratio,
                    "peak RSS under attack", max(r["srv_rss_mb"] for r in att), bound_mb, bound_why)


def report_windows(rows: list[dict[str, Any]], bound_mb: float, bound_why: str, window: float) -> tuple[str, bool]:
    """Interleaved phases: the abusers' windows against the windows between them, same server and clients."""
    lines = [f"interleaved: abusers on in every other {window:g} s window (odd windows), off in the others; "
             f"SAs sent in the first {SETTLE_S:g} s of any window count for neither",
             "| phase | delivered | p50 off / on ms | p99 off / on ms | p99 on / off | median window p99 off / on ms "
             "| server CPU | abusers CPU | peak RSS MB | markers kept | SA kept |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['phase']} | {r['received']}/{r['expected']} ({r['delivered']:.2%}) "
                     f"| {r['p50_off_ms']:.1f} / {r['p50_on_ms']:.1f} | {r['p99_off_ms']:.1f} / {r['p99_on_ms']:.1f} "
                     f"| {r['p99_on_ms'] / r['p99_off_ms']:.2f} | {r['p99_off_windows_ms']:.1f} / {r['p99_on_windows_ms']:.1f} "
                     f"| {r['srv_cpu']:.0%} | {r.get('abuser_cpu', 0):.0%} | {r['srv_rss_mb']:.0f} | {r['markers_kept']}/{r['n']} "
                     f"| {r['sa_kept']} |")
    p99_off = statistics.median(r["p99_off_ms"] for r in rows)
    p99_on = statistics.median(r["p99_on_ms"] for r in rows)
    ratio = p99_on / p99_off if p99_off else float("inf")
    return _verdict(lines, rows, f"median p99: without abusers {p99_off:.1f} ms, with {p99_on:.1f} ms", ratio,
                    "peak RSS", max(r["srv_rss_mb"] for r in rows), bound_mb, bound_why)


def main(argv: list[str] | None = None) -> int:
    if argv is None and len(sys.argv) > 1 and sys.argv[1] == "--abuse":
        port, open_port, seconds, n, victims, kinds = sys.argv[2:8]
        out = asyncio.run(abuse("127.0.0.1", int(port), int(open_port), float(seconds), int(n), int(victims),
                                tuple(kinds.split(","))))
        print(json.dumps(out))
        return 0
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clients", type=int, default=200)
    ap.add_argument("--abusers", type=int, default=20)
    ap.add_argument("--seconds", type=int, default=300, help="measured seconds per phase (default 300)")
    ap.add_argument("--rounds", type=int, default=1, help="baseline/attack pairs, alternating (default 1)")
    ap.add_argument("--kinds", default=",".join(KINDS), help="abuser kinds, comma list (default all: %(default)s)")
    ap.add_argument("--pin", choices=("auto", "off"), default="auto",
                    help="auto: the server alone on one CPU, the clients (abusers at nice 10) on the others")
    ap.add_argument("--interleave", type=float, default=0.0, metavar="W",
                    help="one server per round for 2 x --seconds, the abusers on in every other W-second window; "
                         "p99 with vs without them from the same run (default 0: separate baseline/attack phases)")
    ap.add_argument("--json", type=Path, help="also write the raw rows here")
    ap.add_argument("--workdir", type=Path, help="keep server logs and data here (default: a temp dir)")
    args = ap.parse_args(argv)
    fanout.raise_nofile()
    global PIN
    PIN = plan_pins(args.pin)
    if PIN:
        os.sched_setaffinity(0, PIN[1])  # this process (the well-behaved clients) and the abusers it starts
        print(f"pinned: server on CPU {sorted(PIN[0])}, clients on CPU {sorted(PIN[1])} (abusers at nice "
              f"{ABUSER_NICE})", file=sys.stderr, flush=True)
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="kestrel-soak-") as tmp:
        w = args.workdir or Path(tmp)
        w.mkdir(parents=True, exist_ok=True)
        for k in range(args.rounds):
            if args.interleave > 0:
                rows.append(phase(w, f"mixed{k}", args.clients, args.seconds, args.abusers, args.kinds, args.interleave))
                continue
            rows.append(phase(w, f"baseline{k}", args.clients, args.seconds, 0))
            rows.append(phase(w, f"attack{k}", args.clients, args.seconds, args.abusers, args.kinds))
    if args.interleave > 0:  # no abuser-free phase: the bound's baseline is the RSS before the abusers came
        bound, why = rss_bound_mb(statistics.median(r["rss_before_mb"] for r in rows), args.abusers)
        text, ok = report_windows(rows, bound, why, args.interleave)
    else:
        bound, why = rss_bound_mb(statistics.median(r["srv_rss_mb"] for r in rows if not r["abusers"]), args.abusers)
        text, ok = report(rows, bound, why)
    print(f"CPUs: {'server ' + str(sorted(PIN[0])) + ', clients ' + str(sorted(PIN[1])) + f' (abusers nice {ABUSER_NICE})' if PIN else 'not pinned'}")
    print(text)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1, default=str))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
