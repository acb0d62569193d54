"""TAK Server streaming behaviour, with pytak as the client, over plain TCP and over TLS with client
certificates: SA relay with the detail intact, ping/pong, join snapshot, marti dest, group isolation."""

from __future__ import annotations

import asyncio
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from kestrel import pki as certs
from kestrel.server.app import Server
from kestrel.server.config import ListenerConfig, ServerConfig
from tests.test_server_support import (
    Client,
    chat,
    eventually,
    make_config,
    ping,
    run,
    sa,
    server_running,
    uid_of,
)

NAMES = ("alpha", "bravo", "charlie", "red1", "red2")


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("pki")
    certs.init(d)
    for n in NAMES:
        certs.issue_client(d, n)
    return d


class Net:
    """How a test reaches the server over one transport; `group` picks Blue (default) or Red.

    TCP: one listener per group (groups by listener). TLS: one listener, groups by certificate CN.
    """

    def __init__(self, kind: str, loop: str, pki: Path) -> None:
        self.kind, self.loop, self.pki = kind, loop, pki

    def config(self, data: Path) -> ServerConfig:
        if self.kind == "tcp":
            return make_config(
                data,
                ListenerConfig("tcp", "tcp", "127.0.0.1", 0, ("Blue",)),
                ListenerConfig("red", "tcp", "127.0.0.1", 0, ("Red",)),
            )
        p = certs.paths(self.pki)
        return make_config(
            data, ListenerConfig("tls", "tls", "127.0.0.1", 0),
            cert_groups={"red1": ("Red",), "red2": ("Red",)}, default_groups=("Blue",),
            tls_ca=p.ca_cert, tls_cert=p.server_cert, tls_key=p.server_key,
        )

    async def connect(self, server: Server, name: str) -> Client:
        red = name.startswith("red")
        if self.kind == "tcp":
            return await Client.connect(f"tcp://127.0.0.1:{server.ports['red' if red else 'tcp']}")
        c = certs.paths(self.pki).client(name)
        return await Client.connect(
            f"tls://127.0.0.1:{server.ports['tls']}",
            PYTAK_TLS_CLIENT_CERT=str(c.cert), PYTAK_TLS_CLIENT_KEY=str(c.key),
            PYTAK_TLS_CLIENT_CAFILE=str(certs.paths(self.pki).ca_cert),
        )


@pytest.fixture(params=["tcp-uvloop", "tls-uvloop", "tcp-asyncio", "tls-asyncio"])
def net(request: pytest.FixtureRequest, pki: Path) -> Net:
    """Transport x event loop (asyncio is the default, uvloop the option)."""
    kind, loop = request.param.split("-")
    return Net(kind, loop, pki)


def _live(events: list[ET.Element]) -> list[ET.Element]:
    """Drop the server's protobuf offer (t-x-takp-v), which every XML client also gets."""
    return [e for e in events if not e.get("type", "").startswith("t-x-takp")]


async def _until_uid(c: Client, uid: str) -> list[ET.Element]:
    return _live(await c.recv_until(lambda e: uid_of(e) == uid))


async def _until_all(c: Client, uids: set[str]) -> None:
    left = set(uids)

    def seen_all(e: ET.Element) -> bool:
        left.discard(uid_of(e))
        return not left

    await c.recv_until(seen_all)


def _detail_xml(ev: ET.Element) -> list[str]:
    d = ev.find("detail")
    assert d is not None
    return [ET.canonicalize(ET.tostring(c)) for c in d]


def test_sa_reaches_other_client_with_detail_intact_and_no_echo(net: Net, tmp_path: Path) -> None:
    extra = ET.fromstring(
        '<kestrel_test a="1" b="x &amp; y"><inner k="v">text &lt;kept&gt;</inner><empty/></kestrel_test>'
    )
    status = ET.fromstring('<status battery="88"/>')
    sent = sa("A-uid", "ALPHA", extra=[extra, status])

    async def scenario() -> None:
        async with server_running(net.config(tmp_path)) as server:
            a = await net.connect(server, "alpha")
            b = await net.connect(server, "bravo")
            await a.send(sent)
            got = (await _until_uid(b, "A-uid"))[-1]
            want = ET.fromstring(sent.split(b"?>", 1)[1])
            assert _detail_xml(got) == _detail_xml(want)  # every element, attribute and text, in order
            assert [got.get(k) for k in ("uid", "type", "how")] == [want.get(k) for k in ("uid", "type", "how")]
            assert got.find("point").get("lat") == "38.8"  # type: ignore[union-attr]
            # No echo: A only ever sees the offer, and then B's SA (a later message) arrives first.
            await b.send(sa("B-uid", "BRAVO"))
            seen = await _until_uid(a, "B-uid")
            assert [uid_of(e) for e in seen] == ["B-uid"]
            await a.close()
            await b.close()

    run(scenario(), loop=net.loop)


def test_ping_gets_pong_to_sender_only(net: Net, tmp_path: Path) -> None:
    async def scenario() -> None:
        async with server_running(net.config(tmp_path)) as server:
            a = await net.connect(server, "alpha")
            b = await net.connect(server, "bravo")
            await a.send(ping("A-uid"))
            pong = _live(await a.recv_until(lambda e: e.get("type") == "t-x-c-t-r"))
            assert [e.get("type") for e in pong] == ["t-x-c-t-r"]
            await a.send(sa("A-uid", "ALPHA"))
            # B gets A's SA and nothing before it: the ping was answered, not relayed.
            assert [e.get("type") for e in await _until_uid(b, "A-uid")] == ["a-f-G-U-C"]
            assert server.router.stats.routed == 1

    run(scenario(), loop=net.loop)


