"""One run folder as the workbench sees it: its review store, its video, its geometry per frame.

Opening checks the folder (one-line `WorkbenchError` naming it). The store is touched only from
the run's own worker thread (SQLite connections are per thread), the video through
`fmv.frames.FrameSource` (its own lock), the per-frame sensor models through `GeoIndex` (a
metadata-only pass of `fmv.ingest.VideoReader`, the same KLV alignment PED used). All three are
built lazily in the background so the first frame shows before the whole file was read.
"""

from __future__ import annotations

import concurrent.futures as cf
import json
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from kestrel.errors import BadInput

T = TypeVar("T")
LIVE_SCHEMES = ("udp://", "rtp://", "srt://", "tcp://")


class WorkbenchError(BadInput):
    """A run folder or option the workbench cannot use; the message is one line naming it."""


def check_run_dir(path: str | Path) -> Path:
    p = Path(path)
    if not p.exists():
        raise WorkbenchError(f"{p}: no such run folder")
    if not p.is_dir():
        raise WorkbenchError(f"{p}: not a folder (expected a run folder made by `kestrel ped run`)")
    db = p / "ped.sqlite"
    if not db.is_file():
        raise WorkbenchError(f"{p}: not a PED run (no ped.sqlite; make one with `kestrel ped run`)")
    try:
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
        try:
            con.execute("SELECT id FROM tracks LIMIT 1").fetchall()
        finally:
            con.close()
    except sqlite3.DatabaseError as exc:
        raise WorkbenchError(f"{db}: unreadable PED store ({exc})") from None
    return p


class Run:
    """A run folder opened for the workbench. `call(fn)` runs fn(store) on the run's store thread."""

    def __init__(self, path: str | Path, key: int) -> None:
        from kestrel.ped.export import find_video
        from kestrel.ped.review import ReviewStore

        self.path = check_run_dir(path)
        self.key = key
        self.name = self.path.resolve().name
        self._pool = cf.ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"store-{key}")
        self._store: Any = None

        def open_store() -> None:
            self._store = ReviewStore(self.path, create=False)

        self._pool.submit(open_store).result()
        self.meta: dict[str, Any] = self.call(lambda s: s.meta())
        self.video_path, self.video_reason = find_video(self.path, self.meta)
        self.frames: Any = None
        if self.video_path is not None:
            from kestrel.fmv.frame import FmvInputError
            from kestrel.fmv.frames import FrameSource

            try:
                self.frames = FrameSource(self.video_path)
            except FmvInputError as exc:
                self.video_path, self.video_reason = None, str(exc)
        self.geo = GeoIndex(self.video_path, self.frames) if self.frames is not None else None

    def start(self) -> None:
        """Background work: the frame index and the per-frame metadata."""
        if self.frames is not None:
            self.frames.start_indexing()
        if self.geo is not None and self.geo_ok:
            self.geo.start()

    def call(self, fn: Callable[[Any], T]) -> T:
        return self._pool.submit(fn, self._store).result()

    def submit(self, fn: Callable[[Any], T]) -> cf.Future[T]:
        return self._pool.submit(fn, self._store)

    @property
    def live(self) -> bool:
        return str(self.meta.get("source", "")).startswith(LIVE_SCHEMES) and not self.meta.get("finished")

    @property
    def geo_ok(self) -> bool:
        return bool(self.meta.get("geolocated")) or self._has_footprints()

    def _has_footprints(self) -> bool:
        return bool(self.call(lambda s: s._db.execute(
            "SELECT 1 FROM platform WHERE footprint IS NOT NULL LIMIT 1").fetchone()))

    def geo_reason(self) -> str | None:
        if self.geo_ok:
            return None
        why = self.meta.get("geolocation_reason")
        if why:
            return f"not geolocated: {why}"
        if not self.meta.get("finished"):
            return "no sensor metadata yet (the run is still starting)"
        return "not geolocated: the video carries no usable KLV sensor metadata"

    def describe(self) -> dict[str, Any]:
        f = self.frames
        return {
            "id": self.key, "name": self.name, "path": str(self.path),
            "source": self.meta.get("source"), "live": self.live,
            "video": f is not None, "video_reason": self.video_reason,
            "width": (f.width if f else self.meta.get("width")), "height": (f.height if f else self.meta.get("height")),
            "fps": (f.fps if f else None) or 30.0,
            "frames": (f.frame_count if f else None),
            "frames_hint": self._frames_hint(),
            "geo": self.geo_ok, "geo_reason": self.geo_reason(),
        }

    def _frames_hint(self) -> int:
        """Frames known from the store (max frame seen + 1) while the index is still being built."""
        r = self.call(lambda s: s._db.execute(
            "SELECT MAX(m) FROM (SELECT MAX(frame) AS m FROM platform UNION ALL SELECT MAX(frame) FROM points)"
        ).fetchone())
        return int(r[0]) + 1 if r and r[0] is not None else 0

    def close(self) -> None:
        if self._store is not None:
            self._pool.submit(self._store.close).result()
        self._pool.shutdown(wait=False)
        if self.frames is not None:
            self.frames.close()


class GeoIndex:
    """Per-frame `SensorMetadata` (a metadata-only pass of VideoReader) and sensor models."""

    def __init__(self, video: Path | None, frames: Any) -> None:
        self.video = video
        self.frames = frames
        self.metadata: list[Any] = []
        self.done = threading.Event()
        self.error: str | None = None
        self._models: dict[int, Any] = {}
        self._lock = threading.Lock()

    def start(self) -> None:
        threading.Thread(target=self._scan, name="geo-index", daemon=True).start()

    def _scan(self) -> None:
        from kestrel.fmv.ingest import VideoReader

        try:
            for fr in VideoReader(str(self.video), with_images=False, threads=1):
                self.metadata.append(fr.metadata)
        except Exception as exc:  # a damaged file: geometry for what was read, and say why
            self.error = f"{type(exc).__name__}: {exc}"
        finally:
            self.done.set()

    def model(self, n: int, timeout: float = 30.0) -> Any:
        """The sensor model of frame n, or None (no metadata or not enough of it)."""
        from kestrel.geo.build import from_metadata

        while n >= len(self.metadata) and not self.done.is_set():
            self.done.wait(0.05)  # the scan is ahead of any click in practice; bounded by the file
        if n >= len(self.metadata):
            return None
        md = self.metadata[n]
        if md is None:
            return None
        with self._lock:
            key = id(md)
            if key not in self._models:
                self._models = self._models if len(self._models) < 512 else {}
                self._models[key] = from_metadata(md, self.frames.width, self.frames.height)
            return self._models[key]

    def frame_geo(self, n: int) -> dict[str, Any] | None:
        m = self.model(n)
        if m is None:
            return None
        md = self.metadata[n]
        try:
            fp = m.footprint()
        except Exception:
            fp = []
        return {"frame": n, "footprint": [[lat, lon] for lat, lon in fp] or None,
                "platform": [md.sensor_lat, md.sensor_lon] if md.sensor_lat is not None else None,
                "kind": m.kind}

    def ground(self, n: int, u: float, v: float) -> dict[str, Any] | None:
        m = self.model(n)
        if m is None:
            return None
        g = m.pixel_to_ground(u, v)
        if g is None:
            return {"frame": n, "u": u, "v": v, "miss": True}
        return {"frame": n, "u": u, "v": v, "lat": g[0], "lon": g[1], "h": g[2]}


def dumps(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":"), default=str).encode()
