"""Fuzzing the codec edge (issue 12) with Hypothesis: whatever bytes arrive, the CoT XML and TAK
protobuf decoders, the stream state machine and the router's detail reader either return a valid
result or raise `CotError` (nothing else), and every Event they return has a point on the Earth
(lat ∈ [-90, 90], lon ∈ [-180, 180], finite hae/ce/le).

Inputs: raw bytes; mutations (flip, insert, delete, splice) of ATAK's own example CoT; TakMessages
built by Google's protobuf runtime (takproto's generated classes, an outside encoder) with any
doubles, NaN and infinities included. The suite runs a few thousand cases; `bench/fuzz.py` runs
the same properties with KESTREL_FUZZ_EXAMPLES=100000 or more.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from takproto.proto import TakMessage

from kestrel.cot.connection import Connection, decode_datagram
from kestrel.cot.errors import CotError, ProtocolError
from kestrel.cot.event import Event
from kestrel.cot.proto import decode_payload
from kestrel.cot.xml import parse_event
from kestrel.server import detail as detail_mod

EXAMPLES = int(os.environ.get("KESTREL_FUZZ_EXAMPLES", "600"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
ATAK = Path(__file__).resolve().parent / "data" / "cot" / "atak-examples"
SEEDS = [p.read_bytes() for p in sorted(ATAK.glob("*.cot"))]


def _on_earth(ev: Event) -> None:
    assert -90.0 <= ev.lat <= 90.0 and -180.0 <= ev.lon <= 180.0, (ev.lat, ev.lon)
    assert all(math.isfinite(v) for v in (ev.hae, ev.ce, ev.le)), (ev.hae, ev.ce, ev.le)


def _decode_xml(data: bytes) -> None:
    try:
        ev = parse_event(data)
    except CotError:
        return
    _on_earth(ev)


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    """An ATAK example with a few byte-level edits (the shapes real corruption takes)."""
    buf = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(1, 6))):
        op = draw(st.sampled_from(("flip", "insert", "delete", "splice", "number")))
        i = draw(st.integers(0, max(0, len(buf) - 1)))
        if op == "flip" and buf:
            buf[i] ^= 1 << draw(st.integers(0, 7))
        elif op == "insert":
            buf[i:i] = draw(st.binary(min_size=1, max_size=16))
        elif op == "delete":
            del buf[i : i + draw(st.integers(1, 32))]
        elif op == "splice":
            other = draw(st.sampled_from(SEEDS))
            j = draw(st.integers(0, len(other) - 1))
            buf[i:i] = other[j : j + draw(st.integers(1, 200))]
        else:  # a number where a coordinate was
            k = buf.find(draw(st.sampled_from((b'lat="', b'lon="', b'hae="', b"lat='", b"lon='", b"hae='"))))
            if k >= 0:
                k += 5
                end = k
                while end < len(buf) and buf[end] not in b"\"'":
                    end += 1
                value = draw(st.sampled_from(("1e308", "-1e309", "nan", "inf", "91.5", "-180.0001", "181",
                                              "90", "-90", "180", "0x10", "1_0", " 5 ", "")))
                buf[k:end] = value.encode()
    return bytes(buf)


@FUZZ
@given(st.binary(max_size=2048))
def test_xml_decoder_on_raw_bytes(data: bytes) -> None:
    _decode_xml(data)
    _decode_xml(b"<event " + data)


@FUZZ
@given(mutated())
def test_xml_decoder_on_mutated_atak_examples(data: bytes) -> None:
    _decode_xml(data)


_double = st.one_of(st.floats(), st.sampled_from((math.nan, math.inf, -math.inf, 1e308, -1e308, 90.0, 180.0)))


@st.composite
def tak_messages(draw: st.DrawFn) -> bytes:
    """A TakMessage serialized by Google's protobuf runtime, fields drawn freely."""
    m = TakMessage()
    ev = m.cotEvent
    ev.type = draw(st.sampled_from(("a-f-G-U-C", "b-m-p-s-m", "t-x-c-t", "", "a")))
    ev.uid = draw(st.text(max_size=12))
    ev.sendTime, ev.startTime, ev.staleTime = (draw(st.integers(0, 2**64 - 1)) for _ in range(3))
    ev.lat, ev.lon, ev.hae, ev.ce, ev.le = (draw(_double) for _ in range(5))
    ev.how = draw(st.text(max_size=6))
    if draw(st.booleans()):
        ev.detail.xmlDetail = draw(st.text(max_size=60))
        ev.detail.contact.callsign = draw(st.text(max_size=8))
    data = m.SerializeToString()
    if draw(st.booleans()) and data:  # and then damage it
        i = draw(st.integers(0, len(data) - 1))
        data = data[:i] + draw(st.binary(max_size=8)) + data[i + draw(st.integers(0, 4)) :]
    return data


def _decode_proto(data: bytes) -> None:
    try:
        ev = decode_payload(data)
    except CotError:
        return
    _on_earth(ev)


@FUZZ
@given(tak_messages())
def test_protobuf_decoder_on_google_built_messages(data: bytes) -> None:
    _decode_proto(data)
    try:
        ev = decode_datagram(b"\xbf\x01\xbf" + data)
    except CotError:
        return
    _on_earth(ev)


@FUZZ
@given(st.binary(max_size=1024))
def test_protobuf_decoder_on_raw_bytes(data: bytes) -> None:
    _decode_proto(data)


@FUZZ
@given(st.lists(st.one_of(st.binary(max_size=64), mutated(), st.just(b"\xbf"), st.just(b"</event>")), max_size=8))
def test_connection_never_raises_on_any_chunks(chunks: list[bytes]) -> None:
    conn = Connection(max_event_bytes=4096)
    conn.start(1.0)
    for chunk in chunks:
        for item in conn.receive_data(chunk, 2.0):
            if not isinstance(item, ProtocolError):
                _on_earth(item)
        conn.data_to_send()


@FUZZ
@given(st.one_of(st.binary(max_size=512), mutated().map(lambda b: b[b.find(b"<detail") + 8 :])))
def test_router_detail_reader_never_raises(detail: bytes) -> None:
    addr = detail_mod.inspect(detail, want_links=True)
    assert addr.unreadable is None or b"marti" in detail
