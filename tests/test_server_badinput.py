"""Hostile and broken clients: each is skipped or closed alone, with a clear log line, while two
pytak witnesses keep exchanging SA through the same server."""

from __future__ import annotations

import asyncio
import logging
import socket
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from kestrel.server.app import Server
from kestrel.server.config import Limits
from tests.test_server_support import (
    Client,
    ProtoClient,
    eventually,
    make_config,
    run,
    sa,
    server_running,
    uid_of,
)

BOMB = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">]>
<event version="2.0" uid="bomb" type="a-f-G" time="2026-01-01T00:00:00Z" start="2026-01-01T00:00:00Z"
 stale="2099-01-01T00:00:00Z" how="m-g"><point lat="0" lon="0" hae="0" ce="0" le="0"/>
<detail><remarks>&lol3;</remarks></detail></event>"""
XXE = b"""<?xml version="1.0"?>
<!DOCTYPE event [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<event version="2.0" uid="xxe" type="a-f-G" time="2026-01-01T00:00:00Z" start="2026-01-01T00:00:00Z"
 stale="2099-01-01T00:00:00Z" how="m-g"><point lat="0" lon="0" hae="0" ce="0" le="0"/>
<detail><remarks>&xxe;</remarks></detail></event>"""
MALFORMED = b'<?xml version="1.0"?><event uid="bad" type="a-f-G"><point lat="north"></detail></event>'
UNDECLARED = b'<event version="2.0" uid="undeclared" type="a-f-G" time="2026-01-01T00:00:00Z" ' \
    b'start="2026-01-01T00:00:00Z" stale="2099-01-01T00:00:00Z"><point lat="0" lon="0"/>' \
    b'<detail><remarks>&ext;</remarks></detail></event>'


async def _witnesses(server: Server) -> tuple[Client, Client]:
    url = f"tcp://127.0.0.1:{server.ports['tcp']}"
    return await Client.connect(url), await Client.connect(url)


async def _still_served(w1: Client, w2: Client, n: int) -> None:
    uid = f"W1-{n}"
    await w1.send(sa(uid, "WITNESS"))
    await w2.recv_until(lambda e: uid_of(e) == uid, timeout=5)


def _lines(caplog: pytest.LogCaptureFixture, event: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if f"event={event} " in r.getMessage()]


@pytest.mark.parametrize(
    "payload, reason",
    [(MALFORMED, "not well-formed|mismatched|north"), (BOMB, "DOCTYPE"), (XXE, "DOCTYPE"),
     (UNDECLARED, "undefined entity|entity")],
    ids=["malformed", "xml-bomb", "external-entity", "undeclared-entity"],
)
def test_bad_xml_event_is_skipped_and_the_stream_goes_on(
    payload: bytes, reason: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async def scenario() -> None:
        async with server_running(make_config(tmp_path)) as server:
            w1, w2 = await _witnesses(server)
            bad = await Client.connect(f"tcp://127.0.0.1:{server.ports['tcp']}")
            await bad.send(payload)
            await bad.send(sa("after-bad", "STILL-HERE"))  # same connection, next event
            got = [uid_of(e) for e in await w2.recv_until(lambda e: uid_of(e) == "after-bad")]
            assert not {"bad", "bomb", "xxe", "undeclared"} & set(got)
            await _still_served(w1, w2, 1)
            assert len(server.sessions) == 3

    run(scenario())
    lines = _lines(caplog, "client.bad_input")
    assert len(lines) == 1 and "fatal=False" in lines[0]
    import re

    assert re.search(reason, lines[0]), lines[0]
    assert "root:" not in caplog.text  # nothing of /etc/passwd anywhere


def test_ten_megabytes_without_end_of_event_closes_only_that_client(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async def scenario() -> None:
        async with server_running(make_config(tmp_path)) as server:
            w1, w2 = await _witnesses(server)
            r, w = await asyncio.open_connection("127.0.0.1", server.ports["tcp"])
            head = b'<?xml version="1.0"?><event version="2.0" uid="huge" type="a-f-G"><detail><remarks>'
            sent = 0
            chunk = b"A" * 65536
            with pytest.raises((ConnectionError, OSError)):
                w.write(head)
                while sent < 10 * 2**20:
                    w.write(chunk)
                    sent += len(chunk)
                    await w.drain()
                # Everything fit in socket buffers: the server must still hang up on us.
                assert await asyncio.wait_for(r.read(), 5) is not None
                raise ConnectionResetError
            await eventually(lambda: len(server.sessions) == 2)
            await _still_served(w1, w2, 1)

    run(scenario())
    lines = _lines(caplog, "client.bad_input")
    assert len(lines) == 1 and "fatal=True" in lines[0] and "cap" in lines[0]


def test_bad_varint_closes_and_garbage_protobuf_is_skipped(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    async def scenario() -> None:
        async with server_running(make_config(tmp_path)) as server:
            w1, w2 = await _witnesses(server)
            garbage = await ProtoClient.connect(server.ports["tcp"])
            await garbage.negotiate()
            garbage.writer.write(b"\xbf\x06" + b"\xff\xfe\xfd\xfc\xfb\xfa")  # framed, but not a TakMessage
            garbage.send_xml_as_proto(sa("after-garbage", "STILL-HERE"))
            await w2.recv_until(lambda e: uid_of(e) == "after-garbage")
            varint = await ProtoClient.connect(server.ports["tcp"])
            await varint.negotiate()
            varint.writer.write(b"\xbf" + b"\xff" * 11)
            assert await asyncio.wait_for(varint.reader.read(), 5) == b""  # closed by the server
            await eventually(lambda: len(server.sessions) == 3)
            await _still_served(w1, w2, 1)

    run(scenario())
    lines = _lines(caplog, "client.bad_input")
    assert len(lines) == 2
    assert "fatal=False" in lines[0]
    assert "fatal=True" in lines[1] and "varint" in lines[1]


def test_client_that_stops_reading_is_dropped_and_never_blocks_others(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    limits = Limits(queue_bytes=128 * 1024, queue_messages=1000,
                    events_per_s_per_client=1e9, events_burst_per_client=1 << 30)  # a flood on purpose

    async def scenario() -> None:
        async with server_running(make_config(tmp_path, limits=limits)) as server:
            w1, w2 = await _witnesses(server)
            sock = socket.socket()
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sock.connect(("127.0.0.1", server.ports["tcp"]))
            sock.setblocking(False)
            _r, stalled = await asyncio.open_connection(sock=sock)  # never reads
            await eventually(lambda: len(server.sessions) == 3)
            received: list[str] = []

            async def reader() -> None:
                while True:
                    ev = await w2.recv_events(10)
                    received.append(uid_of(ev))
                    if uid_of(ev) == "last":
                        return

            task = asyncio.create_task(reader())
            n = 0
            pad = [ET.Element("pad", x="y" * 400)]
            while len(server.sessions) == 3 and n < 40_000:
                # Bursts of 50 (~30 KB): the live witness keeps up, the stalled client cannot.
                for _ in range(50):
                    await w1.send(sa(f"m{n}", "FLOOD", extra=pad))
                    n += 1
                await eventually(lambda sent=n: len(received) >= sent - 50)  # type: ignore[misc]
            assert len(server.sessions) == 2, "the stalled client was never dropped"
            await w1.send(sa("last", "FLOOD"))
            await task
            assert [u for u in received if not u.startswith("t-")][-1] == "last"
            assert sum(1 for u in received if u.startswith("m")) == n  # every message, in order
            stalled.close()

    run(scenario(), timeout=60)
    lines = _lines(caplog, "client.slow")
    assert len(lines) == 1 and "queued_bytes=" in lines[0]
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
