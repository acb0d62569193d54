"""Hostile or broken clients cannot hurt others (issue 12), one test per attack, with pytak clients
and raw sockets: cross-group store writes, retained bytes per group, identity (uid / callsign
spoofing), UDP control and echo, per-client limits (rate, idle, incomplete event, connection caps),
a newcomer's pong behind a big picture, and metrics at /metrics.

Ordering is the synchronisation: the server handles one connection's bytes in order and queues
each recipient's traffic in order, so "X never arrived" is checked by a later sentinel arriving
first. Timeouts are configured tiny (1 s) and the test waits for the close, not for the clock.
"""

from __future__ import annotations

import asyncio
import re
import socket
import time
import urllib.request
import xml.etree.ElementTree as ET
from pathlib import Path

import pytak
import pytest

from kestrel import pki as certs
from kestrel.server.config import ANON, Limits, ListenerConfig
from tests.test_server_support import (
    Client,
    chat,
    delete,
    eventually,
    make_config,
    ping,
    run,
    sa,
    server_running,
    uid_of,
)


def _two_groups(tmp_path: Path, **kw: object) -> object:
    return make_config(
        tmp_path,
        ListenerConfig("tcp", "tcp", "127.0.0.1", 0, ("Blue",)),
        ListenerConfig("red", "tcp", "127.0.0.1", 0, ("Red",)),
        **kw,  # type: ignore[arg-type]
    )


def marker(uid: str, remarks: str, *, stale: int = 3600, pad: int = 0, typ: str = "b-m-p-s-m") -> bytes:
    detail = pytak.cot_detail(flow_tag=False)
    ET.SubElement(detail, "contact", {"callsign": f"MK-{uid}"})
    r = ET.SubElement(detail, "remarks")
    r.text = remarks + ("x" * pad)
    ev = pytak.cot_event(lat=38.9, lon=-77.0, uid=uid, cot_type=typ, stale=stale, detail=detail)
    return pytak.serialize_cot(ev)



