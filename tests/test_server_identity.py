"""Identity and uid scoping (issue 12): an unauthenticated client of one group cannot squat a uid so
that another group's client cannot keep its own marker or contact under it. Unauthenticated items
and contacts are scoped by the sender's groups; a uid an authenticated identity stored stays bound
to it (tests/test_server_abuse.py). Clients are pytak (tests.test_server_support.Client) and raw
sockets; ordering is the synchronisation (a later sentinel arriving first)."""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

from kestrel.cot.connection import encode_for
from kestrel.server.app import DB_NAME
from kestrel.server.config import ListenerConfig
from kestrel.server.router import Router
from kestrel.server.store import Row, Store
from tests.test_server_abuse import _live, _snapshot, marker
from tests.test_server_router import Peer, _contact, _ev
from tests.test_server_support import Client, chat, delete, make_config, run, sa, server_running, uid_of

DATA = Path(__file__).parent / "data" / "store"


def _two_groups(data: Path) -> object:
    return make_config(data, ListenerConfig("tcp", "tcp", "127.0.0.1", 0, ("Blue",)),
                       ListenerConfig("red", "tcp", "127.0.0.1", 0, ("Red",)))


def _remarks(events: list) -> dict[str, str | None]:
    return {uid_of(e): e.findtext("detail/remarks") for e in events}


def test_a_uid_taken_in_one_group_stays_free_in_another(tmp_path: Path) -> None:
    """Blue stores marker SQ-1 and contact DEV-1 first; Red's plain-TCP clients use the same uids.
    Both groups keep their own marker and contact, each group's newcomer sees only its own, direct
    messages go to the contact of the sender's group, a delete touches only its own group's item, and
    both items survive a restart (the store is keyed by uid and groups)."""
    data = tmp_path / "data"

    async def first_life() -> None:
        async with server_running(_two_groups(data)) as server:
            tcp, red_port = f"tcp://127.0.0.1:{server.ports['tcp']}", f"tcp://127.0.0.1:{server.ports['red']}"
            blue, blue2 = await Client.connect(tcp), await Client.connect(tcp)
            red, red2 = await Client.connect(red_port), await Client.connect(red_port)
            await blue.send(marker("SQ-1", "blue"))
            await blue.send(sa("DEV-1", "BLUE-ONE"))
            await blue2.recv_until(lambda e: uid_of(e) == "DEV-1")
            await red.send(marker("SQ-1", "red"))
            await red.send(sa("DEV-1", "RED-ONE"))
            await red.send(marker("R-sent", "red"))
            got = _live(await red2.recv_until(lambda e: uid_of(e) == "R-sent"))
            assert [uid_of(e) for e in got] == ["SQ-1", "DEV-1", "R-sent"], "red's items were refused"
            assert got[0].findtext("detail/remarks") == "red"
            assert server.metrics.get("dropped_foreign_write") == 0 and server.metrics.get("dropped_identity") == 0
            # Direct messages: each to the contact of the sender's group.
            await red2.send(chat("R2-UID", "RED-TWO", "RED-ONE", "for red one"))
            await blue2.send(chat("B2-UID", "BLUE-TWO", "BLUE-ONE", "for blue one"))
            dm_red = _live(await red.recv_until(lambda e: e.get("type") == "b-t-f"))
            dm_blue = _live(await blue.recv_until(lambda e: e.get("type") == "b-t-f"))
            assert dm_red[-1].findtext("detail/remarks") == "for red one"
            assert dm_blue[-1].findtext("detail/remarks") == "for blue one"
            # Each group's newcomer sees only its own.
            assert _remarks(await _snapshot(server.ports["tcp"]))["SQ-1"] == "blue"
            red_view = await _snapshot(server.ports["red"])
            assert _remarks(red_view)["SQ-1"] == "red" and [uid_of(e) for e in red_view].count("SQ-1") == 1
            assert {e.find("detail/contact").get("callsign") for e in red_view if uid_of(e) == "DEV-1"} == {"RED-ONE"}
            # Red replaces its own item, Blue's stays.
            await red.send(marker("SQ-1", "red v2"))
            await red2.recv_until(lambda e: uid_of(e) == "SQ-1")
            assert _remarks(await _snapshot(server.ports["tcp"]))["SQ-1"] == "blue"
            assert _remarks(await _snapshot(server.ports["red"]))["SQ-1"] == "red v2"
            # Marker M-B exists only in Blue: Red's delete of it is refused (not relayed), as before.
            await blue.send(marker("M-B", "blue only"))
            await red.send(delete("del-r", "M-B"))
            await red.send(marker("R-sentinel", "red"))
            got = _live(await red2.recv_until(lambda e: uid_of(e) == "R-sentinel"))
            assert [uid_of(e) for e in got] == ["R-sentinel"]
            assert server.metrics.get("dropped_foreign_write") == 1

    async def second_life() -> None:
        async with server_running(_two_groups(data)) as server:
            assert _remarks(await _snapshot(server.ports["tcp"]))["SQ-1"] == "blue"
            assert _remarks(await _snapshot(server.ports["red"]))["SQ-1"] == "red v2"
            red_port = f"tcp://127.0.0.1:{server.ports['red']}"
            red, red2 = await Client.connect(red_port), await Client.connect(red_port)
            await red2.recv_until(lambda e: e.get("type") == "t-x-takp-v")  # joined: sees what follows
            await red.send(delete("del-sq", "SQ-1"))  # deletes Red's SQ-1 only
            await red.send(marker("R-done", "red"))
            await red2.recv_until(lambda e: uid_of(e) == "R-done")
            view_red = _remarks(await _snapshot(server.ports["red"]))
            assert "SQ-1" not in view_red and view_red["R-done"] == "red"
            view_blue = _remarks(await _snapshot(server.ports["tcp"]))
            assert view_blue["SQ-1"] == "blue" and "R-done" not in view_blue

    run(first_life(), timeout=60)
    run(second_life(), timeout=60)


