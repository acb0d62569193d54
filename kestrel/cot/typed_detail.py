"""TAK protocol v1 typed detail fields: move elements out of the XML detail and merge them back.

Goal (detail.proto rules, ATAK-CIV commoncommo behaviour): `<contact>`, `<__group>`, `<precisionlocation>`,
`<status>`, `<takv>`, `<track>` go into the typed `Detail` sub-messages *only* when the whole element maps:
exactly one such direct child of `<detail>`, no child elements or text, every required attribute present,
no attribute outside the typed form, values convertible. Anything else stays, untouched, in `xmlDetail`.
Kestrel adds one rule so that relaying through protobuf is lossless: a value is moved only if writing it
back gives the same text (battery as a plain decimal; speed/course as Python's shortest float repr; an
optional endpoint only if non-empty). Everything not moved is kept as the original bytes (the element's
byte span is cut out of the detail, with the whitespace before it).
On decode, typed elements are appended after xmlDetail unless xmlDetail already has that element (then
xmlDetail wins, as detail.proto says). So element *order* can change across a protobuf hop.
Worst case: O(n) in the detail bytes: one libxml2 pass (lxml, no DTD/entities/network), plus one exact
expat pass when libxml2 refuses the fragment or a typed name also occurs elsewhere (nested, comment).
"""

from __future__ import annotations

import math
import re
from typing import Any

from lxml import etree

from kestrel.cot.errors import CotError
from kestrel.cot.xml import escape_attr
from kestrel.cot.xmlscan import scan_children, tag_end

# (xml element, Detail field, ((xml attribute, proto field, kind, required), ...)) — kinds: str uint double
TYPED: tuple[tuple[str, str, tuple[tuple[str, str, str, bool], ...]], ...] = (
    ("contact", "contact", (("endpoint", "endpoint", "str", False), ("callsign", "callsign", "str", True))),
    ("__group", "group", (("name", "name", "str", True), ("role", "role", "str", True))),
    ("precisionlocation", "precisionLocation",
     (("geopointsrc", "geopointsrc", "str", True), ("altsrc", "altsrc", "str", True))),
    ("status", "status", (("battery", "battery", "uint", True),)),
    ("takv", "takv", (("device", "device", "str", True), ("platform", "platform", "str", True),
                      ("os", "os", "str", True), ("version", "version", "str", True))),
    ("track", "track", (("speed", "speed", "double", True), ("course", "course", "double", True))),
)
_BY_ELEMENT = {t[0]: t for t in TYPED}
_NAMES = frozenset(_BY_ELEMENT)
_NONE: frozenset[str] = frozenset()
_START = {n: re.compile(rb"<" + n.encode() + rb"[ \t\r\n/>]") for n in _NAMES}
_OPEN, _CLOSE = b"<detail>", b"</detail>"
_LXML = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, dtd_validation=False,
                        huge_tree=False)
_HINT = re.compile(rb"<(?:contact|__group|precisionlocation|status|takv|track)[\s/>]")
INT_MAX = 2**31 - 1


def _convert(kind: str, text: str) -> str | int | float | None:
    """Typed value for `text`, or None when writing it back would not give the same text."""
    if kind == "str":
        return text
    if kind == "uint":
        if text.isascii() and text.isdigit() and str(int(text)) == text and int(text) <= INT_MAX:
            return int(text)
        return None
    try:
        v = float(text)
    except ValueError:
        return None
    return v if math.isfinite(v) and repr(v) == text else None


def _map(spec: tuple[tuple[str, str, str, bool], ...], given: dict[str, str]) -> dict[str, Any] | None:
    """Typed values for an element's attributes, or None if the element does not map exactly."""
    if len(given) > len(spec):
        return None  # an attribute outside the typed form: keep the element as XML
    used = 0
    out: dict[str, Any] = {}
    for xml_name, field, kind, required in spec:
        text = given.get(xml_name)
        if text is None:
            if required:
                return None
            continue
        if not required and text == "":
            return None  # an empty optional attribute would not come back
        used += 1
        v = text if kind == "str" else _convert(kind, text)
        if v is None:
            return None
        out[field] = v
    return out if used == len(given) else None  # another attribute: keep the element as XML


def _lxml_root(raw: bytes) -> etree._Element | None:
    """Fast path: libxml2 (no DTD, no entities, no network). None when it refuses (e.g. undeclared
    namespace prefix, depth > 256): the exact expat path then decides."""
    try:
        return etree.fromstring(_OPEN + raw + _CLOSE, _LXML)
    except etree.XMLSyntaxError:
        return None


