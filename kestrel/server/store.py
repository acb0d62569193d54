"""Persistence of retained events: SQLite in WAL mode under the data dir.

The router keeps the live copy in memory; this module only makes it survive a restart. Writes are
batched: `put`/`delete` mark a uid dirty (O(1)), `flush` writes all dirty rows in one transaction
(called every `store_flush_seconds` and at shutdown). The server writes off the event loop: it
`take()`s the dirty rows on the loop, `write()`s them in a worker thread (sqlite3 releases the GIL,
so a big transaction, e.g. 900 KB markers, does not stall every client) and `untake()`s them on
failure; one write at a time (a lock, which `close()` waits for). Worst case per flush: O(dirty uids) rows;
a crash loses at most one flush interval. One row per uid and sender's groups (the router's
retained item), so the file is bounded by the number of
retained items (itself capped by the per-group limits).

A file that is not a readable SQLite store (truncated, overwritten, not a database) raises
`StoreError` naming the file and the way out; `set_aside()` moves it (and its -wal/-shm) away for
`kestrel serve --repair`. Each row keeps the authenticated identity (certificate CN) that wrote it,
so ownership survives a restart. Older files are brought up to date on open, in place, in one
transaction: the `owner` column added; a file keyed by uid alone (before items were scoped by
groups) copied into the (uid, groups) table.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from kestrel.errors import BadInput


class StoreError(BadInput):
    """The store file cannot be used; the message names it and says what to do."""

_TABLE = """
CREATE TABLE IF NOT EXISTS {name} (
    uid      TEXT NOT NULL,
    type     TEXT NOT NULL,
    stale_ms INTEGER NOT NULL,
    groups   TEXT NOT NULL,      -- newline-joined group names of the sender (the item's scope)
    xml      BLOB NOT NULL,      -- the event as CoT XML
    owner    TEXT,               -- certificate CN of the writer (NULL: unauthenticated)
    PRIMARY KEY (uid, groups)
);
"""
_SCHEMA = _TABLE.format(name="retained") + "CREATE INDEX IF NOT EXISTS retained_stale ON retained (stale_ms);\n"
_COLUMNS = "uid, type, stale_ms, groups, xml, owner"


def _migrate(db: sqlite3.Connection) -> None:
    """Bring an older file up to the current schema, in place (one transaction)."""
    cols = {r[1]: r[5] for r in db.execute("PRAGMA table_info(retained)")}  # name -> position in the key
    if "owner" not in cols:
        db.execute("ALTER TABLE retained ADD COLUMN owner TEXT")
    if cols.get("groups"):
        return
    # Keyed by uid alone: copy into a (uid, groups) table, keeping the write order (rowid).
    db.execute("BEGIN")
    try:
        db.execute("DROP TABLE IF EXISTS retained_v2")
        db.execute(_TABLE.format(name="retained_v2"))
        db.execute(f"INSERT INTO retained_v2 ({_COLUMNS}) SELECT {_COLUMNS} FROM retained ORDER BY rowid")
        db.execute("DROP TABLE retained")
        db.execute("ALTER TABLE retained_v2 RENAME TO retained")
        db.execute("CREATE INDEX IF NOT EXISTS retained_stale ON retained (stale_ms)")
        db.execute("COMMIT")
    except BaseException:
        db.execute("ROLLBACK")
        raise


Key = tuple[str, frozenset[str]]  # (uid, groups): one retained item


@dataclass(slots=True)
class Row:
    uid: str
    type: str
    stale_ms: int
    groups: frozenset[str]
    xml: bytes
    owner: str | None = None


class Store:
    """One SQLite file. `put`/`delete`/`take`/`untake` from the event loop only; `write` (and so
    `flush`) may run in one worker thread at a time."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
        self._lock = threading.Lock()  # one writer at a time; close() waits for it
        try:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(_SCHEMA)
            _migrate(self._db)
            check = self._db.execute("PRAGMA quick_check").fetchone()
            if check is None or check[0] != "ok":
                raise sqlite3.DatabaseError(str(check[0] if check else "quick_check returned nothing")[:120])
        except sqlite3.DatabaseError as exc:
            self._db.close()
            raise StoreError(
                f"{path}: not a readable Kestrel store ({exc}); move it aside, or start with "
                f"`kestrel serve --repair` to keep it as {path.name}.corrupt-* and start with an empty picture"
            ) from None
        self._dirty: dict[Key, Row | None] = {}  # (uid, groups) -> row to write, or None to delete
        self.flushes = 0

    def load(self, now_ms: int) -> list[Row]:
        """Every row not yet stale, oldest write first; stale rows are deleted."""
        self._db.execute("DELETE FROM retained WHERE stale_ms <= ?", (now_ms,))
        try:
            cur = self._db.execute("SELECT uid, type, stale_ms, groups, xml, owner FROM retained ORDER BY rowid")
            return [Row(u, t, s, frozenset(g.split("\n")), bytes(x), o) for u, t, s, g, x, o in cur]
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"{self.path}: not a readable Kestrel store ({exc}); move it aside, or start "
                             f"with `kestrel serve --repair`") from None

    def put(self, row: Row) -> None:
        self._dirty[row.uid, row.groups] = row

    def delete(self, uid: str, groups: frozenset[str]) -> None:
        """Delete the row of `uid` stored with `groups` (the item's scope)."""
        self._dirty[uid, groups] = None

    @property
    def pending(self) -> int:
        return len(self._dirty)

    def flush(self, now_ms: int | None = None) -> int:
        """Write every dirty uid in one transaction; purge stale rows. Returns rows written."""
        dirty = self.take()
        try:
            return self.write(dirty, now_ms)
        except BaseException:
            self.untake(dirty)
            raise

    def take(self) -> dict[Key, Row | None]:
        """The dirty rows, handed over for `write` (event loop side)."""
        dirty, self._dirty = self._dirty, {}
        return dirty

    def untake(self, dirty: dict[Key, Row | None]) -> None:
        """A failed write's rows are dirty again (newer changes made meanwhile win)."""
        self._dirty = {**dirty, **self._dirty}

    def write(self, dirty: dict[Key, Row | None], now_ms: int | None = None) -> int:
        """Write `dirty` in one transaction and purge stale rows (any thread, one at a time)."""
        if not dirty and now_ms is None:
            return 0
        with self._lock:
            return self._write(dirty, now_ms)

    def _write(self, dirty: dict[Key, Row | None], now_ms: int | None) -> int:
        db = self._db
        db.execute("BEGIN")
        try:
            for (uid, groups), row in dirty.items():
                # Delete (then insert) so rowid order follows the latest write.
                db.execute("DELETE FROM retained WHERE uid = ? AND groups = ?", (uid, "\n".join(sorted(groups))))
                if row is not None:
                    db.execute(
                        f"INSERT INTO retained ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?)",
                        (row.uid, row.type, row.stale_ms, "\n".join(sorted(row.groups)), row.xml, row.owner),
                    )
            if now_ms is not None:
                db.execute("DELETE FROM retained WHERE stale_ms <= ?", (now_ms,))
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        self.flushes += 1
        return len(dirty)

    def close(self) -> None:
        with self._lock:  # a write still running in a worker thread finishes first
            pass
        self.flush()
        self._db.close()


def set_aside(path: Path) -> Path:
    """Move an unreadable store (and its -wal/-shm files) to `<name>.corrupt-<UTC time>`; returns
    the new path of the main file. The next `Store(path)` starts empty."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    target = path.with_name(f"{path.name}.corrupt-{stamp}")
    for suffix in ("", "-wal", "-shm"):
        src = path.with_name(path.name + suffix)
        if src.exists():
            src.rename(target.with_name(target.name + suffix))
    return target
