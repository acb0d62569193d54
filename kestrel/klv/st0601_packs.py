"""ST 0601 structured packs (tags 81, 94, 115, 122, 127, 128, 130, 138-142) as codec functions.

Each decoder takes the item's value bytes and returns plain dicts/lists (JSON-ready, keys named
as in KWIVER's JSON so outside gold files compare directly); each encoder is its inverse.
"""

from __future__ import annotations

import uuid
from typing import Any

from .ber import KlvError, encode_ber_oid, encode_lv, read_ber_oid, read_lv, read_series
from .codecs import Func
from .imapb import Imap
from .mapping import Flint

_LAT4 = Flint(-90.0, 90.0, 4, True)
_LON4 = Flint(-180.0, 180.0, 4, True)
_ILAT = Imap(-90.0, 90.0, 4)
_ILON = Imap(-180.0, 180.0, 4)
_IALT = Imap(-900.0, 9000.0, 3)
_WAVE = Imap(0.0, 1.0e9, 4)
_VD_RANGE = Imap(0.0, 360.0, 2)
_VD_START = {"azimuth": Imap(0.0, 360.0, 2), "elevation": Imap(-180.0, 180.0, 2), "roll": Imap(0.0, 360.0, 2)}


# --- 81 Image Horizon Pixel Pack -------------------------------------------------------------
def dec_horizon(b: bytes) -> dict[str, Any]:
    if len(b) not in (4, 20):
        raise KlvError("horizon pack length")
    out: dict[str, Any] = {"x0": b[0], "y0": b[1], "x1": b[2], "y1": b[3]}
    if len(b) == 20:
        out.update(latitude0=_LAT4.decode(b[4:8]), longitude0=_LON4.decode(b[8:12]),
                   latitude1=_LAT4.decode(b[12:16]), longitude1=_LON4.decode(b[16:20]))
    return out


def enc_horizon(v: dict[str, Any]) -> bytes:
    out = bytes((v["x0"], v["y0"], v["x1"], v["y1"]))
    if v.get("latitude0") is not None:
        out += (_LAT4.encode(v["latitude0"]) + _LON4.encode(v["longitude0"])
                + _LAT4.encode(v["latitude1"]) + _LON4.encode(v["longitude1"]))
    return out


# --- 94 MIIS Core Identifier (ST 1204) -------------------------------------------------------
def dec_miis(b: bytes) -> dict[str, Any]:
    version, pos = read_ber_oid(b, 0, len(b))
    usage = b[pos]
    pos += 1
    out: dict[str, Any] = {"version": version, "sensor-id-type": (usage >> 5) & 3,
                           "platform-id-type": (usage >> 3) & 3}
    for name, present in (("sensor-id", out["sensor-id-type"]), ("platform-id", out["platform-id-type"]),
                          ("window-id", usage & 4), ("minor-id", usage & 2)):
        if present:
            if pos + 16 > len(b):
                raise KlvError("truncated MIIS identifier")
            out[name] = str(uuid.UUID(bytes=bytes(b[pos : pos + 16])))
            pos += 16
        else:
            out[name] = None
    return out


def enc_miis(v: dict[str, Any]) -> bytes:
    usage = ((v.get("sensor-id-type") or 0) << 5) | ((v.get("platform-id-type") or 0) << 3)
    usage |= (4 if v.get("window-id") else 0) | (2 if v.get("minor-id") else 0)
    out = encode_ber_oid(int(v.get("version", 1))) + bytes((usage,))
    for name in ("sensor-id", "platform-id", "window-id", "minor-id"):
        if v.get(name):
            out += uuid.UUID(str(v[name])).bytes
    return out


# --- 115 Control Command ---------------------------------------------------------------------
def dec_command(b: bytes) -> dict[str, Any]:
    cid, pos = read_ber_oid(b, 0, len(b))
    text, pos = read_lv(b, pos, len(b))
    ts = int.from_bytes(b[pos : pos + 8], "big") if len(b) - pos == 8 else None
    if len(b) - pos not in (0, 8):
        raise KlvError("control command trailing bytes")
    return {"id": cid, "string": text.decode("utf-8"), "timestamp": ts}


def enc_command(v: dict[str, Any]) -> bytes:
    out = encode_ber_oid(int(v["id"])) + encode_lv(str(v["string"]).encode())
    if v.get("timestamp") is not None:
        out += int(v["timestamp"]).to_bytes(8, "big")
    return out


# --- 122 Country Codes -----------------------------------------------------------------------
_CC_FIELDS = ("overflight-country", "operator-country", "country-of-manufacture")


def dec_country(b: bytes) -> dict[str, Any]:
    method, pos = read_lv(b, 0, len(b))
    out: dict[str, Any] = {"coding-method": int.from_bytes(method, "big")}
    for name in _CC_FIELDS:
        if pos < len(b):
            s, pos = read_lv(b, pos, len(b))
            out[name] = s.decode("utf-8") if s else None
        else:
            out[name] = None
    return out


