"""ST 0903 sub-sets: VMask, VObject, VFeature, VTracker, VChip (VTarget tags 101-107) and the
Algorithm / Ontology series (VMTI tags 102, 103). Tables as data; packs as small functions."""

from __future__ import annotations

import uuid
from typing import Any

from .ber import KlvError, encode_ber_oid, encode_lv, read_ber_oid, read_lv, read_series
from .codecs import Bytes, Enum, Func, ImapCodec, Item, Oid, UInt, Utf8
from .imapb import Imap
from .localset import Nested, SetSeries, SetSpec

_S = Utf8()
DETECTION_STATUS = {0: "Inactive", 1: "Active", 2: "Dropped"}
_VA = Imap(-900.0, 900.0, 2)
_SIGMA = Imap(0.0, 650.0, 2)
_RHO = Imap(-1.0, 1.0, 2)
_LAT = Imap(-90.0, 90.0, 4)
_LON = Imap(-180.0, 180.0, 4)
_HAE = Imap(-900.0, 19000.0, 2)


# --- Location pack (VTarget tag 17; boundary series tag 18) ----------------------------------
def dec_location(b: bytes) -> dict[str, Any]:
    if len(b) not in (10, 16, 22):
        raise KlvError("location pack length")
    return {"latitude": _LAT.decode(b[0:4]), "longitude": _LON.decode(b[4:8]),
            "altitude": _HAE.decode(b[8:10]), **_dec_sigma_rho(b, 10)}


def _dec_sigma_rho(b: bytes, at: int) -> dict[str, Any]:
    """sigma (3 x 2 bytes) and rho (3 x 2 bytes) from byte `at` on, each None when absent."""
    out: dict[str, Any] = {"sigma": None, "rho": None}
    if len(b) >= at + 6:
        out["sigma"] = {"east": _SIGMA.decode(b[at:at + 2]), "north": _SIGMA.decode(b[at + 2:at + 4]),
                        "up": _SIGMA.decode(b[at + 4:at + 6])}
    if len(b) >= at + 12:
        out["rho"] = {"east-north": _RHO.decode(b[at + 6:at + 8]), "east-up": _RHO.decode(b[at + 8:at + 10]),
                      "north-up": _RHO.decode(b[at + 10:at + 12])}
    return out


def _enc_sigma_rho(v: dict[str, Any]) -> bytes:
    """The optional standard deviations and correlations a location or a velocity pack ends with."""
    out = b""
    if v.get("sigma"):
        s = v["sigma"]
        out += _SIGMA.encode(s["east"]) + _SIGMA.encode(s["north"]) + _SIGMA.encode(s["up"])
        if v.get("rho"):
            r = v["rho"]
            out += _RHO.encode(r["east-north"]) + _RHO.encode(r["east-up"]) + _RHO.encode(r["north-up"])
    return out


def enc_location(v: dict[str, Any]) -> bytes:
    out = _LAT.encode(v["latitude"]) + _LON.encode(v["longitude"]) + _HAE.encode(v.get("altitude") or 0.0)
    return out + _enc_sigma_rho(v)


def dec_polygon(b: bytes) -> list[int]:
    return [int.from_bytes(r, "big") for r in read_series(b)]


