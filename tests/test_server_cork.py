"""Corked writes (kestrel/server/session.py): everything the router gives one client during one loop
iteration reaches its transport as one write, in order; a cork over WRITE_BATCH is written at once;
a client dropped meanwhile gets nothing; KESTREL_CORK=0 (`CORK = False`) writes each message."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from kestrel.cot.connection import encode_for
from kestrel.server import session as session_mod
from kestrel.server.config import Limits
from kestrel.server.router import Router


class Transport:
    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closing = False

    def write(self, data: bytes) -> None:
        self.writes.append(bytes(data))

    def is_closing(self) -> bool:
        return self.closing

    def get_write_buffer_size(self) -> int:
        return 0

    def abort(self) -> None:
        self.closing = True


class Writer:
    def __init__(self) -> None:
        self.transport = Transport()

    def get_extra_info(self, name: str) -> Any:
        return ("127.0.0.1", 5000) if name == "peername" else None


def live_session() -> tuple[session_mod.Session, Transport]:
    w = Writer()
    s = session_mod.Session(Router(encode_for), encode_for, asyncio.StreamReader(), w,  # type: ignore[arg-type]
                            listener="tcp", groups=frozenset({"g"}), limits=Limits())
    s._release()  # the join snapshot is done: live traffic from here on
    s._direct = True
    return s, w.transport


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def test_one_write_per_client_per_iteration_in_order() -> None:
    async def scenario() -> None:
        s, t = live_session()
        for m in (b"<a/>", b"<b/>", b"<c/>"):
            assert s.send(m)
        assert t.writes == []  # nothing before the iteration ends
        await asyncio.sleep(0)  # one loop iteration (a yield, not a clock wait)
        assert t.writes == [b"<a/><b/><c/>"]
        assert s.send(b"<d/>", "uid-1")
        await asyncio.sleep(0)
        assert t.writes == [b"<a/><b/><c/>", b"<d/>"]

    run(scenario())


def test_a_big_cork_is_written_at_once() -> None:
    async def scenario() -> None:
        s, t = live_session()
        big = b"x" * (session_mod.WRITE_BATCH // 2 + 1)
        s.send(big)
        s.send(big)  # over WRITE_BATCH together: written now, not at the end of the iteration
        assert t.writes == [big + big]
        s.send(b"<e/>")
        await asyncio.sleep(0)
        assert t.writes == [big + big, b"<e/>"]

    run(scenario())


def test_a_dropped_client_gets_nothing_more() -> None:
    async def scenario() -> None:
        s, t = live_session()
        s.send(b"<a/>")
        s.abort("slow")
        s.send(b"<b/>")  # routed in the same iteration, after the drop
        await asyncio.sleep(0)
        assert t.writes == []

    run(scenario())


def test_uncorked_writes_each_message(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(session_mod, "CORK", False)

    async def scenario() -> None:
        s, t = live_session()
        for m in (b"<a/>", b"<b/>"):
            s.send(m)
        assert t.writes == [b"<a/>", b"<b/>"]

    run(scenario())
