"""Connection state machine: offer, ping/pong, negotiation (v, q, r) and the switch to 0xBF framing,
error accounting. Control replies are read back with lxml and takproto (outside decoders)."""

from __future__ import annotations

from pathlib import Path

import takproto
from hypothesis import given, settings
from hypothesis import strategies as st
from lxml import etree

from kestrel.cot.connection import Connection, encode_for
from kestrel.cot.errors import ProtocolError
from kestrel.cot.event import Event
from kestrel.cot.xml import encode_event, parse_event
from tests.test_cot_helpers import examples

NOW = 1_700_000_000.0


def _ev(uid: str, type_: str = "a-f-G-U-C", detail: bytes = b"") -> Event:
    ms = int(NOW * 1000)
    return Event(uid=uid, type=type_, time=ms, start=ms, stale=ms + 60_000, how="m-g", detail=detail)


def _request(version: str, uid: str = "neg") -> bytes:
    return encode_event(_ev(uid, "t-x-takp-q", b'<TakControl><TakRequest version="%s"/></TakControl>'
                            % version.encode()))


def _xml_events(data: bytes) -> list[etree._Element]:
    parts = [p for p in data.split(b"</event>") if p.strip()]
    return [etree.fromstring(p.split(b"?>", 1)[-1] + b"</event>") for p in parts]


def _started() -> tuple[Connection, str]:
    c = Connection()
    c.start(NOW)
    (offer,) = _xml_events(c.data_to_send())
    assert offer.get("type") == "t-x-takp-v"
    support = offer.find("detail/TakControl/TakProtocolSupport")
    assert support is not None and support.get("version") == "1"
    return c, offer.get("uid") or ""


def test_start_offers_once() -> None:
    c, _ = _started()
    c.start(NOW + 1)
    assert c.data_to_send() == b""


def test_ping_is_answered_to_the_sender_and_not_routed() -> None:
    c, _ = _started()
    sa = _ev("A", detail=b"<contact callsign='A'/>")
    out = c.receive_data(encode_event(_ev("A-ping", "t-x-c-t")) + encode_event(sa), NOW)
    assert out == [parse_event(encode_event(sa))]
    (pong,) = _xml_events(c.data_to_send())
    assert (pong.get("type"), pong.get("uid"), pong.get("how")) == ("t-x-c-t-r", "takPong", "h-g-i-g-o")
    assert c.pings == 1 and c.events_in == 1 and c.errors == 0


def test_negotiation_switches_both_directions() -> None:
    c, offer_uid = _started()
    assert c.receive_data(_request("1", offer_uid), NOW + 30) == []
    (resp,) = _xml_events(c.data_to_send())
    assert resp.get("type") == "t-x-takp-r" and resp.get("uid") == offer_uid
    status = resp.find("detail/TakControl/TakResponse")
    assert status is not None and status.get("status") == "true"
    assert c.format == "proto"
    # inbound: 0xBF-framed protobuf, a ping and a real SA (as takproto, an outside encoder, frames them)
    sa = parse_event(encode_event(_ev("B", detail=b'<contact callsign="B"/><remarks>r</remarks>')))
    ping = bytes(takproto.xml2proto(encode_event(_ev("B-ping", "t-x-c-t")), takproto.TAKProtoVer.STREAM))
    mine = encode_for("proto", sa)
    got = c.receive_data(ping + mine, NOW + 31)
    assert len(got) == 1 and isinstance(got[0], Event) and got[0].uid == "B"
    # outbound: the pong is now 0xBF-framed protobuf
    pong = takproto.parse_proto(bytearray(c.data_to_send()))
    assert pong.cotEvent.type == "t-x-c-t-r" and pong.cotEvent.uid == "takPong"
    # a second request after the switch is consumed silently
    assert c.receive_data(encode_for("proto", parse_event(_request("1"))), NOW + 32) == []
    assert c.data_to_send() == b""


def test_request_in_the_same_chunk_as_following_protobuf() -> None:
    c, uid = _started()
    sa = parse_event(encode_event(_ev("B")))
    got = c.receive_data(_request("1", uid) + encode_for("proto", sa), NOW + 1)
    assert [e.uid for e in got if isinstance(e, Event)] == ["B"] and c.format == "proto"


