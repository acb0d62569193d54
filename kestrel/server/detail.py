"""What the router reads from an event's detail: who sent it, who it is for, what it links to.

The detail arrives as the verbatim inner XML already accepted by `kestrel.cot`'s expat-based parser;
this reads it again with the *same* parser family and settings (`kestrel.cot.xmlscan`: expat, no
DTD, no entity expansion, nothing fetched, no namespace processing, no depth limit), so everything
the codec accepts can be inspected here: a detail the codec relays is never "unreadable" to the
router. A second parser with different rules (lxml rejects undeclared prefixes like `<foo:bar/>`
and nesting deeper than 256) would let a sender hide `<marti><dest>` from the router and turn an
addressed message into a broadcast.

Fail closed: if the detail cannot be scanned and mentions `marti`, the result says `unreadable`,
and the router delivers it to nobody (counted and logged). Element names are compared literally
(`marti`, `dest`, `contact`, `link`; a prefixed `x:marti` is a different element, as for TAK).
Worst case: O(len(detail)), one expat pass, a Python callback per element start/end, only when a
cheap substring test says there is something to find.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from kestrel.cot import xmlscan
from kestrel.cot.errors import CotError


@dataclass(slots=True)
class Addressing:
    callsign: str | None = None  # <contact callsign=…>
    dest_callsigns: list[str] = field(default_factory=list)  # <marti><dest callsign=…/></marti>
    dest_uids: list[str] = field(default_factory=list)  # <marti><dest uid=…/></marti>
    parent_link: bool = False  # <link relation="p-p"> : an item someone placed, not a client's own SA
    link_uids: list[str] = field(default_factory=list)  # <link uid=…> (targets of a t-x-d-d delete)
    unreadable: str | None = None  # why a detail that mentions `marti` could not be read (fail closed)
    marti: bool = False  # a <marti> element: addressed, even when no <dest> in it is usable (fail closed)

    @property
    def addressed(self) -> bool:
        return bool(self.dest_callsigns or self.dest_uids)


_EMPTY = Addressing()


def _attr(attrs: list[str], name: str) -> str | None:
    """Value of `name` in expat's flat ordered attribute list [n0, v0, n1, v1, ...]."""
    for i in range(0, len(attrs) - 1, 2):
        if attrs[i] == name:
            return attrs[i + 1]
    return None


def inspect(detail: bytes, want_links: bool = False) -> Addressing:
    """Read contact/marti/link facts from the inner XML of `<detail>`.

    A detail that cannot be scanned yields nothing, unless it mentions `marti`: then `unreadable`
    is set and the caller must not deliver the event to anyone.
    """
    if not detail or (b"<contact" not in detail and b"marti" not in detail and not want_links):
        return _EMPTY
    out = Addressing()
    p = xmlscan.new_parser()
    depth = 0
    in_marti = 0  # depth of the open <marti> directly under <detail>, 0 when none is open

    def start(name: str, attrs: list[str]) -> None:
        nonlocal depth, in_marti
        depth += 1
        if depth == 2:  # a direct child of <detail>
            if name == "contact":
                cs = _attr(attrs, "callsign")
                if cs:
                    out.callsign = cs
            elif name == "marti":
                in_marti = depth
                out.marti = True
            elif name == "link":
                if _attr(attrs, "relation") == "p-p":
                    out.parent_link = True
                uid = _attr(attrs, "uid")
                if uid and want_links:
                    out.link_uids.append(uid)
        elif in_marti and name == "dest":  # any <dest> inside <marti> (stricter than marti/dest only)
            cs, uid = _attr(attrs, "callsign"), _attr(attrs, "uid")
            if cs:
                out.dest_callsigns.append(cs)
            if uid:
                out.dest_uids.append(uid)

    def end(_name: str) -> None:
        nonlocal depth, in_marti
        if depth == in_marti:
            in_marti = 0
        depth -= 1

    p.StartElementHandler = start
    p.EndElementHandler = end
    try:
        xmlscan.run(p, b"".join((b"<detail>", detail, b"</detail>")))
    except CotError as exc:
        if b"marti" in detail:
            return Addressing(unreadable=str(exc)[:120])
        return _EMPTY
    return out
