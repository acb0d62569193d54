"""Load generator for `bench/fanout.py`: many raw-TCP CoT clients in one asyncio (uvloop) process.

Each client sends a realistic ATAK-style SA (~700 bytes) once a second with a random phase; the
detail carries `<_kb s="SENDER" q="SEQ" t="SEND_NS"/>` so every receiver measures latency and counts
deliveries with one C-level regex pass over what it received (O(bytes), no XML parsing here: the
generator must stay cheaper than the server it measures). Senders never count their own echo as a
delivery; an echo is counted as an error. Messages sent before a run started are ignored.
"""

from __future__ import annotations

import asyncio
import random
import re
import socket
import ssl
import struct
import time
from array import array
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import psutil

END = b"</event>"
RX = re.compile(rb"""<_kb s=["'](\d+)["'] q=["']\d+["'] t=["'](\d+)["']\s*/>""")
MAX_PENDING = 1 << 20

_SA = (
    '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>'
    '<event version="2.0" uid="KB-{s:05d}" type="a-f-G-U-C" how="m-g" time="{ts}" start="{ts}" stale="{stale}">'
    '<point lat="{lat:.6f}" lon="{lon:.6f}" hae="112.4" ce="9.9" le="9999999.0"/>'
    "<detail>"
    '<takv os="34" version="5.3.0.12 (kestrel-bench)" device="BENCH" platform="ATAK-CIV"/>'
    '<contact endpoint="*:-1:stcp" callsign="KB-{s:05d}"/>'
    '<uid Droid="KB-{s:05d}"/>'
    '<precisionlocation altsrc="GPS" geopointsrc="GPS"/>'
    '<__group role="Team Member" name="Cyan"/>'
    '<status battery="87"/>'
    '<track course="{crs:.1f}" speed="1.3"/>'
    '<_kb s="{s}" q="{q}" t="{t}"/>'
    "</detail></event>"
)


def _iso(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t * 1000) % 1000:03d}Z"


def make_sa(sender: int, seq: int) -> bytes:
    now = time.time()
    return _SA.format(
        s=sender, q=seq, t=time.time_ns(), ts=_iso(now), stale=_iso(now + 120),
        lat=38.85 + sender * 1e-4, lon=-77.05 + seq * 1e-5, crs=(seq * 7) % 360,
    ).encode()


@dataclass(frozen=True)
class Target:
    host: str
    port: int
    ssl: ssl.SSLContext | None = None  # TLS with a client certificate when set


@dataclass
class Run:
    """Counters of one measured run, shared by its clients."""

    steady: range  # sender ids whose messages count
    t_start: int = 1 << 62  # wall ns; messages sent before it are ignored (set when sending starts)
    received: int = 0
    echoes: int = 0
    dropped: int = 0  # connections the server closed on us during the run
    lat_us: array[int] = field(default_factory=lambda: array("q"))
    sent_ms: array[int] | None = None  # when set: each latency's send time, ms after t_start


_REQUEST = (
    '<?xml version="1.0" encoding="UTF-8"?>'
    '<event version="2.0" uid="{uid}" type="t-x-takp-q" how="m-g" time="{ts}" start="{ts}" stale="{stale}">'
    '<point lat="0.0" lon="0.0" hae="0.0" ce="999999" le="999999"/>'
    '<detail><TakControl><TakRequest version="1"/></TakControl></detail></event>'
)


