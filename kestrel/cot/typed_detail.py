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
Worst case: O(n) in the detail bytes (one expat pass).
"""

from __future__ import annotations

import math
import re
from typing import Any

from kestrel.cot.errors import CotError
from kestrel.cot.xml import escape_attr
from kestrel.cot.xmlscan import scan_children

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


def _map(spec: tuple[tuple[str, str, str, bool], ...], attrs: list[str]) -> dict[str, Any] | None:
    given = {attrs[i]: attrs[i + 1] for i in range(0, len(attrs), 2)}
    if len(given) * 2 != len(attrs):
        return None
    out: dict[str, Any] = {}
    for xml_name, field, kind, required in spec:
        text = given.pop(xml_name, None)
        if text is None:
            if required:
                return None
            continue
        if not required and text == "":
            return None  # an empty optional attribute would not come back
        v = _convert(kind, text)
        if v is None:
            return None
        out[field] = v
    return None if given else out  # an attribute outside the typed form: keep the element as XML


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
        values = _map(spec[2], c.attrs)
        if values is None:
            continue
        typed[spec[1]] = values
        s = c.start
        while s > 0 and detail[s - 1] in b" \t\r\n":
            s -= 1
        cuts.append((s, c.end))
    if not cuts:
        return text.strip(), {}
    parts: list[bytes] = []
    pos = 0
    for s, e in cuts:
        parts.append(detail[pos:s])
        pos = e
    parts.append(detail[pos:])
    return b"".join(parts).strip().decode("utf-8"), typed


def merge_detail(xml_detail: str, typed: dict[str, dict[str, Any]]) -> bytes:
    """(xmlDetail, typed fields) -> inner detail XML bytes. xmlDetail is validated (CotError if it is
    not well-formed); a typed field whose element already appears in xmlDetail is ignored."""
    raw = xml_detail.encode("utf-8")
    present: set[str] = set()
    if raw.strip():
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
                text = str(min(int(v or 0), INT_MAX))
            else:
                text = repr(float(v or 0.0))
            attrs.append(f' {xml_name}="{escape_attr(text)}"')
        parts.append(f"<{element}{''.join(attrs)}/>".encode())
    return b"".join(parts)


def has_typed(typed: dict[str, dict[str, Any]]) -> bool:
    """True when any typed Detail field is present."""
    return any(field in typed for _, field, _ in TYPED)


__all__ = ["TYPED", "split_detail", "merge_detail", "has_typed", "CotError"]
