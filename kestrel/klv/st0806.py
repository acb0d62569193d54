"""MISB ST 0806 Remote Video Terminal Local Set (nested in ST 0601 tag 73), with its POI, AOI and
user-defined sub-sets. The standalone form's CRC-32 checksum (tag 1) is not verified here."""

from __future__ import annotations

from typing import Any

from .codecs import RAW, Bytes, Enum, Func, Item, S, U, UInt, Utf8
from .localset import Nested, SetSpec

KEY = bytes.fromhex("060e2b34020b01010e01030102000000")
POI_AOI_TYPE = {1: "Friendly", 2: "Hostile", 3: "Target", 4: "Unknown"}
USER_DATA_TYPE = {0: "String", 1: "Signed Integer", 2: "Unsigned Integer", 3: "Experimental"}
_S = Utf8()
_LAT, _LON = S(-90.0, 90.0, 4), S(-180.0, 180.0, 4)


def _dec_udt(b: bytes) -> dict[str, Any]:
    if len(b) != 1:
        raise ValueError("user data type length")
    return {"type": b[0] >> 6, "id": b[0] & 0x3F}


def _enc_udt(v: dict[str, Any]) -> bytes:
    return bytes(((int(v["type"]) << 6) | (int(v["id"]) & 0x3F),))


USER_TABLE: dict[int, Item] = {
    1: Item("Numeric ID and Data Type", "pack", Func(_dec_udt, _enc_udt)),
    2: Item("User Data", "bytes", Bytes()),
}
POI_TABLE: dict[int, Item] = {
    1: Item("POI Number", "", UInt(2)),
    2: Item("POI Latitude", "deg", _LAT),
    3: Item("POI Longitude", "deg", _LON),
    4: Item("POI Altitude", "m", U(-900.0, 19000.0, 2)),
    5: Item("POI Type", "enum", Enum(POI_AOI_TYPE)),
    6: Item("POI Text", "", _S),
    7: Item("POI Source Icon", "", _S),
    8: Item("POI Source ID", "", _S),
    9: Item("POI Label", "", _S),
    10: Item("Operation ID", "", _S),
}
AOI_TABLE: dict[int, Item] = {
    1: Item("AOI Number", "", UInt(2)),
    2: Item("AOI Corner 1 Latitude", "deg", _LAT),
    3: Item("AOI Corner 1 Longitude", "deg", _LON),
    4: Item("AOI Corner 3 Latitude", "deg", _LAT),
    5: Item("AOI Corner 3 Longitude", "deg", _LON),
    6: Item("AOI Type", "enum", Enum(POI_AOI_TYPE)),
    7: Item("AOI Text", "", _S),
    8: Item("AOI Source ID", "", _S),
    9: Item("AOI Label", "", _S),
    10: Item("Operation ID", "", _S),
}
USER_SPEC = SetSpec("ST0806-User", b"", USER_TABLE)
POI_SPEC = SetSpec("ST0806-POI", b"", POI_TABLE)
AOI_SPEC = SetSpec("ST0806-AOI", b"", AOI_TABLE)

TABLE: dict[int, Item] = {
    1: Item("Checksum (CRC-32)", "", UInt(4)),
    2: Item("Precision Time Stamp", "us since 1970 (UTC)", UInt(8)),
    3: Item("Platform True Airspeed", "m/s", UInt(2)),
    4: Item("Platform Indicated Airspeed", "m/s", UInt(2)),
    5: Item("Telemetry Accuracy Indicator", "", RAW),
    6: Item("Frag Circle Radius", "m", UInt(2)),
    7: Item("Frame Code", "", UInt(4)),
    8: Item("UAS LS Version Number", "", UInt(1)),
    9: Item("Video Data Rate", "bit/s", UInt(4)),
    10: Item("Digital Video File Format", "", _S),
    11: Item("User Defined Local Set", "set", Nested(lambda: USER_SPEC)),
    12: Item("Point of Interest Local Set", "set", Nested(lambda: POI_SPEC)),
    13: Item("Area of Interest Local Set", "set", Nested(lambda: AOI_SPEC)),
    14: Item("MGRS Zone", "", UInt(1)),
    15: Item("MGRS Latitude Band and Grid Square", "", _S),
    16: Item("MGRS Easting", "m", UInt(3)),
    17: Item("MGRS Northing", "m", UInt(3)),
    18: Item("Frame Center MGRS Zone", "", UInt(1)),
    19: Item("Frame Center MGRS Latitude Band and Grid Square", "", _S),
    20: Item("Frame Center MGRS Easting", "m", UInt(3)),
    21: Item("Frame Center MGRS Northing", "m", UInt(3)),
}
SPEC = SetSpec("ST0806", KEY, TABLE)