class Raw:
    """A raw-socket client reading events of any size (pytak's reader stops at 64 KiB)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def connect(cls, port: int) -> Raw:
        return cls(*await asyncio.open_connection("127.0.0.1", port, limit=1 << 22))

    async def until_uid(self, uid: str, timeout: float = 30) -> list[str]:
        seen: list[str] = []
        while True:
            data = await asyncio.wait_for(self.reader.readuntil(b"</event>"), timeout)
            m = re.search(rb"<event [^>]*?uid=[\"']([^\"']*)", data)
            seen.append(m.group(1).decode() if m else "")
            if seen[-1] == uid:
                return seen


async def _until_closed(reader: asyncio.StreamReader, timeout: float = 30) -> None:
    """Read (and discard) until the server closes the connection: EOF or reset (it aborts)."""
    try:
        while await asyncio.wait_for(reader.read(65536), timeout):
            pass
    except ConnectionResetError:
        pass


def _live(events: list[ET.Element]) -> list[ET.Element]:
    return [e for e in events if not e.get("type", "").startswith("t-x-takp")]


async def _snapshot(port: int) -> list[ET.Element]:
    """What a newcomer gets before the protobuf offer: the retained picture."""
    c = await Client.connect(f"tcp://127.0.0.1:{port}")
    got = await c.recv_until(lambda e: e.get("type") == "t-x-takp-v")
    await c.close()
    return got[:-1]


# -- 1. cross-group writes ------------------------------------------------------------------------


def test_other_group_cannot_delete_or_overwrite_a_stored_marker(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with server_running(_two_groups(tmp_path)) as server:
            blue = await Client.connect(f"tcp://127.0.0.1:{server.ports['tcp']}")
            blue2 = await Client.connect(f"tcp://127.0.0.1:{server.ports['tcp']}")
            red = await Client.connect(f"tcp://127.0.0.1:{server.ports['red']}")
            red2 = await Client.connect(f"tcp://127.0.0.1:{server.ports['red']}")
            await blue.send(marker("M-1", "blue original"))
            await blue.send(marker("M-2", "blue second"))
            await blue2.recv_until(lambda e: uid_of(e) == "M-2")
            await red.send(delete("del-1", "M-1"))
            await red.send(marker("M-2", "red overwrite"))
            await red.send(marker("R-sentinel", "red"))
            got = _live(await red2.recv_until(lambda e: uid_of(e) == "R-sentinel"))
            # The refused delete is not relayed; Red's M-2 is Red's own item (uids are scoped by
            # group: tests/test_server_identity.py), it does not touch Blue's.
            assert [uid_of(e) for e in got] == ["M-2", "R-sentinel"]
            await blue.send(marker("B-sentinel", "blue"))
            seen = _live(await blue2.recv_until(lambda e: uid_of(e) == "B-sentinel"))
            assert [uid_of(e) for e in seen] == ["B-sentinel"]  # Blue's maps keep M-1 and M-2
            picture = {uid_of(e): e.findtext("detail/remarks") for e in await _snapshot(server.ports["tcp"])}
            assert picture == {"M-1": "blue original", "M-2": "blue second", "B-sentinel": "blue"}
            assert server.metrics.get("dropped_foreign_write") == 1
            # Within the group, deleting is still allowed.
            await blue2.send(delete("del-2", "M-1"))
            await blue.recv_until(lambda e: uid_of(e) == "del-2")
            assert "M-1" not in server.router.retained

    run(scenario())


# -- 2./3. retained picture bounded by bytes, per group ---------------------------------------------


def test_retained_bytes_per_group_bounds_the_picture_and_one_group_cannot_evict_another(tmp_path: Path) -> None:
    budget = 2 << 20
    limits = Limits(retained_bytes_per_group=budget, max_event_bytes=1 << 20)

    async def scenario() -> None:
        async with server_running(_two_groups(tmp_path, limits=limits)) as server:
            red = await Client.connect(f"tcp://127.0.0.1:{server.ports['red']}")
            blue = await Client.connect(f"tcp://127.0.0.1:{server.ports['tcp']}")
            blue2 = await Raw.connect(server.ports["tcp"])
            done = asyncio.create_task(blue2.until_uid("BIG-29"))
            await red.send(marker("RED-1", "red keeps this"))
            for i in range(30):  # 30 x 200 KB = 6 MB into a 2 MB budget
                await blue.send(marker(f"BIG-{i}", "big", pad=200_000))
            await done
            assert server.router.group_bytes["Blue"] <= budget
            assert "RED-1" in server.router.retained  # Blue's flood did not evict Red's picture
            kept = [u for u in server.router.retained if u.startswith("BIG-")]
            assert kept and kept[-1] == "BIG-29" and "BIG-0" not in kept  # oldest out first
            assert server.metrics.get("retained_evicted") == 30 - len(kept)

    run(scenario(), timeout=60)


def test_retained_picture_memory_stays_within_twice_the_budget(tmp_path: Path) -> None:
    """Heap growth (tracemalloc) for a full picture of big markers, router-level."""
    import tracemalloc

    from kestrel.cot.connection import encode_for
    from kestrel.cot.xml import parse_event
    from kestrel.server.router import Router

    budget = 4 << 20

    class P:
        id, format, groups, identity = 1, "proto", frozenset({ANON}), None

        def send(self, data: bytes, key: str | None = None) -> bool:
            return True

    r = Router(encode_for, retained_bytes_per_group=budget)
    r.join(P())  # a protobuf client: each item is cached in both encodings
    events = [parse_event(marker(f"M-{i}", "m", pad=300_000)) for i in range(60)]  # 18 MB offered
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for ev in events:
        r.route(ev, None, frozenset({ANON}))
    grown = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    assert r.group_bytes[ANON] <= budget
    assert grown <= 2 * budget, f"{grown} bytes for a {budget}-byte budget"


def test_a_joiner_that_does_not_read_keeps_no_evicted_item_alive(tmp_path: Path) -> None:
    """A newcomer stuck in its snapshot (it never reads) must not pin the items evicted meanwhile:
    memory stays the group's budget, not the budget once more per stuck joiner."""
    import gc

    from kestrel.server.router import Retained

    limits = Limits(retained_bytes_per_group=16 << 20, queue_bytes=64 << 20,
                    bytes_per_s_per_client=1 << 30, bytes_burst_per_client=1 << 30)

    async def scenario() -> None:
        async with server_running(make_config(tmp_path, limits=limits)) as server:
            port = server.ports["tcp"]
            poster, watcher = await Raw.connect(port), await Raw.connect(port)
            for i in range(40):  # 12 MB accounted (XML + detail) of a 16 MiB budget
                poster.writer.write(marker(f"OLD-{i}", "old", pad=150_000))
            await watcher.until_uid("OLD-39", timeout=60)
            sock = socket.socket()
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # and it never reads
            sock.setblocking(False)
            await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
            await eventually(lambda: len(server.sessions) == 3)
            joiner = max(server.sessions, key=lambda s: s.id)
            for i in range(60):  # evicts every OLD item
                poster.writer.write(marker(f"NEW-{i}", "new", pad=150_000))
            await watcher.until_uid("NEW-59", timeout=60)
            assert not any(f"OLD-{i}" in server.router.retained for i in range(40))
            assert not joiner.closed and joiner._snapshot, "the joiner is still in its snapshot"
            gc.collect()
            alive = sum(isinstance(o, Retained) and o.event.uid.startswith("OLD-") for o in gc.get_objects())
            assert alive <= 2, f"{alive} evicted items kept alive by a joiner's snapshot"
            sock.close()
            for c in (poster, watcher):
                c.writer.close()

    run(scenario(), timeout=120)


