"""TAK protocol version 1: the protobuf payload (`TakMessage`) and its two framings.

Schema: ATAK-CIV `takproto/*.proto` (package atakmap.commoncommo.protobuf.v1) plus TAK Server's extra
CotEvent fields, as a table (`SCHEMA`, data) turned once at import into a proto3 FileDescriptorProto and
message classes of the `protobuf` package (no protoc, no generated code). The package does the wire
work: `bench/cot.py --codec` measured it faster than our former hand-written codec.
Framing (ATAK-CIV "TAK Protocol" text): stream `0xBF <varint payload length> <payload>`; mesh (UDP)
`0xBF <varint version=1> 0xBF <payload>`.
Mapping Event <-> CotEvent: time/start/stale <-> sendTime/startTime/staleTime (ms); access/qos/opex (and
TAK Server's caveat/releasableTo) <-> Event.attrs; detail <-> Detail (see `typed_detail`).
The CoT `version` attribute is not carried by protobuf (decoders restore the default "2.0").
Garbage in: any malformed payload (protobuf's DecodeError, bad UTF-8, a string XML cannot carry, a
missing uid/type, out-of-range point or time) is a CotError the caller counts and skips.
Worst case: O(n) in the payload bytes; the frame size is capped by the framer / one datagram.
"""

from __future__ import annotations

from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.message import DecodeError, EncodeError, Message

from kestrel.cot.cottime import MAX_MS
from kestrel.cot.errors import CotError
from kestrel.cot.event import Event, check_point
from kestrel.cot.protowire import decode_varint, encode_varint
from kestrel.cot.typed_detail import has_typed, merge_detail, split_detail
from kestrel.cot.xml import XML_INVALID

MAGIC = 0xBF
MESH_HEADER = b"\xbf\x01\xbf"
PROTO_VERSION = 1
PACKAGE = "atakmap.commoncommo.protobuf.v1"

Field = tuple[str, str, str | None]  # (name, kind, sub-message or None)
SCHEMA: dict[str, dict[int, Field]] = {
    "TakMessage": {1: ("takControl", "message", "TakControl"), 2: ("cotEvent", "message", "CotEvent")},
    "TakControl": {1: ("minProtoVersion", "uint32", None), 2: ("maxProtoVersion", "uint32", None),
                   3: ("contactUid", "string", None)},
    "CotEvent": {
        1: ("type", "string", None), 2: ("access", "string", None), 3: ("qos", "string", None),
        4: ("opex", "string", None), 5: ("uid", "string", None), 6: ("sendTime", "uint64", None),
        7: ("startTime", "uint64", None), 8: ("staleTime", "uint64", None), 9: ("how", "string", None),
        10: ("lat", "double", None), 11: ("lon", "double", None), 12: ("hae", "double", None),
        13: ("ce", "double", None), 14: ("le", "double", None), 15: ("detail", "message", "Detail"),
        # TAK Server's takserver-protobuf adds these two; ATAK-CIV decoders skip them as unknown.
        16: ("caveat", "string", None), 17: ("releaseableTo", "string", None),
    },
    "Detail": {1: ("xmlDetail", "string", None), 2: ("contact", "message", "Contact"),
               3: ("group", "message", "Group"), 4: ("precisionLocation", "message", "PrecisionLocation"),
               5: ("status", "message", "Status"), 6: ("takv", "message", "Takv"),
               7: ("track", "message", "Track")},
    "Contact": {1: ("endpoint", "string", None), 2: ("callsign", "string", None)},
    "Group": {1: ("name", "string", None), 2: ("role", "string", None)},
    "PrecisionLocation": {1: ("geopointsrc", "string", None), 2: ("altsrc", "string", None)},
    "Status": {1: ("battery", "uint32", None)},
    "Takv": {1: ("device", "string", None), 2: ("platform", "string", None), 3: ("os", "string", None),
             4: ("version", "string", None)},
    "Track": {1: ("speed", "double", None), 2: ("course", "double", None)},
}
_KINDS = {
    "string": descriptor_pb2.FieldDescriptorProto.TYPE_STRING,
    "uint32": descriptor_pb2.FieldDescriptorProto.TYPE_UINT32,
    "uint64": descriptor_pb2.FieldDescriptorProto.TYPE_UINT64,
    "double": descriptor_pb2.FieldDescriptorProto.TYPE_DOUBLE,
    "message": descriptor_pb2.FieldDescriptorProto.TYPE_MESSAGE,
}