def _cut(detail: bytes, text: str, cuts: list[tuple[int, int]]) -> str:
    if not cuts:
        return text.strip()
    parts: list[bytes] = []
    pos = 0
    for s, e in sorted(cuts):
        while s > pos and detail[s - 1] in b" \t\r\n":
            s -= 1
        parts.append(detail[pos:s])
        pos = e
    parts.append(detail[pos:])
    return b"".join(parts).strip().decode("utf-8")


def _split_fast(detail: bytes, root: etree._Element) -> tuple[list[tuple[int, int]], dict[str, Any]] | None:
    """Typed elements found with lxml, located in the bytes by a unique start-tag match; None if a
    match is not unique (name also nested, in a comment or CDATA): use the exact expat scan."""
    kids = list(root.iterchildren(*_NAMES))
    counts: dict[str, int] = {}
    for c in kids:
        counts[str(c.tag)] = counts.get(str(c.tag), 0) + 1
    typed: dict[str, Any] = {}
    cuts: list[tuple[int, int]] = []
    for c in kids:
        name = str(c.tag)
        if counts[name] != 1 or c.text is not None or len(c):
            continue
        spec = _BY_ELEMENT[name]
        values = _map(spec[2], dict(c.attrib))
        if values is None:
            continue
        hits = [m.start() for m in _START[name].finditer(detail)]
        if len(hits) != 1:
            return None
        s = hits[0]
        j = tag_end(detail, s)
        if detail[j - 1] == 0x2F:
            e = j + 1
        else:
            close = detail.find(b"</" + name.encode(), j)
            if close < 0:
                return None
            e = detail.index(b">", close) + 1
        typed[spec[1]] = values
        cuts.append((s, e))
    return cuts, typed


def split_detail(detail: bytes) -> tuple[str, dict[str, dict[str, Any]]]:
    """Inner detail XML -> (xmlDetail text, {Detail field: values}). Raises CotError if malformed."""
    if not detail.strip():
        return "", {}
    try:
        text = detail.decode("utf-8")
    except UnicodeDecodeError:
        raise CotError("detail is not UTF-8") from None
    if _HINT.search(detail) is None:  # nothing typed: no parse needed (the detail was validated on input)
        return text.strip(), {}
    root = _lxml_root(detail)
    fast = _split_fast(detail, root) if root is not None else None
    if fast is not None:
        return _cut(detail, text, fast[0]), fast[1]
    children = scan_children(detail, _NAMES)
    counts: dict[str, int] = {}
    for c in children:
        if c.name in _BY_ELEMENT:
            counts[c.name] = counts.get(c.name, 0) + 1
    typed: dict[str, dict[str, Any]] = {}
    cuts: list[tuple[int, int]] = []
    for c in children:
        spec = _BY_ELEMENT.get(c.name)
        if spec is None or counts[c.name] != 1 or not c.empty:
            continue
        a = c.attrs
        values = _map(spec[2], {a[i]: a[i + 1] for i in range(0, len(a), 2)})
        if values is None:
            continue
        typed[spec[1]] = values
        cuts.append((c.start, c.end))
    return _cut(detail, text, cuts), typed


def merge_detail(xml_detail: str, typed: dict[str, dict[str, Any]]) -> bytes:
    """(xmlDetail, typed fields) -> inner detail XML bytes. xmlDetail is validated (CotError if it is
    not well-formed); a typed field whose element already appears in xmlDetail is ignored."""
    raw = xml_detail.encode("utf-8")
    present: set[str] = set()
    if raw.strip():
        root = _lxml_root(raw)
        if root is not None:
            present = {str(c.tag) for c in root if isinstance(c.tag, str)}
        else:
            present = {c.name for c in scan_children(raw, _NONE)}
    parts = [raw]
    for element, field, spec in TYPED:
        values = typed.get(field)
        if values is None or element in present:
            continue
        attrs = []
        for xml_name, pfield, kind, required in spec:
            v = values.get(pfield)
            if kind == "str":
                text = v or ""
                if not required and not text:
                    continue
            elif kind == "uint":
                text = str(min(int(v if v is not None else 0), INT_MAX))
            else:
                text = repr(float(v if v is not None else 0.0))
            attrs.append(f' {xml_name}="{escape_attr(text)}"')
        parts.append(f"<{element}{''.join(attrs)}/>".encode())
    return b"".join(parts)


def has_typed(typed: dict[str, dict[str, Any]]) -> bool:
    """True when any typed Detail field is present."""
    return any(field in typed for _, field, _ in TYPED)


__all__ = ["TYPED", "has_typed", "merge_detail", "split_detail"]
