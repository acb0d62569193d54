"""TAK protocol v1: our protobuf against takproto/google-protobuf (outside codecs), ATAK examples through
XML -> protobuf -> XML, the typed-detail rules, and hostile protobuf."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest
import takproto
from google.protobuf.internal.encoder import _VarintBytes
from hypothesis import given, settings
from hypothesis import strategies as st
from lxml import etree
from takproto.proto import TakMessage, takmessage_pb2

from kestrel.cot import protowire
from kestrel.cot.connection import decode_datagram
from kestrel.cot.errors import CotError
from kestrel.cot.event import Event
from kestrel.cot.proto import (
    CLASSES,
    SCHEMA,
    decode_mesh,
    decode_payload,
    encode_mesh,
    encode_message,
    encode_payload,
    encode_stream,
)
from kestrel.cot.typed_detail import merge_detail, split_detail
from kestrel.cot.xml import encode_event, parse_event
from tests.test_cot_helpers import (
    canon,
    detail_children,
    examples,
    original,
    original_detail_children,
    same_detail_modulo_typed_order,
)


def test_every_atak_example_round_trips_through_protobuf(ref_data: Path) -> None:
    moved = 0
    for path in examples(ref_data):
        ev = parse_event(path.read_bytes())
        back = decode_mesh(encode_mesh(ev))
        out = etree.fromstring(encode_event(back))
        orig = original(path)
        assert dict(out.attrib) == dict(orig.attrib), path.name
        p0, p1 = orig.find("point"), out.find("point")
        assert p0 is not None and p1 is not None
        assert {k: float(v) for k, v in p0.attrib.items()} == {k: float(v) for k, v in p1.attrib.items()}
        d1 = out.find("detail")
        assert d1 is not None
        assert same_detail_modulo_typed_order(list(canon(d1)[3]), original_detail_children(path)), path.name
        xml_detail, typed = split_detail(ev.detail)
        moved += len(typed)
        assert b"<contact" not in xml_detail.encode() or "contact" not in typed
    assert moved >= 8  # every example has a <contact callsign>, which must leave the XML


def _expect_same(ev: Event, msg: TakMessage) -> None:
    c = msg.cotEvent
    assert (c.uid, c.type, c.how) == (ev.uid, ev.type, ev.how)
    assert (c.sendTime, c.startTime, c.staleTime) == (ev.time, ev.start, ev.stale)
    assert (c.lat, c.lon, c.hae, c.ce, c.le) == (ev.lat, ev.lon, ev.hae, ev.ce, ev.le)
    # What google-protobuf sees, merged the way detail.proto says, equals our detail.
    d = c.detail
    typed = {}
    for field in ("contact", "group", "precisionLocation", "status", "takv", "track"):
        if d.HasField(field):
            sub = getattr(d, field)
            typed[field] = {f.name: v for f, v in sub.ListFields()}
    assert detail_children(merge_detail(d.xmlDetail, typed)) == detail_children(
        merge_detail(*split_detail(ev.detail)))


def test_our_bytes_decode_with_takproto(ref_data: Path) -> None:
    for path in examples(ref_data):
        ev = parse_event(path.read_bytes())
        _expect_same(ev, takproto.parse_proto(bytearray(encode_mesh(ev))))
        _expect_same(ev, takproto.parse_proto(bytearray(encode_stream(ev))))
        msg = takproto.parse_proto(bytearray(encode_mesh(ev)))
        assert msg.cotEvent.detail.contact.callsign == etree.fromstring(
            b"<d>" + ev.detail + b"</d>").find("contact").get("callsign")


def test_takproto_encodings_decode_with_ours(ref_data: Path) -> None:
    for path in examples(ref_data):
        raw = path.read_bytes()
        for ver in (takproto.TAKProtoVer.MESH, takproto.TAKProtoVer.STREAM):
            theirs = bytes(takproto.xml2proto(raw, ver))
            msg = takproto.parse_proto(bytearray(theirs))
            if ver == takproto.TAKProtoVer.MESH:
                ev = decode_datagram(theirs)
            else:
                length, pos = protowire.decode_varint(theirs, 1)
                assert pos + length == len(theirs)
                ev = decode_payload(theirs[pos:])
            _expect_same(ev, msg)
            # takproto's own time conversion, not ours, gives the same milliseconds (±1: float rounding)
            assert abs(ev.time - parse_event(raw).time) <= 1


def test_our_bytes_equal_takprotos_generated_classes() -> None:
    """Our descriptor table against takproto's generated *_pb2 (ATAK's .proto): the same bytes."""
    msg = TakMessage()
    c = msg.cotEvent
    c.type, c.uid, c.how, c.sendTime, c.lat, c.hae = "a-f-G", "u-1", "m-g", 1608148774914, -12.5, -0.0
    c.detail.xmlDetail = "<remarks>é</remarks>"
    c.detail.status.battery = 4000000000
    c.detail.track.speed = 0.0
    ours = encode_message({"cotEvent": {
        "type": "a-f-G", "uid": "u-1", "how": "m-g", "sendTime": 1608148774914, "lat": -12.5, "hae": -0.0,
        "detail": {"xmlDetail": "<remarks>é</remarks>", "status": {"battery": 4000000000},
                   "track": {"speed": 0.0}}}})
    assert ours == msg.SerializeToString(deterministic=True)
    # every field of ATAK's .proto is in our table, with the same number and type
    for name, fields in SCHEMA.items():
        theirs = takmessage_pb2.DESCRIPTOR.pool.FindMessageTypeByName(
            f"atakmap.commoncommo.protobuf.v1.{name}")
        for f in theirs.fields:
            assert fields[f.number][0] == f.name, (name, f.name)
            assert CLASSES[name].DESCRIPTOR.fields_by_number[f.number].type == f.type, (name, f.name)


@settings(max_examples=300, deadline=None)
@given(st.integers(min_value=0, max_value=2**64 - 1))
def test_varint_matches_google(n: int) -> None:
    raw = protowire.encode_varint(n)
    assert raw == _VarintBytes(n)
    assert protowire.decode_varint(raw + b"\x00", 0) == (n, len(raw))


# -- typed detail rules (detail.proto + commoncommo, plus our lossless rule) -------------------------
@pytest.mark.parametrize(
    ("detail", "moved"),
    [
        (b'<contact callsign="A" endpoint="*:-1:stcp"/>', {"contact"}),
        (b'<contact callsign="A"/><contact callsign="B"/>', set()),  # duplicates: neither moves
        (b'<contact callsign="A" phone="1"/>', set()),  # unmapped attribute
        (b'<contact callsign="A"><x/></contact>', set()),  # child element
        (b'<contact callsign="A"> </contact>', set()),  # text
        (b'<contact endpoint="x"/>', set()),  # callsign is required
        (b'<contact callsign="A" endpoint=""/>', set()),  # empty optional would not come back
        (b'<__group name="Cyan" role="Team Member"/>', {"group"}),
        (b'<__group name="Cyan"/>', set()),
        (b'<precisionlocation geopointsrc="GPS" altsrc="DTED0"/>', {"precisionLocation"}),
        (b"<precisionlocation altsrc='???'/>", set()),
        (b'<status battery="85"/>', {"status"}),
        (b'<status battery="085"/>', set()),
        (b"<status battery='85'></status>", {"status"}),
        (b'<status battery="-1"/>', set()),
        (b'<status battery="99999999999"/>', set()),
        (b'<takv device="Pixel" platform="ATAK-CIV" os="33" version="4.10"/>', {"takv"}),
        (b'<takv device="Pixel" platform="ATAK-CIV" os="33"/>', set()),
        (b'<track speed="1.5" course="270.25"/>', {"track"}),
        (b'<track speed="1.50" course="270.25"/>', set()),
        (b'<track speed="nan" course="0.0"/>', set()),
        (b'<x:contact xmlns:x="u" callsign="A"/>', set()),
        # the exact (expat) path: the name also occurs nested / in a comment / lxml refuses the prefix
        (b'<a><contact callsign="nested"/></a><contact callsign="A"/>', {"contact"}),
        (b'<!-- <contact callsign="c"/> --><contact callsign="A"/>', {"contact"}),
        (b"<a>" * 300 + b"</a>" * 300 + b'<contact callsign="A"/><track speed="1.0" course="2.0"></track>',
         {"contact", "track"}),  # deeper than libxml2's default limit
        (b'<a><contact callsign="only-nested"/></a>', set()),
    ],
)
def test_typed_fields_move_only_when_exact(detail: bytes, moved: set[str]) -> None:
    body = b"\n  <remarks>keep</remarks>\n  " + detail + b"\n  <link uid='l' relation='p-p'/>\n"
    xml_detail, typed = split_detail(body)
    assert set(typed) == moved
    assert "<remarks>keep</remarks>" in xml_detail and "<link uid='l' relation='p-p'/>" in xml_detail
    merged = merge_detail(xml_detail, typed)
    assert sorted(detail_children(merged)) == sorted(detail_children(body))
    ev = Event(uid="u", type="a-f-G", time=1, start=1, stale=2, detail=body)
    back = decode_payload(encode_payload(ev))
    assert sorted(detail_children(back.detail)) == sorted(detail_children(body))


def test_xml_detail_wins_over_a_duplicate_typed_field() -> None:
    merged = merge_detail('<contact callsign="fromxml"/>', {"contact": {"callsign": "typed"}})
    assert detail_children(merged) == [("contact", (("callsign", "fromxml"),), "", ())]


def test_untouched_parts_stay_byte_identical() -> None:
    body = b"<remarks a='1'  b=\"2\">x &amp; y</remarks>\n<contact callsign='A'/>\n<!--c--><z/>"
    xml_detail, typed = split_detail(body)
    assert xml_detail == "<remarks a='1'  b=\"2\">x &amp; y</remarks>\n<!--c--><z/>"
    assert typed == {"contact": {"callsign": "A"}}


# -- hostile protobuf --------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("payload", "words"),
    [
        # wire-level damage: protobuf's DecodeError, mapped to CotError
        (b"\x12" + b"\xff" * 11, "malformed TakMessage"),  # length varint longer than 10 bytes
        (b"\x12\xff\xff", "malformed TakMessage"),  # truncated
        (b"\x12\x05\x0a\x01", "malformed TakMessage"),  # length past the end
        (b"\x12\x02\x00\x00", "malformed TakMessage"),  # field number 0
        (b"\x12\x03\x2a\x01\xff", "malformed TakMessage"),  # bad UTF-8 in a proto3 string
        (b"\x12\x02\x0b\x00", "malformed TakMessage"),  # a group that never ends
        # CotEvent.lat (double) sent as varint-wire: protobuf keeps it as an unknown field, so no lat
        (b"\x12\x02\x50\x00", "without uid"),
        (b"", "without cotEvent"),
        (b"\x12\x00", "without uid"),
        (b"\x12\x07\x2a\x01u\x0a\x02\x01a", "not allowed"),  # a control character in type
        (b"\x12\x0d\x2a\x01u\x0a\x01a\x7a\x05\x0a\x03<x>", "malformed XML"),  # bad xmlDetail
        (b"\x12\x10\x2a\x01u\x0a\x01a\x30" + b"\xff" * 8 + b"\x7f", "9999"),  # sendTime 2**63-1
    ],
)
def test_bad_protobuf_gives_cot_error(payload: bytes, words: str) -> None:
    with pytest.raises(CotError, match=words):
        decode_payload(payload)


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=200))
def test_garbage_protobuf_never_escapes_as_another_exception(data: bytes) -> None:
    try:
        decode_payload(data)
    except CotError:
        pass
    try:
        decode_datagram(b"\xbf\x01\xbf" + data)
    except CotError:
        pass


def test_a_known_field_with_another_wire_type_is_skipped() -> None:
    # uid "u", type "a", then lat (field 10) as a varint 5: skipped as unknown, as protobuf requires
    ev = decode_payload(b"\x12\x08\x2a\x01u\x0a\x01a\x50\x05")
    assert (ev.uid, ev.type, ev.lat) == ("u", "a", 0.0)


def test_datagrams() -> None:
    ev = Event(uid="u", type="a-f-G", time=5, start=5, stale=9, how="m-g", lat=1.0, lon=2.0,
               detail=b'<contact callsign="C"/>')
    assert decode_datagram(encode_mesh(ev)).detail == b'<contact callsign="C"/>'
    assert decode_datagram(b"\n" + encode_event(ev)).uid == "u"
    for bad, words in ((b"\xbf\x02\xbf" + encode_mesh(ev)[3:], "version 2"), (b"\xbf\x01\x00", "second"),
                       (b"hello", "neither"), (b"", "neither"), (b"\xbf", "magic")):
        with pytest.raises(CotError, match=words):
            decode_datagram(bad)


def test_negative_time_cannot_be_protobuf() -> None:
    with pytest.raises(CotError, match="1970"):
        encode_payload(Event(uid="u", type="a", time=-1, start=0, stale=0))


# -- property: Event -> protobuf -> Event --------------------------------------------------------------
_s = st.text(st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), min_size=1, max_size=12)
_f = st.floats(allow_nan=False, allow_infinity=False)
_attr = st.text(st.characters(codec="ascii", categories=("L", "N")), max_size=6)
_kid = st.one_of(
    st.builds(lambda c: f'<contact callsign="{c}"/>', _attr),
    st.builds(lambda n, r: f'<__group name="{n}" role="{r}"/>', _attr, _attr),
    st.builds(lambda b: f'<status battery="{b}"/>', st.integers(0, 100)),
    st.builds(lambda s, c: f'<track speed="{s!r}" course="{c!r}"/>', _f, _f),
    st.builds(lambda v: f"<remarks>{v}</remarks>", _attr),
    st.just("<link uid='x' relation='p-p'/>"),
)


@settings(max_examples=200, deadline=None)
@given(_s, _s, st.integers(0, 253402300799998), st.floats(-90, 90), st.floats(-180, 180), st.lists(_kid, max_size=5))
def test_property_protobuf_round_trip(uid: str, typ: str, t: int, lat: float, lon: float,
                                      kids: list[str]) -> None:
    detail = "".join(kids).encode()
    ev = Event(uid=uid, type=typ, time=t, start=t, stale=t + 1, how="m-g", lat=lat, lon=lon, detail=detail)
    back = decode_payload(encode_payload(ev))
    assert (back.uid, back.type, back.time, back.stale, back.lat, back.lon) == (uid, typ, t, t + 1, lat, lon)
    assert same_detail_modulo_typed_order(detail_children(back.detail), detail_children(detail))
    msg = TakMessage()
    msg.ParseFromString(encode_payload(ev))
    assert msg.cotEvent.uid == uid and struct.pack("<d", msg.cotEvent.lat) == struct.pack("<d", lat)


def test_protobuf_hop_is_stable_after_the_first(ref_data: Path) -> None:
    for path in examples(ref_data):
        once = encode_payload(decode_payload(encode_payload(parse_event(path.read_bytes()))))
        assert encode_payload(decode_payload(once)) == once, path.name


def test_event_attributes_through_protobuf() -> None:
    ev = Event(uid="u", type="a-f-G", time=1, start=1, stale=2, how="m-g",
               attrs={"version": "2.0", "access": "Unclassified", "qos": "1-r-c", "opex": "e-x",
                      "caveat": "FOUO", "releasableTo": "USA", "custom": "dropped"})
    back = decode_payload(encode_payload(ev))
    assert back.attrs == {k: v for k, v in ev.attrs.items() if k != "custom"}
    msg = TakMessage()
    msg.ParseFromString(encode_payload(ev))  # takproto's schema has no caveat: skipped as unknown
    assert (msg.cotEvent.access, msg.cotEvent.qos, msg.cotEvent.opex) == ("Unclassified", "1-r-c", "e-x")
