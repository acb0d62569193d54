"""What the router reads from an event's detail: who sent it, who it is for, what it links to.

The detail arrives as the verbatim inner XML already accepted by `kestrel.cot`'s safe parser; this
reads it again (only when a cheap substring test says there is something to find) with a parser
that never loads a DTD, never expands entities and never touches the network. O(len(detail)).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from lxml import etree

_PARSER = etree.XMLParser(
    resolve_entities=False, no_network=True, load_dtd=False, dtd_validation=False, huge_tree=False,
    remove_comments=True, remove_pis=True,
)


@dataclass(slots=True)
class Addressing:
    callsign: str | None = None  # <contact callsign=…>
    dest_callsigns: list[str] = field(default_factory=list)  # <marti><dest callsign=…/></marti>
    dest_uids: list[str] = field(default_factory=list)  # <marti><dest uid=…/></marti>
    parent_link: bool = False  # <link relation="p-p"> : an item someone placed, not a client's own SA
    link_uids: list[str] = field(default_factory=list)  # <link uid=…> (targets of a t-x-d-d delete)

    @property
    def addressed(self) -> bool:
        return bool(self.dest_callsigns or self.dest_uids)


_EMPTY = Addressing()


def inspect(detail: bytes, want_links: bool = False) -> Addressing:
    """Read contact/marti/link facts from the inner XML of `<detail>`; bad XML yields nothing."""
    if not detail or (b"<contact" not in detail and b"<marti" not in detail and not want_links):
        return _EMPTY
    try:
        root = etree.fromstring(b"<detail>" + detail + b"</detail>", _PARSER)
    except etree.XMLSyntaxError:
        return _EMPTY
    out = Addressing()
    for child in root:
        tag = child.tag
        if tag == "contact":
            cs = child.get("callsign")
            if cs:
                out.callsign = cs
        elif tag == "marti":
            for dest in child.iter("dest"):
                cs, uid = dest.get("callsign"), dest.get("uid")
                if cs:
                    out.dest_callsigns.append(cs)
                if uid:
                    out.dest_uids.append(uid)
        elif tag == "link":
            if child.get("relation") == "p-p":
                out.parent_link = True
            uid = child.get("uid")
            if uid and want_links:
                out.link_uids.append(uid)
    return out
