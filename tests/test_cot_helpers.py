"""Helpers for the CoT tests: a canonical view of XML built with lxml (an outside parser)."""

from __future__ import annotations

from pathlib import Path

from lxml import etree

TYPED_ELEMENTS = ("contact", "__group", "precisionlocation", "status", "takv", "track")
_PARSER = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, huge_tree=True)

Canon = tuple[str, tuple[tuple[str, str], ...], str, tuple["Canon", ...]]


def canon(el: etree._Element) -> Canon:
    """Element name, attributes (sorted), stripped text, children — comments/PIs ignored."""
    kids = tuple(canon(c) for c in el if isinstance(c.tag, str))
    return (el.tag, tuple(sorted(el.attrib.items())), (el.text or "").strip(), kids)


def detail_children(detail: bytes) -> list[Canon]:
    """Canonical children of an Event.detail (inner XML)."""
    root = etree.fromstring(b"<detail>" + detail + b"</detail>", _PARSER)
    return list(canon(root)[3])


def original(path: Path) -> etree._Element:
    return etree.fromstring(path.read_bytes(), _PARSER)


def original_detail_children(path: Path) -> list[Canon]:
    det = original(path).find("detail")
    return [] if det is None else list(canon(det)[3])


def same_detail_modulo_typed_order(a: list[Canon], b: list[Canon]) -> bool:
    """Equal, except that the typed TAK elements may sit at another position (protobuf hop)."""
    untyped_a = [c for c in a if c[0] not in TYPED_ELEMENTS]
    untyped_b = [c for c in b if c[0] not in TYPED_ELEMENTS]
    typed_a = sorted(c for c in a if c[0] in TYPED_ELEMENTS)
    typed_b = sorted(c for c in b if c[0] in TYPED_ELEMENTS)
    return untyped_a == untyped_b and typed_a == typed_b


def examples(data: Path) -> list[Path]:
    files = sorted((data / "cot" / "atak-examples").glob("*.cot"))
    assert len(files) >= 8, files
    return files