class Client(asyncio.Protocol):
    """One TAK client. `proto`: negotiate TAK protocol v1 (offer v, request q, response r) first,
    then send 0xBF-framed protobuf (encoded by takproto, an outside library)."""

    def __init__(self, sid: int, run: Run, counted: bool, proto: bool = False) -> None:
        self.sid, self.run, self.counted, self.proto = sid, run, counted, proto
        self.buf = b""
        self.transport: asyncio.Transport | None = None
        self.closing = False
        loop = asyncio.get_running_loop()
        self.lost = loop.create_future()
        self.ready = loop.create_future()  # negotiation finished (at once for XML clients)
        self.fmt = "xml"
        self._neg: bytes | None = b"" if proto else None
        self._asked = False
        if proto:
            import takproto  # noqa: F401  # import now: a first import mid-run stalls the loop ~0.4 s
        else:
            self.ready.set_result(None)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is not a subclass

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closing:
            self.run.dropped += 1
        for f in (self.lost, self.ready):
            if not f.done():
                f.set_result(None) if f is self.lost else f.set_exception(ConnectionError("closed"))

    def data_received(self, data: bytes) -> None:
        now = time.time_ns()
        if self._neg is not None:
            self._negotiate(data)
        buf = self.buf + data if self.buf else data
        # Keep only a trailing partial tag for the next read: a tag is counted exactly once.
        k = buf.rfind(b"<_kb")
        self.buf = buf[k:] if k >= 0 and len(buf) - k < 200 and RX.match(buf, k) is None else buf[-4:]
        if not self.counted:
            return
        run, me, steady, t0 = self.run, self.sid, self.run.steady, self.run.t_start
        lat, sent = run.lat_us, run.sent_ms
        for s, t in RX.findall(buf):
            ti = int(t)
            if ti < t0:
                continue
            si = int(s)
            if si == me:
                run.echoes += 1
            elif si in steady:
                run.received += 1
                lat.append((now - ti) // 1000)
                if sent is not None:
                    sent.append((ti - t0) // 1_000_000)

    def _negotiate(self, data: bytes) -> None:
        assert self._neg is not None
        neg = self._neg = self._neg + data
        if not self._asked and b"t-x-takp-v" in neg:
            self._asked = True
            now = time.time()
            self.send(_REQUEST.format(uid=f"kb-req-{self.sid}", ts=_iso(now), stale=_iso(now + 60)).encode())
        i = neg.find(b"t-x-takp-r")
        end = neg.find(END, i) if i >= 0 else -1
        if end >= 0:
            self._neg = None
            if b'status="true"' in neg[i:end]:
                self.fmt = "proto"
                self.ready.set_result(None)
            else:
                self.ready.set_exception(RuntimeError("server refused TAK protocol v1"))
        elif len(neg) > MAX_PENDING:
            self._neg = None
            self.ready.set_exception(RuntimeError("no TAK protocol negotiation from the server"))

    def send_sa(self, seq: int) -> None:
        data = make_sa(self.sid, seq)
        if self.fmt == "proto":
            import takproto

            data = bytes(takproto.xml2proto(data.decode(), takproto.TAKProtoVer.STREAM))
        self.send(data)

    def send(self, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def close(self, reset: bool = False) -> None:
        self.closing = True
        if self.transport is None:
            return
        if reset:  # RST, as a phone losing its link would look to the server
            sock = self.transport.get_extra_info("socket")
            if sock is not None:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.transport.close()


async def connect_many(
    tg: Target, make: Callable[[int], Client], ids: Iterable[int], batch: int = 100
) -> tuple[list[Client], int]:
    """Connect clients `batch` at a time (all at once when batch >= len); returns (clients, failures)."""
    loop = asyncio.get_running_loop()
    ids = list(ids)
    out: list[Client] = []
    failures = 0

    async def one(i: int) -> Client | None:
        nonlocal failures
        for attempt in range(3):
            try:
                _, proto = await asyncio.wait_for(
                    loop.create_connection(
                        lambda: make(i), tg.host, tg.port, ssl=tg.ssl,
                        server_hostname="localhost" if tg.ssl else None,
                    ),
                    10,
                )
                return proto
            except (TimeoutError, OSError):  # ssl.SSLError is an OSError
                failures += 1
                await asyncio.sleep(0.2 * (attempt + 1))
        return None

    for k in range(0, len(ids), batch):
        got = await asyncio.gather(*(one(i) for i in ids[k : k + batch]))
        out.extend(c for c in got if c is not None)
    return out, failures


async def send_loop(c: Client, start: float, phase: float, count: int) -> int:
    """Send `count` SAs at 1 Hz on the loop clock, starting at start+phase; returns how many went."""
    loop = asyncio.get_running_loop()
    sent = 0
    for k in range(count):
        delay = start + phase + k - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        if c.transport is None or c.transport.is_closing():
            break
        c.send_sa(k + 1)
        sent += 1
    return sent


class Meter:
    """CPU seconds / wall of the server and of this generator, and the server's peak RSS."""

    def __init__(self, server: psutil.Process | None) -> None:
        self.server, self.me = server, psutil.Process()
        self.peak_rss = 0
        self._task: asyncio.Task[None] | None = None

    @staticmethod
    def _cpu(p: psutil.Process) -> float:
        t = p.cpu_times()
        return float(t.user + t.system)

    def start(self) -> None:
        self.t0 = time.monotonic()
        self.gen0 = self._cpu(self.me)
        self.srv0 = self._cpu(self.server) if self.server else 0.0
        self._task = asyncio.get_running_loop().create_task(self._sample())

    async def _sample(self) -> None:
        while self.server is not None:
            self.peak_rss = max(self.peak_rss, self.server.memory_info().rss)
            await asyncio.sleep(0.5)

    def stop(self) -> dict[str, Any]:
        wall = time.monotonic() - self.t0
        if self._task is not None:
            self._task.cancel()
        out: dict[str, Any] = {"gen_cpu": (self._cpu(self.me) - self.gen0) / wall}
        if self.server is not None:
            out["srv_cpu"] = (self._cpu(self.server) - self.srv0) / wall
            out["srv_rss_mb"] = max(self.peak_rss, self.server.memory_info().rss) / 2**20
        return out


async def drain(run: Run, expected: int, quiet: float = 2.0, cap: float = 15.0) -> None:
    """Wait until every expected message arrived, or nothing new came for `quiet` s (or `cap` s)."""
    loop = asyncio.get_running_loop()
    last, last_t, t_end = run.received, loop.time(), loop.time() + cap
    while run.received < expected and loop.time() < t_end and loop.time() - last_t < quiet:
        await asyncio.sleep(0.05)
        if run.received != last:
            last, last_t = run.received, loop.time()


def summarize(run: Run, expected: int) -> dict[str, Any]:
    import numpy as np

    lat = np.frombuffer(run.lat_us, dtype=np.int64) / 1000.0 if len(run.lat_us) else np.zeros(1)
    return {
        "expected": expected,
        "received": run.received,
        "delivered": run.received / expected if expected else 0.0,
        "echoes": run.echoes,
        "dropped": run.dropped,
        "p50_ms": float(np.percentile(lat, 50)),
        "p99_ms": float(np.percentile(lat, 99)),
        "max_ms": float(lat.max()),
    }


async def fanout(
    tg: Target, n: int, seconds: int, server: psutil.Process | None, proto: float = 0.0
) -> dict[str, Any]:
    """N clients, all-to-all SA at 1 Hz for `seconds`: delivered fraction, latency, CPU, RSS.
    A `proto` fraction of the clients (spread evenly) speaks TAK protocol v1 instead of XML."""
    loop = asyncio.get_running_loop()
    run = Run(steady=range(n))

    def make(i: int) -> Client:
        return Client(i, run, True, proto=int((i + 1) * proto) > int(i * proto))

    clients, failures = await connect_many(tg, make, range(n))
    if len(clients) < n:
        raise RuntimeError(f"only {len(clients)}/{n} clients connected")
    try:
        await asyncio.wait_for(asyncio.gather(*(c.ready for c in clients)), 20)
    except TimeoutError:
        raise RuntimeError("TAK protocol negotiation did not finish in 20 s") from None
    await asyncio.sleep(1.0)  # let the server finish its per-connection greeting
    meter = Meter(server)
    run.t_start = time.time_ns()
    start = loop.time() + 0.05
    meter.start()
    rng = random.Random(n)
    tasks = [loop.create_task(send_loop(c, start, rng.random(), seconds)) for c in clients]
    sent = sum(await asyncio.gather(*tasks))
    usage = meter.stop()
    expected = sent * (n - 1)
    await drain(run, expected)
    out = {"n": n, "seconds": seconds, "sent": sent, "connect_retries": failures,
           "proto_clients": sum(c.proto for c in clients), **summarize(run, expected), **usage}
    for c in clients:
        c.close()
    await asyncio.sleep(0.2)
    return out


async def idle(tg: Target, count: int, server: psutil.Process) -> dict[str, Any]:
    """RSS delta of the server over `count` idle (connected, silent) TCP clients."""
    run = Run(steady=range(0))
    warm, _ = await connect_many(tg, lambda i: Client(i, run, False), range(5))
    await asyncio.sleep(1.0)
    rss0 = server.memory_info().rss
    clients, failures = await connect_many(tg, lambda i: Client(i, run, False), range(10, 10 + count))
    rss1 = await _settled_rss(server)
    for c in clients + warm:
        c.close()
    await asyncio.sleep(0.5)
    return {
        "idle": len(clients), "connect_retries": failures,
        "rss0_mb": rss0 / 2**20, "rss1_mb": rss1 / 2**20,
        "kb_per_conn": (rss1 - rss0) / 1024 / max(1, len(clients)),
    }


async def _settled_rss(p: psutil.Process, timeout: float = 10.0) -> int:
    loop = asyncio.get_running_loop()
    t_end, prev = loop.time() + timeout, -1
    await asyncio.sleep(1.0)
    rss = p.memory_info().rss
    while rss != prev and loop.time() < t_end:
        prev = rss
        await asyncio.sleep(0.5)
        rss = p.memory_info().rss
    return rss


async def churn(
    tg: Target, steady_n: int, churn_n: int, rounds: int, server: psutil.Process | None
) -> dict[str, Any]:
    """`steady_n` clients talk at 1 Hz while `churn_n` clients connect at once, send one SA and
    disconnect at once (FIN on even rounds, RST on odd ones), `rounds` times. Counts steady losses."""
    loop = asyncio.get_running_loop()
    run = Run(steady=range(steady_n))
    steady, failures = await connect_many(tg, lambda i: Client(i, run, True), range(steady_n))
    if len(steady) < steady_n:
        raise RuntimeError(f"only {len(steady)}/{steady_n} steady clients connected")
    await asyncio.sleep(0.5)
    seconds = rounds + 3
    meter = Meter(server)
    run.t_start = time.time_ns()
    start = loop.time() + 0.05
    meter.start()
    rng = random.Random(7)
    tasks = [loop.create_task(send_loop(c, start, rng.random(), seconds)) for c in steady]
    churn_ok = churn_fail = 0
    await asyncio.sleep(1.0)
    for r in range(rounds):
        base = 100_000 + r * churn_n
        ids = range(base, base + churn_n)
        got, fails = await connect_many(tg, lambda i: Client(i, run, False), ids, batch=churn_n)
        churn_ok += len(got)
        churn_fail += churn_n - len(got) + fails
        for c in got:
            c.send_sa(1)
        await asyncio.sleep(0.3)
        for c in got:
            c.close(reset=bool(r % 2))
        await asyncio.sleep(0.5)
    sent = sum(await asyncio.gather(*tasks))
    usage = meter.stop()
    expected = sent * (steady_n - 1)
    await drain(run, expected)
    out = {
        "n": steady_n, "seconds": seconds, "sent": sent, "connect_retries": failures,
        "churn_connects": churn_ok, "churn_failures": churn_fail,
        **summarize(run, expected), **usage,
    }
    out["lost"] = expected - run.received
    for c in steady:
        c.close()
    await asyncio.sleep(0.2)
    return out


# -- the same load from several processes ------------------------------------------------------------
# One Python process reading N x (N-1) messages a second saturates its core first (at 400 clients:
# 160 k msg/s); then the latency measured is the generator's own queueing. `fanout_procs` splits the
# clients over P processes (client i in process i % P), started together on one wall-clock instant;
# each counts what its clients receive from all N senders and sends back its counters and latencies.


def _child(conn: Any, tg: Target, n: int, seconds: int, k: int, procs: int) -> None:
    import uvloop

    async def main() -> None:
        loop = asyncio.get_running_loop()
        run = Run(steady=range(n))
        ids = [i for i in range(n) if i % procs == k]
        clients, failures = await connect_many(tg, lambda i: Client(i, run, True), ids)
        conn.send(("ready", len(clients), failures))
        start_wall = await loop.run_in_executor(None, conn.recv)
        run.t_start = int(start_wall * 1e9)
        start = loop.time() + (start_wall - time.time())
        rng = random.Random(n)
        phases = [rng.random() for _ in range(n)]  # the same phase per client id as in one process
        cpu0 = time.process_time()
        sent = sum(await asyncio.gather(*(loop.create_task(send_loop(c, start, phases[c.sid], seconds))
                                          for c in clients)))
        gen_cpu = time.process_time() - cpu0
        conn.send(("sent", sent, gen_cpu))
        total = await loop.run_in_executor(None, conn.recv)  # sent by all processes
        await drain(run, total * len(clients) - sent, quiet=5.0, cap=30.0)  # all but its own
        conn.send(("done", run.received, run.echoes, run.dropped, run.lat_us.tobytes()))
        for c in clients:
            c.close()
        await asyncio.sleep(0.2)

    uvloop.run(main())


async def fanout_procs(
    tg: Target, n: int, seconds: int, server: psutil.Process | None, procs: int
) -> dict[str, Any]:
    """`fanout` (XML clients) with the clients spread over `procs` generator processes."""
    import multiprocessing as mp

    ctx = mp.get_context("spawn")
    loop = asyncio.get_running_loop()
    pipes, children = [], []
    for k in range(procs):
        parent, child = ctx.Pipe()
        p = ctx.Process(target=_child, args=(child, tg, n, seconds, k, procs), daemon=True)
        p.start()
        pipes.append(parent)
        children.append(p)

    def recv(i: int, timeout: float) -> Any:
        if not pipes[i].poll(timeout):
            raise RuntimeError(f"load generator process {i} did not answer in {timeout:.0f} s")
        return pipes[i].recv()

    try:
        ready = [await loop.run_in_executor(None, recv, i, 120) for i in range(procs)]
        connected, failures = sum(r[1] for r in ready), sum(r[2] for r in ready)
        if connected < n:
            raise RuntimeError(f"only {connected}/{n} clients connected")
        await asyncio.sleep(1.0)  # let the server finish its per-connection greeting
        meter = Meter(server)
        start_wall = time.time() + 0.2
        for pp in pipes:
            pp.send(start_wall)
        meter.start()
        sent_rows = [await loop.run_in_executor(None, recv, i, seconds + 120) for i in range(procs)]
        usage = meter.stop()
        sent = sum(r[1] for r in sent_rows)
        usage["gen_cpu"] = sum(r[2] for r in sent_rows) / seconds  # cores, all generator processes
        expected = sent * (n - 1)
        for pp in pipes:
            pp.send(sent)
        done = [await loop.run_in_executor(None, recv, i, 60) for i in range(procs)]
        if server is not None:  # CPU until the last message was delivered (a lagging server works on)
            usage["srv_cpu_s_all"] = Meter._cpu(server) - meter.srv0
    finally:
        for p in children:
            p.join(10)
            if p.is_alive():
                p.kill()
    run = Run(steady=range(n))
    for _, received, echoes, dropped, lat in done:
        run.received += received
        run.echoes += echoes
        run.dropped += dropped
        run.lat_us.frombytes(lat)
    return {"n": n, "seconds": seconds, "sent": sent, "connect_retries": failures, "proto_clients": 0,
            "gen_procs": procs, **summarize(run, expected), **usage}