def test_newcomer_gets_its_pong_before_a_big_picture(tmp_path: Path) -> None:
    """A joiner's ping is answered while its snapshot (here ~30 MB) is still being written."""
    limits = Limits(bytes_per_s_per_client=1 << 30, bytes_burst_per_client=1 << 30)  # the picture's poster

    async def scenario() -> None:
        async with server_running(make_config(tmp_path, limits=limits)) as server:
            a = await Client.connect(f"tcp://127.0.0.1:{server.ports['tcp']}")
            b = await Raw.connect(server.ports["tcp"])
            # Paced on b's arrivals, 10 markers (2 MB) at a time: within b's 4 MiB outbound queue, so
            # a loaded machine cannot turn the build-up into a slow-consumer drop of b.
            for i in range(150):
                await a.send(marker(f"P-{i}", "picture", pad=200_000))
                if i % 10 == 9:
                    await b.until_uid(f"P-{i}", timeout=60)
            total = sum(len(r.wire["xml"]) for r in server.router.items())
            reader, writer = await asyncio.open_connection("127.0.0.1", server.ports["tcp"], limit=1 << 22)
            writer.write(ping("newcomer"))
            before = 0
            while True:
                chunk = await asyncio.wait_for(reader.readuntil(b"</event>"), 20)
                if b"t-x-c-t-r" in chunk:
                    break
                before += len(chunk)
            assert before < total / 2, f"{before} of {total} snapshot bytes came before the pong"
            writer.close()

    run(scenario(), timeout=90)


# -- 4. identity ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("pki")
    certs.init(d)
    for n in ("alice", "bob"):
        certs.issue_client(d, n)
    return d


def _tls(pki: Path, name: str) -> dict[str, str]:
    c = certs.paths(pki).client(name)
    return {"PYTAK_TLS_CLIENT_CERT": str(c.cert), "PYTAK_TLS_CLIENT_KEY": str(c.key),
            "PYTAK_TLS_CLIENT_CAFILE": str(certs.paths(pki).ca_cert)}


