"""Mission / Data Sync, a subset: create, list, get, delete a mission; add and remove content (file
hashes) and CoT uids; subscribe and unsubscribe; changes announced as TAK Server does.

Announcements are CoT events built here and handed to a `notify(event, groups, to_uids)` callback
(the service routes them): `t-x-m-n` (type CREATE) to everyone sharing the mission's groups when a
mission is made, `t-x-m-c` (type CHANGE, with `<MissionChanges>`) to the mission's subscribers when
its content or uids change, `t-x-m-d` (DELETE) to its subscribers when it is deleted. A mission
carries its creator's groups: only callers sharing one see or change it. Worst case per call:
O(contents + uids) of that mission (one JSON row).
"""

from __future__ import annotations

import json
import re
import sqlite3
import time
import uuid
from collections.abc import Callable
from typing import Any
from xml.sax.saxutils import escape, quoteattr

from kestrel.cot.event import Event
from kestrel.marti.db import join_groups, split_groups
from kestrel.marti.files import FileMeta, FileStore, check_hash, iso_ms
from kestrel.marti.message import HttpError

_NAME_RE = re.compile(r"^[A-Za-z0-9 ._:-]{1,128}$")
MAX_ITEMS = 10_000
Notify = Callable[[Event, frozenset[str], "list[str] | None"], int]


def check_name(name: str) -> str:
    if not _NAME_RE.match(name):
        raise HttpError(400, f"bad mission name {name[:64]!r}: 1-128 letters, digits, space, '.', '_', ':', '-'")
    return name.lower()  # TAK Server keys missions by lower-case name


def _resource(m: FileMeta) -> dict[str, Any]:
    """A mission content entry's `data`, as TAK Server's Resource serializes."""
    return {"filename": m.name, "keywords": list(m.keywords), "mimeType": m.mime, "name": m.name,
            "submissionTime": iso_ms(m.submitted_ms), "submitter": m.submitter, "uid": m.hash,
            "hash": m.hash, "size": m.size, "creatorUid": m.creator_uid, "tool": m.tool}


def mission_event(type_: str, msg_type: str, name: str, guid: str, author: str, tool: str,
                  changes: str = "") -> Event:
    now = int(time.time() * 1000)
    attrs = f"type={quoteattr(msg_type)} tool={quoteattr(tool)} name={quoteattr(name)} guid={quoteattr(guid)}"
    if author:
        attrs += f" authorUid={quoteattr(author)}"
    detail = f"<mission {attrs}>{changes}</mission>" if changes else f"<mission {attrs}/>"
    return Event(uid=str(uuid.uuid4()), type=type_, how="h-g-i-g-o", time=now, start=now, stale=now + 20_000,
                 lat=0.0, lon=0.0, hae=0.0, detail=detail.encode(), attrs={"version": "2.0"})


def _change_xml(kind: str, name: str, author: str, *, hash_: str | None = None, uid: str | None = None,
                meta: FileMeta | None = None) -> str:
    now = iso_ms(int(time.time() * 1000))
    body = [f"<type>{kind}</type>", f"<missionName>{escape(name)}</missionName>",
            f"<creatorUid>{escape(author)}</creatorUid>", f"<timestamp>{now}</timestamp>",
            f"<serverTime>{now}</serverTime>"]
    if uid is not None:
        body.append(f"<contentUid>{escape(uid)}</contentUid>")
    if hash_ is not None:
        res = [f"<hash>{hash_}</hash>"]
        if meta is not None:
            res += [f"<filename>{escape(meta.name)}</filename>", f"<name>{escape(meta.name)}</name>",
                    f"<mimeType>{escape(meta.mime)}</mimeType>", f"<size>{meta.size}</size>",
                    f"<submitter>{escape(meta.submitter)}</submitter>", f"<uid>{hash_}</uid>"]
        body.append(f"<contentResource>{''.join(res)}</contentResource>")
    return f"<MissionChanges><MissionChange>{''.join(body)}</MissionChange></MissionChanges>"


