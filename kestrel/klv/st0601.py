"""MISB ST 0601 UAS Datalink Local Set: tag table (tags 1-143, ST 0601.19) and the encoder.

The table is data: tag -> Item(name, units, codec). Mappings and ranges follow ST 0601 §8
(as also implemented by KWIVER `klv_0601.cxx` and jmisb `UasDatalinkTag`). Nested sets decode
recursively: 48 ST 0102, 73 ST 0806, 74 ST 0903, 95 ST 1206, 97 ST 1002, 98 ST 1601, 99 ST 1602,
100/101 ST 1607 segment/amend (items of ST 0601 itself), 102 ST 1010 SDCC-FLP. Tag 66 (deprecated)
and unknown tags keep raw bytes, which the encoder writes back verbatim.
"""

from __future__ import annotations

import time
from typing import Any

from . import st0102, st1010
from . import st0601_packs as P
from .codecs import RAW, Bits, Enum, ImapCodec, Item, OidList, S, SInt, U, UInt, Utf8
from .localset import Nested, SetSpec, encode_packet

KEY = bytes.fromhex("060e2b34020b01010e01030101000000")

ICING = {0: "Detector Off", 1: "No Icing Detected", 2: "Icing Detected"}
FOV_NAME = {0: "Ultranarrow", 1: "Narrow", 2: "Medium", 3: "Wide", 4: "Ultrawide", 5: "Narrow Medium",
            6: "2x Ultranarrow", 7: "4x Ultranarrow", 8: "Continuous Zoom"}
GENERIC_FLAGS = {0: "Laser Range", 1: "Auto-Track", 2: "IR Polarity", 3: "Icing Status", 4: "Slant Range",
                 5: "Image Invalid"}
OPERATIONAL_MODE = {0: "Other", 1: "Operational", 2: "Training", 3: "Exercise", 4: "Maintenance", 5: "Test"}
POSITIONING_SOURCE = {0: "On-board INS", 1: "GPS", 2: "Galileo", 3: "QZSS", 4: "NAVIC", 5: "GLONASS",
                      6: "BeiDou-1", 7: "BeiDou-2"}
PLATFORM_STATUS = {0: "Active", 1: "Preflight", 2: "Preflight - Taxiing", 3: "Run-up", 4: "Take-off",
                   5: "Ingress", 6: "Manual Operation", 7: "Automated Orbit", 8: "Transitioning",
                   9: "Egress", 10: "Landing", 11: "Landing - Taxiing", 12: "Landed - Parked"}
SENSOR_CONTROL_MODE = {0: "Off", 1: "Home Position", 2: "Uncontrolled", 3: "Manual Control",
                       4: "Calibrating", 5: "Auto - Holding Position", 6: "Auto - Tracking"}

_S = Utf8()
_HEAD = U(0.0, 360.0, 2)
_ALT = U(-900.0, 19000.0, 2)
_LAT = S(-90.0, 90.0, 4)
_LON = S(-180.0, 180.0, 4)
_OFF = S(-0.075, 0.075, 2)
_HAE_X = ImapCodec(-900.0, 40000.0, 3)


def _nested(module: str) -> Nested:
    def ref() -> SetSpec:
        import importlib

        return importlib.import_module(f"kestrel.klv.{module}").SPEC  # type: ignore[no-any-return]

    return Nested(ref)


