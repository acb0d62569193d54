"""The same TakMessage <-> Event job as kestrel.cot.proto, done by the `protobuf` package (upb) with
takproto's generated classes: the baseline `bench/cot.py --codec` compares the hand-written codec to.

Decode = ParseFromString, copy the set fields into the dict `message_to_event` takes, the same
XML-invalid check on every string; encode = `event_to_message`, fill a TakMessage, serialize. The
Event <-> dict mapping is shared, so the ratio is the wire codec's alone.
"""

from __future__ import annotations

from typing import Any

from takproto.proto import takmessage_pb2

from kestrel.cot.errors import CotError
from kestrel.cot.event import Event
from kestrel.cot.proto import event_to_message, message_to_event
from kestrel.cot.xml import XML_INVALID

_SUBS = ("contact", "group", "precisionLocation", "status", "takv", "track")


def _fields(m: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for fd, v in m.ListFields():
        if fd.type == fd.TYPE_MESSAGE:
            out[fd.name] = _fields(v)
        else:
            if isinstance(v, str) and XML_INVALID.search(v):
                raise CotError(f"{fd.name}: a character XML cannot carry")
            out[fd.name] = v
    return out


def decode_payload(payload: bytes) -> Event:
    msg = takmessage_pb2.TakMessage()
    try:
        msg.ParseFromString(payload)
    except Exception as exc:  # google.protobuf.message.DecodeError
        raise CotError(str(exc)) from None
    return message_to_event(_fields(msg))


def _fill(m: Any, d: dict[str, Any]) -> None:
    for k, v in d.items():
        if isinstance(v, dict):
            _fill(getattr(m, k), v)
        elif v not in ("", 0, 0.0) or k in ("lat", "lon", "hae", "ce", "le"):
            setattr(m, k, v)


def encode_payload(ev: Event) -> bytes:
    d = event_to_message(ev)
    cot = d["cotEvent"]
    cot.pop("caveat", None)  # TAK Server's extra fields are not in ATAK's .proto
    cot.pop("releaseableTo", None)
    msg = takmessage_pb2.TakMessage()
    _fill(msg, d)
    return bytes(msg.SerializeToString())