def test_a_store_written_before_scoping_is_migrated_in_place(tmp_path: Path) -> None:
    """tests/data/store/kestrel-v1.db was written by the previous Store (uid the only key): it opens,
    keeps its rows and owners, and then holds one row per uid and groups."""
    db = tmp_path / DB_NAME
    shutil.copy(DATA / "kestrel-v1.db", db)
    s = Store(db)
    rows = {(r.uid, r.groups): r for r in s.load(0)}
    assert set(rows) == {("M-1", frozenset({"Blue"})), ("ALICE-UID", frozenset({"Blue", "Red"}))}
    assert rows["ALICE-UID", frozenset({"Blue", "Red"})].owner == "alice"
    assert b"blue v1" in rows["M-1", frozenset({"Blue"})].xml
    s.put(Row("M-1", "b-m-p-s-m", 4102444800000, frozenset({"Red"}), b"<event uid='M-1'/>"))
    s.close()
    assert {(r.uid, r.groups) for r in Store(db).load(0)} == set(rows) | {("M-1", frozenset({"Red"}))}
    pk = [r[1] for r in sqlite3.connect(db).execute("PRAGMA table_info(retained)") if r[5]]
    assert sorted(pk) == ["groups", "uid"]


class _Tls(Peer):
    def __init__(self, pid: int, identity: str, groups: tuple[str, ...]) -> None:
        super().__init__(pid, groups=groups)
        self.identity = identity