def enc_country(v: dict[str, Any]) -> bytes:
    out = b"\x01" + bytes((int(v["coding-method"]),))
    vals = [v.get(n) for n in _CC_FIELDS]
    while len(vals) > 1 and not vals[-1]:
        vals.pop()
    return out + b"".join(encode_lv(str(x).encode() if x else b"") for x in vals)


# --- 127 Sensor Frame Rate Pack --------------------------------------------------------------
def dec_frame_rate(b: bytes) -> dict[str, int]:
    num, pos = read_ber_oid(b, 0, len(b))
    den = read_ber_oid(b, pos, len(b))[0] if pos < len(b) else 1
    return {"numerator": num, "denominator": den}


def enc_frame_rate(v: dict[str, int]) -> bytes:
    out = encode_ber_oid(int(v["numerator"]))
    return out + (encode_ber_oid(int(v["denominator"])) if v.get("denominator", 1) != 1 else b"")


# --- 128 Wavelengths List --------------------------------------------------------------------
def dec_wavelengths(b: bytes) -> list[dict[str, Any]]:
    out = []
    for rec in read_series(b):
        wid, pos = read_ber_oid(rec, 0, len(rec))
        out.append({"id": wid, "min": _WAVE.decode(rec[pos : pos + 4]), "max": _WAVE.decode(rec[pos + 4 : pos + 8]),
                    "name": rec[pos + 8 :].decode("utf-8")})
    return out


def enc_wavelengths(v: list[dict[str, Any]]) -> bytes:
    return b"".join(encode_lv(encode_ber_oid(int(r["id"])) + _WAVE.encode(r["min"]) + _WAVE.encode(r["max"])
                              + str(r["name"]).encode()) for r in v)


# --- 130 Airbase Locations -------------------------------------------------------------------
def _dec_loc(b: bytes) -> dict[str, Any] | None:
    if not b:
        return None
    if len(b) not in (8, 11):
        raise KlvError("location pack length")
    return {"latitude": _ILAT.decode(b[:4]), "longitude": _ILON.decode(b[4:8]),
            "altitude": _IALT.decode(b[8:11]) if len(b) == 11 else None}


def _enc_loc(v: dict[str, Any] | None) -> bytes:
    if not v:
        return b""
    out = _ILAT.encode(v["latitude"]) + _ILON.encode(v["longitude"])
    return out + (_IALT.encode(v["altitude"]) if v.get("altitude") is not None else b"")


def dec_airbase(b: bytes) -> dict[str, Any]:
    take, pos = read_lv(b, 0, len(b))
    out = {"take-off-location": _dec_loc(take)}
    if pos < len(b):
        rec, pos = read_lv(b, pos, len(b))
        out["recovery-location"] = _dec_loc(rec)
    else:
        out["recovery-location"] = out["take-off-location"]
    return out


def enc_airbase(v: dict[str, Any]) -> bytes:
    out = encode_lv(_enc_loc(v.get("take-off-location")))
    if v.get("recovery-location") != v.get("take-off-location"):
        out += encode_lv(_enc_loc(v.get("recovery-location")))
    return out


# --- 138 Payload List, 139 Active Payloads ---------------------------------------------------
def dec_payloads(b: bytes) -> list[dict[str, Any]]:
    _count, pos = read_ber_oid(b, 0, len(b))
    out = []
    for rec in read_series(b[pos:]):
        pid, p = read_ber_oid(rec, 0, len(rec))
        ptype, p = read_ber_oid(rec, p, len(rec))
        name, p = read_lv(rec, p, len(rec))
        out.append({"id": pid, "type": ptype, "name": name.decode("utf-8")})
    return out


def enc_payloads(v: list[dict[str, Any]]) -> bytes:
    return encode_ber_oid(len(v)) + b"".join(
        encode_lv(encode_ber_oid(int(r["id"])) + encode_ber_oid(int(r["type"])) + encode_lv(str(r["name"]).encode()))
        for r in v)


def _bits(n: int) -> list[int]:
    return [i for i in range(n.bit_length()) if n >> i & 1]


def _unbits(v: list[int] | int) -> int:
    if isinstance(v, int):
        return v
    n = 0
    for i in v:
        n |= 1 << int(i)
    return n


def dec_bitlist(b: bytes) -> list[int]:
    """A big-endian bit field listed as the indices of its set bits (bit 0 = least significant)."""
    n = int.from_bytes(b, "big")
    return [i for i in range(n.bit_length()) if n >> i & 1]


