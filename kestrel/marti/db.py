"""The Marti state's SQLite file: `<data>/marti/marti.db` (WAL), beside the blobs under `files/`.

One connection, used from the event loop only; each write is one short transaction (rows, not
payloads: file bytes live in files, see `files`). The schema is created on open; tables are owned
by `files`, `video` and `missions`.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

SCHEMA = """
CREATE TABLE IF NOT EXISTS files (
    id           INTEGER PRIMARY KEY,
    hash         TEXT NOT NULL,        -- SHA-256 of the bytes, hex (computed here, never trusted)
    name         TEXT NOT NULL,
    mime         TEXT NOT NULL,
    keywords     TEXT NOT NULL,        -- JSON list
    tool         TEXT NOT NULL,
    creator_uid  TEXT NOT NULL,
    submitter    TEXT NOT NULL,
    submitted_ms INTEGER NOT NULL,
    size         INTEGER NOT NULL,
    groups       TEXT NOT NULL         -- newline-joined groups of the uploader: who may see it
);
CREATE INDEX IF NOT EXISTS files_hash ON files (hash);
CREATE TABLE IF NOT EXISTS feeds (
    uid     TEXT NOT NULL,
    groups  TEXT NOT NULL,
    json    TEXT NOT NULL,             -- the feed's fields
    PRIMARY KEY (uid, groups)
);
CREATE TABLE IF NOT EXISTS missions (
    name    TEXT PRIMARY KEY,
    groups  TEXT NOT NULL,
    json    TEXT NOT NULL              -- the mission record (contents, uids, subscribers)
);
"""


def open_db(path: Path) -> sqlite3.Connection:
    path.parent.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(str(path), isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    db.executescript(SCHEMA)
    return db


def join_groups(groups: frozenset[str]) -> str:
    return "\n".join(sorted(groups))


def split_groups(text: str) -> frozenset[str]:
    return frozenset(g for g in text.split("\n") if g)
