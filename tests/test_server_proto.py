"""TAK protocol v1 through the server: negotiation (v, q, r), 0xBF-framed streams, XML and protobuf
clients seeing each other each in their own format, and every ATAK example surviving
XML -> server -> XML and XML -> server -> protobuf. Protobuf bytes are built and read with
`takproto` (an outside codec), XML clients are pytak."""

from __future__ import annotations

import datetime as dt
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest

from tests.test_server_support import (
    Client,
    ProtoClient,
    chat,
    fresh,
    make_config,
    parse,
    ping,
    run,
    sa,
    server_running,
    uid_of,
)

# Every ATAK example in the shared data (a test below checks that this list is the whole folder).
EXAMPLES = ("Drawing_Shapes_-_Circle", "Drawing_Shapes_-_Free_Form", "Drawing_Shapes_-_Rectangle", "Geo_Fence",
            "Marker_-_2525", "Marker_-_Spot", "Range_Bearing_-_Line", "Route")


def _iso_ms(text: str) -> int:
    t = dt.datetime.strptime(text.replace("Z", "+0000"), "%Y-%m-%dT%H:%M:%S.%f%z")
    return int(t.timestamp() * 1000)


def _canon(el: ET.Element) -> str:
    el.tail = None
    return ET.canonicalize(ET.tostring(el, encoding="unicode"))


def _typed_elements(d: Any) -> list[ET.Element]:
    """The typed Detail fields of a takproto TakMessage, as the XML elements they stand for."""
    out = []
    specs = (("contact", "contact", ("endpoint", "callsign")), ("group", "__group", ("name", "role")),
             ("precisionLocation", "precisionlocation", ("geopointsrc", "altsrc")),
             ("status", "status", ("battery",)), ("takv", "takv", ("device", "platform", "os", "version")),
             ("track", "track", ("speed", "course")))
    for field, tag, attrs in specs:
        if d.HasField(field):
            sub = getattr(d, field)
            values = {a: getattr(sub, a) for a in attrs}
            out.append(ET.Element(tag, {a: (repr(v) if isinstance(v, float) else str(v))
                                        for a, v in values.items() if v not in ("", 0)}))
    return out


