"""Persistence of retained events: SQLite in WAL mode under the data dir.

The router keeps the live copy in memory; this module only makes it survive a restart. Writes are
batched: `put`/`delete` mark a uid dirty (O(1)), `flush` writes all dirty rows in one transaction
(called every `store_flush_seconds` and at shutdown). Worst case per flush: O(dirty uids) rows;
a crash loses at most one flush interval. One row per uid, so the file is bounded by the number of
retained uids (itself capped by `limits.max_retained`).
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from pathlib import Path

_SCHEMA = """
CREATE TABLE IF NOT EXISTS retained (
    uid      TEXT PRIMARY KEY,
    type     TEXT NOT NULL,
    stale_ms INTEGER NOT NULL,
    groups   TEXT NOT NULL,      -- newline-joined group names of the sender
    xml      BLOB NOT NULL       -- the event as CoT XML
);
CREATE INDEX IF NOT EXISTS retained_stale ON retained (stale_ms);
"""


@dataclass(slots=True)
class Row:
    uid: str
    type: str
    stale_ms: int
    groups: frozenset[str]
    xml: bytes


class Store:
    """One SQLite file; not thread-safe (used from the event loop only)."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._db = sqlite3.connect(str(path), isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)
        self._dirty: dict[str, Row | None] = {}  # uid -> row to write, or None to delete
        self.flushes = 0

    def load(self, now_ms: int) -> list[Row]:
        """Every row not yet stale, oldest write first; stale rows are deleted."""
        self._db.execute("DELETE FROM retained WHERE stale_ms <= ?", (now_ms,))
        cur = self._db.execute("SELECT uid, type, stale_ms, groups, xml FROM retained ORDER BY rowid")
        return [Row(u, t, s, frozenset(g.split("\n")), bytes(x)) for u, t, s, g, x in cur]

    def put(self, row: Row) -> None:
        self._dirty[row.uid] = row

    def delete(self, uid: str) -> None:
        self._dirty[uid] = None

    @property
    def pending(self) -> int:
        return len(self._dirty)

    def flush(self, now_ms: int | None = None) -> int:
        """Write every dirty uid in one transaction; purge stale rows. Returns rows written."""
        dirty, self._dirty = self._dirty, {}
        if not dirty and now_ms is None:
            return 0
        db = self._db
        db.execute("BEGIN")
        try:
            for uid, row in dirty.items():
                if row is None:
                    db.execute("DELETE FROM retained WHERE uid = ?", (uid,))
                else:
                    # Delete then insert so rowid order follows the latest write.
                    db.execute("DELETE FROM retained WHERE uid = ?", (uid,))
                    db.execute(
                        "INSERT INTO retained (uid, type, stale_ms, groups, xml) VALUES (?, ?, ?, ?, ?)",
                        (row.uid, row.type, row.stale_ms, "\n".join(sorted(row.groups)), row.xml),
                    )
            if now_ms is not None:
                db.execute("DELETE FROM retained WHERE stale_ms <= ?", (now_ms,))
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            self._dirty = {**dirty, **self._dirty}
            raise
        self.flushes += 1
        return len(dirty)

    def close(self) -> None:
        self.flush()
        self._db.close()