def test_request_after_window_is_refused() -> None:
    c, _ = _started()
    c.receive_data(_request("1"), NOW + 61)
    (resp,) = _xml_events(c.data_to_send())
    status = resp.find("detail/TakControl/TakResponse")
    assert status is not None and status.get("status") == "false" and c.format == "xml"
    # the stream goes on in XML
    assert [e.uid for e in c.receive_data(encode_event(_ev("A")), NOW + 62) if isinstance(e, Event)] == ["A"]


def test_unsupported_version_refused_then_retry_within_extended_window() -> None:
    c, _ = _started()
    c.receive_data(_request("2"), NOW + 50)
    (resp,) = _xml_events(c.data_to_send())
    assert resp.find("detail/TakControl/TakResponse").get("status") == "false"  # type: ignore[union-attr]
    c.receive_data(_request("1"), NOW + 100)  # past the first 60 s, inside the extension
    (resp,) = _xml_events(c.data_to_send())
    assert resp.find("detail/TakControl/TakResponse").get("status") == "true"  # type: ignore[union-attr]
    assert c.format == "proto"


def test_request_before_offer_or_malformed_is_refused() -> None:
    c = Connection()
    c.receive_data(_request("1"), NOW)
    (resp,) = _xml_events(c.data_to_send())
    assert resp.find("detail/TakControl/TakResponse").get("status") == "false"  # type: ignore[union-attr]
    c, _ = _started()
    c.receive_data(encode_event(_ev("q", "t-x-takp-q", b"<TakControl/>")), NOW)
    (resp,) = _xml_events(c.data_to_send())
    assert resp.find("detail/TakControl/TakResponse").get("status") == "false"  # type: ignore[union-attr]


def test_bad_event_is_skipped_and_counted() -> None:
    c, _ = _started()
    bomb = (b'<?xml version="1.0"?><!DOCTYPE e [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;">]>'
            b"<event><detail>&b;</detail></event>")
    data = encode_event(_ev("A")) + b"<event uid='broken'><point/></event>" + bomb + encode_event(_ev("B"))
    out = c.receive_data(data, NOW)
    assert [type(x).__name__ for x in out] == ["Event", "ProtocolError", "ProtocolError", "Event"]
    errs = [x for x in out if isinstance(x, ProtocolError)]
    assert all(not e.fatal for e in errs) and "DOCTYPE" in errs[1].reason
    assert c.errors == 2 and c.events_in == 2 and not c.closed


def test_ten_megabytes_without_end_is_fatal_once() -> None:
    c = Connection(max_event_bytes=1 << 20)
    c.receive_data(encode_event(_ev("A")), NOW)
    fatal = []
    chunk = b"<event uid='x'>" + b"A" * 65_000
    for _ in range(160):  # ~10 MB
        for item in c.receive_data(chunk, NOW):
            assert isinstance(item, ProtocolError)
            fatal.append(item)
    assert len(fatal) == 1 and fatal[0].fatal and c.closed and c.errors == 1


def test_proto_stream_errors() -> None:
    c, uid = _started()
    c.receive_data(_request("1", uid), NOW)
    c.data_to_send()
    out = c.receive_data(b"\xbf\x03\x12\x01\xff" + encode_for("proto", _ev("A")), NOW)  # garbage payload
    assert isinstance(out[0], ProtocolError) and not out[0].fatal
    assert isinstance(out[1], Event) and out[1].uid == "A"
    out = c.receive_data(b"\xbf" + b"\xff" * 11, NOW)  # bad length varint: framing is lost
    assert len(out) == 1 and isinstance(out[0], ProtocolError) and out[0].fatal and c.closed
    assert c.receive_data(encode_for("proto", _ev("B")), NOW) == []


def test_proto_xml_garbage_after_switch_is_fatal() -> None:
    c, uid = _started()
    c.receive_data(_request("1", uid), NOW)
    out = c.receive_data(encode_event(_ev("A")), NOW)
    assert len(out) == 1 and isinstance(out[0], ProtocolError) and out[0].fatal


