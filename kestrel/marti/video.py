"""The video registry ATAK's video manager reads: `/Marti/vcm` (XML) and `/Marti/api/video` (JSON).

A feed is a flat record of TAK Server's `<feed>` elements (`uid`, `alias`, `protocol`, `address`,
`port`, `path`, `roverPort`, `ignoreEmbeddedKLV`, `buffer`, `timeout`, `rtspReliable`, …). ATAK
lists what `GET /Marti/vcm` answers (`<videoConnections><feed>…</feed></videoConnections>`) and
builds the stream URL from protocol/address/port/path. Feeds carry the poster's groups; a caller
sees a feed only when it shares a group with it. XML bodies are parsed with entities, DTDs and
network access off (a feed list cannot make the server read files or URLs).
"""

from __future__ import annotations

import json
import sqlite3
import uuid
from collections.abc import Iterable
from typing import Any
from urllib.parse import urlsplit
from xml.sax.saxutils import escape

from lxml import etree

from kestrel.marti.db import join_groups, split_groups
from kestrel.marti.message import HttpError

# TAK Server's Feed elements, in its order. Everything is a string on the wire.
FIELDS = ("active", "uid", "alias", "type", "address", "preferredMacAddress", "port", "roverPort",
          "ignoreEmbeddedKLV", "path", "protocol", "source", "timeout", "buffer", "rtspReliable",
          "thumbnail", "classification", "latitude", "longitude", "fov", "heading", "range")
DEFAULTS = {"active": "true", "roverPort": "-1", "ignoreEmbeddedKLV": "false", "timeout": "5000",
            "buffer": "-1", "rtspReliable": "0", "path": ""}
DEFAULT_PORTS = {"rtsp": "554", "rtmp": "1935", "http": "80", "https": "443", "srt": "9710"}
MAX_FEEDS = 1000
_PARSER = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False,
                          remove_blank_text=True)

Feed = dict[str, str]


def feed_from_url(url: str, alias: str, uid: str | None = None, **extra: str) -> Feed:
    """A feed for a stream URL (udp://239.1.2.3:1234, rtsp://host:8554/path, srt://…)."""
    u = urlsplit(url)
    if not u.scheme or not u.hostname:
        raise HttpError(400, f"bad video URL {url[:80]!r}")
    port = str(u.port) if u.port else DEFAULT_PORTS.get(u.scheme, "")
    path = u.path + (f"?{u.query}" if u.query else "")
    feed = {**DEFAULTS, "uid": uid or str(uuid.uuid5(uuid.NAMESPACE_URL, url)), "alias": alias,
            "protocol": u.scheme, "address": u.hostname, "port": port, "path": path, **extra}
    return _check(feed)


def feed_url(feed: Feed) -> str:
    proto, addr, port, path = (feed.get(k, "") for k in ("protocol", "address", "port", "path"))
    hostport = f"{addr}:{port}" if port and port != "-1" else addr
    if path and not path.startswith("/"):
        path = "/" + path
    return f"{proto}://{hostport}{path}"


def _check(feed: Feed) -> Feed:
    if not feed.get("protocol") or not feed.get("address"):
        raise HttpError(400, "a feed needs a protocol and an address")
    if not feed.get("uid"):
        feed["uid"] = str(uuid.uuid5(uuid.NAMESPACE_URL, feed_url(feed)))
    for k, v in feed.items():
        if len(v) > 2048 or any(c in v for c in "\x00\r\n"):
            raise HttpError(400, f"bad value for feed field {k}")
    return feed


def parse_vcm(body: bytes) -> list[Feed]:
    """Feeds from a `/Marti/vcm` POST: `<videoConnections><feed>…</feed>…` or one `<feed>`."""
    try:
        root = etree.fromstring(body, _PARSER)
    except etree.XMLSyntaxError as exc:
        raise HttpError(400, f"not XML ({exc})") from None
    feeds_xml = [root] if etree.QName(root).localname == "feed" else [
        e for e in root if isinstance(e.tag, str) and etree.QName(e).localname == "feed"]
    if etree.QName(root).localname not in ("feed", "videoConnections"):
        raise HttpError(400, "expected <videoConnections> or <feed>")
    if len(feeds_xml) > MAX_FEEDS:
        raise HttpError(400, f"more than {MAX_FEEDS} feeds")
    out = []
    for fe in feeds_xml:
        feed = dict(DEFAULTS)
        for child in fe:
            if isinstance(child.tag, str):
                name = etree.QName(child).localname
                if name in FIELDS:
                    feed[name] = (child.text or "").strip()
        out.append(_check(feed))
    return out


