"""Who is or was connected, as `/Marti/api/clientEndPoints` and `/Marti/api/contacts/all` show it.

Read from the router's contact table (a streaming client's uid and callsign, learned from its own
SA) and the retained SA event (last event time, `<__group>` team and role, `<takv>`). Clients that
left are remembered in `ClientLog` (bounded, oldest forgotten) as "Disconnected". Only clients with
a callsign are listed (one entry without one makes ATAK drop the whole list) and only those sharing
a group with the caller.
"""

from __future__ import annotations

import datetime as dt
import re
import time
from dataclasses import dataclass
from typing import Any

from kestrel.server.router import Router

MAX_REMEMBERED = 10_000
_GROUP = re.compile(rb"<__group\b[^>]*>")
_ATTR = re.compile(rb'\b(name|role)\s*=\s*("([^"]*)"|\'([^\']*)\')')
_TAKV = re.compile(rb"<takv\b([^>]*)>")


@dataclass(slots=True)
class Client:
    uid: str
    callsign: str
    username: str
    groups: frozenset[str]
    last_ms: int
    team: str | None = None
    role: str | None = None
    takv: str | None = None
    connected: bool = True


def tak_time(ms: int) -> str:
    """`yyyy-MM-dd'T'HH:mm:ss.S'Z'` (Java's S: the milliseconds, as TAK Server writes them)."""
    t = dt.datetime.fromtimestamp(ms / 1000, dt.UTC)
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000}Z"


def _detail_info(detail: bytes) -> tuple[str | None, str | None, str | None]:
    team = role = takv = None
    m = _GROUP.search(detail)
    if m:
        for name, _, dq, sq in _ATTR.findall(m.group(0)):
            value = (dq or sq).decode("utf-8", "replace")
            if name == b"name":
                team = value
            else:
                role = value
    t = _TAKV.search(detail)
    if t:
        takv = " ".join(a.decode("utf-8", "replace") for a in re.findall(rb'"([^"]*)"', t.group(1))) or None
    return team, role, takv


class ClientLog:
    def __init__(self, router: Router) -> None:
        self.router = router
        self.clients: dict[tuple[str, frozenset[str]], Client] = {}  # (uid, groups): one uid per group scope

    def sweep(self) -> None:
        """Merge the router's live contacts in; mark the others disconnected. O(contacts)."""
        r = self.router
        live = set()
        for uid, c in [(u, c) for u, held in list(r.contacts.items()) for c in held.values()]:
            peer = r.peers.get(c.peer_id)
            if peer is None:
                continue
            key = (uid, peer.groups)
            live.add(key)
            item = r.find(uid, peer.groups)
            last = item.event.time if item is not None else int(time.time() * 1000)
            team, role, takv = _detail_info(item.event.detail) if item is not None else (None, None, None)
            self.clients.pop(key, None)  # re-insert: most recent last
            self.clients[key] = Client(uid, c.callsign, str(getattr(peer, "cert_cn", None) or ""), peer.groups,
                                       last, team, role, takv)
        for key, cl in self.clients.items():
            if key not in live:
                cl.connected = False
        while len(self.clients) > MAX_REMEMBERED:
            del self.clients[next(iter(self.clients))]

    def visible(self, groups: frozenset[str], sec_ago: int = 0, connected_only: bool = False) -> list[Client]:
        self.sweep()
        cutoff = int(time.time() * 1000) - sec_ago * 1000 if sec_ago > 0 else None
        out = []
        for cl in self.clients.values():
            if not cl.callsign or cl.groups.isdisjoint(groups):
                continue
            if connected_only and not cl.connected:
                continue
            if cutoff is not None and cl.last_ms < cutoff:
                continue
            out.append(cl)
        return out


def endpoint_json(cl: Client) -> dict[str, Any]:
    out: dict[str, Any] = {"callsign": cl.callsign, "uid": cl.uid, "username": cl.username,
                           "lastEventTime": tak_time(cl.last_ms),
                           "lastStatus": "Connected" if cl.connected else "Disconnected"}
    if cl.team:
        out["team"] = cl.team
    if cl.role:
        out["role"] = cl.role
    return out


def contact_json(cl: Client) -> dict[str, Any]:
    return {"filterGroups": None, "notes": "", "callsign": cl.callsign, "team": cl.team or "",
            "role": cl.role or "", "takv": cl.takv or "", "uid": cl.uid}
