"""The retained picture: SQLite store unit behaviour, and a real restart of the server."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from kestrel.server.app import DB_NAME
from kestrel.server.store import Row, Store
from tests.test_server_support import Client, fresh, make_config, run, sa, server_running, uid_of

ATAK = Path("cot/atak-examples")
ANON = frozenset({"__ANON__"})


def _row(uid: str, stale_ms: int, groups: tuple[str, ...] = ("__ANON__",)) -> Row:
    return Row(uid, "a-f-G", stale_ms, frozenset(groups), f"<event uid='{uid}'/>".encode())


def test_store_batches_writes_and_drops_stale(tmp_path: Path) -> None:
    db = tmp_path / "s.db"
    now = 1_000_000
    s = Store(db)
    s.put(_row("a", now + 10))
    s.put(_row("b", now + 10_000, ("Blue", "Red")))
    s.put(_row("a", now + 20_000))  # latest write wins
    assert sqlite3.connect(db).execute("SELECT count(*) FROM retained").fetchone() == (0,)  # not yet
    assert s.flush() == 2
    assert sqlite3.connect(db).execute("PRAGMA journal_mode").fetchone() == ("wal",)
    s.delete("b", frozenset({"Blue", "Red"}))
    s.put(_row("c", now - 1))
    s.flush(now)  # purges rows already stale
    s.close()
    rows = Store(db).load(now)
    assert [(r.uid, r.stale_ms) for r in rows] == [("a", now + 20_000)]
    rows_b = Store(db)
    rows_b.put(_row("b", now + 10_000, ("Blue", "Red")))
    rows_b.close()
    assert {r.uid: r.groups for r in Store(db).load(now)}["b"] == frozenset({"Blue", "Red"})
    assert Store(db).load(now + 15_000)[0].uid == "a"  # b went stale


def test_store_write_in_a_worker_thread_keeps_newer_changes(tmp_path: Path) -> None:
    """The server takes the dirty rows on the loop and writes them in a thread: changes made while
    that write runs are kept for the next one, and a failed write's rows are dirty again (newer
    changes win)."""
    import threading

    now = 1_000_000
    s = Store(tmp_path / "s.db")
    s.put(_row("a", now + 10_000))
    s.put(_row("b", now + 10_000))
    batch = s.take()
    s.put(_row("a", now + 20_000))  # made while the write runs
    t = threading.Thread(target=s.write, args=(batch,))
    t.start()
    t.join()
    assert s.pending == 1 and s.flush() == 1
    stale = {r.uid: r.stale_ms for r in s.load(now)}
    assert stale == {"b": now + 10_000, "a": now + 20_000}
    batch = s.take()
    s.delete("b", ANON)
    s.untake({**batch, ("a", ANON): _row("a", now + 5_000), ("b", ANON): _row("b", now + 30_000)})  # a failed write
    assert s.flush() == 2
    assert {r.uid: r.stale_ms for r in s.load(now)} == {"a": now + 5_000}  # b's newer delete won
    s.close()


def test_retained_picture_survives_restart(tmp_path: Path, ref_data: Path) -> None:
    """SA and a marker sent before a restart reach a client that joins after it; chat does not."""
    marker = (ref_data / ATAK / "Marker_-_Spot.cot").read_bytes()
    data = tmp_path / "data"

    async def first_life() -> None:
        async with server_running(make_config(data)) as server:
            a = await Client.connect(f"tcp://127.0.0.1:{server.ports['tcp']}")
            b = await Client.connect(f"tcp://127.0.0.1:{server.ports['tcp']}")
            await a.send(sa("A-uid", "ALPHA", stale=3600))
            await a.send(fresh(marker))
            await b.recv_until(lambda e: e.get("type") == "b-m-p-s-m")
        # stop() flushed the store

    async def second_life() -> list[str]:
        async with server_running(make_config(data)) as server:
            c = await Client.connect(f"tcp://127.0.0.1:{server.ports['tcp']}")
            got = await c.recv_until(lambda e: e.get("type") == "t-x-takp-v")
            return [uid_of(e) for e in got[:-1]]

    run(first_life())
    assert (data / DB_NAME).is_file()
    uids = run(second_life())
    assert uids == ["A-uid", "9405e320-9356-41c4-8449-f46990aa17f8"]  # SA first, then the marker