def enc_polygon(v: list[int]) -> bytes:
    return b"".join(encode_lv(int(x).to_bytes(max(1, (int(x).bit_length() + 7) // 8), "big")) for x in v)


def dec_bitmask(b: bytes) -> list[dict[str, int]]:
    out = []
    for rec in read_series(b):
        idx, p = read_lv(rec, 0, len(rec))
        run, _ = read_ber_oid(rec, p, len(rec))
        out.append({"index": int.from_bytes(idx, "big"), "length": run})
    return out


def enc_bitmask(v: list[dict[str, int]]) -> bytes:
    out = b""
    for r in v:
        i = int(r["index"])
        out += encode_lv(encode_lv(i.to_bytes(max(1, (i.bit_length() + 7) // 8), "big")) + encode_ber_oid(int(r["length"])))
    return out


def dec_velacc(b: bytes) -> dict[str, Any]:
    """Velocity / acceleration pack: east, north, up (IMAPB +-900, 2 bytes) [+ sigma [+ rho]]."""
    if len(b) not in (6, 12, 18):
        raise KlvError("velocity/acceleration pack length")
    return {"east": _VA.decode(b[0:2]), "north": _VA.decode(b[2:4]), "up": _VA.decode(b[4:6]), **_dec_sigma_rho(b, 6)}


def enc_velacc(v: dict[str, Any]) -> bytes:
    out = _VA.encode(v["east"]) + _VA.encode(v["north"]) + _VA.encode(v["up"])
    return out + _enc_sigma_rho(v)


def _uuid_dec(b: bytes) -> str:
    if len(b) != 16:
        raise KlvError("UUID length")
    return str(uuid.UUID(bytes=b))


def _dec_locations(b: bytes) -> list[dict[str, Any]]:
    return [dec_location(r) for r in read_series(b)]


def _enc_locations(v: list[dict[str, Any]]) -> bytes:
    return b"".join(encode_lv(enc_location(x)) for x in v)


def location_series() -> Func:
    """A series of location packs (VTarget boundary, VTracker boundary and track history)."""
    return Func(_dec_locations, _enc_locations)


VMASK = SetSpec("VMask", b"", {
    1: Item("Polygon", "pixel numbers", Func(dec_polygon, enc_polygon)),
    2: Item("Bitmask Series", "runs", Func(dec_bitmask, enc_bitmask)),
})
VOBJECT = SetSpec("VObject", b"", {
    1: Item("Ontology", "URI", _S),
    2: Item("Ontology Class", "", _S),
    3: Item("Ontology ID", "", Oid()),
    4: Item("Confidence", "%", ImapCodec(0.0, 100.0, 3)),
})
VFEATURE = SetSpec("VFeature", b"", {
    1: Item("Schema", "URI", _S),
    2: Item("Schema Feature", "", _S),
})
VTRACKER = SetSpec("VTracker", b"", {
    1: Item("Track ID", "UUID", Func(_uuid_dec, lambda v: uuid.UUID(str(v)).bytes)),
    2: Item("Detection Status", "enum", Enum(DETECTION_STATUS)),
    3: Item("Start Time", "us since 1970 (UTC)", UInt(8)),
    4: Item("End Time", "us since 1970 (UTC)", UInt(8)),
    5: Item("Boundary Series", "locations", location_series()),
    6: Item("Algorithm", "", _S),
    7: Item("Confidence Level", "%", UInt(1)),
    8: Item("Number of Track Points", "", Oid()),
    9: Item("Track History Series", "locations", location_series()),
    10: Item("Velocity", "m/s", Func(dec_velacc, enc_velacc)),
    11: Item("Acceleration", "m/s^2", Func(dec_velacc, enc_velacc)),
    12: Item("Algorithm ID", "", Oid()),
})
VCHIP = SetSpec("VChip", b"", {
    1: Item("Image Type", "", _S),
    2: Item("Image URI", "", _S),
    3: Item("Embedded Image", "bytes", Bytes()),
})
ALGORITHM = SetSpec("Algorithm", b"", {
    1: Item("ID", "", Oid()),
    2: Item("Name", "", _S),
    3: Item("Version", "", _S),
    4: Item("Class", "", _S),
    5: Item("Number of Frames", "", Oid()),
})
ONTOLOGY = SetSpec("Ontology", b"", {
    1: Item("ID", "", Oid()),
    2: Item("Parent ID", "", Oid()),
    3: Item("URI", "", _S),
    4: Item("Class", "", _S),
})

# VTarget tags 101-107 and VMTI tags 102-103.
VTARGET_ITEMS: dict[int, Item] = {
    101: Item("Target Mask", "VMask LS", Nested(lambda: VMASK)),
    102: Item("Target Object", "VObject LS", Nested(lambda: VOBJECT)),
    103: Item("Target Features", "VFeature LS", Nested(lambda: VFEATURE)),
    104: Item("Target Tracker", "VTracker LS", Nested(lambda: VTRACKER)),
    105: Item("Target Chip", "VChip LS", Nested(lambda: VCHIP)),
    106: Item("Chip Series", "VChip series", SetSeries(lambda: VCHIP)),
    107: Item("Object Series", "VObject series", SetSeries(lambda: VOBJECT)),
}
VMTI_ITEMS: dict[int, Item] = {
    102: Item("Algorithm Series", "series", SetSeries(lambda: ALGORITHM)),
    103: Item("Ontology Series", "series", SetSeries(lambda: ONTOLOGY)),
}
