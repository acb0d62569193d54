"""MISB EG 0104 Predator UAV Basic Universal Metadata Set (decode).

A universal set: every element is a full 16-byte SMPTE key, a BER length and a value. Elements are
named by key (the version byte, index 7, is ignored when matching). Unknown keys keep raw bytes.
`KlvPacket.tags` maps element name -> value. No checksum in this set.
"""

from __future__ import annotations

from typing import Any

from .ber import KlvError, encode_ber_length, read_ber_length
from .codecs import RAW, Codec, Float, UInt, Utf8
from .packet import KlvPacket

KEY = bytes.fromhex("060e2b34020101010e01010201010000")

_F = Float()
_S = Utf8()
# (key hex without the version byte semantics, name, codec); floats accept 4 or 8 bytes.
_ELEMENTS: tuple[tuple[str, str, Codec], ...] = (
    ("060e2b34010101010702010101050000", "User Defined Timestamp", UInt(8)),
    ("060e2b34010101010105050000000000", "Episode Number", _S),
    ("060e2b34010101070701100106000000", "Platform Heading Angle", _F),
    ("060e2b34010101070701100105000000", "Platform Pitch Angle", _F),
    ("060e2b34010101070701100104000000", "Platform Roll Angle", _F),
    ("060e2b34010101010101200100000000", "Device Designation", _S),
    ("060e2b34010101010420010201010000", "Image Source Device", _S),
    ("060e2b34010101010701010100000000", "Image Coordinate System", _S),
    ("060e2b34010101030701020102040200", "Device Latitude", _F),
    ("060e2b34010101030701020102060200", "Device Longitude", _F),
    ("060e2b34010101010701020102020000", "Device Altitude", _F),
    ("060e2b34010101020420020101080000", "Horizontal Field of View", _F),
    ("060e2b340101010704200201010a0100", "Vertical Field of View", _F),
    ("060e2b34010101010701080101000000", "Slant Range", _F),
    ("060e2b34010101010701090201000000", "Target Width", _F),
    ("060e2b34010101010701020103020000", "Frame Center Latitude", _F),
    ("060e2b34010101010701020103040000", "Frame Center Longitude", _F),
    ("060e2b340101010a0701020103160000", "Frame Center Elevation", _F),
    ("060e2b34010101030701020103070100", "Corner Latitude Point 1", _F),
    ("060e2b34010101030701020103080100", "Corner Latitude Point 2", _F),
    ("060e2b34010101030701020103090100", "Corner Latitude Point 3", _F),
    ("060e2b340101010307010201030a0100", "Corner Latitude Point 4", _F),
    ("060e2b340101010307010201030b0100", "Corner Longitude Point 1", _F),
    ("060e2b340101010307010201030c0100", "Corner Longitude Point 2", _F),
    ("060e2b340101010307010201030d0100", "Corner Longitude Point 3", _F),
    ("060e2b340101010307010201030e0100", "Corner Longitude Point 4", _F),
    ("060e2b34020301010e01030302000000", "Security Local Set", RAW),
    ("060e2b34010101010702010201010000", "Start Datetime", _S),
    ("060e2b34010101010702010207010000", "Event Start Datetime", _S),
    ("060e2b34010101010701100101000000", "Sensor Roll Angle", _F),
    ("060e2b34010101010701100102000000", "Angle to North", _F),
    ("060e2b34010101010701100103000000", "Obliquity Angle", _F),
)


def _norm(key: bytes) -> bytes:
    return key[:7] + key[8:]


BY_KEY: dict[bytes, tuple[str, Codec]] = {_norm(bytes.fromhex(k)): (n, c) for k, n, c in _ELEMENTS}
KEY_BY_NAME: dict[str, bytes] = {n: bytes.fromhex(k) for k, n, _ in _ELEMENTS}


def decode_packet(data: bytes, start: int, body: int, end: int) -> KlvPacket:
    """Decode a universal set data[start:end] (body at `body`) into {element name: value}."""
    tags: dict[Any, Any] = {}
    pos = body
    while pos < end:
        if end - pos < 17:
            raise KlvError("EG0104: truncated element key")
        key = bytes(data[pos : pos + 16])
        n, pos = read_ber_length(data, pos + 16, end)
        if pos + n > end:
            raise KlvError("EG0104: element runs past the end of the set")
        value = bytes(data[pos : pos + n])
        pos += n
        entry = BY_KEY.get(_norm(key))
        if entry is None:
            tags[key.hex()] = value  # unknown element: raw bytes under its key
            continue
        name, codec = entry
        try:
            tags[name] = codec.decode(value) if value else None
        except (ValueError, UnicodeDecodeError):
            tags[name] = value
    return KlvPacket(key=bytes(data[start : start + 16]), set_name="EG0104", tags=tags,
                     raw=bytes(data[start:end]))


def encode(values: dict[str, Any]) -> bytes:
    """Encode {element name: value} as an EG 0104 universal set (floats as 8-byte doubles)."""
    body = b""
    for name, v in values.items():
        key = KEY_BY_NAME[name]
        codec = BY_KEY[_norm(key)][1]
        raw = bytes(v) if isinstance(v, bytes) else (Float(8).encode(v) if codec is _F else codec.encode(v))
        body += key + encode_ber_length(len(raw)) + raw
    return KEY + encode_ber_length(len(body)) + body
