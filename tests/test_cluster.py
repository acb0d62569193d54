"""Two Kestrel server processes on one real nats-server are one TAK server to pytak clients: SA, direct
messages by callsign and uid, groups, the contact table and the retained picture across processes."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import pytak

from tests.cluster_support import NEEDS_NATS, cluster_server, natsd, running, two_groups
from tests.test_server_support import Client, chat, delete, eventually, run, sa, uid_of

pytestmark = NEEDS_NATS


def marker(uid: str, callsign: str = "pt", stale: int = 600) -> bytes:
    detail = pytak.cot_detail(flow_tag=False)
    ET.SubElement(detail, "contact", {"callsign": callsign})
    ev = pytak.cot_event(uid=uid, cot_type="b-m-p-s-m", how="h-g-i-g-o", stale=stale, detail=detail)
    return pytak.serialize_cot(ev)



def dm_uid(sender_uid: str, to_uid: str, text: str) -> bytes:
    detail = pytak.cot_detail(flow_tag=False)
    marti = ET.SubElement(detail, "marti")
    ET.SubElement(marti, "dest", {"uid": to_uid})
    ET.SubElement(detail, "remarks").text = text
    ev = pytak.cot_event(uid=f"dm.{sender_uid}.{text}", cot_type="b-t-f", how="h-g-i-g-o", detail=detail)
    return pytak.serialize_cot(ev)


def test_two_processes_one_server(tmp_path: Path) -> None:
    with natsd(tmp_path) as nd:

        async def scenario() -> None:
            a = cluster_server(tmp_path / "a", nd.url, "s1", *two_groups())
            b = cluster_server(tmp_path / "b", nd.url, "s1", *two_groups())
            async with running(a), running(b):
                alpha = await Client.connect(f"tcp://127.0.0.1:{a.ports['tcp']}")
                bravo = await Client.connect(f"tcp://127.0.0.1:{b.ports['tcp']}")
                red_a = await Client.connect(f"tcp://127.0.0.1:{a.ports['red']}")
                red_b = await Client.connect(f"tcp://127.0.0.1:{b.ports['red']}")
                await eventually(lambda: len(a.sessions) == 2 and len(b.sessions) == 2)

                # SA across processes, within the group only.
                await alpha.send(sa("uid-alpha", "ALPHA"))
                await red_a.send(sa("uid-red-a", "REDA"))  # sentinel for the Red side, posted after
                got = await bravo.recv_until(lambda ev: uid_of(ev) == "uid-alpha")
                assert [uid_of(e) for e in got if e.get("type") != "t-x-takp-v"] == ["uid-alpha"]
                got = await red_b.recv_until(lambda ev: uid_of(ev) == "uid-red-a")
                assert "uid-alpha" not in [uid_of(e) for e in got]

                # The contact table spans processes: a DM by callsign and by uid reaches the other side.
                await bravo.send(sa("uid-bravo", "BRAVO"))
                await alpha.recv_until(lambda ev: uid_of(ev) == "uid-bravo")
                await eventually(lambda: "uid-bravo" in a.backplane.contacts)
                assert a.backplane.contacts["uid-bravo"].callsign == "BRAVO"
                await alpha.send(chat("uid-alpha", "ALPHA", "BRAVO", "hello bravo"))
                got = await bravo.recv_until(lambda ev: ev.get("type") == "b-t-f")
                assert "hello bravo" in ET.tostring(got[-1], encoding="unicode")
                await alpha.send(dm_uid("uid-alpha", "uid-bravo", "byuid"))
                got = await bravo.recv_until(lambda ev: ev.get("type") == "b-t-f")
                assert uid_of(got[-1]) == "dm.uid-alpha.byuid"

                # Nobody else got the direct messages (red is in another group; alpha is the sender).
                await red_a.send(sa("uid-red-a2", "REDA"))
                got = await red_b.recv_until(lambda ev: uid_of(ev) == "uid-red-a2")
                assert [e.get("type") for e in got] == ["a-f-G-U-C"], [uid_of(e) for e in got]

                # Markers and a deletion, then a newcomer on either process gets the same picture.
                await alpha.send(marker("m-1"))
                await alpha.send(marker("m-2"))
                await bravo.recv_until(lambda ev: uid_of(ev) == "m-2")
                await bravo.send(delete("del-1", "m-1", stale=20))
                await eventually(lambda: "m-1" not in a.router.retained)
                for srv in (a, b):
                    newcomer = await Client.connect(f"tcp://127.0.0.1:{srv.ports['tcp']}")
                    seen = await newcomer.recv_until(lambda ev: ev.get("type") == "t-x-takp-v")
                    uids = sorted(uid_of(e) for e in seen[:-1])
                    assert uids == ["m-2", "uid-alpha", "uid-bravo"], (srv.backplane.node, uids)
                    await newcomer.close()
                assert a.backplane.counters.bad == b.backplane.counters.bad == 0

        run(scenario(), timeout=60)


def test_picture_survives_in_the_stream(tmp_path: Path) -> None:
    """A process that starts later (or restarts) replays the site's stored picture before it listens;
    expired items are not replayed."""
    with natsd(tmp_path) as nd:

        async def scenario() -> None:
            a = cluster_server(tmp_path / "a", nd.url, "s1")
            async with running(a):
                c = await Client.connect(f"tcp://127.0.0.1:{a.ports['tcp']}")
                await c.send(sa("uid-one", "ONE"))
                await c.send(marker("m-long"))
                await c.send(marker("m-short", stale=1))
                await eventually(lambda: not a.backplane.unconfirmed and a.backplane.stream_seq >= 3)
                await eventually(lambda: "m-short" not in a.router.retained or a.router.expire() >= 0
                                 and "m-short" not in a.router.retained, timeout=10)
            b = cluster_server(tmp_path / "b", nd.url, "s1")
            async with running(b):
                assert sorted(b.router.retained) == ["m-long", "uid-one"]
                newcomer = await Client.connect(f"tcp://127.0.0.1:{b.ports['tcp']}")
                seen = await newcomer.recv_until(lambda ev: ev.get("type") == "t-x-takp-v")
                assert sorted(uid_of(e) for e in seen[:-1]) == ["m-long", "uid-one"]

        run(scenario(), timeout=60)
