"""MISB ST 0903 Video Moving Target Indicator (VMTI) Local Set: decode and encode.

Standalone (own key, checksum tag 1) or nested in ST 0601 tag 74. Targets travel in the VTarget
Series (tag 101): each VTarget pack is a BER-OID target id followed by a local set (centroid,
bounding box corners as pixel numbers, target location, rows/columns...). Pixel numbers are
1-based row-major: n = row * frame_width + column + 1 with 0-based row/column (ST 0903 §8.2).
VMask/VObject/VFeature/VTracker/VChip sub-sets and the algorithm/ontology series: st0903_sets.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from . import st0601_packs as P
from . import st0903_sets
from .ber import encode_ber_oid, encode_lv, read_ber_oid, read_series
from .codecs import Func, ImapCodec, Item, UInt, Utf8
from .localset import SetSpec, decode_body, encode_body, encode_packet
from .st0903_sets import dec_location, enc_location  # noqa: F401 (the location pack, also public here)

KEY = bytes.fromhex("060e2b34020b01010e01030306000000")

_OFFSET = ImapCodec(-19.2, 19.2, 3)


def pixel_number(row: int, column: int, width: int) -> int:
    """ST 0903 pixel number of a 0-based (row, column) in a frame `width` pixels wide."""
    return row * width + column + 1


def row_column(number: int, width: int) -> tuple[int, int]:
    """Inverse of `pixel_number`: 0-based (row, column)."""
    if number < 1 or width < 1:
        raise ValueError("pixel number and frame width must be positive")
    return divmod(number - 1, width)


def dec_fpa(b: bytes) -> dict[str, int]:
    row, pos = read_ber_oid(b, 0, len(b))
    col, pos = read_ber_oid(b, pos, len(b))
    return {"row": row, "column": col}


VTARGET_TABLE: dict[int, Item] = {
    1: Item("Target Centroid", "pixel number", UInt()),
    2: Item("Boundary Top Left", "pixel number", UInt()),
    3: Item("Boundary Bottom Right", "pixel number", UInt()),
    4: Item("Target Priority", "", UInt(1)),
    5: Item("Target Confidence Level", "%", UInt(1)),
    6: Item("Target History", "", UInt()),
    7: Item("Percentage of Target Pixels", "%", UInt(1)),
    8: Item("Target Color", "RGB", UInt(3)),
    9: Item("Target Intensity", "", UInt()),
    10: Item("Target Location Offset Latitude", "deg", _OFFSET),
    11: Item("Target Location Offset Longitude", "deg", _OFFSET),
    12: Item("Target Height Above Ellipsoid", "m", ImapCodec(-900.0, 19000.0, 2)),
    13: Item("Boundary Top Left Latitude Offset", "deg", _OFFSET),
    14: Item("Boundary Top Left Longitude Offset", "deg", _OFFSET),
    15: Item("Boundary Bottom Right Latitude Offset", "deg", _OFFSET),
    16: Item("Boundary Bottom Right Longitude Offset", "deg", _OFFSET),
    17: Item("Target Location", "pack", Func(dec_location, enc_location)),
    18: Item("Target Boundary Series", "list", st0903_sets.location_series()),
    19: Item("Centroid Pixel Row", "pixels", UInt()),
    20: Item("Centroid Pixel Column", "pixels", UInt()),
    21: Item("FPA Index Pack", "pack", Func(dec_fpa, lambda v: encode_ber_oid(v["row"]) + encode_ber_oid(v["column"]))),
    22: Item("Algorithm ID", "", UInt()),
    **st0903_sets.VTARGET_ITEMS,
}
VTARGET_SPEC = SetSpec("VTarget", b"", VTARGET_TABLE)


@dataclass
class VTarget:
    """One reported target: its id and its VTarget local set items {tag: value}."""

    target_id: int
    tags: dict[int, Any] = field(default_factory=dict)

    def box(self, width: int) -> tuple[int, int, int, int] | None:
        """(row0, col0, row1, col1) from tags 2/3, 0-based, or None."""
        tl, br = self.tags.get(2), self.tags.get(3)
        if not isinstance(tl, int) or not isinstance(br, int):
            return None
        return (*row_column(tl, width), *row_column(br, width))

    @classmethod
    def from_box(cls, target_id: int, row0: int, col0: int, row1: int, col1: int, width: int,
                 extra: dict[int, Any] | None = None) -> VTarget:
        """A VTarget with centroid, top-left and bottom-right pixel numbers, rows and columns."""
        crow, ccol = (row0 + row1) // 2, (col0 + col1) // 2
        tags: dict[int, Any] = {1: pixel_number(crow, ccol, width), 2: pixel_number(row0, col0, width),
                                3: pixel_number(row1, col1, width), 19: crow, 20: ccol}
        tags.update(extra or {})
        return cls(target_id, tags)


def dec_vtargets(b: bytes) -> list[VTarget]:
    out = []
    for rec in read_series(b):
        tid, p = read_ber_oid(rec, 0, len(rec))
        out.append(VTarget(tid, decode_body(VTARGET_SPEC, rec, p, len(rec))))
    return out


def enc_vtargets(v: list[VTarget]) -> bytes:
    return b"".join(encode_lv(encode_ber_oid(t.target_id) + encode_body(VTARGET_SPEC, t.tags)) for t in v)


TABLE: dict[int, Item] = {
    1: Item("Checksum", "", UInt(2)),
    2: Item("Precision Time Stamp", "us since 1970 (UTC)", UInt(8)),
    3: Item("VMTI System Name", "", Utf8()),
    4: Item("VMTI LS Version", "", UInt()),
    5: Item("Total Number of Targets Detected", "", UInt()),
    6: Item("Number of Targets Reported", "", UInt()),
    7: Item("Frame Number", "", UInt()),
    8: Item("Frame Width", "pixels", UInt()),
    9: Item("Frame Height", "pixels", UInt()),
    10: Item("VMTI Source Sensor", "", Utf8()),
    11: Item("VMTI Horizontal FOV", "deg", ImapCodec(0.0, 180.0, 2)),
    12: Item("VMTI Vertical FOV", "deg", ImapCodec(0.0, 180.0, 2)),
    13: Item("MIIS ID", "ST 1204", P.MIIS),
    101: Item("VTarget Series", "list", Func(dec_vtargets, enc_vtargets)),
    **st0903_sets.VMTI_ITEMS,
}
SPEC = SetSpec("ST0903", KEY, TABLE, checksum_tag=1, first_tags=(2,))
VERSION = 6


def encode(values: dict[int, Any], *, timestamp_us: int | None = None, version: int | None = VERSION,
           fill_count: bool = True) -> bytes:
    """A standalone ST 0903 packet with checksum. values[101] is a list of `VTarget`.

    Tag 6 (targets reported) is filled from the series when absent.
    """
    vals = dict(values)
    vals.pop(1, None)
    if timestamp_us is not None:
        vals[2] = int(timestamp_us)
    if version is not None and 4 not in vals:
        vals[4] = version
    if fill_count and 101 in vals and 6 not in vals and vals[101] is not None:
        vals[6] = len(vals[101])
    return encode_packet(SPEC, vals)
