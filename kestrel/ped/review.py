"""The run's review store: tracks, their points, the platform path and the analyst's verdicts.

One SQLite file per run (`RUN_DIR/ped.sqlite`, WAL journal) so a crash or a second process
(the analyst's `kestrel ped review` while a live run is still writing) never loses or corrupts
data: every write is one transaction; re-writing a track from the pipeline updates its
geometry but never touches its review columns; every verdict is also appended to an audit
table (`reviews`), so nothing an analyst did is overwritten without trace.

The store's records (`StoredTrack`, `StoredPoint`, `PlatformState`) are what every product
(GeoJSON, KML, CSV, CoT) is made from, so `kestrel ped disseminate RUN_DIR` needs nothing else.
`stored_from_track` converts the tracker's `kestrel.ped.records.Track` into it.
"""

from __future__ import annotations

import datetime as dt
import getpass
import json
import math
import os
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

STORE_NAME = "ped.sqlite"
STATES = ("pending", "confirmed", "rejected")
LABELS = ("vehicle", "person", "vessel", "unknown")
AFFILIATIONS = ("friend", "hostile", "neutral", "unknown", "suspect")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS tracks (
    id INTEGER PRIMARY KEY,
    frames INTEGER NOT NULL DEFAULT 0,
    first_seen REAL, last_seen REAL,          -- seconds of media time (PTS)
    first_utc REAL, last_utc REAL,            -- Unix seconds from KLV, when known
    speed REAL, heading REAL,                 -- m/s, degrees true (NULL: not geolocated)
    lat REAL, lon REAL,                       -- latest ground position
    confidence REAL, class_id INTEGER,
    state TEXT NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'confirmed', 'rejected')),
    label TEXT NOT NULL DEFAULT 'unknown',
    affiliation TEXT NOT NULL DEFAULT 'unknown',
    analyst TEXT, reviewed_at TEXT
);
CREATE TABLE IF NOT EXISTS points (
    track_id INTEGER NOT NULL, frame INTEGER NOT NULL, t REAL NOT NULL,
    x REAL NOT NULL, y REAL NOT NULL, w REAL NOT NULL, h REAL NOT NULL,
    lat REAL, lon REAL,
    PRIMARY KEY (track_id, frame)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS platform (
    frame INTEGER PRIMARY KEY, t REAL NOT NULL, utc REAL,
    lat REAL, lon REAL, alt REAL, heading REAL, pitch REAL, roll REAL,
    sensor_az REAL, sensor_el REAL, sensor_roll REAL, hfov REAL, vfov REAL, slant_range REAL,
    footprint TEXT                            -- JSON [[lat, lon] x4] UL, UR, LR, LL, or NULL
);
CREATE TABLE IF NOT EXISTS disseminated (      -- tracks on the TAK map now (to retract later)
    track_id INTEGER PRIMARY KEY, uid TEXT NOT NULL, type TEXT NOT NULL, at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS reviews (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, track_id INTEGER NOT NULL, state TEXT NOT NULL,
    label TEXT, affiliation TEXT, analyst TEXT, at TEXT NOT NULL
);
"""


class ReviewError(ValueError):
    """A review request that cannot apply (unknown track, bad label, ...)."""


@dataclass(slots=True)
class StoredPoint:
    frame: int
    t: float  # media seconds
    x: float  # box centre, pixels
    y: float
    w: float
    h: float
    lat: float | None = None
    lon: float | None = None


@dataclass(slots=True)
class StoredTrack:
    id: int
    points: list[StoredPoint] = field(default_factory=list)
    first_seen: float = 0.0
    last_seen: float = 0.0
    first_utc: float | None = None
    last_utc: float | None = None
    speed: float | None = None
    heading: float | None = None
    lat: float | None = None
    lon: float | None = None
    confidence: float | None = None
    class_id: int | None = None
    state: str = "pending"
    label: str = "unknown"
    affiliation: str = "unknown"
    analyst: str | None = None
    reviewed_at: str | None = None
    frames: int = 0

    @property
    def geolocated(self) -> bool:
        return self.lat is not None and self.lon is not None

    @property
    def ground_path(self) -> list[tuple[float, float]]:
        """(lat, lon) of every geolocated point, in time order."""
        return [(p.lat, p.lon) for p in self.points if p.lat is not None and p.lon is not None]


@dataclass(slots=True)
class PlatformState:
    frame: int
    t: float
    utc: float | None = None
    lat: float | None = None
    lon: float | None = None
    alt: float | None = None
    heading: float | None = None
    pitch: float | None = None
    roll: float | None = None
    sensor_az: float | None = None
    sensor_el: float | None = None
    sensor_roll: float | None = None
    hfov: float | None = None
    vfov: float | None = None
    slant_range: float | None = None
    footprint: list[tuple[float, float]] | None = None  # UL, UR, LR, LL as (lat, lon)
    speed: float | None = None  # m/s over ground, derived (not stored): see latest_platform

    @property
    def look_azimuth(self) -> float | None:
        """True bearing of the sensor's line of sight (platform heading + relative azimuth)."""
        if self.heading is None:
            return None
        return (self.heading + (self.sensor_az or 0.0)) % 360.0


def stored_from_track(track: Any, fps: float | None = None) -> StoredTrack:
    """The store's view of a tracker `Track` (kestrel.ped.records). Media time comes from each
    point's PTS, or frame_index / fps when a point has none. Review fields are copied so a
    track reviewed in memory keeps its verdict; `upsert_tracks` never writes them anyway."""
    pts: list[StoredPoint] = []
    for p in track.points:
        t = p.pts if p.pts is not None else (p.frame_index / fps if fps else float(p.frame_index))
        x1, y1, x2, y2 = (float(v) for v in p.xyxy)
        pts.append(StoredPoint(int(p.frame_index), float(t), (x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1,
                               p.lat, p.lon))
    latest = track.latest_ground
    conf = [float(p.confidence) for p in track.points]
    review = getattr(track.review, "value", track.review)
    return StoredTrack(
        id=int(track.id), points=pts, frames=len(pts),
        first_seen=pts[0].t if pts else 0.0, last_seen=pts[-1].t if pts else 0.0,
        speed=track.speed_mps, heading=track.heading_deg,
        lat=latest[0] if latest else None, lon=latest[1] if latest else None,
        confidence=sum(conf) / len(conf) if conf else None, class_id=int(track.class_id),
        state=str(review), label=track.label, affiliation=track.affiliation,
        analyst=track.analyst, reviewed_at=track.reviewed_at,
    )


def iso_utc(seconds: float | None) -> str | None:
    """`YYYY-MM-DDTHH:MM:SS.ffffffZ` of a Unix time (microseconds: PED's stored and product times)."""
    return None if seconds is None else _iso(dt.datetime.fromtimestamp(seconds, dt.UTC))


def utc_now() -> str:
    return _iso(dt.datetime.now(dt.UTC))


def _iso(t: dt.datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def default_analyst() -> str:
    try:
        return os.environ.get("USER") or getpass.getuser()
    except Exception:  # no passwd entry (containers): still record something
        return "unknown"


_TRACK_COLS = (
    "id, frames, first_seen, last_seen, first_utc, last_utc, speed, heading, lat, lon, confidence, "
    "class_id, state, label, affiliation, analyst, reviewed_at"
)
_PLATFORM_COLS = (
    "frame, t, utc, lat, lon, alt, heading, pitch, roll, sensor_az, sensor_el, sensor_roll, hfov, vfov, "
    "slant_range, footprint"
)


class ReviewStore:
    """The SQLite store of one run. Cheap to open; safe to open from two processes (WAL)."""

    def __init__(self, run_dir: str | os.PathLike[str], *, create: bool = True) -> None:
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / STORE_NAME
        if not create and not self.path.is_file():
            raise FileNotFoundError(f"{self.path}: no PED store (run `kestrel ped run` first)")
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path, timeout=30.0, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)
        cols = {r[1] for r in self._db.execute("PRAGMA table_info(reviews)")}
        for col in ("frame INTEGER", "action TEXT"):  # audit columns added after the first release
            if col.split()[0] not in cols:
                self._db.execute(f"ALTER TABLE reviews ADD COLUMN {col}")

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> ReviewStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        """One IMMEDIATE transaction: all or nothing, and writers never interleave."""
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield self._db
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    # ---- run metadata (source, geolocation status, ...) -------------------------------------
    def set_meta(self, **values: Any) -> None:
        with self._tx() as db:
            db.executemany(
                "INSERT INTO meta(key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value=excluded.value",
                [(k, json.dumps(v)) for k, v in values.items()],
            )

    def meta(self) -> dict[str, Any]:
        return {k: json.loads(v) for k, v in self._db.execute("SELECT key, value FROM meta")}

    # ---- pipeline side: geometry (never touches review columns) ------------------------------
    def upsert_tracks(self, tracks: Iterable[StoredTrack]) -> int:
        """Write tracks and their points in one transaction; O(points). Returns tracks written."""
        n = 0
        with self._tx() as db:
            for t in tracks:
                db.execute(
                    "INSERT INTO tracks(id, frames, first_seen, last_seen, first_utc, last_utc, speed, heading,"
                    " lat, lon, confidence, class_id) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)"
                    " ON CONFLICT(id) DO UPDATE SET frames=excluded.frames, first_seen=excluded.first_seen,"
                    " last_seen=excluded.last_seen, first_utc=excluded.first_utc, last_utc=excluded.last_utc,"
                    " speed=excluded.speed, heading=excluded.heading, lat=excluded.lat, lon=excluded.lon,"
                    " confidence=excluded.confidence, class_id=excluded.class_id",
                    (t.id, t.frames or len(t.points), t.first_seen, t.last_seen, t.first_utc, t.last_utc,
                     t.speed, t.heading, t.lat, t.lon, t.confidence, t.class_id),
                )
                db.executemany(
                    "INSERT OR REPLACE INTO points(track_id, frame, t, x, y, w, h, lat, lon) VALUES (?,?,?,?,?,?,?,?,?)",
                    [(t.id, p.frame, p.t, p.x, p.y, p.w, p.h, p.lat, p.lon) for p in t.points],
                )
                n += 1
        return n

    def add_platform(self, states: Iterable[PlatformState]) -> None:
        with self._tx() as db:
            db.executemany(
                f"INSERT OR REPLACE INTO platform({_PLATFORM_COLS}) VALUES ({','.join('?' * 16)})",
                [(s.frame, s.t, s.utc, s.lat, s.lon, s.alt, s.heading, s.pitch, s.roll, s.sensor_az,
                  s.sensor_el, s.sensor_roll, s.hfov, s.vfov, s.slant_range,
                  json.dumps(s.footprint) if s.footprint else None) for s in states],
            )

    # ---- analyst side ------------------------------------------------------------------------
    def review(
        self,
        track_id: int,
        state: str,
        *,
        label: str | None = None,
        affiliation: str | None = None,
        analyst: str | None = None,
        frame: int | None = None,
    ) -> StoredTrack:
        """Record a verdict (and keep it in the audit table, with the frame the analyst was looking
        at when known). Raises ReviewError on bad input."""
        if state not in STATES:
            raise ReviewError(f"state must be one of {', '.join(STATES)}, not {state!r}")
        if label is not None and label not in LABELS:
            raise ReviewError(f"label must be one of {', '.join(LABELS)}, not {label!r}")
        if affiliation is not None and affiliation not in AFFILIATIONS:
            raise ReviewError(f"affiliation must be one of {', '.join(AFFILIATIONS)}, not {affiliation!r}")
        who = analyst or default_analyst()
        at = utc_now()
        with self._tx() as db:
            row = db.execute("SELECT label, affiliation FROM tracks WHERE id=?", (track_id,)).fetchone()
            if row is None:
                raise ReviewError(f"no track {track_id} in {self.path}")
            new_label = label or row[0]
            new_aff = affiliation or row[1]
            db.execute(
                "UPDATE tracks SET state=?, label=?, affiliation=?, analyst=?, reviewed_at=? WHERE id=?",
                (state, new_label, new_aff, who, at, track_id),
            )
            db.execute(
                "INSERT INTO reviews(track_id, state, label, affiliation, analyst, at, frame, action)"
                " VALUES (?,?,?,?,?,?,?,'review')",
                (track_id, state, new_label, new_aff, who, at, frame),
            )
        got = self.track(track_id)
        assert got is not None
        return got

    def undo(self, track_id: int, *, analyst: str | None = None, frame: int | None = None) -> StoredTrack:
        """Take back the track's latest verdict: it returns to the verdict before (or to pending
        with the label and affiliation it had). The undo is itself an audit row (action 'undo');
        undone rows stay. Raises ReviewError when the track has nothing to undo."""
        who = analyst or default_analyst()
        with self._tx() as db:
            rows = db.execute(
                "SELECT seq, state, label, affiliation, analyst, at, action FROM reviews WHERE track_id=? ORDER BY seq",
                (track_id,),
            ).fetchall()
            live: list[tuple[Any, ...]] = []  # verdicts still in force after replaying undos
            for r in rows:
                if r[6] == "undo":
                    if live:
                        live.pop()
                else:
                    live.append(r)
            if not live:
                raise ReviewError(f"track {track_id}: no decision to undo")
            live.pop()
            if live:
                _, state, label, aff, by, at = live[-1][:6]
            else:  # back to the machine's verdict (the pipeline never sets label or affiliation)
                state, label, aff, by, at = "pending", "unknown", "unknown", None, None
            db.execute("UPDATE tracks SET state=?, label=?, affiliation=?, analyst=?, reviewed_at=? WHERE id=?",
                       (state, label, aff, by, at, track_id))
            db.execute(
                "INSERT INTO reviews(track_id, state, label, affiliation, analyst, at, frame, action)"
                " VALUES (?,?,?,?,?,?,?,'undo')",
                (track_id, state, label, aff, who, utc_now(), frame),
            )
        got = self.track(track_id)
        assert got is not None
        return got

    def frame_spans(self) -> dict[int, tuple[int, int]]:
        """track id -> (first frame, last frame) from its stored points."""
        cur = self._db.execute("SELECT track_id, MIN(frame), MAX(frame) FROM points GROUP BY track_id")
        return {r[0]: (r[1], r[2]) for r in cur}

    def boxes(self, first: int, last: int) -> list[tuple[int, int, float, float, float, float]]:
        """(frame, track id, x, y, w, h) of every stored box with first <= frame <= last."""
        return list(self._db.execute(
            "SELECT frame, track_id, x, y, w, h FROM points WHERE frame BETWEEN ? AND ? ORDER BY frame, track_id",
            (first, last)))

    def version(self) -> tuple[int, ...]:
        """Changes whenever any writer (pipeline, analyst, another process) committed something."""
        r = self._db.execute("SELECT (SELECT IFNULL(MAX(seq), 0) FROM reviews), (SELECT COUNT(*) FROM tracks),"
                             " (SELECT IFNULL(SUM(frames), 0) FROM tracks), (SELECT COUNT(*) FROM platform)").fetchone()
        return tuple(int(v) for v in r)

    def audit(self, since: int = 0) -> list[dict[str, Any]]:
        """Audit rows after sequence number `since` (oldest first)."""
        cur = self._db.execute(
            "SELECT seq, track_id, state, label, affiliation, analyst, at, frame, action FROM reviews"
            " WHERE seq > ? ORDER BY seq", (since,))
        keys = ("seq", "track_id", "state", "label", "affiliation", "analyst", "at", "frame", "action")
        return [dict(zip(keys, r, strict=True)) for r in cur]

    # ---- dissemination bookkeeping -------------------------------------------------------------
    def disseminated(self) -> dict[int, tuple[str, str]]:
        """track id -> (CoT uid, CoT type) of tracks last pushed and not retracted since."""
        return {r[0]: (r[1], r[2]) for r in self._db.execute("SELECT track_id, uid, type FROM disseminated")}

    def mark_disseminated(self, sent: dict[int, tuple[str, str]], retracted: Iterable[int]) -> None:
        at = utc_now()
        with self._tx() as db:
            db.executemany("DELETE FROM disseminated WHERE track_id=?", [(i,) for i in retracted])
            db.executemany(
                "INSERT OR REPLACE INTO disseminated(track_id, uid, type, at) VALUES (?,?,?,?)",
                [(i, uid, type_, at) for i, (uid, type_) in sent.items()],
            )

    def history(self, track_id: int) -> list[dict[str, Any]]:
        cur = self._db.execute(
            "SELECT state, label, affiliation, analyst, at, frame, action FROM reviews WHERE track_id=? ORDER BY seq",
            (track_id,),
        )
        keys = ("state", "label", "affiliation", "analyst", "at", "frame", "action")
        return [dict(zip(keys, r, strict=True)) for r in cur]

    # ---- reading -----------------------------------------------------------------------------
    def tracks(
        self, states: Sequence[str] | None = None, *, points: bool = True, track_id: int | None = None
    ) -> list[StoredTrack]:
        """Tracks (optionally only those in `states`, or one id) with their points, by id."""
        sql = f"SELECT {_TRACK_COLS} FROM tracks WHERE 1"
        args: tuple[Any, ...] = ()
        if states is not None:
            sql += f" AND state IN ({','.join('?' * len(states))})"
            args = tuple(states)
        if track_id is not None:
            sql += " AND id=?"
            args += (track_id,)
        out = [StoredTrack(**dict(zip([c.strip() for c in _TRACK_COLS.split(",")], r, strict=True)))
               for r in self._db.execute(sql + " ORDER BY id", args)]
        if points and out:
            by_id = {t.id: t for t in out}
            where, pargs = ("WHERE track_id=?", (track_id,)) if track_id is not None else ("", ())
            for r in self._db.execute(
                f"SELECT track_id, frame, t, x, y, w, h, lat, lon FROM points {where} ORDER BY track_id, frame",
                pargs,
            ):
                tr = by_id.get(r[0])
                if tr is not None:
                    tr.points.append(StoredPoint(*r[1:]))
        return out

    def track(self, track_id: int) -> StoredTrack | None:
        got = self.tracks(track_id=track_id)
        return got[0] if got else None

    def platform(self) -> list[PlatformState]:
        return [_platform(r) for r in self._db.execute(f"SELECT {_PLATFORM_COLS} FROM platform ORDER BY frame")]

    def latest_platform(self) -> PlatformState | None:
        """The last frame with a platform position (what dissemination shows)."""
        r = self._db.execute(
            f"SELECT {_PLATFORM_COLS} FROM platform WHERE lat IS NOT NULL ORDER BY frame DESC LIMIT 1"
        ).fetchone()
        if r is None:
            return None
        last = _platform(r)
        # Ground speed from the position about a second earlier (KLV has no speed tag we use).
        prev = self._db.execute(
            "SELECT t, lat, lon FROM platform WHERE lat IS NOT NULL AND t <= ? ORDER BY frame DESC LIMIT 1",
            (last.t - 0.9,),
        ).fetchone()
        if prev is not None and last.lat is not None and last.lon is not None and last.t > prev[0]:
            last.speed = ground_distance((prev[1], prev[2]), (last.lat, last.lon)) / (last.t - prev[0])
        return last


def ground_distance(a: tuple[float, float], b: tuple[float, float]) -> float:
    """Great-circle metres (haversine, mean Earth radius): enough for a speed or a cone on a map."""
    la1, lo1, la2, lo2 = map(math.radians, (a[0], a[1], b[0], b[1]))
    h = math.sin((la2 - la1) / 2) ** 2 + math.cos(la1) * math.cos(la2) * math.sin((lo2 - lo1) / 2) ** 2
    return 2 * 6_371_008.8 * math.asin(min(1.0, math.sqrt(h)))


def _platform(row: Sequence[Any]) -> PlatformState:
    names = [c.strip() for c in _PLATFORM_COLS.split(",")]
    values = dict(zip(names, row, strict=True))
    fp = values.pop("footprint")
    return PlatformState(**values, footprint=[(a, b) for a, b in json.loads(fp)] if fp else None)
