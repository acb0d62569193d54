"""Stream framers: every split point gives the same frames, caps are fatal once, work stays O(n)."""

from __future__ import annotations

import pytest

from kestrel.cot.errors import CotError
from kestrel.cot.event import Event
from kestrel.cot.framing import ProtoFramer, XmlFramer, split_auth
from kestrel.cot.proto import encode_stream
from kestrel.cot.xml import encode_event, parse_event


def _ev(uid: str, detail: bytes = b"") -> Event:
    return Event(uid=uid, type="a-f-G-U-C", time=1_600_000_000_000, start=1_600_000_000_000,
                 stale=1_600_000_060_000, how="m-g", lat=1.5, lon=2.5, detail=detail)


def _drain(f: XmlFramer | ProtoFramer) -> list[bytes]:
    out = []
    while (frame := f.next_frame()) is not None:
        out.append(frame)
    return out


STREAM = (
    b"<auth><cot username='u' password='secret' uid='x'/></auth>"
    + encode_event(_ev("A", b"<contact callsign='A'/>"))
    + b"\r\n  "
    + encode_event(_ev("B"), prolog=False)
    + b"\n"
    + encode_event(_ev("C", b"<remarks>a &lt; b</remarks>"))
)


def _uids(frames: list[bytes]) -> list[str]:
    return [parse_event(split_auth(f)[1]).uid for f in frames]


def test_xml_split_at_every_byte_boundary() -> None:
    whole = XmlFramer(1 << 20)
    whole.feed(STREAM)
    expected = _drain(whole)
    assert _uids(expected) == ["A", "B", "C"]
    assert split_auth(expected[0])[0] and not split_auth(expected[1])[0]
    for k in range(len(STREAM) + 1):
        f = XmlFramer(1 << 20)
        f.feed(STREAM[:k])
        got = _drain(f)
        f.feed(STREAM[k:])
        got += _drain(f)
        assert got == expected, k


def test_xml_byte_by_byte_scans_linearly() -> None:
    f = XmlFramer(1 << 20)
    got = []
    for i in range(len(STREAM)):
        f.feed(STREAM[i : i + 1])
        got += _drain(f)
    assert _uids(got) == ["A", "B", "C"]
    assert f.scanned <= len(STREAM) + 8 * len(STREAM)  # each byte looked at O(1) times


def test_ten_megabytes_without_end_tag_is_fatal_once_at_the_cap() -> None:
    cap = 1 << 20
    f = XmlFramer(cap)
    chunk = b"<event uid='x'>" + b"A" * 65_521
    fed = 0
    errors = 0
    while fed < 10 * cap:
        f.feed(chunk)
        fed += len(chunk)
        try:
            assert f.next_frame() is None
        except CotError as e:
            assert "cap" in str(e)
            errors += 1
            break
    assert errors == 1
    assert cap < fed <= cap + len(chunk)  # detected as soon as the cap is crossed
    assert f.scanned <= fed + 8 * (fed // len(chunk) + 1)  # O(n): no rescans


def test_many_small_feeds_of_a_huge_event_stay_linear() -> None:
    f = XmlFramer(1 << 22)
    body = b"<event>" + b"x" * 2_000_000
    for i in range(0, len(body), 1000):
        f.feed(body[i : i + 1000])
        assert f.next_frame() is None
    f.feed(b"</event>")
    assert f.next_frame() == body + b"</event>"
    assert f.scanned <= len(body) + 8 + 8 * (len(body) // 1000 + 2)


def test_whitespace_only_does_not_trip_the_cap() -> None:
    f = XmlFramer(100)
    f.feed(b"\n" * 500)
    assert f.next_frame() is None
    f.feed(encode_event(_ev("A"))[:90])
    assert f.next_frame() is None


def test_complete_frame_over_cap_is_fatal() -> None:
    data = encode_event(_ev("A", b"<r>" + b"x" * 500 + b"</r>"))
    f = XmlFramer(len(data) - 1)
    f.feed(data)
    with pytest.raises(CotError, match="cap"):
        f.next_frame()


def test_split_auth_variants() -> None:
    assert split_auth(b"  <auth/><event/>") == (True, b"<event/>")
    assert split_auth(b"<auth><cot/></auth>\n<?xml version='1.0'?><event/>")[1].startswith(b"\n<?xml")
    assert split_auth(b"<event/>") == (False, b"<event/>")


PROTO = b"".join(encode_stream(_ev(u, b"<contact callsign='%s'/>" % u.encode())) for u in "ABC")
PROTO_WS = encode_stream(_ev("A")) + b"\n" + encode_stream(_ev("B"))


def test_proto_split_at_every_byte_boundary() -> None:
    whole = ProtoFramer(1 << 20)
    whole.feed(PROTO)
    expected = _drain(whole)
    assert len(expected) == 3
    for k in range(len(PROTO) + 1):
        f = ProtoFramer(1 << 20)
        f.feed(PROTO[:k])
        got = _drain(f)
        f.feed(PROTO[k:])
        assert got + _drain(f) == expected, k
    f = ProtoFramer(1 << 20)
    f.feed(PROTO_WS)
    assert len(_drain(f)) == 2


@pytest.mark.parametrize(
    ("data", "words"),
    [
        (b"<event/>", "expected 0xBF"),
        (b"\xbf" + b"\xff" * 10 + b"\x01", "longer than 10 bytes"),
        (b"\xbf\xff\xff\xff\xff\xff\xff\xff\xff\xff\x7f", "64 bits"),
        (b"\xbf\x81\x80\x40", "cap"),  # 1 MiB + 1: refused from the header, before the payload
    ],
)
def test_proto_fatal_framing_errors(data: bytes, words: str) -> None:
    f = ProtoFramer(1 << 20)
    f.feed(data)
    with pytest.raises(CotError, match=words):
        f.next_frame()


def test_proto_incomplete_header_waits() -> None:
    f = ProtoFramer(1 << 20)
    f.feed(b"\xbf\x80\x80")
    assert f.next_frame() is None and f.pending == 3


def test_whitespace_flood_byte_by_byte_stays_linear() -> None:
    f = XmlFramer(1 << 20)
    n = 50_000
    for _ in range(n):
        f.feed(b" ")
        assert not f.tak_frame_next()
        assert f.next_frame() is None
    assert f.pending == 0 and f.scanned <= 2 * n
    f.feed(encode_event(_ev("A")))
    assert not f.tak_frame_next() and _uids([f.next_frame() or b""]) == ["A"]