def _file_descriptor() -> descriptor_pb2.FileDescriptorProto:
    """SCHEMA -> one proto3 file (all fields optional-by-default scalars / sub-messages, no repeats)."""
    fdp = descriptor_pb2.FileDescriptorProto(name="kestrel/takproto.proto", package=PACKAGE, syntax="proto3")
    for msg, fields in SCHEMA.items():
        mdp = fdp.message_type.add(name=msg)
        for num, (name, kind, sub) in sorted(fields.items()):
            f = mdp.field.add(name=name, number=num, type=_KINDS[kind], json_name=name,
                              label=descriptor_pb2.FieldDescriptorProto.LABEL_OPTIONAL)
            if sub is not None:
                f.type_name = f".{PACKAGE}.{sub}"
    return fdp


# A private pool: takproto's generated classes (same package, same names) live in the default one.
_POOL = descriptor_pool.DescriptorPool()
_POOL.Add(_file_descriptor())
CLASSES: dict[str, type[Message]] = {
    m: message_factory.GetMessageClass(_POOL.FindMessageTypeByName(f"{PACKAGE}.{m}")) for m in SCHEMA
}
TakMessage = CLASSES["TakMessage"]

# Event.attrs key <-> CotEvent field for the optional string attributes protobuf carries.
_ATTR_FIELDS = (("access", "access"), ("qos", "qos"), ("opex", "opex"), ("caveat", "caveat"),
                ("releasableTo", "releaseableTo"))
_DETAIL_FIELDS = ("contact", "group", "precisionLocation", "status", "takv", "track")


def event_to_message(ev: Event) -> dict[str, Any]:
    """Event -> TakMessage dict (typed detail fields split out). CotError if not representable."""
    for name, t in (("time", ev.time), ("start", ev.start), ("stale", ev.stale)):
        if t < 0:
            raise CotError(f"{name} before 1970 cannot be sent as TAK protobuf")
    cot: dict[str, Any] = {
        "type": ev.type, "uid": ev.uid, "sendTime": ev.time, "startTime": ev.start,
        "staleTime": ev.stale, "how": ev.how, "lat": ev.lat, "lon": ev.lon, "hae": ev.hae,
        "ce": ev.ce, "le": ev.le,
    }
    for attr, field in _ATTR_FIELDS:
        if attr in ev.attrs:
            cot[field] = ev.attrs[attr]
    xml_detail, typed = split_detail(ev.detail)
    if xml_detail or has_typed(typed):
        cot["detail"] = {"xmlDetail": xml_detail, **typed}
    return {"cotEvent": cot}


def _fill(m: Any, d: dict[str, Any]) -> None:
    m.SetInParent()  # a present sub-message stays present even when empty (TAK detail extensions)
    for k, v in d.items():
        if isinstance(v, dict):
            _fill(getattr(m, k), v)
        elif v is not None:
            setattr(m, k, v)


def encode_message(msg: dict[str, Any]) -> bytes:
    """TakMessage dict -> bytes (fields in number order, proto3 defaults omitted, -0.0 kept)."""
    pb = TakMessage()
    try:
        _fill(pb, msg)
        return pb.SerializeToString(deterministic=True)
    except (ValueError, TypeError, EncodeError) as exc:  # out-of-range int, lone surrogate, ...
        raise CotError(f"cannot encode TakMessage: {exc}") from None


def encode_payload(ev: Event) -> bytes:
    """Event -> serialized TakMessage (no header)."""
    return encode_message(event_to_message(ev))