def test_new_client_first_gets_latest_sa_of_others(net: Net, tmp_path: Path) -> None:
    async def scenario() -> None:
        async with server_running(net.config(tmp_path)) as server:
            a = await net.connect(server, "alpha")
            b = await net.connect(server, "bravo")
            await a.send(sa("A-uid", "ALPHA", lat=1.0))
            await a.send(sa("A-uid", "ALPHA", lat=2.0))  # the latest one is what C must get
            await b.send(sa("B-uid", "BRAVO", lat=3.0))
            await _until_uid(a, "B-uid")
            await b.recv_until(lambda e: e.find("point").get("lat") == "2.0")  # type: ignore[union-attr]
            c = await net.connect(server, "charlie")
            first = await c.recv_until(lambda e: e.get("type") == "t-x-takp-v")
            assert sorted((uid_of(e), e.find("point").get("lat")) for e in first[:-1]) == [  # type: ignore[union-attr]
                ("A-uid", "2.0"), ("B-uid", "3.0"),
            ]

    run(scenario(), loop=net.loop)


def test_marti_dest_callsign_reaches_only_that_callsign(net: Net, tmp_path: Path) -> None:
    async def scenario() -> None:
        async with server_running(net.config(tmp_path)) as server:
            a, b, c = [await net.connect(server, n) for n in ("alpha", "bravo", "charlie")]
            for client, uid, cs in ((a, "A-uid", "ALPHA"), (b, "B-uid", "BRAVO"), (c, "C-uid", "CHARLIE")):
                await client.send(sa(uid, cs))
            for client, others in ((a, {"B-uid", "C-uid"}), (b, {"A-uid", "C-uid"}), (c, {"A-uid", "B-uid"})):
                await _until_all(client, others)
            await a.send(chat("A-uid", "ALPHA", "BRAVO", "hello bravo"))
            await a.send(sa("A-uid", "ALPHA", lat=5.0))  # a broadcast after the chat: a fence
            got_b = await _until_uid(b, "A-uid")
            got_c = await _until_uid(c, "A-uid")
            assert [e.get("type") for e in got_b] == ["b-t-f", "a-f-G-U-C"]
            assert got_b[0].find("detail/remarks").text == "hello bravo"  # type: ignore[union-attr]
            assert [e.get("type") for e in got_c] == ["a-f-G-U-C"]
            # B changes callsign: the contact table follows, the old name no longer reaches B.
            await b.send(sa("B-uid", "BRAVO-2"))
            await _until_uid(a, "B-uid")
            await a.send(chat("A-uid", "ALPHA", "BRAVO", "old name"))
            await a.send(chat("A-uid", "ALPHA", "BRAVO-2", "new name"))
            got_b = await b.recv_until(lambda e: e.get("type") == "b-t-f")
            assert got_b[-1].find("detail/remarks").text == "new name"  # type: ignore[union-attr]
            # Chat is not retained: a newcomer gets SA only.
            d = await net.connect(server, "charlie")
            first = await d.recv_until(lambda e: e.get("type") == "t-x-takp-v")
            assert {e.get("type") for e in first[:-1]} == {"a-f-G-U-C"}

    run(scenario(), loop=net.loop)


def test_groups_are_isolated(net: Net, tmp_path: Path) -> None:
    async def scenario() -> None:
        async with server_running(net.config(tmp_path)) as server:
            a = await net.connect(server, "alpha")
            b = await net.connect(server, "bravo")
            r1 = await net.connect(server, "red1")
            await r1.send(sa("R1-uid", "RED1"))
            await a.send(sa("A-uid", "ALPHA"))
            await _until_uid(b, "A-uid")
            await eventually(lambda: "R1-uid" in server.router.retained)
            # Addressed across groups is still refused.
            await a.send(chat("A-uid", "ALPHA", "RED1", "not for you"))
            r2 = await net.connect(server, "red2")
            first = await r2.recv_until(lambda e: e.get("type") == "t-x-takp-v")
            assert [uid_of(e) for e in first[:-1]] == ["R1-uid"]  # no Blue SA in Red's snapshot
            await r2.send(sa("R2-uid", "RED2"))
            assert [uid_of(e) for e in await _until_uid(r1, "R2-uid")] == ["R2-uid"]
            await a.send(sa("A-uid", "ALPHA", lat=9.0))
            await _until_uid(b, "A-uid")
            for red in (r1, r2):
                assert await red.drain(0.3) == []
            assert all(uid_of(e) != "R2-uid" for e in await b.drain(0.2))

    run(scenario(), loop=net.loop)


def test_many_clients_all_to_all_lose_nothing_and_keep_order(tmp_path: Path) -> None:
    n_clients, n_msgs = 20, 10

    async def scenario() -> None:
        async with server_running(make_config(tmp_path)) as server:
            url = f"tcp://127.0.0.1:{server.ports['tcp']}"
            clients = [await Client.connect(url) for _ in range(n_clients)]
            await eventually(lambda: len(server.sessions) == n_clients)

            async def talk(i: int, c: Client) -> list[str]:
                for k in range(n_msgs):
                    await c.send(sa(f"c{i}-{k}", f"C{i}"))
                got: list[str] = []
                while len(got) < (n_clients - 1) * n_msgs:
                    ev = await c.recv_events(10)
                    if not ev.get("type", "").startswith("t-x-takp"):
                        got.append(uid_of(ev))
                return got

            results = await asyncio.gather(*(talk(i, c) for i, c in enumerate(clients)))
            for i, got in enumerate(results):
                assert not any(u.startswith(f"c{i}-") for u in got)  # no echo
                for j in range(n_clients):
                    if j != i:  # everything from j, in j's order
                        assert [u for u in got if u.startswith(f"c{j}-")] == [f"c{j}-{k}" for k in range(n_msgs)]

    run(scenario())