class Missions:
    def __init__(self, db: sqlite3.Connection, files: FileStore, notify: Notify) -> None:
        self.db, self.files, self.notify = db, files, notify

    # -- storage ---------------------------------------------------------------------------------

    def _get(self, key: str) -> tuple[dict[str, Any], frozenset[str]] | None:
        row = self.db.execute("SELECT groups, json FROM missions WHERE name = ?", (key,)).fetchone()
        return (json.loads(row[1]), split_groups(row[0])) if row else None

    def _put(self, key: str, m: dict[str, Any], groups: frozenset[str]) -> None:
        self.db.execute("INSERT OR REPLACE INTO missions (name, groups, json) VALUES (?, ?, ?)",
                        (key, join_groups(groups), json.dumps(m)))

    def _visible(self, name: str, groups: frozenset[str]) -> tuple[str, dict[str, Any], frozenset[str]]:
        key = check_name(name)
        got = self._get(key)
        if got is None or got[1].isdisjoint(groups):
            raise HttpError(404, f"no mission named {name!r}")
        return key, got[0], got[1]

    @staticmethod
    def public(m: dict[str, Any], groups: frozenset[str]) -> dict[str, Any]:
        out = {k: v for k, v in m.items() if k != "subscribers"}
        out["groups"] = sorted(groups)
        return out

    # -- operations ------------------------------------------------------------------------------

    def all(self, groups: frozenset[str]) -> list[dict[str, Any]]:
        rows = self.db.execute("SELECT groups, json FROM missions ORDER BY name")
        return [self.public(json.loads(j), g) for g, j in ((split_groups(g), j) for g, j in rows)
                if not g.isdisjoint(groups)]

    def get(self, name: str, groups: frozenset[str]) -> dict[str, Any]:
        _, m, g = self._visible(name, groups)
        return self.public(m, g)

    def create(self, name: str, groups: frozenset[str], creator_uid: str, *, description: str = "",
               tool: str = "public") -> tuple[dict[str, Any], bool]:
        key = check_name(name)
        got = self._get(key)
        if got is not None:
            if got[1].isdisjoint(groups):
                raise HttpError(409, f"a mission named {name!r} exists")
            return self.public(got[0], got[1]), False
        m: dict[str, Any] = {
            "name": name, "description": description, "chatRoom": "", "baseLayer": "", "bbox": "", "path": "",
            "classification": "", "tool": tool, "keywords": [], "creatorUid": creator_uid,
            "createTime": iso_ms(int(time.time() * 1000)), "externalData": [], "feeds": [], "mapLayers": [],
            "inviteOnly": False, "expiration": -1, "guid": str(uuid.uuid4()), "uids": [], "contents": [],
            "passwordProtected": False, "subscribers": {},
        }
        self._put(key, m, groups)
        self.notify(mission_event("t-x-m-n", "CREATE", name, m["guid"], creator_uid, tool), groups, None)
        return self.public(m, groups), True

    def delete(self, name: str, groups: frozenset[str], creator_uid: str) -> dict[str, Any]:
        key, m, g = self._visible(name, groups)
        self.db.execute("DELETE FROM missions WHERE name = ?", (key,))
        subs = list(m["subscribers"])
        if subs:
            self.notify(mission_event("t-x-m-d", "DELETE", m["name"], m["guid"], creator_uid, m["tool"]), g, subs)
        return self.public(m, g)

    def add(self, name: str, groups: frozenset[str], creator_uid: str, hashes: list[str],
            uids: list[str]) -> dict[str, Any]:
        key, m, g = self._visible(name, groups)
        now = iso_ms(int(time.time() * 1000))
        changes = []
        have_hashes = {c["data"]["hash"] for c in m["contents"]}
        for h in hashes:
            h = check_hash(h)
            metas = self.files.visible(h, groups)
            if not metas:
                raise HttpError(404, f"no file with hash {h}")
            if h not in have_hashes:
                m["contents"].append({"data": _resource(metas[0]), "timestamp": now, "creatorUid": creator_uid})
                have_hashes.add(h)
                changes.append(_change_xml("ADD_CONTENT", m["name"], creator_uid, hash_=h, meta=metas[0]))
        have_uids = {u["data"] for u in m["uids"]}
        for uid in uids:
            if not isinstance(uid, str) or not uid or len(uid) > 256:
                raise HttpError(400, "bad uid")
            if uid not in have_uids:
                m["uids"].append({"data": uid, "timestamp": now, "creatorUid": creator_uid})
                have_uids.add(uid)
                changes.append(_change_xml("ADD_CONTENT", m["name"], creator_uid, uid=uid))
        if len(m["contents"]) + len(m["uids"]) > MAX_ITEMS:
            raise HttpError(413, f"a mission holds at most {MAX_ITEMS} items")
        self._put(key, m, g)
        self._announce(m, g, creator_uid, changes)
        return self.public(m, g)

    def remove(self, name: str, groups: frozenset[str], creator_uid: str, hash_: str | None,
               uid: str | None) -> dict[str, Any]:
        key, m, g = self._visible(name, groups)
        changes = []
        if hash_ is not None:
            h = check_hash(hash_)
            before = len(m["contents"])
            m["contents"] = [c for c in m["contents"] if c["data"]["hash"] != h]
            if len(m["contents"]) != before:
                changes.append(_change_xml("REMOVE_CONTENT", m["name"], creator_uid, hash_=h))
        if uid is not None:
            before = len(m["uids"])
            m["uids"] = [u for u in m["uids"] if u["data"] != uid]
            if len(m["uids"]) != before:
                changes.append(_change_xml("REMOVE_CONTENT", m["name"], creator_uid, uid=uid))
        self._put(key, m, g)
        self._announce(m, g, creator_uid, changes)
        return self.public(m, g)

    def _announce(self, m: dict[str, Any], groups: frozenset[str], author: str, changes: list[str]) -> None:
        subs = list(m["subscribers"])
        for change in changes:  # one t-x-m-c per change, as TAK Server sends them
            if subs:
                self.notify(mission_event("t-x-m-c", "CHANGE", m["name"], m["guid"], author, m["tool"], change),
                            groups, subs)

    def subscribe(self, name: str, groups: frozenset[str], client_uid: str, username: str) -> dict[str, Any]:
        if not client_uid or len(client_uid) > 256:
            raise HttpError(400, "missing parameter uid")
        key, m, g = self._visible(name, groups)
        sub = m["subscribers"].get(client_uid)
        if sub is None:
            sub = m["subscribers"][client_uid] = {
                "token": uuid.uuid4().hex, "createTime": iso_ms(int(time.time() * 1000)), "username": username}
            self._put(key, m, g)
        return {"token": sub["token"], "clientUid": client_uid, "username": sub["username"],
                "createTime": sub["createTime"], "role": None, "mission": self.public(m, g)}

    def unsubscribe(self, name: str, groups: frozenset[str], client_uid: str) -> None:
        key, m, g = self._visible(name, groups)
        if m["subscribers"].pop(client_uid, None) is not None:
            self._put(key, m, g)

    def subscribers(self, name: str, groups: frozenset[str]) -> list[str]:
        _, m, _ = self._visible(name, groups)
        return sorted(m["subscribers"])