def vcm_xml(feeds: Iterable[Feed]) -> bytes:
    parts = ['<?xml version="1.0" encoding="UTF-8" standalone="yes"?><videoConnections>']
    for f in feeds:
        parts.append("<feed>")
        parts.extend(f"<{k}>{escape(f[k])}</{k}>" for k in FIELDS if f.get(k, "") != "" or k == "path")
        parts.append("</feed>")
    parts.append("</videoConnections>")
    return "".join(parts).encode()


def collections_json(feeds: Iterable[Feed]) -> dict[str, Any]:
    """TAK Server's `/Marti/api/video` answer: one video connection per feed."""
    conns = []
    for f in feeds:
        active = f.get("active", "true") == "true"
        conns.append({
            "uuid": f["uid"], "active": active, "alias": f.get("alias", ""),
            "thumbnail": f.get("thumbnail") or None, "classification": f.get("classification") or None,
            "feeds": [{
                "uuid": f["uid"], "active": active, "alias": f.get("alias", ""), "url": feed_url(f),
                "order": None, "macAddress": f.get("preferredMacAddress") or None,
                "roverPort": f.get("roverPort", "-1"), "ignoreEmbeddedKLV": f.get("ignoreEmbeddedKLV", "false"),
                "source": f.get("source") or None, "networkTimeout": f.get("timeout", "5000"),
                "bufferTime": f.get("buffer", "-1"), "rtspReliable": f.get("rtspReliable", "0"),
                "thumbnail": f.get("thumbnail") or None, "classification": f.get("classification") or None,
                "latitude": f.get("latitude") or None, "longitude": f.get("longitude") or None,
                "fov": f.get("fov") or None, "heading": f.get("heading") or None, "range": f.get("range") or None,
            }],
        })
    return {"videoConnections": conns}


def parse_collections(obj: Any) -> list[Feed]:
    """Feeds from a `/Marti/api/video` POST (TAK's VideoCollections JSON)."""
    if not isinstance(obj, dict) or not isinstance(obj.get("videoConnections"), list):
        raise HttpError(400, 'expected {"videoConnections": [...]}')
    out = []
    for conn in obj["videoConnections"][:MAX_FEEDS]:
        if not isinstance(conn, dict):
            raise HttpError(400, "a video connection must be an object")
        for f in conn.get("feeds") or []:
            if not isinstance(f, dict) or not isinstance(f.get("url"), str):
                raise HttpError(400, "a feed needs a url")
            extra = {k: str(f[k]) for k in ("roverPort", "ignoreEmbeddedKLV", "rtspReliable") if f.get(k) is not None}
            if f.get("networkTimeout") is not None:
                extra["timeout"] = str(f["networkTimeout"])
            if f.get("bufferTime") is not None:
                extra["buffer"] = str(f["bufferTime"])
            uid = str(conn.get("uuid") or f.get("uuid") or "") or None
            alias = str(conn.get("alias") or f.get("alias") or "")
            out.append(feed_from_url(f["url"], alias, uid, active="true" if conn.get("active", True) else "false",
                                     **extra))
    return out


class VideoRegistry:
    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    def put(self, feeds: list[Feed], groups: frozenset[str]) -> None:
        g = join_groups(groups)
        for f in feeds:
            self.db.execute("INSERT OR REPLACE INTO feeds (uid, groups, json) VALUES (?, ?, ?)",
                            (f["uid"], g, json.dumps(f)))

    def visible(self, groups: frozenset[str], uid: str | None = None) -> list[Feed]:
        if uid is None:
            cur = self.db.execute("SELECT groups, json FROM feeds ORDER BY rowid")
        else:
            cur = self.db.execute("SELECT groups, json FROM feeds WHERE uid = ? ORDER BY rowid", (uid,))
        return [json.loads(j) for g, j in cur if not split_groups(g).isdisjoint(groups)]

    def delete(self, uid: str, groups: frozenset[str]) -> int:
        n = 0
        for g, _ in list(self.db.execute("SELECT groups, json FROM feeds WHERE uid = ?", (uid,))):
            if not split_groups(g).isdisjoint(groups):
                self.db.execute("DELETE FROM feeds WHERE uid = ? AND groups = ?", (uid, g))
                n += 1
        return n
