"""CoT XML codec: bytes <-> `Event`.

Goal: parse untrusted CoT safely (see `xmlscan`: no DTD, no entity expansion, bounded size) and keep the
detail *verbatim*: `Event.detail` is the exact byte slice between `<detail ...>` and `</detail>`, so the
server relays it untouched. Unknown `<event>` attributes are kept, in order, in `Event.attrs`.
The encoder writes `<?xml ...?>\\n<event ...>...</event>` (the TAK streaming form; no trailing newline) with
times as ISO-8601 UTC with milliseconds and `Z`.

Limits (documented in docs/cot.md): other children of `<event>` besides `<point>`/`<detail>` are ignored;
`<point>` attributes other than lat/lon/hae/ce/le are dropped; namespace declarations made on `<event>`
stay in `attrs` (re-emitted on encode, not carried by protobuf); time below 1 ms is truncated.
Worst case: O(n) in the event's bytes, n <= max_bytes (default 1 MiB).
"""

from __future__ import annotations

import math
import re

from kestrel.cot import xmlscan
from kestrel.cot.cottime import format_time, parse_time
from kestrel.cot.errors import CotError
from kestrel.cot.event import UNKNOWN, Event, check_point

MAX_EVENT_BYTES = 1 << 20
XML_PROLOG = b'<?xml version="1.0" encoding="UTF-8"?>\n'
_CORE = frozenset(("uid", "type", "time", "start", "stale", "how"))
_TAIL = re.compile(rb"</detail[ \t\r\n]*>[ \t\r\n]*</event[ \t\r\n]*>[ \t\r\n]*\Z")
_UTF8 = frozenset(("utf-8", "utf8", "us-ascii", "ascii"))
_ESC = {ord("&"): "&amp;", ord("<"): "&lt;", ord(">"): "&gt;", ord('"'): "&quot;",
        ord("\n"): "&#10;", ord("\r"): "&#13;", ord("\t"): "&#9;"}


# Characters XML 1.0 cannot carry at all (not even as character references).
XML_INVALID = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")
_SPECIAL = re.compile('[&<>"\x00-\x1f\ud800-\udfff\ufffe\uffff]')


def escape_attr(value: str) -> str:
    """Escape text for a double-quoted XML attribute (whitespace kept exactly via char refs).
    CotError if it holds a character XML cannot represent."""
    if _SPECIAL.search(value) is None:
        return value
    if XML_INVALID.search(value):
        raise CotError(f"character not allowed in XML in {value[:40]!r}")
    return value.translate(_ESC)


def _num(attrs: dict[str, str], key: str, default: float | None) -> float:
    raw = attrs.get(key)
    if raw is None:
        if default is None:
            raise CotError(f"<point> without {key}")
        return default
    try:
        v = float(raw)
    except ValueError:
        raise CotError(f"<point {key}={raw[:30]!r}> is not a number") from None
    if not math.isfinite(v):
        raise CotError(f"<point {key}={raw[:30]!r}> is not finite")
    return v


class _Scan:
    """Callbacks for one `<event>`: root attributes, the `<point>`, the `<detail>` byte span."""

    __slots__ = ("p", "depth", "event", "point", "d_open", "d_close", "encoding", "fast", "stopped")

    def __init__(self, p: xmlscan.expat.XMLParserType, fast: bool) -> None:
        self.p = p
        self.fast = fast  # stop the callbacks at <detail> once <point> is known; find </detail> after
        self.stopped = False
        self.depth = 0
        self.event: list[str] | None = None
        self.point: list[str] | None = None
        self.d_open = -1
        self.d_close = -1
        self.encoding: str | None = None

    def xmldecl(self, _version: str | None, encoding: str | None, _standalone: int) -> None:
        self.encoding = encoding

    def start(self, name: str, attrs: list[str]) -> None:
        d = self.depth
        self.depth = d + 1
        if d == 1:
            if name == "point":
                if self.point is not None:
                    raise CotError("more than one <point>")
                self.point = attrs
            elif name == "detail":
                if self.d_open >= 0:
                    raise CotError("more than one <detail>")
                self.d_open = self.p.CurrentByteIndex
                if self.fast and self.point is not None:
                    self.p.StartElementHandler = None
                    self.p.EndElementHandler = None
                    self.stopped = True
        elif d == 0:
            if name != "event":
                raise CotError(f"root element is <{name[:40]}>, not <event>")
            self.event = attrs

    def end(self, name: str) -> None:
        self.depth -= 1
        if self.depth == 1 and name == "detail":
            self.d_close = self.p.CurrentByteIndex


