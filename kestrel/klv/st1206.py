"""MISB ST 1206 SAR Motion Imagery Local Set (nested in ST 0601 tag 95)."""

from __future__ import annotations

from .codecs import Enum, ImapCodec, Item, UInt
from .imapb import Imap
from .localset import SetSpec
from .mdap import mdap_codec

KEY = bytes.fromhex("060e2b34020b01010e0103030d000000")
LOOK_DIRECTION = {0: "Left", 1: "Right"}
IMAGE_PLANE = {0: "Slant", 1: "Ground", 2: "Other"}

_RCS = Imap(0.0, 1.0e6, 4)
_ANG90, _SQUINT, _ANG360 = ImapCodec(0.0, 90.0, 2), ImapCodec(-90.0, 90.0, 2), ImapCodec(0.0, 360.0, 2)
_M = ImapCodec(0.0, 1.0e6, 4)
TABLE: dict[int, Item] = {
    1: Item("Grazing Angle", "deg", _ANG90),
    2: Item("Ground Plane Squint Angle", "deg", _SQUINT),
    3: Item("Look Direction", "enum", Enum(LOOK_DIRECTION)),
    4: Item("Image Plane", "enum", Enum(IMAGE_PLANE)),
    5: Item("Range Resolution", "m", _M),
    6: Item("Cross-Range Resolution", "m", _M),
    7: Item("Range Image Plane Pixel Size", "m", _M),
    8: Item("Cross-Range Image Plane Pixel Size", "m", _M),
    9: Item("Image Rows", "pixels", UInt(2)),
    10: Item("Image Columns", "pixels", UInt(2)),
    11: Item("Range Direction Angle", "deg", _ANG360),
    12: Item("True North", "deg", _ANG360),
    13: Item("Range Layover Angle", "deg", _ANG360),
    14: Item("Ground Aperture Angular Extent", "deg", _ANG90),
    15: Item("Aperture Duration", "us", UInt(4)),
    16: Item("Ground Track Angle", "deg", _ANG360),
    17: Item("Minimum Detectable Velocity", "m/s", ImapCodec(0.0, 100.0, 2)),
    18: Item("True Pulse Repetition Frequency", "Hz", _M),
    19: Item("Pulse Repetition Frequency Scale Factor", "", ImapCodec(0.0, 1.0, 2)),
    20: Item("Transmit RF Center Frequency", "Hz", ImapCodec(0.0, 1.0e12, 4)),
    21: Item("Transmit RF Bandwidth", "Hz", ImapCodec(0.0, 1.0e11, 4)),
    22: Item("Radar Cross Section Scale Factor Polynomial", "MDAP", mdap_codec(
        _RCS.decode, lambda x, n: Imap(0.0, 1.0e6, n).encode(x))),
    23: Item("Reference Frame Precision Time Stamp", "us since 1970 (UTC)", UInt(8)),
    24: Item("Reference Frame Grazing Angle", "deg", _ANG90),
    25: Item("Reference Frame Ground Plane Squint Angle", "deg", _SQUINT),
    26: Item("Reference Frame Range Direction Angle", "deg", _ANG360),
    27: Item("Reference Frame Range Layover Angle", "deg", _ANG360),
    28: Item("Document Version", "", UInt(1)),
}
SPEC = SetSpec("ST1206", KEY, TABLE)
