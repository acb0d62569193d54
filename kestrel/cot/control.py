"""TAK control messages a server answers itself: ping/pong and the protocol negotiation (v, q, r).

Goal: build the exact events TAK Server sends (ATAK-CIV "TAK Protocol" text; TAK Server's
StreamingProtoBufOrCoTProtocol): offer `t-x-takp-v` with `<TakControl><TakProtocolSupport version="1"/>`,
response `t-x-takp-r` with `<TakResponse status="true|false"/>` re-using the offer's uid, both stale after
60 s; pong `t-x-c-t-r` uid `takPong` how `h-g-i-g-o` stale after 20 s. And read a request's version.
Worst case: O(n) in the request's detail bytes.
"""

from __future__ import annotations

from kestrel.cot import xmlscan
from kestrel.cot.errors import CotError
from kestrel.cot.event import Event

PING = "t-x-c-t"
PONG = "t-x-c-t-r"
OFFER = "t-x-takp-v"
REQUEST = "t-x-takp-q"
RESPONSE = "t-x-takp-r"
CONTROL_TYPES = frozenset((PING, PONG, OFFER, REQUEST, RESPONSE))
SUPPORTED_VERSIONS = ("1",)


def _control_event(uid: str, type_: str, how: str, now: float, stale_s: float, detail: bytes) -> Event:
    ms = int(now * 1000)
    return Event(uid=uid, type=type_, time=ms, start=ms, stale=ms + int(stale_s * 1000), how=how,
                 lat=0.0, lon=0.0, hae=0.0, ce=999999.0, le=999999.0, detail=detail,
                 attrs={"version": "2.0"})


def offer(uid: str, now: float) -> Event:
    """The server's `t-x-takp-v` offer of TAK protocol version 1."""
    versions = b"".join(b'<TakProtocolSupport version="%s"/>' % v.encode() for v in SUPPORTED_VERSIONS)
    return _control_event(uid, OFFER, "m-g", now, 60.0, b"<TakControl>" + versions + b"</TakControl>")


def response(uid: str, accepted: bool, now: float) -> Event:
    """The server's `t-x-takp-r` answer to a request (same uid as the offer)."""
    status = b"true" if accepted else b"false"
    detail = b'<TakControl><TakResponse status="' + status + b'"/></TakControl>'
    return _control_event(uid, RESPONSE, "m-g", now, 60.0, detail)


def pong(now: float) -> Event:
    """The server's `t-x-c-t-r` answer to a ping, as TAK Server sends it."""
    return _control_event("takPong", PONG, "h-g-i-g-o", now, 20.0, b"")


def requested_version(ev: Event) -> str | None:
    """`version` of `<detail><TakControl><TakRequest version=...>`, or None if absent/malformed."""
    if b"TakRequest" not in ev.detail:
        return None
    found: list[str] = []
    path: list[str] = []
    p = xmlscan.new_parser()

    def start(name: str, attrs: list[str]) -> None:
        if not found and name == "TakRequest" and path == ["detail", "TakControl"]:
            given = dict(zip(attrs[::2], attrs[1::2], strict=True))
            found.append(given.get("version", ""))
        path.append(name)

    def end(_name: str) -> None:
        path.pop()

    p.StartElementHandler = start
    p.EndElementHandler = end
    try:
        xmlscan.run(p, b"<detail>" + ev.detail + b"</detail>")
    except CotError:
        return None
    return found[0].strip() if found and found[0].strip() else None
