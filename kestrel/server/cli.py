"""`kestrel serve` (`kestrel certs …` lives in kestrel.pki.cli)."""

from __future__ import annotations

import argparse
import asyncio
import importlib
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kestrel.errors import BadInput
from kestrel.server.config import ConfigError, ServerConfig

# What `kestrel serve` starts beside the server, by name: factories `(config, args) -> extension`
# (an object with `async start(server)`, `async stop()`, `help_lines()`), registered by packages
# that build on the server (kestrel.marti.cli adds the Marti HTTP API and its flags).
EXTENSIONS: dict[str, Callable[[ServerConfig, argparse.Namespace], Any]] = {}


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "serve", help="run the TAK-compatible server (CoT over TCP/TLS/UDP, TAK protocol v1)",
        description="Run the TAK-compatible server. Flags override the config file.",
    )
    p.add_argument("--config", type=Path, metavar="FILE", help="TOML config file (see docs/server.md)")
    p.add_argument("--host", help="address to listen on (default 127.0.0.1; others only when asked)")
    p.add_argument("--tcp-port", type=int, metavar="P", help="plain TCP CoT port (default 8087)")
    p.add_argument("--tls-port", type=int, metavar="P",
                   help="TLS port with client certificates (default 8089, only when DATA/certs exists)")
    p.add_argument("--udp-port", type=int, metavar="P", help="UDP CoT datagram port (default off)")
    p.add_argument("--data", type=Path, metavar="DIR", help="data dir: store and certs (default ./kestrel-data)")
    p.add_argument("--loop", choices=("asyncio", "uvloop", "auto"), help="event loop (default asyncio; auto = uvloop when installed)")
    p.add_argument("--log-level", choices=("debug", "info", "warning"), help="default info")
    p.add_argument("--repair", action="store_true",
                   help="if DATA/kestrel.db is unreadable, move it aside (kestrel.db.corrupt-TIME) and start empty")
    p.add_argument("--status", action="store_true",
                   help="print the counters of the server running on --data (its /metrics) and exit; "
                   "with --cluster (or --workers running on --data): every process and site of the cluster")
    importlib.import_module("kestrel.cluster.cli").add_arguments(p)
    p.set_defaults(func=_cmd_serve)


def _cmd_serve(args: argparse.Namespace) -> int:
    from kestrel.cluster import cli as cluster_cli
    from kestrel.cluster.errors import ClusterError
    from kestrel.server import config as config_mod
    from kestrel.server import logs

    for flag in ("tcp_port", "tls_port", "udp_port"):
        v = getattr(args, flag)
        if v is not None and not 0 <= v <= 65535:
            raise BadInput(f"--{flag.replace('_', '-')}: {v} is not a port number")
    try:
        cfg = config_mod.load(
            args.config, host=args.host, tcp_port=args.tcp_port, tls_port=args.tls_port,
            udp_port=args.udp_port, data_dir=args.data, loop=args.loop, log_level=args.log_level,
        )
        exts = [make(cfg, args) for make in EXTENSIONS.values()]  # ConfigError: bad [marti] & co
    except ConfigError as exc:
        raise BadInput(str(exc)) from None
    cluster_cli.merge_table(args, cfg.cluster, str(args.config) if args.config else "config")
    if args.status:
        url = cluster_cli.status_url(args, cfg.data_dir)
        if url is not None:
            try:
                return cluster_cli.show_status(url)
            except ClusterError as exc:
                raise BadInput(str(exc)) from None
        return _status(cfg.data_dir)
    cfg.repair = bool(args.repair)
    logs.setup(cfg.log_level)
    _raise_fd_limit()
    from kestrel.server.datadir import DataDirError
    from kestrel.server.store import StoreError

    if args.workers is not None:  # N processes over a NATS server started here (kestrel.cluster)
        return importlib.import_module("kestrel.cluster.workers").run(args, cfg)
    cluster = cluster_cli.config_from(args)
    cfg.reuse_port = bool(args.reuse_port)
    try:
        _run(cfg, exts, cluster)
    except (FileNotFoundError, ConfigError, DataDirError, StoreError, ClusterError) as exc:
        raise BadInput(str(exc)) from None
    except OSError as exc:
        print(f"kestrel: error: cannot listen: {exc.strerror or exc}", file=sys.stderr)
        return 1
    return 0


def _status(data_dir: Path) -> int:
    """`kestrel serve --status`: fetch the running server's /metrics (address from its lock file)."""
    import urllib.request

    from kestrel.server import datadir

    if not datadir.is_locked(data_dir):
        raise BadInput(f"{data_dir}: no kestrel server is running on this data directory")
    where = datadir.read_info(data_dir).get("metrics")
    if not where:
        raise BadInput(f"{data_dir}: the running server has no metrics listener (metrics_port = \"off\")")
    try:
        with urllib.request.urlopen(f"http://{where}/metrics", timeout=10) as resp:
            text = resp.read().decode("utf-8", "replace")
    except OSError as exc:
        raise BadInput(f"http://{where}/metrics: cannot read the server's metrics ({exc})") from None
    pid = datadir.read_info(data_dir).get("pid")
    print(f"# kestrel server pid {pid}, data {data_dir}, metrics http://{where}/metrics")
    print(text, end="")
    return 0


