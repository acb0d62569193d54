"""Helpers for the server tests (no tests here): an in-process server and pytak-driven clients.

The clients are pytak's own: `pytak.protocol_factory` opens the TCP/TLS stream, `pytak.TXWorker`
writes, `pytak.RXWorker.readcot` splits what the server sends. Nothing here parses CoT with our code
except where a test says so.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator, Awaitable, Callable
from configparser import ConfigParser
from pathlib import Path
from typing import Any, TypeVar

import pytak
import takproto
from takproto.constants import TAKProtoVer

from kestrel.server.app import Server
from kestrel.server.config import Limits, ListenerConfig, ServerConfig

T = TypeVar("T")
_OPEN: list[asyncio.StreamWriter] = []  # client writers of the running scenario, closed by run()


LOOP = os.environ.get("KESTREL_TEST_LOOP", "asyncio")  # the server default; routing tests also run uvloop


def run(coro: Awaitable[T], timeout: float = 40.0, loop: str | None = None) -> T:
    """Run one test scenario on a fresh event loop (uvloop's or asyncio's), with an overall deadline."""
    loop = loop or LOOP

    async def main() -> T:
        try:
            return await asyncio.wait_for(coro, timeout)
        finally:
            while _OPEN:
                w = _OPEN.pop()
                w.close()
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(w.wait_closed(), 1)

    if loop == "uvloop":
        import uvloop

        return uvloop.run(main())
    return asyncio.run(main())


def make_config(data: Path, *listeners: ListenerConfig, **kw: Any) -> ServerConfig:
    if not listeners:
        listeners = (ListenerConfig("tcp", "tcp", "127.0.0.1", 0),)
    limits = kw.pop("limits", Limits())
    return ServerConfig(data_dir=data, listeners=list(listeners), limits=limits, **kw)


@contextlib.asynccontextmanager
async def server_running(config: ServerConfig) -> AsyncIterator[Server]:
    server = Server(config)
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


async def eventually(cond: Callable[[], bool], timeout: float = 5.0) -> None:
    """Wait until `cond()` holds (server state seen from the test's own event loop)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not cond():
        assert loop.time() < deadline, "condition not reached in time"
        await asyncio.sleep(0.005)


class _Rx(pytak.RXWorker):
    async def handle_data(self, data: bytes) -> None:  # pragma: no cover - we call readcot directly
        pass


class Client:
    """A pytak client: `send(xml)`, `recv()` -> one raw `<event>` (bytes) as pytak split it."""

    def __init__(self, section: Any, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.section = section
        self.reader, self.writer = reader, writer
        _OPEN.append(writer)
        self.tx = pytak.TXWorker(asyncio.Queue(), section, writer)
        self.rx = _Rx(asyncio.Queue(), section, reader)
        self.last_raw = b""  # bytes of the last event received, as pytak split them

    @classmethod
    async def connect(cls, url: str, **settings: str) -> Client:
        cp = ConfigParser(interpolation=None)
        cp["client"] = {"COT_URL": url, "TAK_PROTO": "0", **settings}
        section = cp["client"]
        reader, writer = await pytak.protocol_factory(section)
        return cls(section, reader, writer)

    async def send(self, xml: bytes) -> None:
        await self.tx.send_data(xml)

    async def recv(self, timeout: float = 5.0) -> bytes | None:
        """Next event as pytak split it, or None on EOF."""
        data = await asyncio.wait_for(self.rx.readcot(), timeout)
        self.last_raw = b"" if data is None else bytes(data)
        return None if data is None else self.last_raw

    async def recv_events(self, timeout: float = 5.0) -> ET.Element:
        data = await self.recv(timeout)
        assert data is not None, "server closed the connection"
        return parse(data)

    async def recv_until(self, pred: Callable[[ET.Element], bool], timeout: float = 5.0) -> list[ET.Element]:
        """Read events until one matches `pred`; return all read (the match last)."""
        seen: list[ET.Element] = []
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            ev = await self.recv_events(max(0.01, deadline - loop.time()))
            seen.append(ev)
            if pred(ev):
                return seen

    async def drain(self, quiet: float = 0.3) -> list[ET.Element]:
        """Everything that arrives until the line is quiet for `quiet` seconds."""
        out: list[ET.Element] = []
        while True:
            try:
                data = await self.recv(quiet)
            except TimeoutError:
                return out
            if data is None:
                return out
            out.append(parse(data))

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(Exception):
            await self.writer.wait_closed()


def parse(data: bytes) -> ET.Element:
    """pytak hands back the bytes up to `</event>`, maybe with the `<?xml?>` prolog in front."""
    text = data.decode("utf-8").strip()
    if text.startswith("<?xml"):
        text = text[text.index("?>") + 2 :].strip()
    return ET.fromstring(text)


def sa(uid: str, callsign: str, *, lat: float = 38.8, lon: float = -77.0, stale: int = 600,
       extra: list[ET.Element] | None = None) -> bytes:
    """A friendly-ground SA with contact + __group + takv, built by pytak."""
    detail = pytak.cot_detail(flow_tag=False)
    grp = ET.SubElement(detail, "__group")
    grp.set("name", "Cyan")
    grp.set("role", "Team Member")
    takv = ET.SubElement(detail, "takv")
    for k, v in (("device", "laptop"), ("platform", "pytak"), ("os", "linux"), ("version", "7.6.1")):
        takv.set(k, v)
    for e in extra or []:
        detail.append(e)
    ev = pytak.cot_event(lat=lat, lon=lon, uid=uid, cot_type="a-f-G-U-C", callsign=callsign, stale=stale,
                         detail=detail)
    return pytak.serialize_cot(ev)


def ping(uid: str) -> bytes:
    return pytak.serialize_cot(pytak.cot_event(uid=f"{uid}-ping", cot_type="t-x-c-t", how="h-g-i-g-o",
                                               flow_tag=False, stale=20))


def chat(sender_uid: str, sender_cs: str, to_callsign: str, text: str) -> bytes:
    """A GeoChat-style message addressed with `<marti><dest callsign=…/>`."""
    detail = pytak.cot_detail(flow_tag=False)
    c = ET.SubElement(detail, "__chat", {"senderCallsign": sender_cs, "chatroom": to_callsign, "id": to_callsign})
    ET.SubElement(c, "chatgrp", {"uid0": sender_uid, "uid1": to_callsign, "id": to_callsign})
    link = ET.SubElement(detail, "link", {"uid": sender_uid, "type": "a-f-G-U-C", "relation": "p-p"})
    link.tail = None
    marti = ET.SubElement(detail, "marti")
    ET.SubElement(marti, "dest", {"callsign": to_callsign})
    remarks = ET.SubElement(detail, "remarks", {"source": f"BAO.F.ATAK.{sender_uid}", "to": to_callsign})
    remarks.text = text
    ev = pytak.cot_event(uid=f"GeoChat.{sender_uid}.{to_callsign}.{text[:8]}", cot_type="b-t-f",
                         how="h-g-i-g-o", detail=detail)
    return pytak.serialize_cot(ev)


def delete(uid: str, target: str, stale: int = 60) -> bytes:
    """ATAK's delete of a stored item (`t-x-d-d` linking the target, `__forcedelete`)."""
    detail = pytak.cot_detail(flow_tag=False)
    ET.SubElement(detail, "link", {"uid": target, "relation": "none", "type": "none"})
    ET.SubElement(detail, "__forcedelete")
    ev = pytak.cot_event(uid=uid, cot_type="t-x-d-d", how="h-g-i-g-o", stale=stale, detail=detail)
    return pytak.serialize_cot(ev)


def uid_of(ev: ET.Element) -> str:
    return ev.get("uid", "")


def is_type(t: str) -> Callable[[ET.Element], bool]:
    return lambda ev: ev.get("type") == t


def detail_children(ev: ET.Element) -> list[str]:
    d = ev.find("detail")
    return [] if d is None else [c.tag for c in d]


def fresh(cot: bytes) -> bytes:
    """The ATAK example with its stale time moved into the future (its own is 2021)."""
    stale = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(time.time() + 3600))
    text = cot.decode()
    i = text.index("stale='") + len("stale='")
    j = text.index("'", i)
    return (text[:i] + stale + text[j:]).encode()


class ProtoClient:
    """A client that negotiates TAK protocol v1 and then speaks 0xBF <varint> <TakMessage>."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        _OPEN.append(writer)

    @classmethod
    async def connect(cls, port: int) -> ProtoClient:
        return cls(*await asyncio.open_connection("127.0.0.1", port))

    async def read_xml(self, timeout: float = 5.0) -> ET.Element:
        return parse(await asyncio.wait_for(self.reader.readuntil(b"</event>"), timeout))

    async def negotiate(self, version: str = "1") -> tuple[ET.Element, ET.Element]:
        while (offer := await self.read_xml()).get("type") != "t-x-takp-v":
            pass
        detail = pytak.cot_detail(flow_tag=False)
        ctl = ET.SubElement(detail, "TakControl")
        ET.SubElement(ctl, "TakRequest", {"version": version})
        req = pytak.cot_event(uid=offer.get("uid"), cot_type="t-x-takp-q", flow_tag=False, detail=detail)
        self.writer.write(pytak.serialize_cot(req))
        while (resp := await self.read_xml()).get("type") != "t-x-takp-r":
            pass
        return offer, resp

    def send_xml_as_proto(self, xml: bytes) -> None:
        self.writer.write(bytes(takproto.xml2proto(xml.split(b"?>", 1)[-1].strip(), TAKProtoVer.STREAM)))

    async def recv(self, timeout: float = 5.0) -> Any:
        """One 0xBF frame, parsed by takproto."""

        async def one() -> bytes:
            magic = await self.reader.readexactly(1)
            assert magic == b"\xbf", f"expected 0xBF, got {magic!r}"
            head = b""
            while True:
                b = await self.reader.readexactly(1)
                head += b
                if b[0] < 0x80:
                    break
            n, shift = 0, 0
            for byte in head:
                n |= (byte & 0x7F) << shift
                shift += 7
            return magic + head + await self.reader.readexactly(n)

        frame = await asyncio.wait_for(one(), timeout)
        msg = takproto.parse_proto(bytearray(frame))
        assert msg is not None and msg != -1
        return msg

    async def recv_until_uid(self, uid: str) -> list[Any]:
        out = []
        while True:
            msg = await self.recv()
            out.append(msg)
            if msg.cotEvent.uid == uid:
                return out
