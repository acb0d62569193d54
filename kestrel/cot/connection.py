"""Per-connection CoT state machine (sans-I/O): framing, ping/pong and TAK protocol negotiation.

Goal: the server's I/O shell only moves bytes. It calls `receive_data(bytes, now)` and routes the Events
returned; it writes `data_to_send()` to the same socket right away; it encodes routed messages with
`encode_for(conn.format, event)` *when it writes them* (the format changes when negotiation succeeds).

Behaviour (TAK Server / ATAK-CIV "TAK Protocol" text):
- `start(now)` queues the `t-x-takp-v` offer (once per connection) and opens a `negotiation_window`.
- `t-x-takp-q` for version 1 inside the window -> `t-x-takp-r status=true` queued in XML, then both
  directions switch to `0xBF <varint len>` framing. Unsupported version -> `status=false` and the window is
  extended from that moment (the text requires it, so the client can retry); outside the window or before
  `start` -> `status=false`.
- ping `t-x-c-t` -> a `t-x-c-t-r` pong queued to this sender only; the ping is not returned (never relayed).
  Other control types (pong, v, r, a q after the switch) are consumed, not routed.
- A leading `<auth>` element is dropped (its content is never kept or logged).
- Interop: in XML mode a message starting with 0xBF (never valid XML) is read as a TAK stream frame —
  pytak with TAK_PROTO=1 sends that way without negotiating; replies stay XML (what it reads).
- A bad event -> ProtocolError(fatal=False), counted, the stream goes on. Framing lost or the pending
  message over `max_event_bytes` -> ProtocolError(fatal=True) once; the connection is `closed` and ignores
  further input.
`now` is wall-clock seconds since the Unix epoch (time.time()); it stamps the control events.
Worst case: O(n) in bytes received; memory <= max_event_bytes + the last chunk.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable

from kestrel.cot import control
from kestrel.cot.errors import CotError, ProtocolError
from kestrel.cot.event import Event
from kestrel.cot.framing import ProtoFramer, XmlFramer, split_auth
from kestrel.cot.proto import decode_mesh, decode_message, encode_stream, message_to_event
from kestrel.cot.xml import MAX_EVENT_BYTES, encode_event, parse_event

__all__ = ["FORMATS", "Connection", "CotError", "Event", "ProtocolError", "decode_datagram", "encode_for"]
FORMATS = ("xml", "proto")


def encode_for(fmt: str, event: Event) -> bytes:
    """Event fully framed for a stream in `fmt`: "xml" (`<?xml?>` + event) or "proto" (`0xBF <len>` +
    TakMessage). Raises CotError if the event cannot be represented (e.g. a time before 1970 in proto)."""
    if fmt == "xml":
        return encode_event(event)
    if fmt == "proto":
        return encode_stream(event)
    raise ValueError(f"unknown format {fmt!r}")


def decode_datagram(data: bytes) -> Event:
    """One UDP datagram: a CoT XML event, or a TAK mesh message (`0xBF 0x01 0xBF` + TakMessage)."""
    if data[:1] == b"\xbf":
        return decode_mesh(data)
    if data.lstrip(b" \t\r\n\xef\xbb\xbf")[:1] == b"<":
        return parse_event(data)
    raise CotError("datagram is neither CoT XML nor a TAK protocol message")


class Connection:
    """State of one streaming client connection. See the module docstring for the contract."""

    def __init__(self, max_event_bytes: int = MAX_EVENT_BYTES, negotiation_window: float = 60.0) -> None:
        self.max_event_bytes = max_event_bytes
        self.negotiation_window = negotiation_window
        self.format = "xml"
        self.closed = False
        self.events_in = 0  # application events returned
        self.errors = 0  # bad events skipped + fatal errors
        self.pings = 0
        self.controls = 0  # other control messages consumed (v, q, r, pongs, auth)
        self.unnegotiated = 0  # 0xBF frames received before/without negotiation (accepted)
        self.frames = 0  # complete messages taken off the stream (events, controls, bad ones)
        # Optional admission check on each raw frame before it is decoded (the server's rate limit):
        # False -> the frame is skipped undecoded and counted in `gated`.
        self.gate: Callable[[bytes], bool] | None = None
        self.gated = 0
        self._framer: XmlFramer | ProtoFramer = XmlFramer(max_event_bytes)
        self._out = bytearray()
        self._offer_uid: str | None = None
        self._window_end = float("-inf")

    # -- outbound ---------------------------------------------------------------------------------------
    def start(self, now: float) -> None:
        """Queue the `t-x-takp-v` offer and open the negotiation window (no-op after the first call)."""
        if self._offer_uid is not None:
            return
        self._offer_uid = str(uuid.uuid4())
        self._window_end = now + self.negotiation_window
        self._queue(control.offer(self._offer_uid, now))

    def data_to_send(self) -> bytes:
        """Control bytes queued by the state machine (offer, response, pongs), already framed."""
        out = bytes(self._out)
        self._out.clear()
        return out

    def _queue(self, ev: Event) -> None:
        self._out += encode_for(self.format, ev)

    # -- inbound ----------------------------------------------------------------------------------------
    def receive_data(self, data: bytes, now: float) -> list[Event | ProtocolError]:
        """Feed received bytes; returns application events to route and ProtocolErrors (see module doc)."""
        if self.closed:
            return []
        out: list[Event | ProtocolError] = []
        self._framer.feed(data)
        while True:
            fr = self._framer
            proto = self.format == "proto"
            try:
                if not proto and isinstance(fr, XmlFramer) and fr.tak_frame_next():
                    proto = True  # TAK protocol without negotiation: accepted inbound, replies stay XML
                    frame = fr.next_tak_frame()
                    self.unnegotiated += frame is not None
                else:
                    frame = fr.next_frame()
            except CotError as e:
                self.closed = True
                self.errors += 1
                out.append(ProtocolError(str(e), fatal=True))
                return out
            if frame is None:
                return out
            self.frames += 1
            if self.gate is not None and not self.gate(frame):
                self.gated += 1
                continue
            try:
                ev = self._decode(frame, proto)
            except CotError as e:
                self.errors += 1
                out.append(ProtocolError(str(e), fatal=False))
                continue
            if ev is None:
                continue
            if ev.type in control.CONTROL_TYPES:
                self._control(ev, now)
                continue
            self.events_in += 1
            out.append(ev)

    def discard(self) -> None:
        """The stream is gone: drop what is buffered (a closed client keeps nothing big) and refuse more."""
        self.closed = True
        self._framer = XmlFramer(self.max_event_bytes)
        self._out.clear()

    @property
    def pending(self) -> int:
        """Bytes of an unfinished message held (leading whitespace is dropped, so > 0 means an event
        has begun and not ended: what an incomplete-event timeout measures)."""
        return self._framer.pending

    def _decode(self, frame: bytes, proto: bool) -> Event | None:
        if proto:
            msg = decode_message(frame)
            if "cotEvent" not in msg and "takControl" in msg:
                self.controls += 1  # TakControl-only message: nothing to route
                return None
            return message_to_event(msg)
        had_auth, rest = split_auth(frame)
        if had_auth:
            self.controls += 1
            if not rest.strip():
                return None
        return parse_event(rest, self.max_event_bytes)

    def _control(self, ev: Event, now: float) -> None:
        if ev.type == control.PING:
            self.pings += 1
            self._queue(control.pong(now))
            return
        self.controls += 1
        if ev.type != control.REQUEST or self.format != "xml":
            return
        version = control.requested_version(ev)
        in_window = self._offer_uid is not None and now <= self._window_end
        accepted = in_window and version in control.SUPPORTED_VERSIONS
        self._queue(control.response(self._offer_uid or ev.uid, accepted, now))
        if accepted:
            rest = self._framer.take_rest() if isinstance(self._framer, XmlFramer) else b""
            self.format = "proto"
            self._framer = ProtoFramer(self.max_event_bytes)
            self._framer.feed(rest)
        elif in_window:
            self._window_end = now + self.negotiation_window