TABLE: dict[int, Item] = {
    1: Item("Checksum", "", UInt(2)),
    2: Item("Precision Time Stamp", "us since 1970 (UTC)", UInt(8)),
    3: Item("Mission ID", "", _S),
    4: Item("Platform Tail Number", "", _S),
    5: Item("Platform Heading Angle", "deg", _HEAD),
    6: Item("Platform Pitch Angle", "deg", S(-20.0, 20.0, 2)),
    7: Item("Platform Roll Angle", "deg", S(-50.0, 50.0, 2)),
    8: Item("Platform True Airspeed", "m/s", U(0.0, 255.0, 1)),
    9: Item("Platform Indicated Airspeed", "m/s", U(0.0, 255.0, 1)),
    10: Item("Platform Designation", "", _S),
    11: Item("Image Source Sensor", "", _S),
    12: Item("Image Coordinate System", "", _S),
    13: Item("Sensor Latitude", "deg", _LAT),
    14: Item("Sensor Longitude", "deg", _LON),
    15: Item("Sensor True Altitude", "m MSL", _ALT),
    16: Item("Sensor Horizontal Field of View", "deg", U(0.0, 180.0, 2)),
    17: Item("Sensor Vertical Field of View", "deg", U(0.0, 180.0, 2)),
    18: Item("Sensor Relative Azimuth Angle", "deg", U(0.0, 360.0, 4)),
    19: Item("Sensor Relative Elevation Angle", "deg", S(-180.0, 180.0, 4)),
    20: Item("Sensor Relative Roll Angle", "deg", U(0.0, 360.0, 4)),
    21: Item("Slant Range", "m", U(0.0, 5.0e6, 4)),
    22: Item("Target Width", "m", U(0.0, 1.0e4, 2)),
    23: Item("Frame Center Latitude", "deg", _LAT),
    24: Item("Frame Center Longitude", "deg", _LON),
    25: Item("Frame Center Elevation", "m MSL", _ALT),
    26: Item("Offset Corner Latitude Point 1", "deg", _OFF),
    27: Item("Offset Corner Longitude Point 1", "deg", _OFF),
    28: Item("Offset Corner Latitude Point 2", "deg", _OFF),
    29: Item("Offset Corner Longitude Point 2", "deg", _OFF),
    30: Item("Offset Corner Latitude Point 3", "deg", _OFF),
    31: Item("Offset Corner Longitude Point 3", "deg", _OFF),
    32: Item("Offset Corner Latitude Point 4", "deg", _OFF),
    33: Item("Offset Corner Longitude Point 4", "deg", _OFF),
    34: Item("Icing Detected", "enum", Enum(ICING)),
    35: Item("Wind Direction", "deg", _HEAD),
    36: Item("Wind Speed", "m/s", U(0.0, 100.0, 1)),
    37: Item("Static Pressure", "mbar", U(0.0, 5000.0, 2)),
    38: Item("Density Altitude", "m", _ALT),
    39: Item("Outside Air Temperature", "degC", S(-127.0, 127.0, 1)),
    40: Item("Target Location Latitude", "deg", _LAT),
    41: Item("Target Location Longitude", "deg", _LON),
    42: Item("Target Location Elevation", "m MSL", _ALT),
    43: Item("Target Track Gate Width", "pixels", U(0.0, 510.0, 1)),
    44: Item("Target Track Gate Height", "pixels", U(0.0, 510.0, 1)),
    45: Item("Target Error Estimate - CE90", "m", U(0.0, 4095.0, 2)),
    46: Item("Target Error Estimate - LE90", "m", U(0.0, 4095.0, 2)),
    47: Item("Generic Flag Data", "bits", Bits(GENERIC_FLAGS)),
    48: Item("Security Local Set", "ST 0102", Nested(lambda: st0102.SPEC)),
    49: Item("Differential Pressure", "mbar", U(0.0, 5000.0, 2)),
    50: Item("Platform Angle of Attack", "deg", S(-20.0, 20.0, 2)),
    51: Item("Platform Vertical Speed", "m/s", S(-180.0, 180.0, 2)),
    52: Item("Platform Sideslip Angle", "deg", S(-20.0, 20.0, 2)),
    53: Item("Airfield Barometric Pressure", "mbar", U(0.0, 5000.0, 2)),
    54: Item("Airfield Elevation", "m", _ALT),
    55: Item("Relative Humidity", "%", U(0.0, 100.0, 1)),
    56: Item("Platform Ground Speed", "m/s", U(0.0, 255.0, 1)),
    57: Item("Ground Range", "m", U(0.0, 5.0e6, 4)),
    58: Item("Platform Fuel Remaining", "kg", U(0.0, 1.0e4, 2)),
    59: Item("Platform Call Sign", "", _S),
    60: Item("Weapon Load", "", UInt(2)),
    61: Item("Weapon Fired", "", UInt(1)),
    62: Item("Laser PRF Code", "", UInt(2)),
    63: Item("Sensor Field of View Name", "enum", Enum(FOV_NAME)),
    64: Item("Platform Magnetic Heading", "deg", _HEAD),
    65: Item("UAS Datalink LS Version Number", "", UInt(1)),
    66: Item("Deprecated (Target Location Covariance Matrix)", "", RAW),
    67: Item("Alternate Platform Latitude", "deg", _LAT),
    68: Item("Alternate Platform Longitude", "deg", _LON),
    69: Item("Alternate Platform Altitude", "m MSL", _ALT),
    70: Item("Alternate Platform Name", "", _S),
    71: Item("Alternate Platform Heading", "deg", _HEAD),
    72: Item("Event Start Time", "us since 1970 (UTC)", UInt(8)),
    73: Item("RVT Local Set", "ST 0806", _nested("st0806")),
    74: Item("VMTI Local Set", "ST 0903", _nested("st0903")),
    75: Item("Sensor Ellipsoid Height", "m HAE", _ALT),
    76: Item("Alternate Platform Ellipsoid Height", "m HAE", _ALT),
    77: Item("Operational Mode", "enum", Enum(OPERATIONAL_MODE)),
    78: Item("Frame Center Height Above Ellipsoid", "m HAE", _ALT),
    79: Item("Sensor North Velocity", "m/s", S(-327.0, 327.0, 2)),
    80: Item("Sensor East Velocity", "m/s", S(-327.0, 327.0, 2)),
    81: Item("Image Horizon Pixel Pack", "pack", P.HORIZON),
    82: Item("Corner Latitude Point 1 (Full)", "deg", _LAT),
    83: Item("Corner Longitude Point 1 (Full)", "deg", _LON),
    84: Item("Corner Latitude Point 2 (Full)", "deg", _LAT),
    85: Item("Corner Longitude Point 2 (Full)", "deg", _LON),
    86: Item("Corner Latitude Point 3 (Full)", "deg", _LAT),
    87: Item("Corner Longitude Point 3 (Full)", "deg", _LON),
    88: Item("Corner Latitude Point 4 (Full)", "deg", _LAT),
    89: Item("Corner Longitude Point 4 (Full)", "deg", _LON),
    90: Item("Platform Pitch Angle (Full)", "deg", S(-90.0, 90.0, 4)),
    91: Item("Platform Roll Angle (Full)", "deg", S(-90.0, 90.0, 4)),
    92: Item("Platform Angle of Attack (Full)", "deg", S(-90.0, 90.0, 4)),
    93: Item("Platform Sideslip Angle (Full)", "deg", S(-180.0, 180.0, 4)),
    94: Item("MIIS Core Identifier", "ST 1204", P.MIIS),
    95: Item("SAR Motion Imagery Local Set", "ST 1206", _nested("st1206")),
    96: Item("Target Width Extended", "m", ImapCodec(0.0, 1.5e6, 3)),
    97: Item("Range Image Local Set", "ST 1002", _nested("st1002")),
    98: Item("Geo-Registration Local Set", "ST 1601", _nested("st1601")),
    99: Item("Composite Imaging Local Set", "ST 1602", _nested("st1602")),
    100: Item("Segment Local Set", "ST 1607", _nested("st1607")),
    101: Item("Amend Local Set", "ST 1607", _nested("st1607")),
    102: Item("SDCC-FLP", "ST 1010", st1010.SDCC),
    103: Item("Density Altitude Extended", "m", _HAE_X),
    104: Item("Sensor Ellipsoid Height Extended", "m HAE", _HAE_X),
    105: Item("Alternate Platform Ellipsoid Height Extended", "m HAE", _HAE_X),
    106: Item("Stream Designator", "", _S),
    107: Item("Operational Base", "", _S),
    108: Item("Broadcast Source", "", _S),
    109: Item("Range To Recovery Location", "km", ImapCodec(0.0, 21000.0, 4)),
    110: Item("Time Airborne", "s", UInt()),
    111: Item("Propulsion Unit Speed", "RPM", UInt()),
    112: Item("Platform Course Angle", "deg", ImapCodec(0.0, 360.0, 2)),
    113: Item("Altitude Above Ground Level", "m", ImapCodec(-900.0, 40000.0, 3)),
    114: Item("Radar Altimeter", "m", ImapCodec(-900.0, 40000.0, 3)),
    115: Item("Control Command", "pack", P.COMMAND),
    116: Item("Control Command Verification List", "list", OidList()),
    117: Item("Sensor Azimuth Rate", "deg/s", ImapCodec(-1000.0, 1000.0, 3)),
    118: Item("Sensor Elevation Rate", "deg/s", ImapCodec(-1000.0, 1000.0, 3)),
    119: Item("Sensor Roll Rate", "deg/s", ImapCodec(-1000.0, 1000.0, 3)),
    120: Item("On-board MI Storage Percent Full", "%", ImapCodec(0.0, 100.0, 2)),
    121: Item("Active Wavelength List", "list", OidList()),
    122: Item("Country Codes", "pack", P.COUNTRY),
    123: Item("Number of NAVSATs in View", "", UInt(1)),
    124: Item("Positioning Method Source", "bits", Bits(POSITIONING_SOURCE)),
    125: Item("Platform Status", "enum", Enum(PLATFORM_STATUS)),
    126: Item("Sensor Control Mode", "enum", Enum(SENSOR_CONTROL_MODE)),
    127: Item("Sensor Frame Rate Pack", "pack", P.FRAME_RATE),
    128: Item("Wavelengths List", "list", P.WAVELENGTHS),
    129: Item("Target ID", "", _S),
    130: Item("Airbase Locations", "pack", P.AIRBASE),
    131: Item("Take-off Time", "us since 1970 (UTC)", UInt()),
    132: Item("Transmission Frequency", "MHz", ImapCodec(1.0, 99999.0, 3)),
    133: Item("On-board MI Storage Capacity", "GB", UInt()),
    134: Item("Zoom Percentage", "%", ImapCodec(0.0, 100.0, 2)),
    135: Item("Communications Method", "", _S),
    136: Item("Leap Seconds", "s", SInt()),
    137: Item("Correction Offset", "us", SInt()),
    138: Item("Payload List", "list", P.PAYLOADS),
    139: Item("Active Payloads", "bits", P.BITLIST),
    140: Item("Weapons Stores", "list", P.WEAPONS),
    141: Item("Waypoint List", "list", P.WAYPOINTS),
    142: Item("View Domain", "pack", P.VIEW_DOMAIN),
    143: Item("Metadata Substream ID Pack", "pack", P.SUBSTREAM),
}

SPEC = SetSpec("ST0601", KEY, TABLE, checksum_tag=1, first_tags=(2,), finish=st1010.fill_members,
               arrange=st1010.arrange)
VERSION = 19  # tag 65 written by `encode` unless the caller gives one


def encode(values: dict[int, Any], *, timestamp_us: int | None = None, version: int | None = VERSION) -> bytes:
    """A complete ST 0601 packet: key, BER length, tag 2 first, the items, tag 65, checksum last.

    `values` maps tag -> Python value as the decoder returns it (bytes pass through raw).
    Tag 2 comes from `timestamp_us`, else values[2], else the current time.
    """
    vals = dict(values)
    vals.pop(1, None)
    if timestamp_us is not None:
        vals[2] = int(timestamp_us)
    elif 2 not in vals:
        vals[2] = time.time_ns() // 1000
    if version is not None and 65 not in vals:
        vals[65] = version
    return encode_packet(SPEC, vals)
