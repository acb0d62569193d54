"""`kestrel workbench RUN_DIR...`: parse, open the runs, serve, print the URL first (flushed)."""

from __future__ import annotations

import argparse
import asyncio
import errno
import signal
import sys
from typing import Any

from kestrel.errors import PortInUse
from kestrel.server.config import is_loopback


def register(subparsers: Any) -> None:
    from kestrel.ped.cli import _push_args

    p = subparsers.add_parser(
        "workbench", help="the analyst's workbench in the browser: video, boxes, map, review",
        description="Serve a web page to watch and validate one or more PED run folders.")
    p.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", help="run folder(s) made by `kestrel ped run`")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1, loopback only)")
    p.add_argument("--port", type=int, default=8765, help="port (default 8765; 0 = any free port)")
    p.add_argument("--analyst", help="name recorded with every decision (default: $USER)")
    p.add_argument("--tiles", metavar="URL|FILE",
                   help="basemap: an XYZ tile URL template (http://HOST/{z}/{x}/{y}.png) or a local .mbtiles file")
    p.add_argument("--expose", action="store_true", help="allow listening beyond loopback (--host 0.0.0.0 etc.)")
    _push_args(p, required=False)
    p.set_defaults(func=_cmd)


def _bad(msg: str) -> Exception:
    from kestrel.errors import BadInput

    return BadInput(msg)


def _cmd(args: argparse.Namespace) -> int:
    from pathlib import Path

    from kestrel.ped.cli import _ssl
    from kestrel.ped.review import default_analyst
    from kestrel.workbench.runs import Run, WorkbenchError
    from kestrel.workbench.server import Options, Workbench

    if not is_loopback(args.host) and not args.expose:
        raise _bad(f"--host {args.host}: not loopback; add --expose to serve the workbench beyond this machine")
    if not 0 <= args.port <= 65535:
        raise _bad(f"--port {args.port}: not a port number")
    if args.tiles and "://" not in args.tiles and not Path(args.tiles).is_file():
        raise _bad(f"{args.tiles}: no such tile file (give an .mbtiles file or an http:// XYZ URL)")
    runs: list[Run] = []
    try:
        for i, d in enumerate(args.run_dirs):
            runs.append(Run(d, i))
    except WorkbenchError as exc:
        for r in runs:
            r.close()
        raise _bad(str(exc)) from None
    ssl_ctx = _ssl(args) if args.push else None
    opts = Options(analyst=args.analyst or default_analyst(), push=args.push, ssl_ctx=ssl_ctx,
                   release_auto=args.release == "auto", callsign=args.callsign, stale_s=args.stale, tiles=args.tiles)
    try:
        asyncio.run(_serve(Workbench(runs, opts), args.host, args.port))
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise PortInUse(args.port, "--port", args.host) from None
        print(f"kestrel: error: cannot listen on {args.host}:{args.port}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    return 0


async def _serve(wb: Any, host: str, port: int) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        bound = await wb.start(host, port)
        shown = f"[{host}]" if ":" in host else host
        print(f"Workbench: http://{shown}:{bound}/  ({len(wb.runs)} run(s), analyst {wb.opts.analyst})", flush=True)
        for r in wb.runs:
            d = r.describe()
            notes = [n for n in (d["video_reason"], d["geo_reason"]) if n]
            print(f"  run {r.key}: {r.path}" + (f" ({'; '.join(notes)})" if notes else ""), flush=True)
        await stop.wait()
    finally:
        await wb.stop()
