"""Cluster benchmark: `kestrel serve --workers 2` beside one process and the naive relay, same run.

    .venv/bin/python bench/cluster.py                 # N = 200, 400, 600; 3 rounds of 20 s each
    .venv/bin/python bench/cluster.py --quick         # N = 100, 200; 1 round of 5 s (smoke)

Fan-out: for each N, rounds alternate the order of the three servers (relay, single, workers2); each
round starts a fresh server and drives it with N raw-TCP clients sending SA at 1 Hz all-to-all
(bench/_loadgen.py, the same generator as bench/fanout.py, sharing the cores with the servers).
Medians over rounds of delivered %, p50/p99 latency, server CPU (all its processes: workers,
nats-server) and server CPU per delivered message.

Sites: a hub and an edge nats-server (leaf node), a Kestrel process on each; C clients on the edge
post SA at 1 Hz for S seconds; bytes sent over the link with `--link-interval 0.2` (about every
message) and 5 s (coalesced), and the bytes of the same SA in CoT XML as the clients sent them.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import namedtuple
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import _loadgen as lg  # noqa: E402
from fanout import free_port, raise_nofile, run_async  # noqa: E402

from kestrel.cluster.natsd import Natsd, NatsdConfig  # noqa: E402
from kestrel.cluster.status import gather  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
Cpu = namedtuple("Cpu", "user system")
Mem = namedtuple("Mem", "rss")


class Tree:
    """A process and all its descendants, as one psutil-like process for lg.Meter."""

    def __init__(self, root: psutil.Process) -> None:
        self.root = root
        self._dead = Cpu(0.0, 0.0)

    def _procs(self) -> list[psutil.Process]:
        try:
            return [self.root, *self.root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return []

    def cpu_times(self) -> Cpu:
        u = s = 0.0
        for p in self._procs():
            try:
                t = p.cpu_times()
            except psutil.NoSuchProcess:
                continue
            u, s = u + t.user, s + t.system
        return Cpu(u, s)

    def memory_info(self) -> Mem:
        total = 0
        for p in self._procs():
            try:
                total += p.memory_info().rss
            except psutil.NoSuchProcess:
                pass
        return Mem(total)


def wait_listen(proc: subprocess.Popen[bytes], port: int, log: Path, timeout: float = 60) -> None:
    import socket

    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}: {log.read_text()[-500:]}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise RuntimeError(f"nothing listens on {port}") from None
            time.sleep(0.1)


@contextmanager
def server(kind: str, work: Path, label: str) -> Any:
    port = free_port()
    data = work / f"data-{label}"
    base, _, variant = kind.partition("/")  # "single/nocork": the same server writing each message at once
    env = dict(os.environ, KESTREL_CORK="0" if variant == "nocork" else "1")
    if base == "relay":
        cmd = [sys.executable, str(ROOT / "bench" / "_relay.py"), str(port)]
    else:
        cmd = [sys.executable, "-m", "kestrel", "serve", "--tcp-port", str(port), "--data", str(data)]
        if base == "workers2":
            cmd += ["--workers", "2"]
    log = work / f"{label.replace('/', '-')}.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, env=env)
        try:
            wait_listen(proc, port, log)
            if base == "workers2":  # both workers answer before the load starts
                deadline = time.monotonic() + 60
                while len(asyncio.run(gather((data / "cluster.url").read_text().strip(), 0.5))) < 2:
                    if time.monotonic() > deadline:
                        raise RuntimeError("the two workers did not both answer --status")
            yield lg.Target("127.0.0.1", port), Tree(psutil.Process(proc.pid))
        finally:
            proc.terminate()
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def fan_round(kind: str, n: int, seconds: int, work: Path, label: str, gen_procs: int = 1) -> dict[str, Any]:
    try:
        with server(kind, work, label) as (tg, tree):
            if gen_procs > 1:
                r: dict[str, Any] = run_async(lg.fanout_procs(tg, n, seconds, tree, gen_procs))  # type: ignore[arg-type]
            else:
                r = run_async(lg.fanout(tg, n, seconds, tree))  # type: ignore[arg-type]
    except (RuntimeError, OSError) as exc:
        return {"error": str(exc)[:200]}
    # Server CPU from the first send until the drain ended (sending window only with --gen-procs 1).
    r["cpu_us_per_msg"] = r.get("srv_cpu_s_all", r["srv_cpu"] * seconds) / max(1, r["received"]) * 1e6
    print(f"  {label}: {r['delivered'] * 100:.1f} % p50 {r['p50_ms']:.0f} p99 {r['p99_ms']:.0f} ms "
          f"cpu {r['srv_cpu']:.2f} gen {r['gen_cpu']:.2f}",
          file=sys.stderr, flush=True)
    return r


def med(rows: list[dict[str, Any]], key: str) -> float:
    vals = [r[key] for r in rows if key in r]
    return statistics.median(vals) if vals else float("nan")


# -- sites: bytes over the link -----------------------------------------------------------------------


async def _edge_load(port: int, clients: int, seconds: int) -> int:
    """`clients` raw TCP clients post SA at 1 Hz; returns the XML bytes they sent."""
    total = 0
    conns = [await asyncio.open_connection("127.0.0.1", port) for _ in range(clients)]
    t0 = time.monotonic()
    for q in range(seconds):
        for i, (_, w) in enumerate(conns):
            sa = lg.make_sa(i, q)
            w.write(sa)
            total += len(sa)
        await asyncio.sleep(max(0.0, t0 + q + 1 - time.monotonic()))
    for _, w in conns:
        w.close()
    return total


def link_bytes(work: Path, interval: float, clients: int, seconds: int) -> dict[str, Any]:
    tag = f"i{interval}"
    leaf = free_port()
    hub = Natsd(NatsdConfig(work / f"hub-{tag}", name="hub", domain="hub", leaf_listen=leaf), work / f"hub-{tag}.conf")
    edge = Natsd(NatsdConfig(work / f"edge-{tag}", name="edge", domain="edge",
                             leaf_remote=f"nats-leaf://127.0.0.1:{leaf}"), work / f"edge-{tag}.conf")
    hub.start()
    edge.start()
    procs: list[subprocess.Popen[bytes]] = []
    try:
        hp, ep = free_port(), free_port()
        for site, url, port, extra in (("hub", hub.url, hp, []),
                                       ("edge", edge.url, ep, ["--hub", "hub", "--link-interval", str(interval)])):
            cmd = [sys.executable, "-m", "kestrel", "serve", "--tcp-port", str(port), "--data",
                   str(work / f"d-{site}-{tag}"), "--cluster", url, "--site", site, *extra]
            log = work / f"{site}-{tag}.log"
            procs.append(subprocess.Popen(cmd, cwd=ROOT, stdout=log.open("wb"), stderr=subprocess.STDOUT))
            wait_listen(procs[-1], port, log)
        xml = asyncio.run(_edge_load(ep, clients, seconds))
        deadline = time.monotonic() + 60
        while True:  # until the edge's outbound backlog is empty
            st = [r for r in asyncio.run(gather(edge.url, 0.5)) if r.get("site") == "edge"]
            link = st[0]["link"] if st else None
            if link and link["backlog_out"] == 0 and link["sent"] > 0 or time.monotonic() > deadline:
                break
            time.sleep(interval)
        assert link is not None
        return {"interval": interval, "xml_bytes": xml, "link_bytes": link["bytes_out"], "sent": link["sent"],
                "posted": clients * seconds}
    finally:
        for p in procs:
            p.terminate()
            p.wait(30)
        edge.stop()
        hub.stop()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--sizes", type=lambda s: [int(x) for x in s.split(",")])
    ap.add_argument("--rounds", type=int)
    ap.add_argument("--seconds", type=int)
    ap.add_argument("--kinds", default="relay,single,workers2",
                    help="servers, in order: relay, single, workers2; KIND/nocork = writes not corked")
    ap.add_argument("--gen-procs", type=int, default=2,
                    help="load generator processes (the same for every server; 1 = in this process)")
    ap.add_argument("--no-sites", action="store_true", help="fan-out only (skip the link bytes)")
    args = ap.parse_args(argv)
    sizes = args.sizes or ([100, 200] if args.quick else [200, 400, 600])
    rounds = args.rounds or (1 if args.quick else 3)
    seconds = args.seconds or (5 if args.quick else 20)
    raise_nofile()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # a stopped bench still stops its servers
    kinds = args.kinds.split(",")
    print(f"machine: {os.cpu_count()} cores, shared with other work; load generator on the same cores "
          f"({args.gen_procs} process(es))", file=sys.stderr)
    with tempfile.TemporaryDirectory(prefix="kestrel-bench-cluster-") as tmp:
        work = Path(tmp)
        results: dict[tuple[str, int], list[dict[str, Any]]] = {}
        for n in sizes:
            for r in range(rounds):
                order = kinds if r % 2 == 0 else kinds[::-1]
                for kind in order:
                    results.setdefault((kind, n), []).append(
                        fan_round(kind, n, seconds, work, f"{kind}-{n}-{r}", args.gen_procs))
        print(f"\nfan-out: N clients x SA at 1 Hz all-to-all, {seconds} s per round, median of {rounds} "
              "round(s), servers in alternating order")
        print(f"{'N':>5} {'server':15} {'delivered':>9} {'p50 ms':>7} {'p99 ms':>7} {'srv CPU':>7} "
              f"{'µs CPU/msg':>10} {'p99 / relay':>11} {'gen CPU':>7} {'errors':>6}")
        for n in sizes:
            relay_p99 = med(results[("relay", n)], "p99_ms") if "relay" in kinds else float("nan")
            for kind in kinds:
                rows = results[(kind, n)]
                errs = sum(1 for x in rows if "error" in x)
                p99 = med(rows, "p99_ms")
                print(f"{n:>5} {kind:15} {med(rows, 'delivered') * 100:>8.1f}% {med(rows, 'p50_ms'):>7.0f} "
                      f"{p99:>7.0f} {med(rows, 'srv_cpu'):>7.2f} {med(rows, 'cpu_us_per_msg'):>10.1f} "
                      f"{p99 / relay_p99:>11.2f} {med(rows, 'gen_cpu'):>7.2f} {errs:>6}")
        if args.no_sites:
            return 0
        clients, secs = (20, 10) if args.quick else (50, 30)
        print(f"\nsites: {clients} edge clients x SA at 1 Hz for {secs} s, bytes edge -> hub")
        print(f"{'link interval':>13} {'SA posted':>9} {'SA sent':>7} {'XML bytes':>10} {'link bytes':>10} "
              f"{'vs XML':>7} {'saved':>6}")
        for interval in (0.2, 5.0):
            lb = link_bytes(work, interval, clients, secs)
            print(f"{interval:>12}s {lb['posted']:>9} {lb['sent']:>7} {lb['xml_bytes']:>10} {lb['link_bytes']:>10} "
                  f"{lb['link_bytes'] / lb['xml_bytes']:>7.2f} {1 - lb['link_bytes'] / lb['xml_bytes']:>6.0%}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