def enc_bitlist(v: list[int]) -> bytes:
    n = 0
    for i in v:
        n |= 1 << int(i)
    return n.to_bytes(max(1, (n.bit_length() + 7) // 8), "big")


# --- 140 Weapons Stores ----------------------------------------------------------------------
def dec_weapons(b: bytes) -> list[dict[str, Any]]:
    out = []
    for rec in read_series(b):
        end = len(rec)
        ids = []
        p = 0
        for _ in range(5):
            x, p = read_ber_oid(rec, p, end)
            ids.append(x)
        name, p = read_lv(rec, p, end)
        out.append({"station-id": ids[0], "hardpoint-id": ids[1], "carriage-id": ids[2], "store-id": ids[3],
                    "general-status": ids[4] & 0xFF, "engagement-status": _bits((ids[4] >> 8) & 0x0F),
                    "weapon-type": name.decode("utf-8")})
    return out


def enc_weapons(v: list[dict[str, Any]]) -> bytes:
    out = b""
    for r in v:
        status = (_unbits(r["engagement-status"]) << 8) | int(r["general-status"])
        body = b"".join(encode_ber_oid(int(r[k])) for k in ("station-id", "hardpoint-id", "carriage-id", "store-id"))
        out += encode_lv(body + encode_ber_oid(status) + encode_lv(str(r["weapon-type"]).encode()))
    return out


# --- 141 Waypoint List -----------------------------------------------------------------------
def dec_waypoints(b: bytes) -> list[dict[str, Any]]:
    out = []
    for rec in read_series(b):
        wid, p = read_ber_oid(rec, 0, len(rec))
        order = int.from_bytes(rec[p : p + 2], "big", signed=True)
        p += 2
        info = _bits(rec[p]) if p < len(rec) else None
        loc = _dec_loc(rec[p + 1 :]) if p + 1 < len(rec) else None
        out.append({"id": wid, "order": order, "info": info, "location": loc})
    return out


def enc_waypoints(v: list[dict[str, Any]]) -> bytes:
    out = b""
    for r in v:
        body = encode_ber_oid(int(r["id"])) + int(r["order"]).to_bytes(2, "big", signed=True)
        if r.get("info") is not None:
            body += bytes((_unbits(r["info"]),)) + _enc_loc(r.get("location"))
        out += encode_lv(body)
    return out


# --- 142 View Domain -------------------------------------------------------------------------
def dec_view_domain(b: bytes) -> dict[str, Any]:
    out: dict[str, Any] = {}
    pos = 0
    for name, start_map in _VD_START.items():
        if pos >= len(b):
            out[name] = None
            continue
        rec, pos = read_lv(b, pos, len(b))
        if not rec:
            out[name] = None
            continue
        if len(rec) % 2:
            raise KlvError("odd view domain interval")
        h = len(rec) // 2
        out[name] = {"start": start_map.decode(rec[:h]), "range": _VD_RANGE.decode(rec[h:]), "semi-length": h}
    return out


def enc_view_domain(v: dict[str, Any]) -> bytes:
    parts = []
    for name, start_map in _VD_START.items():
        iv = v.get(name)
        if iv is None:
            parts.append(b"")
            continue
        h = int(iv.get("semi-length", 2))
        parts.append(start_map.encode(iv["start"], h) + _VD_RANGE.encode(iv["range"], h))
    while parts and not parts[-1]:
        parts.pop()
    return b"".join(encode_lv(p) for p in parts)


# --- 143 Metadata Substream ID Pack (ST 0601.19) --------------------------------------------
def dec_substream(b: bytes) -> dict[str, Any]:
    local, pos = read_ber_oid(b, 0, len(b))
    if len(b) - pos not in (0, 16):
        raise KlvError("substream universal id length")
    return {"local-id": local, "universal-id": str(uuid.UUID(bytes=bytes(b[pos:]))) if pos < len(b) else None}


def enc_substream(v: dict[str, Any]) -> bytes:
    out = encode_ber_oid(int(v["local-id"]))
    return out + (uuid.UUID(str(v["universal-id"])).bytes if v.get("universal-id") else b"")


SUBSTREAM = Func(dec_substream, enc_substream)
HORIZON = Func(dec_horizon, enc_horizon)
MIIS = Func(dec_miis, enc_miis)
COMMAND = Func(dec_command, enc_command)
COUNTRY = Func(dec_country, enc_country)
FRAME_RATE = Func(dec_frame_rate, enc_frame_rate)
WAVELENGTHS = Func(dec_wavelengths, enc_wavelengths)
AIRBASE = Func(dec_airbase, enc_airbase)
PAYLOADS = Func(dec_payloads, enc_payloads)
BITLIST = Func(dec_bitlist, enc_bitlist)
WEAPONS = Func(dec_weapons, enc_weapons)
WAYPOINTS = Func(dec_waypoints, enc_waypoints)
VIEW_DOMAIN = Func(dec_view_domain, enc_view_domain)