def _scan(buf: bytes, fast: bool) -> _Scan:
    p = xmlscan.new_parser()
    s = _Scan(p, fast)
    p.XmlDeclHandler = s.xmldecl
    p.StartElementHandler = s.start
    p.EndElementHandler = s.end
    xmlscan.run(p, buf)  # the whole document is still checked by expat, callbacks or not
    return s


def _detail_span(buf: bytes, s: _Scan) -> tuple[int, int] | None:
    """[start, end) of the detail's content; None if the fast scan cannot tell exactly."""
    j = xmlscan.tag_end(buf, s.d_open)
    if buf[j - 1] == 0x2F:  # `<detail/>`
        return (0, 0) if not s.stopped or buf.find(b"<detail", j) < 0 else None
    if not s.stopped:
        return j + 1, s.d_close
    k = buf.rfind(b"</detail")
    if k <= j or _TAIL.match(buf, k) is None or buf.find(b"</detail", j, k) >= 0:
        return None  # something after </detail>, or a nested/second <detail>: use the full scan
    return j + 1, k


def parse_event(data: bytes, max_bytes: int = MAX_EVENT_BYTES) -> Event:
    """One CoT XML document (optional `<?xml?>` prolog) -> Event. Raises CotError on invalid input."""
    if len(data) > max_bytes:
        raise CotError(f"event of {len(data)} bytes exceeds the {max_bytes}-byte cap")
    buf = bytes(data).lstrip(b" \t\r\n")
    if not buf:
        raise CotError("empty event")
    s = _scan(buf, True)
    span = _detail_span(buf, s) if s.d_open >= 0 else (0, 0)
    if span is None:
        s = _scan(buf, False)
        span = _detail_span(buf, s)
        assert span is not None
    if s.event is None:  # pragma: no cover - expat always reports the root
        raise CotError("no <event>")
    ea = s.event
    attrs = {ea[i]: ea[i + 1] for i in range(0, len(ea), 2)}
    for key in ("uid", "type", "time", "start", "stale"):
        if not attrs.get(key):
            raise CotError(f"<event> without {key}")
    if s.point is None:
        raise CotError("<event> without <point>")
    pa = s.point
    pt = {pa[i]: pa[i + 1] for i in range(0, len(pa), 2)}
    detail = buf[span[0] : span[1]]
    if detail:
        enc = (s.encoding or "").lower()
        if buf[:2] in (b"\xff\xfe", b"\xfe\xff"):
            enc = "utf-16"
        if enc and enc not in _UTF8:
            try:
                detail = detail.decode(enc).encode("utf-8")
            except (LookupError, UnicodeError):
                raise CotError(f"detail not decodable as {enc[:20]}") from None
    t = parse_time(attrs["time"])
    start = t if attrs["start"] == attrs["time"] else parse_time(attrs["start"])
    lat, lon = _num(pt, "lat", None), _num(pt, "lon", None)
    hae, ce, le = _num(pt, "hae", UNKNOWN), _num(pt, "ce", UNKNOWN), _num(pt, "le", UNKNOWN)
    bad = check_point(lat, lon, hae, ce, le)
    if bad is not None:
        raise CotError(f"<point {bad}>")
    return Event(
        uid=attrs["uid"],
        type=attrs["type"],
        time=t,
        start=start,
        stale=parse_time(attrs["stale"]),
        how=attrs.get("how", ""),
        lat=lat,
        lon=lon,
        hae=hae,
        ce=ce,
        le=le,
        detail=detail,
        attrs={k: v for k, v in attrs.items() if k not in _CORE},
    )


def encode_event(ev: Event, prolog: bool = True) -> bytes:
    """Event -> CoT XML bytes (with the `<?xml?>` prolog and newline unless `prolog=False`).
    `how` is omitted when empty; `version` defaults to 2.0; extra attrs follow the core ones."""
    e = escape_attr
    extra = "".join(f' {k}="{e(v)}"' for k, v in ev.attrs.items() if k != "version")
    how = f' how="{e(ev.how)}"' if ev.how else ""
    head = (
        f'<event version="{e(ev.attrs.get("version", "2.0"))}" uid="{e(ev.uid)}" type="{e(ev.type)}"'
        f'{how} time="{format_time(ev.time)}" start="{format_time(ev.start)}"'
        f' stale="{format_time(ev.stale)}"{extra}>'
        f'<point lat="{ev.lat!r}" lon="{ev.lon!r}" hae="{ev.hae!r}" ce="{ev.ce!r}" le="{ev.le!r}"/>'
    ).encode()
    # one join, one allocation: a 900 KB detail copied once, not once per `+`
    if ev.detail:
        return b"".join((XML_PROLOG if prolog else b"", head, b"<detail>", ev.detail, b"</detail></event>"))
    return b"".join((XML_PROLOG if prolog else b"", head, b"<detail/></event>"))