def test_a_uid_bound_to_an_identity_stays_bound_in_every_group() -> None:
    """Alice (certificate, Blue) stores U-A: nobody else may write U-A, in any group. A uid that
    only an unauthenticated Red client used stays Red's when Alice stores her own beside it, and a
    uid held in Red is free in Blue (scoped), also as a contact."""
    r = Router(encode_for)
    alice, blue, red = _Tls(1, "alice", ("Blue",)), Peer(2, groups=("Blue",)), Peer(3, groups=("Red",))
    mallory = _Tls(4, "mallory", ("Red",))
    for p in (alice, blue, red, mallory):
        r.join(p)
    assert r.route(_ev("U-A", detail=_contact("ALICE")), alice, alice.groups) == 1
    for spoofer in (red, mallory, blue):
        assert r.route(_ev("U-A", detail=_contact("X")), spoofer, spoofer.groups) == 0
    delete = _ev("del", "t-x-d-d", b'<link uid="U-A" relation="none" type="a-f-G-U-C"/>')
    for spoofer in (blue, mallory):  # Blue: her group, not her identity; Mallory: neither (foreign)
        assert r.route(delete, spoofer, spoofer.groups) == 0
    assert r.metrics.get("dropped_identity") == 4 and r.metrics.get("dropped_foreign_write") == 1
    assert "U-A" in r.retained
    assert [(i.owner, i.groups) for i in r.retained["U-A"].values()] == [("alice", frozenset({"Blue"}))]
    # A uid a Red client stored first: Alice may store hers beside it (no eviction across groups);
    # from then on it is bound to Alice, so the unauthenticated Red client can no longer update it.
    assert r.route(_ev("U-R", "b-m-p-s-m"), red, red.groups) == 1  # to mallory
    assert r.route(_ev("U-R", "b-m-p-s-m"), alice, alice.groups) == 1  # to blue
    assert {s: i.owner for s, i in r.retained["U-R"].items()} == {frozenset({"Red"}): None,
                                                                 frozenset({"Blue"}): "alice"}
    assert r.route(_ev("U-R", "b-m-p-s-m"), red, red.groups) == 0
    # Two unauthenticated contacts, one uid, disjoint groups: both kept, each reachable in its group.
    r.route(_ev("DEV", detail=_contact("B1")), blue, blue.groups)
    r.route(_ev("DEV", detail=_contact("R1")), red, red.groups)
    assert {c.callsign for c in r.contacts["DEV"].values()} == {"B1", "R1"}
    # A callsign of another group: direct messages to it still reach only the sender's group's holder.
    r.route(_ev("RED-OWN", detail=_contact("B1")), red, red.groups)
    dm = _ev("dm", "b-t-f", b'<marti><dest callsign="B1"/></marti>')
    blue2 = Peer(5, groups=("Blue",))
    r.join(blue2)
    before = (len(blue.got), len(red.got))
    assert r.route(dm, blue2, blue2.groups) == 1
    assert (len(blue.got), len(red.got)) == (before[0] + 1, before[1])
    r.leave(blue)
    assert {c.callsign for c in r.contacts["DEV"].values()} == {"R1"}


def test_marti_contacts_list_each_groups_holder_of_one_uid() -> None:
    """`/Marti/api/clientEndPoints` and `contacts/all` read the contact table through ClientLog: one
    uid announced in two groups is two clients, each listed to its own group only."""
    from kestrel.marti.clients import ClientLog

    r = Router(encode_for)
    blue, red = Peer(1, groups=("Blue",)), Peer(2, groups=("Red",))
    for p in (blue, red):
        r.join(p)
    r.route(_ev("DEV", detail=_contact("B1")), blue, blue.groups)
    r.route(_ev("DEV", detail=_contact("R1")), red, red.groups)
    log = ClientLog(r)
    assert [(c.uid, c.callsign) for c in log.visible(frozenset({"Blue"}))] == [("DEV", "B1")]
    assert [(c.uid, c.callsign) for c in log.visible(frozenset({"Red"}))] == [("DEV", "R1")]
    r.leave(red)
    assert [c.connected for c in log.visible(frozenset({"Red"}))] == [False]
    assert [c.connected for c in log.visible(frozenset({"Blue"}))] == [True]
