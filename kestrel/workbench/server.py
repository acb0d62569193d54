"""The workbench's web server: the page, a JSON API over the run stores, pictures by frame index,
and Server-Sent Events so every open page sees decisions and live-run growth at once.

Routes (all JSON unless said; RUN is the run's index in `kestrel workbench RUN_DIR...`):
  GET  /                                   the page (static/index.html)
  GET  /static/...                         the page's files (JS modules, CSS, vendored MapLibre)
  GET  /api/config                         analyst, push target, tile URL, runs
  GET  /api/runs/RUN                       size, fps, frame count, video/geo availability (+ why not)
  GET  /api/runs/RUN/tracks                one summary row per track (no points)
  GET  /api/runs/RUN/tracks/ID             one track with its points and audit history
  GET  /api/runs/RUN/boxes?from=A&to=B     stored boxes of frames A..B (at most 2000 frames)
  GET  /api/runs/RUN/platform              platform path and stored footprints
  GET  /api/runs/RUN/trails                per track its ground path and state (for the map)
  GET  /api/runs/RUN/frames/N.jpg|.png     picture N (frame-accurate); 404 past the end
  GET  /api/runs/RUN/geo/N                 footprint and platform position of frame N
  GET  /api/runs/RUN/ground/N?u=&v=        ground point seen at pixel (u, v) of frame N
  POST /api/runs/RUN/review                {track, state, label?, affiliation?, frame?}
  POST /api/runs/RUN/undo                  {track, frame?}: takes back the track's last decision
  GET  /api/events                         SSE: `review` (a decision, anyone's), `changed` (run grew)
  GET  /tiles/Z/X/Y                        tiles from a local .mbtiles file (with --tiles FILE)
Worst case: a picture request decodes one GOP; the tracks list is O(tracks); SSE clients each
get a bounded queue (a stalled page is dropped, never slows others).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import mimetypes
import re
import sqlite3
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kestrel.workbench.http import (
    HttpError,
    Request,
    Response,
    error_response,
    json_response,
    serve_connection,
)
from kestrel.workbench.runs import Run

STATIC = Path(__file__).parent / "static"
POLL_S = 0.5  # how often the stores are checked for changes made by other processes
SSE_QUEUE = 256


@dataclass(slots=True)
class Options:
    analyst: str
    push: str | None = None
    ssl_ctx: Any = None
    release_auto: bool = False
    callsign: str = "KESTREL-UAV"
    stale_s: float = 600.0
    tiles: str | None = None  # XYZ URL template, or a local .mbtiles file


class Workbench:
    def __init__(self, runs: list[Run], opts: Options) -> None:
        self.runs = runs
        self.opts = opts
        self.clients: set[asyncio.Queue[bytes | None]] = set()
        self._server: asyncio.base_events.Server | None = None
        self._poller: asyncio.Task[None] | None = None
        self._versions: dict[int, tuple[int, ...]] = {}
        self._seq: dict[int, int] = {}
        self.push_log: list[dict[str, Any]] = []
        self._conns: set[asyncio.StreamWriter] = set()
        self._mbtiles: sqlite3.Connection | None = None
        if opts.tiles and not re.match(r"^https?://", opts.tiles):
            self._mbtiles = sqlite3.connect(f"file:{opts.tiles}?mode=ro", uri=True, check_same_thread=False)

    # ---- lifecycle ---------------------------------------------------------------------------
    async def start(self, host: str, port: int) -> int:
        for run in self.runs:
            run.start()
            self._versions[run.key] = await self._in(run, lambda s: s.version())
            self._seq[run.key] = self._versions[run.key][0]
        self._server = await asyncio.start_server(self._connection, host, port, limit=16 * 1024)
        self._poller = asyncio.create_task(self._poll())
        sock = self._server.sockets[0]
        return int(sock.getsockname()[1])

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._conns.add(writer)
        try:
            await serve_connection(reader, writer, self.handle)
        finally:
            self._conns.discard(writer)

    async def stop(self) -> None:
        if self._poller:
            self._poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._poller
        for q in list(self.clients):
            q.put_nowait(None)
        if self._server:
            self._server.close()
            for w in list(self._conns):  # idle keep-alive connections end with the server
                w.close()
            await self._server.wait_closed()
            await asyncio.sleep(0)  # let the connection tasks see their closed transports
        for run in self.runs:
            run.close()

    async def _in(self, run: Run, fn: Any) -> Any:
        return await asyncio.wrap_future(run.submit(fn))

    # ---- live updates ------------------------------------------------------------------------
    def broadcast(self, event: str, data: Any) -> None:
        msg = f"event: {event}\ndata: {json.dumps(data, default=str, separators=(',', ':'))}\n\n".encode()
        for q in list(self.clients):
            try:
                q.put_nowait(msg)
            except asyncio.QueueFull:  # a stalled page: end its stream (EventSource reconnects, page reloads)
                self.clients.discard(q)
                while not q.empty():
                    q.get_nowait()
                q.put_nowait(None)

    async def _poll(self) -> None:
        """Decisions made elsewhere (the CLI, another workbench) and live-run growth -> SSE."""
        while True:
            await asyncio.sleep(POLL_S)
            for run in self.runs:
                await self._check(run)

    async def _check(self, run: Run) -> None:
        v = await self._in(run, lambda s: s.version())
        old = self._versions.get(run.key)
        if v == old:
            return
        self._versions[run.key] = v
        if old is not None and v[1:] != old[1:]:
            self.broadcast("changed", {"run": run.key})
        if v[0] != self._seq.get(run.key):
            await self._announce(run)

    async def _announce(self, run: Run) -> None:
        since = self._seq.get(run.key, 0)
        rows = await self._in(run, lambda s: s.audit(since))
        for a in rows:
            self._seq[run.key] = max(self._seq.get(run.key, 0), a["seq"])
            row = await self._in(run, lambda s, i=a["track_id"]: _summary_one(s, i))
            self.broadcast("review", {"run": run.key, "track": row, "audit": a})

    async def _events(self) -> AsyncIterator[bytes]:
        q: asyncio.Queue[bytes | None] = asyncio.Queue(SSE_QUEUE)
        self.clients.add(q)
        try:
            yield b"retry: 1000\nevent: hello\ndata: {}\n\n"
            while True:
                try:
                    msg = await asyncio.wait_for(q.get(), 15.0)
                except TimeoutError:
                    msg = b": keep-alive\n\n"
                if msg is None:
                    return
                yield msg
        finally:
            self.clients.discard(q)

    # ---- routing -------------------------------------------------------------------------------
    async def handle(self, req: Request) -> Response:
        p = req.path
        if req.method not in ("GET", "HEAD", "POST"):
            return error_response(405, f"{req.method} not allowed")
        if p in ("/", "/index.html"):
            return _static("index.html")
        if p.startswith("/static/"):
            return _static(p[len("/static/"):])
        if p == "/api/events":
            return Response(200, ctype="text/event-stream", stream=self._events())
        if p == "/api/config":
            return json_response({"analyst": self.opts.analyst, "push": self.opts.push,
                                  "tiles": self._tile_url(), "runs": [r.describe() for r in self.runs]})
        if p.startswith("/tiles/"):
            return self._tile(p)
        m = re.fullmatch(r"/api/runs/(\d+)(/.*)?", p)
        if not m:
            return error_response(404, f"no such page {p}")
        key = int(m.group(1))
        if key >= len(self.runs):
            return error_response(404, f"no run {key}")
        return await self._run_route(self.runs[key], m.group(2) or "", req)

    async def _run_route(self, run: Run, sub: str, req: Request) -> Response:
        loop = asyncio.get_running_loop()
        if sub == "":
            return json_response(await loop.run_in_executor(None, run.describe))
        if sub == "/tracks":
            return json_response(await self._in(run, _summaries))
        if m := re.fullmatch(r"/tracks/(\d+)", sub):
            got = await self._in(run, lambda s: _detail(s, int(m.group(1))))
            return json_response(got) if got else error_response(404, f"no track {m.group(1)}")
        if sub == "/boxes":
            a, b = _int(req.arg("from", "0")), _int(req.arg("to", "0"))
            b = min(b, a + 2000)
            rows = await self._in(run, lambda s: s.boxes(a, b))
            out: dict[int, list[list[float]]] = {}
            for f, tid, x, y, w, h in rows:
                out.setdefault(f, []).append([tid, round(x, 1), round(y, 1), round(w, 1), round(h, 1)])
            return json_response({"from": a, "to": b, "frames": out})
        if sub == "/platform":
            return json_response(await self._in(run, _platform))
        if sub == "/trails":
            return json_response(await self._in(run, _trails))
        if m := re.fullmatch(r"/frames/(\d+)\.(jpg|png)", sub):
            return await self._frame(run, int(m.group(1)), m.group(2))
        if m := re.fullmatch(r"/geo/(\d+)", sub):
            if run.geo is None or not run.geo_ok:
                return error_response(404, run.geo_reason() or run.video_reason or "no geometry")
            got = await loop.run_in_executor(None, run.geo.frame_geo, int(m.group(1)))
            return json_response(got) if got else error_response(404, f"no sensor model for frame {m.group(1)}")
        if m := re.fullmatch(r"/ground/(\d+)", sub):
            if run.geo is None or not run.geo_ok:
                return error_response(404, run.geo_reason() or run.video_reason or "no geometry")
            u, v = _float(req.arg("u")), _float(req.arg("v"))
            got = await loop.run_in_executor(None, run.geo.ground, int(m.group(1)), u, v)
            return json_response(got) if got else error_response(404, f"no sensor model for frame {m.group(1)}")
        if sub in ("/review", "/undo") and req.method == "POST":
            return await self._decide(run, sub[1:], req.json())
        return error_response(404, f"no such page {req.path}")

    async def _frame(self, run: Run, n: int, ext: str) -> Response:
        from kestrel.fmv.frames import FrameOutOfRange

        if run.frames is None:
            return error_response(404, run.video_reason or "no video")
        try:
            data = await asyncio.get_running_loop().run_in_executor(
                None, run.frames.encoded, n, "png" if ext == "png" else "jpeg")
        except FrameOutOfRange:
            total = run.frames.frame_count
            return error_response(404, f"frame {n} is past the end ({total} frames)" if total is not None
                                  else f"no frame {n}")
        return Response(200, data, "image/png" if ext == "png" else "image/jpeg",
                        {"Cache-Control": "private, max-age=3600"})

    async def _decide(self, run: Run, action: str, body: Any) -> Response:
        from kestrel.ped.review import ReviewError

        if not isinstance(body, dict) or not isinstance(body.get("track"), int):
            raise HttpError(400, "need {\"track\": ID, ...}")
        tid = body["track"]
        frame = body.get("frame") if isinstance(body.get("frame"), int) else None
        who = str(body.get("analyst") or self.opts.analyst)[:64]

        def apply(s: Any) -> dict[str, Any] | None:
            if action == "undo":
                s.undo(tid, analyst=who, frame=frame)
            else:
                s.review(tid, str(body.get("state")), label=body.get("label"), affiliation=body.get("affiliation"),
                         analyst=who, frame=frame)
            from kestrel.ped.runner import refresh_products

            refresh_products(s)
            return _summary_one(s, tid)

        try:
            row = await self._in(run, apply)
        except ReviewError as exc:
            return error_response(409 if "undo" in str(exc) else 400, str(exc))
        await self._announce(run)  # every page (this one too) hears it now, not at the next poll
        self._versions[run.key] = await self._in(run, lambda s: s.version())
        if self.opts.push:
            asyncio.get_running_loop().run_in_executor(None, self._push, run)
        return json_response(row)

    def _push(self, run: Run) -> None:
        """Send the run's releasable picture now (confirmed tracks) and retract what is no longer
        releasable (rejected since): exactly what `kestrel ped disseminate` does."""
        from kestrel.ped.runner import disseminate_run

        def go(s: Any) -> Any:
            return disseminate_run(s, self.opts.push, ssl_ctx=self.opts.ssl_ctx, release_auto=self.opts.release_auto,
                                   callsign=self.opts.callsign, stale_s=self.opts.stale_s)

        try:
            rep = run.call(go)
        except Exception as exc:  # the page keeps working when the TAK server is down
            rep = {"errors": [f"{type(exc).__name__}: {exc}"], "sent": 0}
        self.push_log.append(rep)

    # ---- tiles ---------------------------------------------------------------------------------
    def _tile_url(self) -> str | None:
        if self._mbtiles is not None:
            return "/tiles/{z}/{x}/{y}"
        return self.opts.tiles

    def _tile(self, p: str) -> Response:
        m = re.fullmatch(r"/tiles/(\d+)/(\d+)/(\d+)(\.\w+)?", p)
        if self._mbtiles is None or not m:
            return error_response(404, "no tiles")
        z, x, y = int(m.group(1)), int(m.group(2)), int(m.group(3))
        row = self._mbtiles.execute("SELECT tile_data FROM tiles WHERE zoom_level=? AND tile_column=? AND tile_row=?",
                                    (z, x, (1 << z) - 1 - y)).fetchone()
        if row is None:
            return error_response(404, "no tile")
        data = bytes(row[0])
        ctype = "image/png" if data[:4] == b"\x89PNG" else "image/jpeg" if data[:2] == b"\xff\xd8" else \
            "application/x-protobuf"
        return Response(200, data, ctype)


# ---- store queries (run on the run's store thread) ------------------------------------------------
def _summaries(s: Any) -> list[dict[str, Any]]:
    spans = s.frame_spans()
    return [_row(t, spans.get(t.id)) for t in s.tracks(points=False)]


def _summary_one(s: Any, tid: int) -> dict[str, Any] | None:
    t = s.tracks(points=False, track_id=tid)
    if not t:
        return None
    r = s._db.execute("SELECT MIN(frame), MAX(frame) FROM points WHERE track_id=?", (tid,)).fetchone()
    return _row(t[0], (r[0], r[1]) if r and r[0] is not None else None)


def _row(t: Any, span: tuple[int, int] | None) -> dict[str, Any]:
    return {"id": t.id, "state": t.state, "label": t.label, "affiliation": t.affiliation, "analyst": t.analyst,
            "reviewed_at": t.reviewed_at, "first_frame": span[0] if span else None,
            "last_frame": span[1] if span else None, "frames": t.frames, "speed": t.speed, "heading": t.heading,
            "lat": t.lat, "lon": t.lon, "confidence": t.confidence}


def _detail(s: Any, tid: int) -> dict[str, Any] | None:
    t = s.track(tid)
    if t is None:
        return None
    span = (t.points[0].frame, t.points[-1].frame) if t.points else None
    return {**_row(t, span), "points": [[p.frame, p.x, p.y, p.w, p.h, p.lat, p.lon] for p in t.points],
            "history": s.history(tid)}


def _platform(s: Any) -> dict[str, Any]:
    rows = s._db.execute("SELECT frame, lat, lon, alt, footprint FROM platform ORDER BY frame").fetchall()
    path = [[r[0], r[1], r[2], r[3]] for r in rows if r[1] is not None]
    fps = [[r[0], json.loads(r[4])] for r in rows if r[4]]
    return {"path": path, "footprints": fps}


def _trails(s: Any) -> list[dict[str, Any]]:
    out: dict[int, dict[str, Any]] = {}
    states = {r[0]: r[1] for r in s._db.execute("SELECT id, state FROM tracks")}
    for tid, frame, lat, lon in s._db.execute(
            "SELECT track_id, frame, lat, lon FROM points WHERE lat IS NOT NULL ORDER BY track_id, frame"):
        t = out.setdefault(tid, {"id": tid, "state": states.get(tid, "pending"), "path": []})
        t["path"].append([round(lon, 7), round(lat, 7), frame])
    return list(out.values())


def _int(v: str | None) -> int:
    try:
        return int(v or "0")
    except ValueError:
        raise HttpError(400, f"not a whole number: {v!r}") from None


def _float(v: str | None) -> float:
    try:
        return float(v or "")
    except ValueError:
        raise HttpError(400, f"not a number: {v!r}") from None


def _static(rel: str) -> Response:
    root = STATIC.resolve()
    path = (root / rel).resolve()
    if root not in path.parents or not path.is_file():
        return error_response(404, f"no such file {rel}")
    ctype = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    if path.suffix == ".js":
        ctype = "text/javascript"
    return Response(200, path.read_bytes(), ctype, {"Cache-Control": "no-cache"})