def _raise_fd_limit() -> None:
    """One socket per client: lift the soft open-files limit to the hard one (often 1024 -> 1M)."""
    try:
        import resource
    except ImportError:  # pragma: no cover - Windows
        return
    from kestrel.server import logs

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else 1 << 20
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass
    logs.info("server.fd_limit", open_files=soft)


M_MMAP_THRESHOLD = -3  # glibc mallopt() parameter
MMAP_THRESHOLD = 128 * 1024


def pin_mmap_threshold() -> bool:
    """Keep glibc's mmap threshold at 128 KiB, so big blocks always go back to the OS when freed.

    glibc raises the threshold (up to 32 MiB) every time it frees an mmap'd block; after the
    first ~1 MiB event is freed, later big events (900 KB markers, read buffers of huge senders,
    queued snapshots) come from the heap, which fragments and never shrinks. Measured (docs/bench.md,
    soak section): 5 clients posting 60 markers of 900 KB each into a 32 MiB group left the process
    at 162 MB RSS for 30 MB of live Python objects; pinned: 86 MB. Setting the threshold also turns
    glibc's dynamic adjustment off. No-op (False) where there is no glibc.
    """
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return bool(libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD))
    except (OSError, AttributeError):  # not glibc (musl, macOS)
        return False


def freeze_startup_objects() -> int:
    """Move everything alive once the server is up (modules, config, the restored picture) out of
    the cyclic GC's reach (`gc.freeze`): a full collection no longer walks them, so each of its
    pauses of the event loop is shorter. Measured in the soak (200 clients + 20 abusers): 36 k of
    the 56 k tracked objects exist at start-up; a full pass took 100-150 ms on the loaded 2-core
    box. Objects frozen are still freed by reference counting. Returns how many were frozen."""
    import gc

    gc.collect()  # what is garbage already goes now, not into the permanent generation
    gc.freeze()
    return gc.get_freeze_count()


def _run(cfg: ServerConfig, exts: list[Any] | None = None, cluster: Any = None) -> None:
    pin_mmap_threshold()
    loop_kind = cfg.loop
    if loop_kind in ("uvloop", "auto"):
        try:
            import uvloop
        except ImportError:
            if loop_kind == "uvloop":
                raise
        else:
            uvloop.run(_serve(cfg, exts, cluster))
            return
    asyncio.run(_serve(cfg, exts, cluster))


async def _serve(cfg: ServerConfig, exts: list[Any] | None = None, cluster: Any = None) -> None:
    from kestrel.server import logs
    from kestrel.server.app import Server

    server = Server(cfg)
    server.extensions.extend(exts or ())
    if cluster is not None:  # --cluster: join the other processes over NATS (kestrel.cluster)
        from kestrel.cluster.backplane import Backplane

        server.backplane = Backplane(cluster, server.router, clients=lambda: len(server.sessions))
    await server.start()
    freeze_startup_objects()
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    got: list[str] = []

    def on_signal(name: str) -> None:
        got.append(name)
        stop.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal, sig.name)
    logs.info("server.ready", listeners=len(server.listening), loop=type(loop).__module__.split(".")[0])
    print(connect_help(server), flush=True)
    await stop.wait()
    logs.info("server.stopping", signal=got[0] if got else None)
    await server.stop()


def connect_help(server: Any) -> str:
    """What to tell a user on start: where to point ATAK or pytak."""
    cfg = server.config
    lines = ["Kestrel TAK server is up. Connect a client:"]
    for li, port in server.listening:
        url = f"{li.kind}://{li.host}:{port}"
        if li.kind == "tcp":
            lines.append(f"  {url:28} ATAK: add server, streaming TCP, port {port};  pytak: COT_URL={url}")
        elif li.kind == "tls":
            from kestrel.pki import in_dir, usable_clients

            ca = cfg.cert_paths()[0]
            cdir = ca.parent / "clients"
            names = usable_clients(in_dir(ca.parent))  # never a revoked, expired or foreign cert
            name = names[0] if names else "NAME"
            if names:
                more = " …" if len(names) > 8 else ""
                lines.append(f"  usable client certificates in {cdir}: {', '.join(names[:8])}{more}")
            lines.append(
                f"  {url:28} ATAK: SSL, import {cdir}/{name}.p12 and {ca.parent}/truststore-root.p12;  pytak: "
                f"COT_URL={url} PYTAK_TLS_CLIENT_CERT={cdir}/{name}.pem PYTAK_TLS_CLIENT_KEY={cdir}/{name}.key "
                f"PYTAK_TLS_CLIENT_CAFILE={ca}"
            )
        else:
            lines.append(f"  {url:28} UDP CoT datagrams in (XML or TAK protobuf mesh)")
    if not any(li.kind == "tls" for li, _ in server.listening):
        lines.append(f"  (TLS is off: run `kestrel certs init --data {cfg.data_dir}` and "
                     f"`kestrel certs client NAME --data {cfg.data_dir}`, then restart)")
    for ext in getattr(server, "extensions", ()):
        lines.extend(ext.help_lines())
    lines.append("Stop with Ctrl-C (or SIGTERM).")
    return "\n".join(lines)
