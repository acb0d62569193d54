"""`kestrel serve --workers N`: one command uses every core.

The supervisor starts a nats-server (JetStream, store in DATA/nats, a free loopback port, written to
DATA/cluster.url for `--status`), then N `kestrel serve … --cluster URL --reuse-port` children that
share the listening ports (SO_REUSEPORT: the kernel spreads new clients across them). SIGTERM or
SIGINT: the children get SIGTERM (clean shutdown), then the nats-server stops. A child that dies
is restarted (at most RESTARTS_PER_MINUTE times a minute). Worst case: stop waits 10 s per child.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import threading
import time

from kestrel.cluster import wire
from kestrel.cluster.natsd import Natsd, NatsdConfig, NatsdError
from kestrel.cluster.wire import URL_FILE
from kestrel.server import logs
from kestrel.server.config import ServerConfig

RESTARTS_PER_MINUTE = 5


def child_argv(argv: list[str], url: str) -> list[str]:
    """The supervisor's own `serve` arguments minus --workers, plus --cluster URL --reuse-port."""
    out: list[str] = []
    skip = False
    for a in argv:
        if skip:
            skip = False
            continue
        if a == "--workers":
            skip = True
            continue
        if a.startswith("--workers="):
            continue
        out.append(a)
    return [sys.executable, "-m", "kestrel", *out, "--cluster", url, "--reuse-port", "--wire", "xml"]


HTTP_OFF = ["--http-port", "off", "--https-port", "off", "--enroll-port", "off"]  # Marti API: the first child only


def run(args: argparse.Namespace, cfg: ServerConfig, argv: list[str] | None = None) -> int:
    from kestrel.errors import BadInput

    n = args.workers
    if not 1 <= n <= 256:
        raise BadInput(f"--workers {n}: expected 1-256")
    if args.cluster:
        raise BadInput("--workers starts its own NATS server: leave out --cluster (or run each process "
                       "with --cluster yourself)")
    if any(li.port == 0 for li in cfg.listeners):
        raise BadInput("--workers: the processes share fixed ports; port 0 is not allowed")
    site = wire.check_site(args.site or "kestrel")
    from kestrel.server import datadir

    datadir.prepare(cfg.data_dir)
    try:  # one supervisor (or one plain server) per data dir; the children share it without SQLite
        lock = datadir.DataDirLock.acquire(cfg.data_dir)
    except datadir.DataDirError as exc:
        raise BadInput(str(exc)) from None
    nd = Natsd(NatsdConfig(store_dir=cfg.data_dir / "nats", name=f"kestrel-{site}", domain=site),
               cfg.data_dir / "nats.conf")
    try:
        nd.start()
    except NatsdError as exc:
        lock.release()
        raise BadInput(str(exc)) from None
    (cfg.data_dir / URL_FILE).write_text(nd.url + "\n", encoding="utf-8")
    logs.info("workers.nats", url=nd.url, store=cfg.data_dir / "nats")
    cmd = child_argv(list(sys.argv[1:] if argv is None else argv), nd.url)
    stop = threading.Event()
    got: list[int] = []

    def on_signal(signum: int, _frame: object) -> None:
        got.append(signum)
        stop.set()

    old = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
    children: list[subprocess.Popen[bytes]] = []
    restarts: list[float] = []
    try:
        children = [subprocess.Popen(cmd if i == 0 else cmd + HTTP_OFF) for i in range(n)]
        logs.info("workers.started", workers=n, pids=",".join(str(c.pid) for c in children))
        while not stop.wait(0.5):  # supervision poll: a dead child is noticed within 0.5 s
            for i, c in enumerate(children):
                rc = c.poll()
                if rc is None:
                    continue
                now = time.monotonic()
                restarts[:] = [t for t in restarts if now - t < 60] + [now]
                if len(restarts) > RESTARTS_PER_MINUTE:
                    logs.warning("workers.giving_up", pid=c.pid, rc=rc)
                    stop.set()
                    break
                logs.warning("workers.restart", pid=c.pid, rc=rc)
                children[i] = subprocess.Popen(cmd if i == 0 else cmd + HTTP_OFF)
    finally:
        for c in children:
            if c.poll() is None:
                c.send_signal(signal.SIGTERM)
        for c in children:
            try:
                c.wait(10)
            except subprocess.TimeoutExpired:
                c.kill()
                c.wait()
        nd.stop()
        with_url = cfg.data_dir / URL_FILE
        if with_url.exists():
            os.unlink(with_url)
        lock.release()
        for s, h in old.items():
            signal.signal(s, h)
        logs.info("workers.stopped", signal=got[0] if got else None)
    return 0