def test_negotiation_then_xml_and_proto_clients_see_each_other(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with server_running(make_config(tmp_path)) as server:
            port = server.ports["tcp"]
            p = await ProtoClient.connect(port)
            offer, resp = await p.negotiate()
            assert offer.find("detail/TakControl/TakProtocolSupport").get("version") == "1"  # type: ignore[union-attr]
            assert resp.find("detail/TakControl/TakResponse").get("status") == "true"  # type: ignore[union-attr]
            assert resp.get("uid") == offer.get("uid")
            x = await Client.connect(f"tcp://127.0.0.1:{port}")
            extra = ET.fromstring('<kestrel_x a="1"><y>text</y></kestrel_x>')
            await x.send(sa("X-uid", "XRAY", lat=10.5, lon=20.25, extra=[extra, ET.Element("status", battery="77")]))
            msg = (await p.recv_until_uid("X-uid"))[-1]
            ev = msg.cotEvent
            assert (ev.type, ev.lat, ev.lon, ev.how) == ("a-f-G-U-C", 10.5, 20.25, "m-g")
            assert (ev.detail.contact.callsign, ev.detail.group.name, ev.detail.group.role) == (
                "XRAY", "Cyan", "Team Member")
            assert (ev.detail.takv.platform, ev.detail.status.battery) == ("pytak", 77)
            assert _canon(ET.fromstring(ev.detail.xmlDetail)) == _canon(extra)
            # Protobuf -> XML client, in XML.
            p.send_xml_as_proto(sa("P-uid", "PAPA", lat=-33.5, lon=151.25))
            got = [e for e in await x.recv_until(lambda e: uid_of(e) == "P-uid")
                   if not e.get("type", "").startswith("t-x-takp")]
            assert [uid_of(e) for e in got] == ["P-uid"]
            d = got[0].find("detail")
            assert d is not None
            assert d.find("contact").get("callsign") == "PAPA"  # type: ignore[union-attr]
            assert d.find("__group").attrib == {"name": "Cyan", "role": "Team Member"}  # type: ignore[union-attr]
            assert d.find("takv").get("platform") == "pytak"  # type: ignore[union-attr]
            assert got[0].find("point").get("lat") == "-33.5"  # type: ignore[union-attr]
            # A protobuf ping gets a protobuf pong, to P only; P never gets its own SA back.
            p.send_xml_as_proto(ping("P-uid"))
            pong = await p.recv()
            assert pong.cotEvent.type == "t-x-c-t-r"
            await x.send(sa("X-uid", "XRAY", lat=11.0))
            assert [m.cotEvent.uid for m in await p.recv_until_uid("X-uid")] == ["X-uid"]
            p.send_xml_as_proto(sa("P-uid", "PAPA", lat=1.0))
            await x.send(sa("X-uid", "XRAY", lat=12.0))
            assert [m.cotEvent.uid for m in await p.recv_until_uid("X-uid")] == ["X-uid"]
            seen = await x.recv_until(lambda e: e.find("point").get("lat") == "1.0")  # type: ignore[union-attr]
            assert [e.get("type") for e in seen] == ["a-f-G-U-C"]  # no pong leaked to X
            # The contact learned from P's protobuf SA routes an XML chat to P, in protobuf.
            await x.send(chat("X-uid", "XRAY", "PAPA", "to papa"))
            dm = await p.recv()
            assert dm.cotEvent.type == "b-t-f" and "to papa" in dm.cotEvent.detail.xmlDetail

    run(scenario())


def test_example_list_is_the_whole_folder(ref_data: Path) -> None:
    assert sorted(p.stem for p in (ref_data / "cot/atak-examples").glob("*.cot")) == sorted(EXAMPLES)


@pytest.mark.parametrize("name", EXAMPLES)
def test_atak_example_through_server_to_xml_and_protobuf(name: str, tmp_path: Path, ref_data: Path) -> None:
    sent = fresh((ref_data / "cot/atak-examples" / f"{name}.cot").read_bytes())
    orig = parse(sent)

    async def scenario() -> None:
        async with server_running(make_config(tmp_path)) as server:
            port = server.ports["tcp"]
            p = await ProtoClient.connect(port)
            await p.negotiate()
            x = await Client.connect(f"tcp://127.0.0.1:{port}")
            y = await Client.connect(f"tcp://127.0.0.1:{port}")
            await x.send(sent)
            got = (await y.recv_until(lambda e: uid_of(e) == orig.get("uid")))[-1]
            raw = y.last_raw
            msg = (await p.recv_until_uid(orig.get("uid", "")))[-1]
        # XML -> server -> XML: attributes (times compared as instants), point, detail verbatim.
        for k in ("uid", "type", "how", "version"):
            assert got.get(k) == orig.get(k)
        for k in ("time", "start", "stale"):
            assert _iso_ms(got.get(k, "")) == _iso_ms(orig.get(k, ""))
        opt, gpt = orig.find("point"), got.find("point")
        assert opt is not None and gpt is not None
        assert {k: float(v) for k, v in gpt.attrib.items()} == {k: float(v) for k, v in opt.attrib.items()}
        od, gd = orig.find("detail"), got.find("detail")
        assert od is not None and gd is not None
        assert [_canon(c) for c in gd] == [_canon(c) for c in od]

        def inner(b: bytes) -> bytes:
            return b.split(b"<detail>", 1)[1].rsplit(b"</detail>", 1)[0]

        assert inner(raw) == inner(sent)  # byte for byte, whitespace included
        # XML -> server -> protobuf, read by takproto: same fields, same detail (order may differ).
        ev = msg.cotEvent
        assert (ev.uid, ev.type, ev.how) == (orig.get("uid"), orig.get("type"), orig.get("how"))
        assert (ev.sendTime, ev.startTime, ev.staleTime) == tuple(_iso_ms(orig.get(k, "")) for k in
                                                                  ("time", "start", "stale"))
        assert [ev.lat, ev.lon, ev.hae, ev.ce, ev.le] == [float(opt.get(k, "")) for k in
                                                          ("lat", "lon", "hae", "ce", "le")]
        frag = ET.fromstring(f"<detail>{ev.detail.xmlDetail}</detail>")
        rebuilt = [*frag, *_typed_elements(ev.detail)]
        assert sorted(_canon(c) for c in rebuilt) == sorted(_canon(c) for c in od)

    run(scenario())
