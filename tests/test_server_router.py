"""Router rules at unit level (no sockets): encode once per format, addressing, retention policy."""

from __future__ import annotations

import time

from kestrel.cot.connection import encode_for
from kestrel.cot.event import Event
from kestrel.server.router import Router


class Peer:
    def __init__(self, pid: int, fmt: str = "xml", groups: tuple[str, ...] = ("__ANON__",)) -> None:
        self.id, self.format, self.groups = pid, fmt, frozenset(groups)
        self.got: list[bytes] = []

    def send(self, data: bytes, key: str | None = None) -> bool:
        self.got.append(data)
        return True


def _ev(uid: str, type_: str = "a-f-G-U-C", detail: bytes = b"", stale_s: float = 600) -> Event:
    now = int(time.time() * 1000)
    return Event(uid=uid, type=type_, time=now, start=now, stale=now + int(stale_s * 1000), detail=detail)


def _contact(cs: str) -> bytes:
    return f'<contact callsign="{cs}" endpoint="*:-1:stcp"/>'.encode()


def test_each_message_is_encoded_once_per_format_not_per_recipient() -> None:
    calls: list[str] = []

    def counting(fmt: str, ev: Event) -> bytes:
        calls.append(fmt)
        return encode_for(fmt, ev)

    r = Router(counting)
    peers = [Peer(i, "xml" if i % 2 else "proto") for i in range(20)]
    for p in peers:
        r.join(p)
    assert r.route(_ev("A", detail=_contact("ALPHA")), peers[0], peers[0].groups) == 19
    assert sorted(calls) == ["proto", "xml"]
    assert len({bytes(b) for p in peers[1:] for b in p.got}) == 2  # two encodings shared by all
    assert peers[0].got == []  # no echo
    xml_peer, proto_peer = peers[1], peers[2]
    assert xml_peer.got[0].startswith(b"<?xml") and proto_peer.got[0][:1] == b"\xbf"


def test_addressing_follows_callsign_changes_and_groups() -> None:
    r = Router(encode_for)
    a, b, c, red = Peer(1), Peer(2), Peer(3), Peer(4, groups=("Red",))
    for p in (a, b, c, red):
        r.join(p)
    r.route(_ev("B", detail=_contact("BRAVO")), b, b.groups)
    r.route(_ev("R", detail=_contact("ROMEO")), red, red.groups)
    marker = b'<contact callsign="MARKER"/><link uid="A" relation="p-p" type="a-f-G-U-C"/>'
    r.route(_ev("mk-1", "a-h-G", marker), a, a.groups)  # a placed item: not a contact
    assert set(r.contacts) == {"B", "R"}
    for p in (a, b, c, red):
        p.got.clear()
    chat = b'<marti><dest callsign="BRAVO"/><dest callsign="ROMEO"/><dest uid="nobody"/></marti>'
    assert r.route(_ev("chat-1", "b-t-f", chat), a, a.groups) == 1
    assert (len(a.got), len(b.got), len(c.got), len(red.got)) == (0, 1, 0, 0)  # ROMEO is in Red
    r.route(_ev("B", detail=_contact("BRAVO-2")), b, b.groups)
    assert r.route(_ev("chat-2", "b-t-f", b'<marti><dest callsign="BRAVO"/></marti>'), a, a.groups) == 0
    assert r.route(_ev("chat-3", "b-t-f", b'<marti><dest uid="B"/></marti>'), a, a.groups) == 1
    r.leave(b)
    assert "B" not in r.contacts and r.callsign_of(b) is None
    assert r.route(_ev("chat-4", "b-t-f", b'<marti><dest callsign="BRAVO-2"/></marti>'), a, a.groups) == 0


def test_retention_policy_and_join_snapshot() -> None:
    r = Router(encode_for, max_retained=3)
    a, blue = Peer(1), Peer(2, groups=("Blue",))
    r.join(a)
    r.route(_ev("marker-1", "b-m-p-s-m"), a, a.groups)
    r.route(_ev("sa-1", detail=_contact("ALPHA")), a, a.groups)
    r.route(_ev("chat", "b-t-f-d"), a, a.groups)
    r.route(_ev("ping", "t-x-c-t"), a, a.groups)
    r.route(_ev("dm", "b-m-p-s-m", b'<marti><dest callsign="X"/></marti>'), a, a.groups)
    r.route(_ev("old", "b-m-p-s-m", stale_s=-1), a, a.groups)
    assert list(r.retained) == ["marker-1", "sa-1"]
    later = Peer(3)
    assert [i.event.uid for i in r.join(later)] == ["sa-1", "marker-1"]  # SA first
    assert r.join(blue) == []  # other group
    r.route(_ev("del", "t-x-d-d", b'<link uid="marker-1" relation="none" type="b-m-p-s-m"/>'), a, a.groups)
    assert list(r.retained) == ["sa-1"]
    for uid in ("s2", "s3", "s4"):
        r.route(_ev(uid, "u-d-r"), a, a.groups)
    assert list(r.retained) == ["s2", "s3", "s4"] and r.stats.retained_dropped == 1  # capped, oldest out