def test_plain_client_cannot_take_a_tls_users_uid_or_callsign(tmp_path: Path, pki: Path) -> None:
    p = certs.paths(pki)
    cfg = make_config(tmp_path, ListenerConfig("tcp", "tcp", "127.0.0.1", 0),
                      ListenerConfig("tls", "tls", "127.0.0.1", 0),
                      tls_ca=p.ca_cert, tls_cert=p.server_cert, tls_key=p.server_key)

    async def scenario() -> None:
        async with server_running(cfg) as server:
            tls = f"tls://127.0.0.1:{server.ports['tls']}"
            alice = await Client.connect(tls, **_tls(pki, "alice"))
            bob = await Client.connect(tls, **_tls(pki, "bob"))
            mallory = await Client.connect(f"tcp://127.0.0.1:{server.ports['tcp']}")
            await alice.send(sa("ALICE-UID", "ALICE"))
            await mallory.recv_until(lambda e: uid_of(e) == "ALICE-UID")
            await mallory.send(sa("MAL-UID", "ALICE"))  # same callsign, own uid
            await mallory.send(sa("ALICE-UID", "ALICE", lat=1.0))  # same uid
            await mallory.send(sa("MAL-SENTINEL", "MALLORY"))
            seen = _live(await bob.recv_until(lambda e: uid_of(e) == "MAL-SENTINEL"))
            assert [uid_of(e) for e in seen] == ["ALICE-UID", "MAL-SENTINEL"], "spoofed SA relayed"
            await bob.send(chat("BOB-UID", "BOB", "ALICE", "for alice only"))
            await bob.send(sa("BOB-SENTINEL", "BOB"))
            got = _live(await mallory.recv_until(lambda e: uid_of(e) == "BOB-SENTINEL"))
            assert [uid_of(e) for e in got] == ["BOB-SENTINEL"], "mallory received alice's DM"
            dm = _live(await alice.recv_until(lambda e: e.get("type") == "b-t-f"))
            assert dm[-1].findtext("detail/remarks") == "for alice only"
            assert [r.event.lat != 1.0 for r in server.router.retained["ALICE-UID"].values()] == [True]
            assert server.metrics.get("dropped_identity") >= 2

    run(scenario())


