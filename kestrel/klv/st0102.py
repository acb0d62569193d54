"""MISB ST 0102 Security Metadata Local Set (nested in ST 0601 tag 48, or standalone)."""

from __future__ import annotations

from typing import Any

from .codecs import RAW, Enum, Item, UInt, Utf8, Utf16
from .localset import SetSpec, encode_packet

KEY = bytes.fromhex("060e2b34020301010e01030302000000")

CLASSIFICATION = {1: "UNCLASSIFIED", 2: "RESTRICTED", 3: "CONFIDENTIAL", 4: "SECRET", 5: "TOP SECRET"}
COUNTRY_CODING = {
    1: "ISO-3166 Two Letter", 2: "ISO-3166 Three Letter", 3: "FIPS 10-4 Two Letter",
    4: "FIPS 10-4 Four Letter", 5: "ISO-3166 Numeric", 6: "1059 Two Letter", 7: "1059 Three Letter",
    10: "FIPS 10-4 Mixed", 11: "ISO 3166 Mixed", 12: "STANAG 1059 Mixed", 13: "GENC Two Letter",
    14: "GENC Three Letter", 15: "GENC Numeric", 16: "GENC Mixed", 64: "GENC AdminSub",
}

_S = Utf8()
TABLE: dict[int, Item] = {
    1: Item("Security Classification", "enum", Enum(CLASSIFICATION)),
    2: Item("Classifying Country and Releasing Instructions Country Coding Method", "enum", Enum(COUNTRY_CODING)),
    3: Item("Classifying Country", "", _S),
    4: Item("SCI/SHI Information", "", _S),
    5: Item("Caveats", "", _S),
    6: Item("Releasing Instructions", "", _S),
    7: Item("Classified By", "", _S),
    8: Item("Derived From", "", _S),
    9: Item("Classification Reason", "", _S),
    10: Item("Declassification Date", "YYYYMMDD", _S),
    11: Item("Classification and Marking System", "", _S),
    12: Item("Object Country Coding Method", "enum", Enum(COUNTRY_CODING)),
    13: Item("Object Country Codes", "UTF-16", Utf16()),
    14: Item("Classification Comments", "", _S),
    15: Item("UMID (deprecated)", "", RAW),
    16: Item("Stream ID (deprecated)", "", UInt(1)),
    17: Item("Transport Stream ID (deprecated)", "", UInt(2)),
    21: Item("Item Designator ID (deprecated)", "", RAW),
    22: Item("Version", "", UInt(2)),
    23: Item("Classifying Country and Releasing Instructions Country Coding Method Version Date", "YYYY-MM-DD", _S),
    24: Item("Object Country Coding Method Version Date", "YYYY-MM-DD", _S),
}

SPEC = SetSpec("ST0102", KEY, TABLE)


def encode(values: dict[int, Any]) -> bytes:
    """A standalone ST 0102 local set packet (no checksum in this standard)."""
    return encode_packet(SPEC, values)
