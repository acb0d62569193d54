"""`<marti><dest>` must be honoured for every detail the CoT codec accepts (security).

The router once re-read the detail with lxml, which rejects XML the expat-based codec accepts (an
undeclared namespace prefix, nesting deeper than 256): the dest was then missed and a direct message
went to the whole group. Here: raw CoT sent by pytak clients over TCP, and a fail-closed check at
router level for a detail that mentions `marti` but cannot be read.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from kestrel.cot.connection import encode_for
from kestrel.cot.event import Event
from kestrel.cot.xml import parse_event
from kestrel.server import detail
from kestrel.server.router import Router
from tests.test_server_support import Client, make_config, run, sa, server_running

T = 'time="2026-11-28T00:00:00Z" start="2026-11-28T00:00:00Z" stale="2099-01-01T00:00:00Z"'
DEEP = "<n>" * 300 + "</n>" * 300  # lxml's default limit is 256 levels; expat has none
EXTRAS = {"prefixed": "<foo:bar/>", "prefixed-attr": '<x a:b="1"/>', "deep": DEEP, "plain": ""}


def _msg(uid: str, type_: str, to: str, text: str, extra: str, extra_first: bool = False) -> bytes:
    marti = f'<marti><dest callsign="{to}"/></marti>'
    body = f"{extra}{marti}" if extra_first else f"{marti}{extra}"
    return (
        f'<event version="2.0" uid="{uid}" type="{type_}" how="h-g-i-g-o" {T}><point lat="1" lon="2" hae="0" '
        f'ce="9" le="9"/><detail>{body}<remarks>{text}</remarks></detail></event>'
    ).encode()


@pytest.mark.parametrize("name", sorted(EXTRAS))
def test_codec_accepted_detail_is_always_inspectable(name: str) -> None:
    for extra_first in (False, True):
        ev = parse_event(_msg("m", "b-t-f", "BRAVO", "hi", EXTRAS[name], extra_first))
        addr = detail.inspect(ev.detail)
        assert addr.unreadable is None
        assert addr.dest_callsigns == ["BRAVO"]


def test_inspect_reads_contact_link_and_dest_uid_like_tak() -> None:
    d = (b'<contact callsign="A&amp;B" endpoint="*:-1:stcp"/><link uid="P" relation="p-p"/>'
         b'<foo:marti><dest callsign="NOPE"/></foo:marti><x><marti><dest callsign="NESTED"/></marti></x>'
         b'<marti><dest uid="U1"/><dest callsign="C1"/></marti>')
    addr = detail.inspect(d, want_links=True)
    assert (addr.callsign, addr.parent_link, addr.link_uids) == ("A&B", True, ["P"])
    assert (addr.dest_uids, addr.dest_callsigns) == (["U1"], ["C1"])  # only <detail><marti> counts


@pytest.mark.parametrize("bad", [
    b'<marti><dest callsign="B"/></marti><unclosed>',
    b'<marti><dest callsign="&secret;"/></marti>',
    b'<!DOCTYPE x [<!ENTITY e "B">]><marti><dest callsign="&e;"/></marti>',
])
def test_unreadable_detail_with_marti_is_delivered_to_nobody(bad: bytes) -> None:
    class Peer:
        def __init__(self, pid: int) -> None:
            self.id, self.format, self.groups = pid, "xml", frozenset({"__ANON__"})
            self.got: list[bytes] = []

        def send(self, data: bytes, key: str | None = None) -> bool:
            self.got.append(data)
            return True

    assert detail.inspect(bad).unreadable is not None
    r = Router(encode_for)
    peers = [Peer(i) for i in range(3)]
    for p in peers:
        r.join(p)
    now = int(time.time() * 1000)
    ev = Event(uid="X", type="a-u-G", time=now, start=now, stale=now + 60_000, detail=bad)
    assert r.route(ev, peers[0], peers[0].groups) == 0
    assert all(p.got == [] for p in peers) and "X" not in r.retained
    assert r.stats.unreadable == 1
    # Bad XML without `marti` cannot be addressed: it is still relayed (the codec never lets it in).
    ev2 = Event(uid="Y", type="a-u-G", time=now, start=now, stale=now + 60_000, detail=b"<x>")
    assert r.route(ev2, peers[0], peers[0].groups) == 2


@pytest.mark.parametrize("name", ["prefixed", "deep"])
def test_addressed_message_with_odd_detail_reaches_only_its_callsign(name: str, tmp_path: Path) -> None:
    extra = EXTRAS[name]

    async def until(c: Client, uid: bytes) -> list[bytes]:
        got: list[bytes] = []
        while True:
            data = await c.recv()
            assert data is not None
            got.append(data)
            if f'uid="{uid.decode()}"'.encode() in data or f"uid='{uid.decode()}'".encode() in data:
                return got

    async def scenario() -> None:
        async with server_running(make_config(tmp_path)) as server:
            url = f"tcp://127.0.0.1:{server.ports['tcp']}"
            a, b, c = [await Client.connect(url) for _ in range(3)]
            for client, uid, cs in ((a, "A-uid", "ALPHA"), (b, "B-uid", "BRAVO"), (c, "C-uid", "CHARLIE")):
                await client.send(sa(uid, cs))
            await until(a, b"C-uid")  # SA are relayed in order: the last one sent is seen last
            await until(b, b"C-uid")
            await until(c, b"B-uid")
            await a.send(_msg("chat-1", "b-t-f", "BRAVO", "secret chat", extra))
            await a.send(_msg("marker-1", "a-u-G", "BRAVO", "secret marker", extra, extra_first=True))
            await a.send(sa("A-uid", "ALPHA", lat=5.0))  # a broadcast after them: a fence
            got_b = b"".join(await until(b, b"A-uid"))
            got_c = b"".join(await until(c, b"A-uid"))
            assert b"secret chat" in got_b and b"secret marker" in got_b
            assert b"secret" not in got_c
            assert "marker-1" not in server.router.retained  # addressed: never in a join snapshot
            d = await Client.connect(url)
            first: list[bytes] = []
            while not first or b"t-x-takp-v" not in first[-1]:
                data = await d.recv()
                assert data is not None
                first.append(data)
            assert b"secret" not in b"".join(first)

    run(scenario())