def test_contact_in_another_group_cannot_take_over_a_uid_and_its_dms(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with server_running(_two_groups(tmp_path)) as server:
            alpha = await Client.connect(f"tcp://127.0.0.1:{server.ports['tcp']}")
            bravo = await Client.connect(f"tcp://127.0.0.1:{server.ports['tcp']}")
            red = await Client.connect(f"tcp://127.0.0.1:{server.ports['red']}")
            red2 = await Client.connect(f"tcp://127.0.0.1:{server.ports['red']}")
            await alpha.send(sa("ALPHA-UID", "ALPHA"))
            await bravo.recv_until(lambda e: uid_of(e) == "ALPHA-UID")
            await red.send(sa("ALPHA-UID", "ALPHA"))  # takeover attempt from another group
            await red.send(sa("RED-SENTINEL", "RED"))
            await red2.recv_until(lambda e: uid_of(e) == "RED-SENTINEL")
            await bravo.send(chat("BRAVO-UID", "BRAVO", "ALPHA", "still yours"))
            dm = _live(await alpha.recv_until(lambda e: e.get("type") == "b-t-f"))
            assert dm[-1].findtext("detail/remarks") == "still yours"

    run(scenario())


# -- 5. UDP --------------------------------------------------------------------------------------


def test_udp_relays_no_control_and_no_echo_to_the_senders_stream(tmp_path: Path) -> None:
    cfg = make_config(tmp_path, ListenerConfig("tcp", "tcp", "127.0.0.1", 0),
                      ListenerConfig("udp", "udp", "127.0.0.1", 0))

    async def scenario() -> None:
        async with server_running(cfg) as server:
            c = await Client.connect(f"tcp://127.0.0.1:{server.ports['tcp']}")
            d = await Client.connect(f"tcp://127.0.0.1:{server.ports['tcp']}")
            await c.send(sa("C-UID", "CHARLIE"))
            await d.recv_until(lambda e: uid_of(e) == "C-UID")
            now = time.time()
            q = pytak.cot_event(uid="q-1", cot_type="t-x-takp-q", flow_tag=False, stale=60)
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                dest = ("127.0.0.1", server.ports["udp"])
                s.sendto(ping("udp"), dest)
                s.sendto(pytak.serialize_cot(q), dest)
                s.sendto(sa("C-UID", "CHARLIE", lat=10.0), dest)  # C's own SA, also sent over UDP
                s.sendto(sa("U-SENTINEL", "UDP"), dest)
            got_d = _live(await d.recv_until(lambda e: uid_of(e) == "U-SENTINEL"))
            assert [(uid_of(e), e.get("type")) for e in got_d] == [("C-UID", "a-f-G-U-C"), ("U-SENTINEL", "a-f-G-U-C")]
            got_c = _live(await c.recv_until(lambda e: uid_of(e) == "U-SENTINEL"))
            assert [uid_of(e) for e in got_c] == ["U-SENTINEL"], "UDP echoed to the sender's own stream"
            assert server.metrics.get("dropped_udp_control") == 2
            assert time.time() >= now

    run(scenario())


# -- 6. per-client limits -----------------------------------------------------------------------------


def test_flooding_client_is_rate_limited_and_others_are_not(tmp_path: Path) -> None:
    limits = Limits(events_per_s_per_client=0.001, events_burst_per_client=5)

    async def scenario() -> None:
        async with server_running(make_config(tmp_path, limits=limits)) as server:
            flood = await Client.connect(f"tcp://127.0.0.1:{server.ports['tcp']}")
            quiet = await Client.connect(f"tcp://127.0.0.1:{server.ports['tcp']}")
            rx = await Client.connect(f"tcp://127.0.0.1:{server.ports['tcp']}")
            for i in range(20):
                await flood.send(marker(f"F-{i}", "flood"))
            # A new connection starts with one second's worth of tokens (here: 1), not the burst.
            await eventually(lambda: server.metrics.get("dropped_rate") == 19)
            for i in range(5):  # events dressed up as pings do not slip past the limit
                await flood.send(marker(f"t-x-c-t-{i}", "pretend ping"))
            await eventually(lambda: server.metrics.get("dropped_rate") == 24)
            await quiet.send(marker("Q-1", "quiet"))
            got = _live(await rx.recv_until(lambda e: uid_of(e) == "Q-1"))
            assert [uid_of(e) for e in got] == ["F-0", "Q-1"]
            await flood.send(ping("flood"))  # pings still answered: the client is not cut off
            await flood.recv_until(lambda e: e.get("type") == "t-x-c-t-r")

    run(scenario())


def test_a_rate_limited_flood_is_read_a_little_at_a_time(tmp_path: Path) -> None:
    """Once a client's reads keep being rate-dropped, the server reads it LIMITED_READ bytes per
    pause, not a whole read chunk: what a flood costs is framing a few frames per pause (before:
    ~200 frames of a 64 KiB chunk per pause). Its ping is still answered after the flood."""
    from kestrel.server.session import LIMITED_READ

    limits = Limits(events_per_s_per_client=1000, events_burst_per_client=1, read_chunk=65536)
    frame = sa("FLOOD-1", "FLOOD")
    n = (1 << 20) // len(frame)

    async def scenario() -> None:
        async with server_running(make_config(tmp_path, limits=limits)) as server:
            flood = await Raw.connect(server.ports["tcp"])
            flood.writer.write(frame * n + ping("flood"))
            while b"t-x-c-t-r" not in await asyncio.wait_for(flood.reader.readuntil(b"</event>"), 60):
                pass  # the pong comes after every flooded byte was read
            dropped, pauses = server.metrics.get("dropped_rate"), server.metrics.get("throttled_rate")
            assert dropped > n // 2, (dropped, n)  # burst 1: most of the flood was dropped
            # the first read may be a whole chunk; every read after a pause is at most LIMITED_READ
            per_pause = LIMITED_READ // len(frame) + 2
            assert dropped <= 65536 // len(frame) + 2 + pauses * per_pause, (dropped, pauses, per_pause)
            flood.writer.close()

    run(scenario())


def test_byte_rate_is_enforced_by_not_reading_and_costs_only_the_big_sender(tmp_path: Path) -> None:
    """A client over its bytes/s budget is not read (TCP pushes back on it): a 300 KB marker
    trickles in at the budget while another client's event overtakes it, and nothing is lost."""
    limits = Limits(bytes_per_s_per_client=128 << 10, bytes_burst_per_client=128 << 10, read_chunk=16 << 10)

    async def scenario() -> None:
        async with server_running(make_config(tmp_path, limits=limits)) as server:
            port = server.ports["tcp"]
            big, quiet, rx = [await Raw.connect(port) for _ in range(3)]
            big.writer.write(marker("BIG", "big", pad=300_000))
            await eventually(lambda: server.metrics.get("throttled_bytes") >= 1)
            quiet.writer.write(marker("Q-1", "quiet"))
            seen = await rx.until_uid("BIG")  # whole and in one piece, only later
            assert "Q-1" in seen and seen.index("Q-1") < seen.index("BIG")
            assert server.metrics.get("closed_oversize") == 0 and server.metrics.get("dropped_rate") == 0
            for c in (big, quiet, rx):
                c.writer.close()

    run(scenario())


def test_big_events_arriving_together_are_handled_one_loop_iteration_apart(tmp_path: Path) -> None:
    """Three clients finish a 200 KB marker in the same instant: the server routes the three in
    three different event-loop iterations (with the other clients' work between them), not in one
    stall of three big parses (measured in bench/soak.py: five 900 KB markers at once, ~35 ms)."""
    async def scenario() -> None:
        async with server_running(make_config(tmp_path)) as server:
            loop = asyncio.get_running_loop()
            ticks = [0]

            def tick() -> None:  # counts event-loop iterations
                ticks[0] += 1
                loop.call_soon(tick)

            routed_at: dict[str, int] = {}
            route = server.router.route

            def spy(event, sender, groups):  # type: ignore[no-untyped-def]
                routed_at[event.uid] = ticks[0]
                return route(event, sender, groups)

            server.router.route = spy  # type: ignore[method-assign]
            port = server.ports["tcp"]
            posters = [await Raw.connect(port) for _ in range(3)]
            rx = await Raw.connect(port)
            whole = [marker(f"BIG-{i}", "big", pad=200_000) for i in range(3)]
            for c, m in zip(posters, whole, strict=True):
                c.writer.write(m[:-1])  # all but the last byte: the server holds three unfinished events
            await eventually(lambda: sum(s.conn.pending > 200_000 for s in server.sessions) == 3
                             and not any(c.writer.transport.get_write_buffer_size() for c in posters), timeout=30)
            loop.call_soon(tick)
            for c, m in zip(posters, whole, strict=True):
                c.writer.transport.write(m[-1:])  # sent at once (empty buffer), no await in between:
            await rx.until_uid("BIG-2")  # all three are readable at the server's next select
            await eventually(lambda: len(routed_at) == 3)
            assert len(set(routed_at.values())) == 3, routed_at
            for c in (*posters, rx):
                c.writer.close()

    run(scenario())


def test_a_reset_client_is_freed_at_once_with_its_half_event(tmp_path: Path) -> None:
    """A client that sends half of a big event and resets leaves no reference cycle: its session
    (read buffer, pending event) is freed when it closes, not at some later full GC pass."""
    import gc
    import struct
    import weakref

    async def scenario() -> None:
        async with server_running(make_config(tmp_path)) as server:
            reader, writer = await asyncio.open_connection("127.0.0.1", server.ports["tcp"])
            writer.write(b'<event version="2.0" uid="HALF" type="a-f-G"><detail>' + b"y" * 200_000)
            await eventually(lambda: any(s.conn.pending for s in server.sessions))
            (session,) = server.sessions
            ref = weakref.ref(session)
            del session
            sock = writer.get_extra_info("socket")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            writer.transport.abort()  # RST: the server's read raises ConnectionResetError
            await eventually(lambda: not server.sessions)
            await eventually(lambda: ref() is None)  # the cyclic GC is off: only a cycle keeps it

    gc.disable()
    try:
        run(scenario())
    finally:
        gc.enable()


def test_silent_client_is_closed_after_idle_timeout(tmp_path: Path) -> None:
    limits = Limits(idle_timeout_s=1.0)

    async def scenario() -> None:
        async with server_running(make_config(tmp_path, limits=limits)) as server:
            reader, writer = await asyncio.open_connection("127.0.0.1", server.ports["tcp"])
            await _until_closed(reader)  # the offer, then EOF/reset when the server closes us
            await eventually(lambda: server.metrics.get("closed_idle") == 1)
            writer.close()

    run(scenario())


def test_trickled_half_event_is_closed_after_incomplete_timeout(tmp_path: Path) -> None:
    """Slowloris: one byte at a time keeps the connection busy but never finishes an event."""
    limits = Limits(incomplete_event_timeout_s=1.0, idle_timeout_s=30.0)

    async def scenario() -> None:
        async with server_running(make_config(tmp_path, limits=limits)) as server:
            reader, writer = await asyncio.open_connection("127.0.0.1", server.ports["tcp"])
            body = b'<event version="2.0" uid="slow" type="a-f-G" ' + b" " * 100_000

            async def trickle() -> None:
                for byte in body:  # bounded: stops by itself
                    writer.write(bytes([byte]))
                    await asyncio.sleep(0.05)

            task = asyncio.create_task(trickle())
            await _until_closed(reader)
            task.cancel()
            await eventually(lambda: server.metrics.get("closed_incomplete") == 1)
            assert server.metrics.get("closed_idle") == 0
            writer.close()

    run(scenario())


def test_connection_caps_refuse_only_the_extra_connections(tmp_path: Path) -> None:
    limits = Limits(max_connections=3, max_connections_per_address=2)

    async def scenario() -> None:
        async with server_running(make_config(tmp_path, limits=limits)) as server:
            port = server.ports["tcp"]
            a = await Client.connect(f"tcp://127.0.0.1:{port}")
            b = await Client.connect(f"tcp://127.0.0.1:{port}")
            await eventually(lambda: len(server.sessions) == 2)
            r, w = await asyncio.open_connection("127.0.0.1", port)
            await _until_closed(r)  # third from 127.0.0.1: refused
            w.close()
            assert server.metrics.get("refused_per_address") == 1
            r2, w2 = await asyncio.open_connection("127.0.0.1", port, local_addr=("127.0.0.2", 0))  # another address
            assert b"t-x-takp-v" in await asyncio.wait_for(r2.readuntil(b"</event>"), 10)
            r3, w3 = await asyncio.open_connection("127.0.0.1", port, local_addr=("127.0.0.3", 0))
            await _until_closed(r3)  # over max_connections
            assert server.metrics.get("refused_max_connections") == 1
            await a.send(sa("A-UID", "ALPHA"))
            await b.recv_until(lambda e: uid_of(e) == "A-UID")
            for wr in (w2, w3):
                wr.close()

    run(scenario())


def test_tls_connection_caps_are_checked_before_the_handshake(tmp_path: Path, pki: Path) -> None:
    """Over its per-address cap, a TLS connection is closed at accept: no handshake is waited for
    (a pending handshake counts as a connection), so it costs an accept, not handshake_timeout."""
    p = certs.paths(pki)
    cfg = make_config(tmp_path, ListenerConfig("tls", "tls", "127.0.0.1", 0),
                      tls_ca=p.ca_cert, tls_cert=p.server_cert, tls_key=p.server_key,
                      limits=Limits(max_connections_per_address=1, handshake_timeout=600.0))

    async def scenario() -> None:
        async with server_running(cfg) as server:
            port = server.ports["tls"]
            r1, w1 = await asyncio.open_connection("127.0.0.1", port)  # never starts its handshake
            r2, w2 = await asyncio.open_connection("127.0.0.1", port)
            await _until_closed(r2)  # refused at once, not after handshake_timeout (600 s)
            assert server.metrics.get("refused_per_address") == 1
            w1.close()  # the pending slot is freed when that socket goes: a real client gets in
            await eventually(lambda: server.metrics.get("refused_per_address") == 1 and not server._listeners[0]._pending)
            alice = await Client.connect(f"tls://127.0.0.1:{port}", **_tls(pki, "alice"))
            await alice.send(ping("alice"))
            await alice.recv_until(lambda e: e.get("type") == "t-x-c-t-r")
            w2.close()

    run(scenario())


# -- 7. bad values, bad addressing ---------------------------------------------------------------------------


def _raw_sa(uid: str, lat: str, lon: str, hae: str = "1.0") -> bytes:
    ts = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime())
    stale = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(time.time() + 600))
    return (f'<event version="2.0" uid="{uid}" type="a-f-G-U-C" how="m-g" time="{ts}" start="{ts}" '
            f'stale="{stale}"><point lat="{lat}" lon="{lon}" hae="{hae}" ce="1" le="1"/><detail/></event>').encode()


