"""kestrel.cot — sans-I/O Cursor-on-Target core: the `Event` record, the CoT XML codec, TAK protocol v1
(protobuf) codec and framings, stream framers, and the per-connection state machine. See docs/cot.md."""

from kestrel.cot.connection import Connection, decode_datagram, encode_for
from kestrel.cot.errors import CotError, ProtocolError
from kestrel.cot.event import Event
from kestrel.cot.xml import encode_event, parse_event

__all__ = ["Connection", "CotError", "Event", "ProtocolError", "decode_datagram", "encode_event",
           "encode_for", "parse_event"]
