"""MISB ST 1601 Geo-Registration Local Set (nested in ST 0601 tag 98): tie points as ST 1303
MDARRAYs; the SDCC arrays carry IMAPB integers per row with fixed ranges (ST 1601 §6)."""

from __future__ import annotations

import uuid
from typing import Any

from .codecs import Func, Item, UInt, Utf8
from .imapb import Imap
from .localset import SetSpec
from .mdap import FLOAT_MDAP, UINT_MDAP, decode_mdap, encode_mdap

KEY = bytes.fromhex("060e2b34020b01010e01030301000000")
PIXEL_SDCC_RANGES = ((0.0, 100.0), (0.0, 100.0), (-1.0, 1.0), (0.0, 100.0), (0.0, 100.0), (-1.0, 1.0))
GEO_SDCC_RANGES = ((0.0, 650.0), (0.0, 650.0), (-1.0, 1.0), (0.0, 1000.0), (-1.0, 1.0), (-1.0, 1.0))


def _sdcc(ranges: tuple[tuple[float, float], ...], rows: tuple[int, ...]) -> Func:
    def dec(b: bytes) -> dict[str, Any]:
        m = decode_mdap(b, lambda x: int.from_bytes(x, "big"))
        sizes, n = m["sizes"], m["element-size"]
        if len(sizes) != 2 or sizes[0] not in rows or m["apa"] != 1:
            raise ValueError("SDCC MDARRAY has the wrong shape")
        cols = sizes[1]
        maps = [Imap(lo, hi, n) for lo, hi in ranges]
        m["elements"] = [maps[i // cols].decode(int(e).to_bytes(n, "big")) for i, e in enumerate(m["elements"])]
        return m

    def enc(v: dict[str, Any]) -> bytes:
        cols, n = v["sizes"][1], int(v["element-size"])
        maps = [Imap(lo, hi, n) for lo, hi in ranges]
        ints = [int.from_bytes(maps[i // cols].encode(x), "big") for i, x in enumerate(v["elements"])]
        return encode_mdap(dict(v, elements=ints, apa=1), lambda x, k: int(x).to_bytes(k, "big"))

    return Func(dec, enc)


def _uuid(b: bytes) -> str:
    if len(b) != 16:
        raise ValueError("UUID length")
    return str(uuid.UUID(bytes=b))


_S = Utf8()
TABLE: dict[int, Item] = {
    1: Item("Document Version", "", UInt()),
    2: Item("Algorithm Name", "", _S),
    3: Item("Algorithm Version", "", _S),
    4: Item("Correspondence Points - Row/Column", "MDARRAY", UINT_MDAP),
    5: Item("Correspondence Points - Latitude/Longitude", "MDARRAY", FLOAT_MDAP),
    6: Item("Second Image Name", "", _S),
    7: Item("Algorithm Configuration Identifier", "UUID", Func(_uuid, lambda v: uuid.UUID(str(v)).bytes)),
    8: Item("Correspondence Points - Elevation", "MDARRAY", FLOAT_MDAP),
    9: Item("Correspondence Points SDCC - Row/Column", "MDARRAY", _sdcc(PIXEL_SDCC_RANGES, (6,))),
    10: Item("Correspondence Points SDCC - Latitude/Longitude/Elevation", "MDARRAY", _sdcc(GEO_SDCC_RANGES, (3, 6))),
}
SPEC = SetSpec("ST1601", KEY, TABLE)
