"""`kestrel demo` — the main job on embedded defaults, as `make run` starts it.

One process, no broker, SQLite: the TAK server on loopback, then PED on the bundled sample clip
(a deterministic synthetic STANAG 4609 clip made on first use under DATA/demo/), pushing the UAV,
its sensor field of view and the image footprint to that server. Machine tracks stay *pending*
until an analyst confirms them (validated intelligence only); the demo prints the commands for that.
The server keeps running until Ctrl-C / SIGTERM so ATAK, WinTAK, iTAK or pytak can connect.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
import time
from pathlib import Path
from typing import Any


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "demo", help="server + PED on the bundled sample clip (what `make run` starts)",
        description="Start the TAK server on loopback, run PED on the sample clip and push to it.",
    )
    p.add_argument("--data", type=Path, default=Path("kestrel-data"), metavar="DIR",
                   help="data dir: server store, certificates, sample clip and runs (default ./kestrel-data)")
    p.add_argument("--tcp-port", type=int, default=None, metavar="P", help="TCP port (default 8087)")
    p.add_argument("--tls-port", type=int, default=None, metavar="P", help="TLS port (default 8089)")
    p.add_argument("--workbench-port", type=int, default=8765, metavar="P",
                   help="port of the analyst's workbench page (default 8765; 0 = any free port)")
    p.add_argument("--exit", action="store_true", help="stop after the PED run instead of serving on")
    p.set_defaults(func=_cmd_demo)


def sample_clip(data: Path) -> Path:
    """The bundled sample: a 10 s, 720×480 synthetic clip with three movers, made once."""
    from kestrel.fmv.synth import Scenario, synthesize

    clip = data / "demo" / "sample.ts"
    if not clip.is_file():
        clip.parent.mkdir(parents=True, exist_ok=True)
        tmp = clip.with_suffix(".part.ts")
        synthesize(tmp, Scenario(seconds=10.0, targets=3, seed=7), clip.with_name("sample-truth.json"))
        tmp.replace(clip)
    return clip


def _ensure_certs(data: Path) -> None:
    """First run: a CA, a server certificate and one client (`atak`), so TLS works out of the box."""
    from kestrel import pki

    p = pki.paths(data)
    if not p.has_ca():
        pki.init(data)
        client = pki.issue_client(data, "atak")
        print(f"Created a CA and server certificate in {p.dir} and a client certificate {client.p12} "
              f"(password {pki.DEFAULT_PASSWORD!r}; `kestrel certs client NAME` makes more).", flush=True)


def _cmd_demo(args: argparse.Namespace) -> int:
    from kestrel.server import config as config_mod
    from kestrel.server import logs

    _ensure_certs(args.data)
    cfg = config_mod.load(None, data_dir=args.data, tcp_port=args.tcp_port, tls_port=args.tls_port)
    logs.setup(cfg.log_level)
    try:
        asyncio.run(_demo(cfg, args.data, args.exit, args.workbench_port))
    except OSError as exc:
        print(f"kestrel: error: cannot listen: {exc.strerror or exc}", file=sys.stderr)
        return 1
    return 0


async def _demo(cfg: Any, data: Path, exit_after: bool, workbench_port: int = 8765) -> None:
    from kestrel.server.app import Server
    from kestrel.server.cli import connect_help

    server = Server(cfg)
    await server.start()
    try:
        print(connect_help(server), flush=True)
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        tcp = server.ports.get("tcp")
        push = f"tcp://127.0.0.1:{tcp}" if tcp else None
        report = await loop.run_in_executor(None, _ped, data, push)
        _summary(report, data, tcp)
        wb = await _workbench(data, push, workbench_port)
        try:
            if not exit_after:
                print("Serving until Ctrl-C.", flush=True)
                await stop.wait()
        finally:
            await wb.stop()
    finally:
        await server.stop()


async def _workbench(data: Path, push: str | None, port: int) -> Any:
    """The analyst's workbench on the run just made, pushing confirmed tracks to the demo server."""
    from kestrel.ped.review import default_analyst
    from kestrel.workbench.runs import Run
    from kestrel.workbench.server import Options, Workbench

    run = sorted((data / "demo").glob("run-*"))[-1]
    wb = Workbench([Run(run, 0)], Options(analyst=default_analyst(), push=push))
    bound = await wb.start("127.0.0.1", port)
    print(f"Validate the tracks in the analyst's workbench: http://127.0.0.1:{bound}/\n"
          "  (a = confirm and push to the TAK server, r = reject and retract, j/k = next/previous track)", flush=True)
    return wb


def _ped(data: Path, push: str | None) -> dict[str, Any]:
    from kestrel.ped.runner import run_to_dir

    clip = sample_clip(data)
    out = data / "demo" / time.strftime("run-%Y%m%d-%H%M%S", time.gmtime())
    print(f"PED: exploiting {clip} -> {out}", flush=True)
    return run_to_dir(str(clip), out, push=push)


def _summary(report: dict[str, Any], data: Path, tcp: int | None) -> None:
    out = Path(data) / "demo"
    runs = sorted(out.glob("run-*"))
    run = runs[-1] if runs else out
    fps = report.get("fps", {})
    end_to_end = fps.get("end_to_end") if isinstance(fps, dict) else None
    print(
        f"PED: {report.get('frames')} frames, {report.get('tracks')} tracks "
        f"(review: {report.get('review')}), geolocated={report.get('geolocated')}"
        + (f", {end_to_end:.0f} fps" if isinstance(end_to_end, (int, float)) else ""),
        flush=True,
    )
    print(
        "The UAV, its field of view and the image footprint are on the map now. Tracks are pending\n"
        "until an analyst validates them:\n"
        f"  .venv/bin/kestrel ped review {run}\n"
        f"  .venv/bin/kestrel ped review {run} --confirm ID --label vehicle --affiliation hostile\n"
        f"  .venv/bin/kestrel ped disseminate {run} --push tcp://127.0.0.1:{tcp or 8087}",
        flush=True,
    )
