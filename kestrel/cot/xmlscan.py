"""Safe, offset-aware XML scanning for CoT (expat, the C parser in the standard library).

Goal: validate untrusted XML and learn the *byte offsets* of elements, so a detail can be relayed (and
split for the TAK protobuf) verbatim instead of being re-serialized. lxml cannot report offsets; expat can.

Safety: any `<!DOCTYPE` is rejected at its first byte (so no internal or external entity can ever be
declared, let alone expanded: no XML bomb, no XXE, no DTD fetch); parameter entities are off; no external
entity handler is installed, so nothing is ever fetched (no network, no files). Undeclared entities
(`&foo;`) are a parse error. Callers bound the input size before scanning.
Worst case: O(n) in the input; Python callbacks only for element starts/ends (no text callbacks).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import NoReturn
from xml.parsers import expat

from kestrel.cot.errors import CotError


def _no_dtd(*_args: object) -> NoReturn:
    raise CotError("DOCTYPE/DTD not allowed in CoT (entity expansion refused)")


def new_parser() -> expat.XMLParserType:
    """An expat parser that refuses DTDs and entity declarations; attributes as ordered flat lists."""
    p = expat.ParserCreate()
    p.ordered_attributes = True
    p.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)
    p.StartDoctypeDeclHandler = _no_dtd
    p.EntityDeclHandler = _no_dtd
    return p


def run(p: expat.XMLParserType, data: bytes) -> None:
    """Parse all of `data`; every failure becomes one CotError line."""
    try:
        p.Parse(data, True)
    except expat.ExpatError as e:
        raise CotError(f"malformed XML: {expat.ErrorString(e.code)} at line {e.lineno} col {e.offset}") from None
    except CotError:
        raise
    except (LookupError, UnicodeError, ValueError) as e:  # e.g. an unknown encoding in `<?xml?>`
        raise CotError(f"undecodable XML: {str(e)[:80]}") from None
    except RecursionError:  # pragma: no cover - expat is iterative; defensive only
        raise CotError("XML nested too deeply") from None


_TAG = re.compile(rb"""<[^"'>]*(?:(?:"[^"]*"|'[^']*')[^"'>]*)*>""")


def tag_end(buf: bytes, i: int) -> int:
    """Index of the `>` closing the tag that starts at `buf[i] == '<'` (quote-aware: `>` may occur in
    attribute values). The tag is known to be well-formed (expat has seen it). One regex match."""
    m = _TAG.match(buf, i)
    if m is None:  # pragma: no cover - expat rejects this first
        raise CotError("unterminated tag")
    return m.end() - 1


@dataclass(slots=True)
class Child:
    """One direct child element of a fragment: byte span [start, end) within the fragment."""

    name: str
    attrs: list[str]  # flat, in document order: [name0, value0, name1, value1, ...]
    start: int
    end: int
    empty: bool  # no content at all: `<x .../>` or `<x ...></x>`


_OPEN = b"<detail>"
_CLOSE = b"</detail>"


def scan_children(fragment: bytes, spans: frozenset[str] | None = None) -> list[Child]:
    """Validate `fragment` (inner XML of a `<detail>`, UTF-8) and return its direct child elements.
    Byte spans are computed for every child, or only for names in `spans` (others get -1, -1).
    Raises CotError when it is not well-formed. O(len(fragment))."""
    buf = _OPEN + fragment + _CLOSE
    p = new_parser()
    out: list[Child] = []
    depth = 0
    cur: list[object] = []  # [name, attrs, start, start_tag_end, self_closing] of the open child

    def start(name: str, attrs: list[str]) -> None:
        nonlocal depth, cur
        depth += 1
        if depth == 2:
            if spans is None or name in spans:
                s = p.CurrentByteIndex
                j = tag_end(buf, s)
                cur = [name, attrs, s, j, buf[j - 1] == 0x2F]
            else:
                cur = [name, attrs, -1, -1, False]

    def end(name: str) -> None:
        nonlocal depth
        if depth == 2:
            _, attrs, s, j, closed = cur
            assert isinstance(s, int) and isinstance(j, int) and isinstance(attrs, list)
            if s < 0:
                out.append(Child(name, attrs, -1, -1, False))
            elif closed:
                out.append(Child(name, attrs, s - 8, j + 1 - 8, True))
            else:
                e = p.CurrentByteIndex
                out.append(Child(name, attrs, s - 8, buf.index(b">", e) + 1 - 8, e == j + 1))
        depth -= 1

    p.StartElementHandler = start
    p.EndElementHandler = end
    run(p, buf)
    return out
