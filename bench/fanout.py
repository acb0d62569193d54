"""Fanout benchmark for the TAK server (`kestrel serve`): one command, prints a table.

    .venv/bin/python bench/fanout.py            # full run (~6 min): the issue's floors
    .venv/bin/python bench/fanout.py --quick    # smoke run, < 60 s
    .venv/bin/python bench/fanout.py --target 127.0.0.1:8087 [--server-pid PID]   # any TAK server

Each phase starts a fresh server (`python -m kestrel serve` on free loopback ports with a temp data
dir) and drives it with raw-TCP CoT clients from this process (bench/_loadgen.py):
  idle      server RSS delta over 1,000 idle connections / 1,000        floor < 64 KB each
  floor     200 clients x SA at 1 Hz all-to-all for 60 s                  100 % delivered, p99 < 200 ms
  baseline  the same load against bench/_relay.py, a trivial relay (no parsing) on the same kind
            of event loop: the ratio says what the server's real work costs above moving bytes
  mixed     200 clients, half on TAK protocol v1 (protobuf), half XML     as floor
  step N    N = 200, 250, 300, 350, 400, 500, ... for 20 s each, up to the first miss
                                                                          100 % delivered, p99 < 500 ms
  churn     20 steady clients talk while 50 connect/disconnect at once, 10x   0 lost among the steady
The load generator shares the machine's cores with the server: its own CPU is reported per phase
(a generator near 100 % of a core means the latency includes its own queueing).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import resource
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _loadgen as lg  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]

@dataclass(frozen=True)
class Plan:
    idle: int  # idle connections
    floor: tuple[int, int]  # (N, seconds)
    baseline: tuple[int, int]
    mixed: tuple[int, int]  # half the clients on TAK protocol v1 (protobuf), half XML
    steps: tuple[int, ...]
    step_s: int
    churn: tuple[int, int, int]  # (steady, churners, rounds)


FULL = Plan(1000, (200, 60), (200, 20), (200, 20), (200, 250, 300, 350, 400, 500, 600, 800, 1000, 1500, 2000), 20, (20, 50, 10))
QUICK = Plan(300, (100, 6), (100, 4), (100, 4), (100, 200), 4, (20, 50, 3))


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def raise_nofile() -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = hard if hard != resource.RLIM_INFINITY else 65536
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))  # inherited by the server too
    return int(want)


@contextmanager
def server(
    kind: str, workdir: Path, label: str, tls: bool = False, extra: tuple[str, ...] = ()
) -> Iterator[tuple[lg.Target, psutil.Process]]:
    """Start `kestrel serve` (or the stand-in relay) on free loopback ports; stop it on exit."""
    port, tls_port = free_port(), free_port()
    data = workdir / f"data-{label}"
    ctx = None
    if kind == "kestrel":
        cmd = [sys.executable, "-m", "kestrel", "serve", "--host", "127.0.0.1", "--tcp-port", str(port),
               "--udp-port", str(free_port(socket.SOCK_DGRAM)), "--data", str(data), *extra]
        if tls:  # an explicit --tls-port makes the server require certificates
            cmd += ["--tls-port", str(tls_port)]
            from kestrel import pki as certs

            certs.init(data)
            certs.issue_client(data, "bench")
            ctx = certs.client_ssl_context(data, "bench")
            port = tls_port
    else:
        cmd = [sys.executable, str(ROOT / "bench" / "_relay.py"), str(port)]
    log = (workdir / f"{label}.log").open("wb")
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"{kind} server exited with {proc.returncode}:\n{_tail(workdir / f'{label}.log')}")
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{kind} server did not listen on {port}") from None
                time.sleep(0.1)
        yield lg.Target("127.0.0.1", port, ctx), psutil.Process(proc.pid)
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def _rel(path: str) -> str:
    p = Path(path).absolute()
    return str(p.relative_to(ROOT)) if p.is_relative_to(ROOT) else path


def _tail(path: Path, lines: int = 20) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def run_async(coro: Any) -> Any:
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    return uvloop.run(coro)


def phase(
    args: argparse.Namespace, workdir: Path, label: str, kind: str, n: int, body: Any
) -> dict[str, Any]:
    """Run one phase against a fresh server of `kind`, or against --target when given.

    A phase that breaks (the server exits, clients cannot connect) is a failed row, not a crash."""
    t = time.monotonic()
    res: dict[str, Any] = {"n": n}
    try:
        if args.target and kind == args.server:
            host, port = args.target.rsplit(":", 1)
            proc = psutil.Process(args.server_pid) if args.server_pid else None
            ctx = None
            if args.tls:
                from kestrel import pki as certs

                ctx = certs.client_ssl_context(args.tls, args.tls_client)
            res.update(run_async(body(lg.Target(host, int(port), ctx), proc)))
        else:
            tls = bool(args.tls) and kind == "kestrel"
            with server(kind, workdir, label, tls=tls, extra=tuple(args.server_arg)) as (tg, proc):
                res.update(run_async(body(tg, proc)))
    except (RuntimeError, OSError) as exc:
        res["error"] = f"{type(exc).__name__}: {str(exc).strip().splitlines()[-1] if str(exc).strip() else ''}"
    log = workdir / f"{label}.log"
    if log.is_file():
        lines = log.read_text(errors="replace").splitlines()
        res["srv_warnings"] = sum(1 for ln in lines if "level=warn" in ln or "level=error" in ln)
    res.update(phase=label, server=kind, took_s=time.monotonic() - t)
    print(f"  {label}: {res.get('error', 'done')} in {res['took_s']:.0f} s", file=sys.stderr, flush=True)
    return res


def step(args: argparse.Namespace, w: Path, cfg: Plan, n: int) -> dict[str, Any]:
    r = phase(args, w, f"step{n}", args.server, n, lambda t, s: lg.fanout(t, n, cfg.step_s, s))
    r["ok"] = ok_fanout(r, 500.0)
    return r


def ok_fanout(r: dict[str, Any], p99_max: float) -> bool:
    return (
        "error" not in r and r["expected"] > 0 and r["received"] == r["expected"]
        and r["echoes"] == 0 and r["dropped"] == 0 and r["p99_ms"] < p99_max
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="smoke run, < 60 s")
    ap.add_argument("--server", choices=["kestrel", "relay"], default="kestrel", help="server under test")
    ap.add_argument("--target", metavar="HOST:PORT", help="measure an already running server instead")
    ap.add_argument("--server-pid", type=int, help="with --target: its pid, for CPU and RSS")
    ap.add_argument("--tls", nargs="?", const=True, metavar="DATA_DIR",
                    help="clients use TLS with client certificates (certs made in the temp data dir; "
                         "with --target, give the DATA_DIR whose certs to use)")
    ap.add_argument("--tls-client", default="bench", help="with --target --tls: client cert name")
    ap.add_argument("--server-arg", action="append", default=[], metavar="ARG",
                    help="extra argument for `kestrel serve` (repeat), e.g. --server-arg=--loop=uvloop")
    ap.add_argument("--steps", help="comma list of N for the step-up phase (default 200,250,300,350,400,500,...)")
    ap.add_argument("--step-seconds", type=int, help="seconds per step (default 20; --quick 4)")
    ap.add_argument("--only", help="comma list of phases: idle,floor,baseline,mixed,steps,churn")
    ap.add_argument("--json", type=Path, help="also write the results as JSON")
    args = ap.parse_args(argv)
    cfg = QUICK if args.quick else FULL
    if args.steps or args.step_seconds:
        steps = tuple(int(x) for x in args.steps.split(",")) if args.steps else cfg.steps
        cfg = dataclasses.replace(cfg, steps=steps, step_s=args.step_seconds or cfg.step_s)
    phases = set((args.only or "idle,floor,baseline,mixed,steps,churn").split(","))
    if args.target and args.tls is True:
        ap.error("--target with --tls needs the DATA_DIR whose certs/ the clients use")
    nofile = raise_nofile()
    if args.target and "idle" in phases and args.server_pid is None:
        phases.discard("idle")  # needs the server's RSS
    env = (f"server={args.target or args.server} {' '.join(args.server_arg)} tls={bool(args.tls)} "
           f"quick={args.quick} cpus={os.cpu_count()} load_avg_1m={os.getloadavg()[0]:.2f} nofile={nofile} "
           f"at {time.strftime('%Y-%m-%d %H:%M:%SZ', time.gmtime())}")
    print(f"fanout bench: {env}", file=sys.stderr)
    res: dict[str, Any] = {"env": env, "fanout": [], "cmd": " ".join([_rel(sys.executable), _rel(sys.argv[0]), *sys.argv[1:]])}
    t_all = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="kestrel-fanout-") as tmp:
        w = Path(tmp)
        if "idle" in phases:
            res["idle"] = phase(args, w, "idle", args.server, cfg.idle, lambda t, s: lg.idle(t, cfg.idle, s))
        if "floor" in phases:
            n, d = cfg.floor
            r = phase(args, w, "floor", args.server, n, lambda t, s: lg.fanout(t, n, d, s))
            r["ok"] = ok_fanout(r, 200.0)
            res["fanout"].append(r)
        if "baseline" in phases and args.server != "relay" and not args.tls:
            n, d = cfg.baseline
            r = phase(args, w, "baseline", "relay", n, lambda t, s: lg.fanout(t, n, d, s))
            r["ok"] = ok_fanout(r, 200.0)
            res["fanout"].append(r)
        if "mixed" in phases:
            n, d = cfg.mixed
            r = phase(args, w, "mixed", args.server, n, lambda t, s: lg.fanout(t, n, d, s, proto=0.5))
            r["ok"] = ok_fanout(r, 200.0)
            res["fanout"].append(r)
        if "steps" in phases:
            largest, first_failed = 0, None
            for n in cfg.steps:  # step up until the first miss
                r = step(args, w, cfg, n)
                res["fanout"].append(r)
                if not r["ok"]:
                    first_failed = n
                    break
                largest = n
            n = cfg.steps[0] // 2
            while largest == 0 and n >= 25:  # even the first step missed: step down
                r = step(args, w, cfg, n)
                res["fanout"].append(r)
                if r["ok"]:
                    largest = n
                n //= 2
            res["largest_n"], res["first_failed_n"] = largest, first_failed
        if "churn" in phases:
            st, ch, rounds = cfg.churn
            r = phase(args, w, "churn", args.server, st, lambda t, s: lg.churn(t, st, ch, rounds, s))
            r["ok"] = "error" not in r and r["lost"] == 0 and ok_fanout(r, float("inf"))
            res["churn"] = r
    res["total_s"] = time.monotonic() - t_all
    print(report(res))
    if args.json:
        args.json.write_text(json.dumps(res, indent=2))
    return 0


def _f(r: dict[str, Any], key: str, fmt: str = "{}", scale: float = 1.0) -> str:
    v = r.get(key)
    return "-" if v is None else fmt.format(v * scale) if isinstance(v, float) else str(v)


def report(res: dict[str, Any]) -> str:
    hdr = ("phase", "server", "N", "s", "expected", "received", "deliv %", "p50 ms", "p99 ms", "max ms",
           "echo", "cut", "srv warn", "srv CPU %", "srv RSS MB", "gen CPU %", "pass")
    rows = []
    notes = []
    for r in res["fanout"] + ([res["churn"]] if "churn" in res else []):
        rows.append((
            r["phase"], r["server"], r["n"], _f(r, "seconds"), _f(r, "expected"), _f(r, "received"),
            _f(r, "delivered", "{:.3f}", 100), _f(r, "p50_ms", "{:.1f}"), _f(r, "p99_ms", "{:.1f}"),
            _f(r, "max_ms", "{:.0f}"), _f(r, "echoes"), _f(r, "dropped"), _f(r, "srv_warnings"),
            _f(r, "srv_cpu", "{:.0f}", 100), _f(r, "srv_rss_mb", "{:.0f}"), _f(r, "gen_cpu", "{:.0f}", 100),
            "yes" if r.get("ok") else "NO",
        ))
        if "error" in r:
            notes.append(f"{r['phase']}: {r['error']}")
    lines = [f"fanout bench: {res['env']}", _table(hdr, rows), "", *notes]
    if "idle" in res:
        i = res["idle"]
        if "error" in i:
            lines.append(f"idle: {i['error']}")
        else:
            ok = i["kb_per_conn"] < 64
            lines.append(f"idle: {i['idle']} connections, server RSS {i['rss0_mb']:.1f} -> {i['rss1_mb']:.1f} MB = "
                         f"{i['kb_per_conn']:.1f} KB per connection (floor < 64 KB: {'yes' if ok else 'NO'})")
    if "churn" in res and "error" not in res["churn"]:
        c = res["churn"]
        lines.append(f"churn: {c['churn_connects']} churn connects ({c['churn_failures']} failed) while {c['n']} steady "
                     f"clients talked: {c['lost']} steady messages lost, {c['echoes']} echoes, "
                     f"{c['dropped']} steady drops (pass: {'yes' if c['ok'] else 'NO'})")
    if "largest_n" in res:
        miss = res["first_failed_n"]
        why = f"first miss at N={miss}" if miss else "no miss: the largest step tried"
        lines.append(f"largest N with 100 % delivered and p99 < 500 ms: {res['largest_n']} ({why})")
    by = {r["phase"]: r for r in res["fanout"] if "error" not in r}
    if "floor" in by and "baseline" in by and by["floor"]["n"] == by["baseline"]["n"]:
        f, b = by["floor"], by["baseline"]
        lines.append(
            f"baseline ratio (kestrel / trivial relay, same N, same generator): server CPU "
            f"{f['srv_cpu'] / max(b['srv_cpu'], 1e-9):.2f}x, p50 {f['p50_ms'] / max(b['p50_ms'], 1e-9):.2f}x, "
            f"p99 {f['p99_ms'] / max(b['p99_ms'], 1e-9):.2f}x")
    lines.append(f"total {res['total_s']:.0f} s; command: {res['cmd']}")
    return "\n".join(lines)


def _table(hdr: tuple[str, ...], rows: list[tuple[Any, ...]]) -> str:
    cells = [tuple(str(c) for c in hdr)] + [tuple(str(c) for c in r) for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(hdr))]
    fmt = " | ".join(f"{{:>{w}}}" for w in widths)
    out = [fmt.format(*cells[0]), "-+-".join("-" * w for w in widths)]
    out += [fmt.format(*r) for r in cells[1:]]
    return "\n".join(out)


if __name__ == "__main__":
    sys.exit(main())
