"""Files and data packages ("Enterprise Sync"): bytes stored by SHA-256, rows visible by group.

Bytes go to `<data>/marti/files/ab/abcdef…` (one copy per distinct content) through a temp file
while the upload streams in; SHA-256 is computed here (a client's `hash=` parameter is never
trusted). Each upload is a row (name, keywords, tool, creator, submitter, time, size) carrying the
uploader's groups: a caller sees a row only when it shares a group with it, and downloads bytes only
through a row it can see. Limits: `max_file` bytes per file and `quota` bytes for all distinct
files; an upload over either is refused while it streams (400, as TAK Server answers) and leaves nothing behind.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kestrel.cot.cottime import format_time
from kestrel.marti.db import join_groups, split_groups
from kestrel.marti.message import HttpError

DEFAULT_KEYWORD = "missionpackage"
DEFAULT_TOOL = "public"
DEFAULT_MIME = "application/x-zip-compressed"
_HASH_RE = re.compile(r"^[0-9a-f]{64}$")
_BAD_NAME = re.compile(r"[/\\\x00-\x1f\x7f]")


def check_hash(value: str | None) -> str:
    if value is None:
        raise HttpError(400, "missing parameter hash")
    h = value.strip().lower()
    if not _HASH_RE.match(h):
        raise HttpError(404, "File not found")  # not one of ours (TAK: unknown hash -> 404)
    return h


def check_filename(name: str | None) -> str:
    """A display name: no path separators, no '..', no control characters, at most 255 chars."""
    if name is None or not name.strip():
        raise HttpError(400, "Required parameter filename is not present")
    if _BAD_NAME.search(name) or name in (".", "..") or name.startswith("..") or len(name) > 255:
        raise HttpError(400, f"bad filename {name[:64]!r}: a plain file name without a path")
    return name


@dataclass(frozen=True, slots=True)
class FileMeta:
    id: int
    hash: str
    name: str
    mime: str
    keywords: tuple[str, ...]
    tool: str
    creator_uid: str
    submitter: str
    submitted_ms: int
    size: int
    groups: frozenset[str]

    def tak_json(self) -> dict[str, Any]:
        """As TAK Server's `Metadata.toJSONObject` names the fields (what ATAK's search reads)."""
        return {
            "PrimaryKey": str(self.id), "UID": self.hash, "Hash": self.hash, "Name": self.name,
            "MIMEType": self.mime, "Keywords": list(self.keywords), "Size": str(self.size),
            "SubmissionDateTime": iso_ms(self.submitted_ms), "SubmissionUser": self.submitter,
            "CreatorUid": self.creator_uid, "Tool": self.tool, "EXPIRATION": "-1",
        }


def iso_ms(ms: int) -> str:
    """`YYYY-MM-DDTHH:MM:SS.mmmZ`: the CoT timestamp format (one formatter: kestrel.cot.cottime)."""
    return format_time(ms)


class Upload:
    """Bytes of one upload on their way to disk: hashed and counted as they stream."""

    def __init__(self, store: FileStore) -> None:
        self._store = store
        self.tmp = store.tmp_dir / f"up-{os.getpid()}-{id(self):x}-{time.monotonic_ns()}"
        self._f = open(self.tmp, "wb")  # noqa: SIM115 - closed in finish()/abort()
        self._sha = hashlib.sha256()
        self.size = 0
        self.hash: str | None = None

    def write(self, data: bytes) -> None:
        self.size += len(data)
        st = self._store
        if self.size > st.max_file:
            self.abort()
            raise HttpError(400, f"Uploaded file exceeds server's size limit of {st.max_file / 1_000_000:g} MB!")
        if st.used + self.size > st.quota:
            self.abort()
            raise HttpError(400, f"storage quota of {st.quota // 1_000_000} MB is full")
        self._sha.update(data)
        self._f.write(data)

    def finish(self) -> str:
        self._f.close()
        self.hash = self._sha.hexdigest()
        return self.hash

    def abort(self) -> None:
        if not self._f.closed:
            self._f.close()
        self.tmp.unlink(missing_ok=True)


class FileStore:
    def __init__(self, root: Path, db: sqlite3.Connection, *, max_file: int, quota: int) -> None:
        self.root = root / "files"
        self.tmp_dir = root / "tmp"
        self.db = db
        self.max_file, self.quota = max_file, quota
        self.root.mkdir(parents=True, exist_ok=True)
        self.tmp_dir.mkdir(parents=True, exist_ok=True)
        for leftover in self.tmp_dir.iterdir():  # uploads cut short by a crash
            leftover.unlink(missing_ok=True)
        row = db.execute("SELECT COALESCE(SUM(size), 0) FROM (SELECT DISTINCT hash, size FROM files)").fetchone()
        self.used = int(row[0])

    def blob(self, h: str) -> Path:
        return self.root / h[:2] / h

    def begin(self) -> Upload:
        return Upload(self)

    def commit(self, up: Upload, *, name: str, mime: str | None, keywords: list[str], tool: str,
               creator_uid: str, submitter: str, groups: frozenset[str]) -> FileMeta:
        h = up.finish() if up.hash is None else up.hash
        dest = self.blob(h)
        new_blob = not dest.exists()
        if new_blob:
            dest.parent.mkdir(exist_ok=True)
            os.replace(up.tmp, dest)
            self.used += up.size
        else:
            up.tmp.unlink(missing_ok=True)
        now = int(time.time() * 1000)
        cur = self.db.execute(
            "INSERT INTO files (hash, name, mime, keywords, tool, creator_uid, submitter, submitted_ms, size, groups)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (h, name, mime or DEFAULT_MIME, json.dumps(keywords), tool, creator_uid, submitter, now, up.size,
             join_groups(groups)),
        )
        return FileMeta(int(cur.lastrowid or 0), h, name, mime or DEFAULT_MIME, tuple(keywords), tool,
                        creator_uid, submitter, now, up.size, groups)

    def _rows(self, where: str, args: tuple[Any, ...]) -> list[FileMeta]:
        cur = self.db.execute(
            "SELECT id, hash, name, mime, keywords, tool, creator_uid, submitter, submitted_ms, size, groups"
            f" FROM files {where} ORDER BY id", args,
        )
        return [FileMeta(i, h, n, m, tuple(json.loads(k)), t, c, s, ms, sz, split_groups(g))
                for i, h, n, m, k, t, c, s, ms, sz, g in cur]

    def visible(self, h: str, groups: frozenset[str]) -> list[FileMeta]:
        """Rows of hash `h` the caller may see (shares a group with)."""
        return [r for r in self._rows("WHERE hash = ?", (h,)) if not r.groups.isdisjoint(groups)]

    def search(self, groups: frozenset[str], *, tool: str | None = None, keyword: str | None = None,
               name: str | None = None, mime: str | None = None) -> list[FileMeta]:
        out = []
        for r in self._rows("", ()):
            if r.groups.isdisjoint(groups):
                continue
            if tool is not None and r.tool != tool:
                continue
            if keyword is not None and keyword not in r.keywords:
                continue
            if name is not None and name.lower() not in r.name.lower():
                continue
            if mime is not None and r.mime != mime:
                continue
            out.append(r)
        return out

    def set_tool(self, h: str, tool: str, groups: frozenset[str]) -> int:
        ids = [r.id for r in self.visible(h, groups)]
        for i in ids:
            self.db.execute("UPDATE files SET tool = ? WHERE id = ?", (tool, i))
        return len(ids)

    def delete(self, h: str, groups: frozenset[str]) -> int:
        rows = self.visible(h, groups)
        for r in rows:
            self.db.execute("DELETE FROM files WHERE id = ?", (r.id,))
        if rows and self.db.execute("SELECT 1 FROM files WHERE hash = ? LIMIT 1", (h,)).fetchone() is None:
            self.blob(h).unlink(missing_ok=True)
            self.used -= rows[0].size
        return len(rows)