def test_examples_through_both_formats(ref_data: Path) -> None:
    xml_client = Connection()
    proto_client, uid = _started()
    proto_client.receive_data(_request("1", uid), NOW)
    for path in examples(ref_data):
        ev = parse_event(path.read_bytes())
        (a,) = xml_client.receive_data(encode_for("xml", ev), NOW)
        (b,) = proto_client.receive_data(encode_for("proto", ev), NOW)
        assert isinstance(a, Event) and isinstance(b, Event)
        assert a == ev
        assert (b.uid, b.type, b.time, b.lat, b.lon) == (ev.uid, ev.type, ev.time, ev.lat, ev.lon)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.binary(max_size=300), max_size=6), st.booleans())
def test_arbitrary_bytes_never_raise(chunks: list[bytes], proto: bool) -> None:
    c, uid = _started()
    if proto:
        c.receive_data(_request("1", uid), NOW)
    for chunk in chunks:
        for item in c.receive_data(chunk, NOW):
            assert isinstance(item, Event | ProtocolError)
    c.data_to_send()
    assert c.errors >= 0


@settings(max_examples=100, deadline=None)
@given(st.lists(st.integers(min_value=1, max_value=400), min_size=1, max_size=30))
def test_any_chunking_of_a_mixed_stream_gives_the_same_events(sizes: list[int]) -> None:
    data = (b"<auth><cot username='u'/></auth>" + encode_event(_ev("A")) + b"\n"
            + encode_event(_ev("P", "t-x-c-t")) + encode_event(_ev("B", detail=b"<remarks>x</remarks>")))
    c, _ = _started()
    got: list[Event | ProtocolError] = []
    pos = 0
    i = 0
    while pos < len(data):
        n = sizes[i % len(sizes)]
        got += c.receive_data(data[pos : pos + n], NOW)
        pos += n
        i += 1
    assert [e.uid for e in got if isinstance(e, Event)] == ["A", "B"] and c.pings == 1 and c.errors == 0


def test_unnegotiated_tak_frames_are_read_replies_stay_xml() -> None:
    """pytak with TAK_PROTO=1 sends takproto stream frames without negotiating, and reads XML."""
    c, _ = _started()
    sa = encode_event(_ev("A", detail=b'<contact callsign="A"/>'))
    frames = (bytes(takproto.xml2proto(sa, takproto.TAKProtoVer.STREAM))
              + bytes(takproto.xml2proto(encode_event(_ev("A-ping", "t-x-c-t")), takproto.TAKProtoVer.STREAM)))
    got = c.receive_data(frames[:7], NOW) + c.receive_data(frames[7:] + encode_event(_ev("B")), NOW)
    assert [e.uid for e in got if isinstance(e, Event)] == ["A", "B"]
    assert got[0].detail == b'<contact callsign="A"/>'  # type: ignore[union-attr]
    (pong,) = _xml_events(c.data_to_send())
    assert pong.get("type") == "t-x-c-t-r" and c.format == "xml" and c.unnegotiated == 2


def test_pytak_generated_events_stream_in() -> None:
    """pytak (an outside CoT generator) writes microsecond times and ` />`; all of it comes through."""
    import datetime as dt

    import pytak

    raw = [pytak.gen_cot(lat=38.5, lon=-77.25, uid=f"pytak-{i}", cot_type="a-f-G-U-C", callsign=f"P{i}",
                         stale=120) for i in range(3)]
    c = Connection()
    got = c.receive_data(b"".join(r for r in raw if r), NOW)
    assert [e.uid for e in got if isinstance(e, Event)] == ["pytak-0", "pytak-1", "pytak-2"]
    for r, ev in zip(raw, got, strict=True):
        assert r is not None and isinstance(ev, Event)
        root = etree.fromstring(r)
        when = dt.datetime.strptime(root.get("time") or "", "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=dt.UTC)
        epoch = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
        assert ev.time == (when - epoch) // dt.timedelta(milliseconds=1)  # truncated to the millisecond
        assert (ev.lat, ev.lon) == (38.5, -77.25) and b'callsign="P' in ev.detail