def test_out_of_range_points_and_unaddressable_dest_are_dropped(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with server_running(make_config(tmp_path)) as server:
            a = await Client.connect(f"tcp://127.0.0.1:{server.ports['tcp']}")
            b = await Client.connect(f"tcp://127.0.0.1:{server.ports['tcp']}")
            for uid, lat, lon in (("big", "1e308", "0"), ("north", "91.5", "0"), ("east", "0", "181"),
                                  ("south", "-90.0001", "0"), ("west", "0", "-180.5")):
                await a.send(_raw_sa(uid, lat, lon))
            for dest in (b"<marti/>", b"<marti><dest/></marti>", b'<marti><dest mission="x"/></marti>',
                         b'<marti><dest callsign=""/></marti>'):
                detail = pytak.cot_detail(flow_tag=False)
                detail.append(ET.fromstring(dest))
                await a.send(pytak.serialize_cot(pytak.cot_event(uid="to-nobody", cot_type="b-t-f", detail=detail)))
            await a.send(_raw_sa("edge", "-90", "180"))
            got = _live(await b.recv_until(lambda e: uid_of(e) == "edge"))
            assert [uid_of(e) for e in got] == ["edge"]
            assert server.metrics.get("dropped_invalid") == 5
            assert server.metrics.get("dropped_unaddressable") == 4

    run(scenario())


# -- metrics ---------------------------------------------------------------------------------------


def test_metrics_endpoint_serves_prometheus_text_on_loopback(tmp_path: Path) -> None:
    limits = Limits(events_per_s_per_client=0.001, events_burst_per_client=1)

    async def scenario() -> str:
        async with server_running(make_config(tmp_path, limits=limits)) as server:
            a = await Client.connect(f"tcp://127.0.0.1:{server.ports['tcp']}")
            for i in range(3):
                await a.send(marker(f"R-{i}", "x"))
            await eventually(lambda: server.metrics.get("dropped_rate") == 2)
            port = server.ports["metrics"]
            loop = asyncio.get_running_loop()

            def get() -> str:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as resp:
                    assert resp.headers["Content-Type"].startswith("text/plain; version=0.0.4")
                    return str(resp.read().decode())

            return await loop.run_in_executor(None, get)

    text = run(scenario())
    assert '# TYPE kestrel_dropped_total counter' in text
    assert 'kestrel_dropped_total{reason="rate"} 2' in text
    assert "kestrel_clients 1" in text
