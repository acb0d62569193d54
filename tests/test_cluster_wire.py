"""What crosses NATS: the payload is a TAK protocol v1 TakMessage that takproto (an outside library)
reads; headers carry groups (any characters), identity, origin and numbering; TTL follows stale."""

from __future__ import annotations

import pytest
import takproto

from kestrel.cluster import wire
from kestrel.cot.connection import encode_for
from kestrel.cot.xml import parse_event
from tests.test_cluster import marker
from tests.test_server_support import sa


def test_payload_is_tak_protocol_read_by_takproto() -> None:
    ev = parse_event(sa("uid-1", "ALPHA"))
    env = wire.Envelope(ev, frozenset({"Blue", "a,b c%"}), "edge1", "n:abcd", 7, "alice smith")
    payload, headers = wire.encode(env, ttl_s=30, fmt="proto")
    msg = takproto.parse_proto(bytearray(b"\xbf" + bytes([len(payload)]) + payload)
                               if len(payload) < 128 else bytearray(b"\xbf\x01\xbf" + payload))
    assert msg.cotEvent.uid == "uid-1" and msg.cotEvent.detail.contact.callsign == "ALPHA"
    assert headers["Nats-TTL"] == "30" and headers["K-Seq"] == "7"
    back = wire.decode(payload, headers)
    assert back.groups == env.groups and back.identity == "alice smith"
    assert (back.origin, back.src, back.seq) == ("edge1", "n:abcd", 7)
    assert (back.event.uid, back.event.type, back.event.stale) == (ev.uid, ev.type, ev.stale)


def test_xml_fallback_for_what_protobuf_cannot_carry() -> None:
    ev = parse_event(marker("m-old"))
    ev.time = -1000  # before 1970: no protobuf form
    payload, headers = wire.encode(wire.Envelope(ev, frozenset({"g"}), "s", "n:1", 1))
    assert headers["K-Fmt"] == "xml" and wire.xml_seed(payload, headers) == {"xml": encode_for("xml", ev)}
    assert wire.decode(payload, headers).event.time == -1000


@pytest.mark.parametrize("headers", [None, {}, {"K-Src": "n:1", "K-Seq": "x", "K-Origin": "s", "K-Groups": "g"},
                                     {"K-Src": "n:1", "K-Seq": "1", "K-Origin": "s", "K-Groups": ""}])
def test_malformed_headers_are_refused(headers: dict[str, str] | None) -> None:
    payload, _ = wire.encode(wire.Envelope(parse_event(marker("m")), frozenset({"g"}), "s", "n:1", 1))
    with pytest.raises(ValueError):
        wire.decode(payload, headers)


def test_subjects_and_ttl() -> None:
    assert wire.stored_subject("hub", "a.b *>c") == wire.stored_subject("hub", "a.b *>c")
    token = wire.stored_subject("hub", "a.b *>c").split(".")[-1]
    assert token.isalnum() and len(wire.stored_subject("hub", "a.b *>c").split(".")) == 4
    assert wire.ttl_seconds(10_500, 10_000) == 1 and wire.ttl_seconds(70_001, 10_000) == 61
    assert wire.ttl_seconds(0, 10_000) == 1 and wire.ttl_seconds(10**15, 0) == wire.MAX_TTL_S
    with pytest.raises(ValueError):
        wire.check_site("hub.1")