def encode_stream(ev: Event) -> bytes:
    """Event -> `0xBF <varint len> <TakMessage>` for a negotiated streaming connection."""
    payload = encode_payload(ev)
    return b"\xbf" + encode_varint(len(payload)) + payload


def encode_mesh(ev: Event) -> bytes:
    """Event -> `0xBF 0x01 0xBF <TakMessage>` for a UDP datagram."""
    return MESH_HEADER + encode_payload(ev)


def _to_dict(m: Any, where: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for fd, v in m.ListFields():  # only fields present (proto3: non-default scalars, set sub-messages)
        if fd.message_type is not None:
            out[fd.name] = _to_dict(v, fd.name)
        else:
            if isinstance(v, str) and XML_INVALID.search(v):
                raise CotError(f"{where}.{fd.name}: character not allowed")
            out[fd.name] = v
    return out


def decode_message(payload: bytes | memoryview) -> dict[str, Any]:
    """Serialized TakMessage -> dict of the fields present. CotError on malformed protobuf (truncated,
    bad varint, field 0, groups, bad UTF-8, ...), or on a string XML cannot carry (the event may be
    relayed to XML clients). Unknown fields (and known ones with another wire type) are skipped, as
    protobuf requires."""
    pb = TakMessage()
    try:
        pb.ParseFromString(bytes(payload))
    except (DecodeError, RuntimeError, ValueError) as exc:  # RuntimeError: upb's nesting limit
        raise CotError(f"malformed TakMessage protobuf ({exc})") from None
    return _to_dict(pb, "TakMessage")


def message_to_event(msg: dict[str, Any]) -> Event:
    """TakMessage dict -> Event (typed detail merged back). CotError when there is no usable CotEvent."""
    cot = msg.get("cotEvent")
    if cot is None:
        raise CotError("TakMessage without cotEvent")
    for key in ("uid", "type"):
        if not cot.get(key):
            raise CotError(f"CotEvent without {key}")
    for key in ("sendTime", "startTime", "staleTime"):
        if cot.get(key, 0) > MAX_MS:
            raise CotError(f"CotEvent.{key} beyond year 9999")
    point = [cot.get(k, 0.0) for k in ("lat", "lon", "hae", "ce", "le")]
    bad = check_point(*point)
    if bad is not None:
        raise CotError(f"CotEvent {bad}")
    detail = cot.get("detail") or {}
    typed = {k: detail[k] for k in _DETAIL_FIELDS if k in detail}
    attrs = {"version": "2.0"}
    for attr, field in _ATTR_FIELDS:
        if cot.get(field):
            attrs[attr] = cot[field]
    return Event(
        uid=cot["uid"], type=cot["type"], time=cot.get("sendTime", 0), start=cot.get("startTime", 0),
        stale=cot.get("staleTime", 0), how=cot.get("how", ""), lat=cot.get("lat", 0.0),
        lon=cot.get("lon", 0.0), hae=cot.get("hae", 0.0), ce=cot.get("ce", 0.0), le=cot.get("le", 0.0),
        detail=merge_detail(detail.get("xmlDetail", ""), typed), attrs=attrs,
    )


def decode_payload(payload: bytes | memoryview) -> Event:
    """Serialized TakMessage -> Event."""
    return message_to_event(decode_message(payload))


def decode_mesh(datagram: bytes) -> Event:
    """`0xBF <version> 0xBF <payload>` -> Event; only version 1 is understood."""
    if len(datagram) < 3 or datagram[0] != MAGIC:
        raise CotError("not a TAK protocol datagram (no 0xBF magic)")
    version, pos = decode_varint(datagram, 1)
    if pos >= len(datagram) or datagram[pos] != MAGIC:
        raise CotError("TAK mesh header without its second 0xBF")
    if version != PROTO_VERSION:
        raise CotError(f"TAK protocol version {version} not supported")
    return decode_payload(memoryview(datagram)[pos + 1 :])
