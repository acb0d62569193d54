"""A newcomer over a slow link gets the whole retained picture, even when it is far bigger than the
per-client live queue limit: the join snapshot is streamed from the router's retained items as the
socket drains and is not counted against `queue_bytes` / `queue_messages` (live traffic that arrives
meanwhile is, and comes after the snapshot and the protobuf offer, in order). An item replaced or
deleted while the snapshot is in flight is skipped: its newer state follows live."""

from __future__ import annotations

import asyncio
import socket
import time
import xml.etree.ElementTree as ET
from pathlib import Path

from kestrel.cot.event import Event
from kestrel.server.config import ANON, Limits
from tests.test_server_support import eventually, make_config, parse, run, server_running

N_RETAINED = 10_000
N_LIVE = 50


def _event(uid: str, i: int) -> Event:
    now = int(time.time() * 1000)
    detail = f'<contact callsign="U{i}"/><remarks>item {i} {"x" * 200}</remarks>'.encode()
    return Event(uid=uid, type="a-h-G", time=now, start=now, stale=now + 600_000, lat=1.0 + i * 1e-5, lon=2.0,
                 detail=detail)


def test_ten_thousand_item_picture_reaches_a_slow_joiner(tmp_path: Path) -> None:
    # The picture is ~3.5 MB / 10,000 messages; the live queue allows 64 KiB / 100 messages.
    limits = Limits(queue_bytes=64 * 1024, queue_messages=100)

    async def scenario() -> None:
        async with server_running(make_config(tmp_path, limits=limits)) as server:
            groups = frozenset({ANON})
            for i in range(N_RETAINED):
                server.router.route(_event(f"item-{i}", i), None, groups)
            assert len(server.router.retained) == N_RETAINED
            sock = socket.socket()
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # a thin pipe
            sock.connect(("127.0.0.1", server.ports["tcp"]))
            sock.setblocking(False)
            reader, writer = await asyncio.open_connection(sock=sock, limit=1 << 20)
            await eventually(lambda: len(server.sessions) == 1)
            # The client does not read yet: the snapshot is stuck in the socket; live traffic queues.
            for k in range(N_LIVE):
                server.router.route(_event(f"live-{k}", k), None, groups)
                await asyncio.sleep(0.002)
            # Meanwhile the last item moves and the one before it is deleted: the snapshot (still
            # stuck in its first batches) must not deliver their old state after the live news.
            last, gone = f"item-{N_RETAINED - 1}", f"item-{N_RETAINED - 2}"
            moved = _event(last, N_RETAINED - 1)
            moved.lat = 45.0
            server.router.route(moved, None, groups)
            now = int(time.time() * 1000)
            delete = Event(uid="del-1", type="t-x-d-d", time=now, start=now, stale=now + 60_000,
                           detail=f'<link uid="{gone}" relation="none" type="none"/>'.encode())
            server.router.route(delete, None, groups)
            server.router.route(_event("live-end", 0), None, groups)
            (session,) = server.sessions
            assert not session.closed
            got: list[ET.Element] = []
            while not got or got[-1].get("uid") != "live-end":
                got.append(parse(await asyncio.wait_for(reader.readuntil(b"</event>"), 10)))
            uids = [e.get("uid", "") for e in got]
            types = [e.get("type") for e in got]
            offer = types.index("t-x-takp-v")
            # All of it, oldest first (minus what changed since the join)...
            assert uids[:offer] == [f"item-{i}" for i in range(N_RETAINED - 2)]
            # ...then live traffic, in order, with the newer state of what changed.
            assert uids[offer + 1 :] == [f"live-{k}" for k in range(N_LIVE)] + [last, "del-1", "live-end"]
            assert got[-3].find("point").get("lat") == "45.0"  # type: ignore[union-attr]
            assert not session.closed and server.dropped_slow == 0
            writer.close()

    run(scenario(), timeout=60)


def test_live_updates_during_a_slow_snapshot_are_coalesced_per_uid(tmp_path: Path) -> None:
    """20 units at 100 updates each arrive while the joiner's snapshot is stuck: only the latest of
    each is kept (in the order of their last update), non-retained messages all stay, in order."""
    limits = Limits(queue_bytes=64 * 1024, queue_messages=100)
    n_units, rounds = 20, 100

    async def scenario() -> None:
        async with server_running(make_config(tmp_path, limits=limits)) as server:
            groups = frozenset({ANON})
            for i in range(N_RETAINED):
                server.router.route(_event(f"item-{i}", i), None, groups)
            sock = socket.socket()
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sock.connect(("127.0.0.1", server.ports["tcp"]))
            sock.setblocking(False)
            reader, writer = await asyncio.open_connection(sock=sock, limit=1 << 20)
            await eventually(lambda: len(server.sessions) == 1)
            now = int(time.time() * 1000)
            for r in range(rounds):
                if r % 25 == 0:  # chat is not retained: never coalesced
                    chat = Event(uid=f"chat-{r}", type="b-t-f", time=now, start=now, stale=now + 60_000,
                                 detail=b"<remarks>hi</remarks>")
                    server.router.route(chat, None, groups)
                for u in range(n_units):
                    ev = _event(f"unit-{u}", u)
                    ev.lat = float(r)
                    server.router.route(ev, None, groups)
                await asyncio.sleep(0)
            server.router.route(_event("live-end", 0), None, groups)
            (session,) = server.sessions  # 2,004 live messages > queue_messages=100, still here
            got: list[ET.Element] = []
            while not got or got[-1].get("uid") != "live-end":
                got.append(parse(await asyncio.wait_for(reader.readuntil(b"</event>"), 10)))
            offer = [e.get("type") for e in got].index("t-x-takp-v")
            live = [(e.get("uid"), e.find("point").get("lat")) for e in got[offer + 1 :]]  # type: ignore[union-attr]
            want = [(f"chat-{r}", "0.0") for r in range(0, rounds, 25)]
            want += [(f"unit-{u}", f"{rounds - 1}.0") for u in range(n_units)] + [("live-end", "1.0")]
            assert live == want
            assert offer == N_RETAINED and not session.closed and server.dropped_slow == 0
            writer.close()

    run(scenario(), timeout=60)
