"""MISB ST 1002 Range Image Local Set (nested in ST 0601 tag 97), with the ST 1202 Generalized
Transformation set (document version and type only; its coefficient items stay raw) and the
Section Data Pack."""

from __future__ import annotations

from typing import Any

from .ber import encode_ber_oid, encode_lv, read_ber_oid, read_lv
from .codecs import Enum, Float, Func, Item, Oid, UInt
from .localset import Nested, SetSpec
from .mdap import FLOAT_MDAP

KEY = bytes.fromhex("060e2b34020b01010e0103030c000000")
COMPRESSION = {0: "None", 1: "Planar Fit"}
DATA_TYPE = {0: "Perspective Range Image", 1: "Depth Range Image"}
SOURCE = {0: "Computationally Extracted", 1: "Range Sensor"}
_F = Float()


def dec_enums(b: bytes) -> dict[str, int]:
    v, _ = read_ber_oid(b, 0, len(b))
    return {"compression-method": v & 7, "data-type": (v >> 3) & 7, "source": (v >> 6) & 1}


def enc_enums(v: dict[str, int]) -> bytes:
    return encode_ber_oid((int(v["source"]) << 6) | (int(v["data-type"]) << 3) | int(v["compression-method"]))


_PLANES = ("plane-x-scale", "plane-y-scale", "plane-constant")


def dec_section(b: bytes) -> dict[str, Any]:
    end = len(b)
    sx, pos = read_lv(b, 0, end)
    sy, pos = read_lv(b, pos, end)
    meas, pos = read_lv(b, pos, end)
    out: dict[str, Any] = {"section-x": read_ber_oid(sx, 0, len(sx))[0], "section-y": read_ber_oid(sy, 0, len(sy))[0],
                           "measurements": FLOAT_MDAP.decode(meas), "uncertainty": None}
    if pos < end:
        unc, pos = read_lv(b, pos, end)
        out["uncertainty"] = FLOAT_MDAP.decode(unc) if unc else None
    for name in _PLANES:
        out[name] = None
        if pos < end:
            raw, pos = read_lv(b, pos, end)
            out[name] = _F.decode(raw) if raw else None
    return out


def enc_section(v: dict[str, Any]) -> bytes:
    out = encode_lv(encode_ber_oid(int(v["section-x"]))) + encode_lv(encode_ber_oid(int(v["section-y"])))
    out += encode_lv(FLOAT_MDAP.encode(v["measurements"]))
    tail = [FLOAT_MDAP.encode(v["uncertainty"]) if v.get("uncertainty") else b""]
    tail += [_F.encode(v[n]) if v.get(n) is not None else b"" for n in _PLANES]
    while tail and not tail[-1]:
        tail.pop()
    return out + b"".join(encode_lv(t) for t in tail)


TRANSFORMATION_TYPE = {0: "Other", 1: "Chipping", 2: "Child-Parent", 3: "Pixel Conversion", 4: "Optical"}
ST1202_SPEC = SetSpec("ST1202", bytes.fromhex("060e2b34020b01010e01030505000000"), {
    10: Item("Document Version", "", Oid()),
    11: Item("Transformation Type", "enum", Enum(TRANSFORMATION_TYPE)),
})

TABLE: dict[int, Item] = {
    1: Item("Precision Time Stamp", "us since 1970 (UTC)", UInt(8)),
    10: Item("Checksum (CRC-16-CCITT)", "", UInt(2)),
    11: Item("Document Version", "", Oid()),
    12: Item("Range Image Enumerations", "pack", Func(dec_enums, enc_enums)),
    13: Item("Range Measurement", "m", _F),
    14: Item("Range Measurement Uncertainty", "m", _F),
    15: Item("Range Measurement Row Coordinate", "pixels", _F),
    16: Item("Range Measurement Column Coordinate", "pixels", _F),
    17: Item("Number of Sections in X", "", Oid()),
    18: Item("Number of Sections in Y", "", Oid()),
    19: Item("Generalized Transformation Local Set", "ST 1202", Nested(lambda: ST1202_SPEC)),
    20: Item("Section Data Pack", "pack", Func(dec_section, enc_section)),
}
SPEC = SetSpec("ST1002", KEY, TABLE)
