"""MISB ST 1602 Composite Imaging Local Set (nested in ST 0601 tag 99)."""

from __future__ import annotations

from .codecs import Item, Oid, SInt, UInt
from .localset import SetSpec

KEY = bytes.fromhex("060e2b34020b01010e01030302000000")
_U, _S = UInt(), SInt()
TABLE: dict[int, Item] = {
    1: Item("Precision Time Stamp", "us since 1970 (UTC)", UInt(8)),
    2: Item("Document Version", "", Oid()),
    3: Item("Source Image Rows", "pixels", _U),
    4: Item("Source Image Columns", "pixels", _U),
    5: Item("Source Image AOI Rows", "pixels", _U),
    6: Item("Source Image AOI Columns", "pixels", _U),
    7: Item("Source Image AOI Position X", "pixels", _S),
    8: Item("Source Image AOI Position Y", "pixels", _S),
    9: Item("Sub-Image Rows", "pixels", _U),
    10: Item("Sub-Image Columns", "pixels", _U),
    11: Item("Sub-Image Position X", "pixels", _S),
    12: Item("Sub-Image Position Y", "pixels", _S),
    13: Item("Active Sub-Image Rows", "pixels", _U),
    14: Item("Active Sub-Image Columns", "pixels", _U),
    15: Item("Active Sub-Image Offset X", "pixels", _S),
    16: Item("Active Sub-Image Offset Y", "pixels", _S),
    17: Item("Transparency", "0-255", UInt(1)),
    18: Item("Z-Order", "", UInt(1)),
}
SPEC = SetSpec("ST1602", KEY, TABLE)
