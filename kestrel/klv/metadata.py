"""`SensorMetadata`: the sensor/platform geometry of one instant, normalised from any KLV set.

Angles in degrees, distances in metres, heights above the WGS-84 ellipsoid unless named
otherwise (MISB altitudes are MSL; we carry them as given and say so). `None` = not present.
This is the record that flows from `klv` (decode) to `geo` (sensor model) and `fmv` (frames).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Any


@dataclass(slots=True)
class SensorMetadata:
    time_us: int | None = None  # precision time stamp, microseconds since the Unix epoch
    platform_heading: float | None = None  # deg, 0..360, true north
    platform_pitch: float | None = None  # deg
    platform_roll: float | None = None  # deg
    sensor_lat: float | None = None
    sensor_lon: float | None = None
    sensor_alt: float | None = None  # m (MSL as carried by ST 0601 tag 15)
    hfov: float | None = None  # deg
    vfov: float | None = None  # deg
    sensor_rel_az: float | None = None  # deg, relative to platform heading
    sensor_rel_el: float | None = None  # deg, negative = looking down
    sensor_rel_roll: float | None = None  # deg
    slant_range: float | None = None  # m
    target_width: float | None = None  # m
    frame_center_lat: float | None = None
    frame_center_lon: float | None = None
    frame_center_elev: float | None = None  # m
    # Corners in order UL, UR, LR, LL as (lat, lon); absolute (ST 0601 tags 82-89, or 23/24 +
    # offsets 26-33, or EG 0104 corner keys).
    corners: tuple[tuple[float, float], ...] | None = None
    platform_designation: str | None = None
    mission_id: str | None = None
    # Absolute sensor pointing when the source gives it in earth terms (EG 0104 "Angle to North",
    # "Obliquity Angle"); ST 0601 leaves these None and gives the relative angles above.
    sensor_abs_az: float | None = None  # deg from true north
    sensor_abs_el: float | None = None  # deg, negative = below the horizon
    # Heights above the WGS-84 ellipsoid when the source carries them (ST 0601 tags 75/104, 78).
    sensor_hae: float | None = None  # m
    frame_center_hae: float | None = None  # m

    def merged(self, newer: SensorMetadata) -> SensorMetadata:
        """A copy with every field `newer` has overriding ours (for partial/delta packets)."""
        out = SensorMetadata()
        for f in fields(self):
            value: Any = getattr(newer, f.name)
            setattr(out, f.name, value if value is not None else getattr(self, f.name))
        return out


# --- KLV -> SensorMetadata ------------------------------------------------------------------
# ST 0601 tag -> SensorMetadata field (values already in the record's units).
_ST0601_FIELDS: dict[int, str] = {
    2: "time_us", 5: "platform_heading", 6: "platform_pitch", 7: "platform_roll",
    13: "sensor_lat", 14: "sensor_lon", 15: "sensor_alt", 16: "hfov", 17: "vfov",
    18: "sensor_rel_az", 19: "sensor_rel_el", 20: "sensor_rel_roll", 21: "slant_range",
    22: "target_width", 23: "frame_center_lat", 24: "frame_center_lon", 25: "frame_center_elev",
    10: "platform_designation", 3: "mission_id",
}
_FULL_CORNERS = ((82, 83), (84, 85), (86, 87), (88, 89))  # UL, UR, LR, LL
_OFFSET_CORNERS = ((26, 27), (28, 29), (30, 31), (32, 33))


def _num(v: Any) -> float | None:
    """A finite float, or None (missing, raw bytes, NaN error value, IMAPB special)."""
    if isinstance(v, bool) or not isinstance(v, int | float):
        return None
    f = float(v)
    return f if math.isfinite(f) else None


def _from_st0601(tags: dict[Any, Any]) -> SensorMetadata:
    md = SensorMetadata()
    for tag, name in _ST0601_FIELDS.items():
        v = tags.get(tag)
        if name == "time_us":
            md.time_us = v if isinstance(v, int) else None
        elif name in ("platform_designation", "mission_id"):
            setattr(md, name, v if isinstance(v, str) else None)
        else:
            setattr(md, name, _num(v))
    # Full-range pitch/roll (90/91) supersede the short-range tags 6/7 when present.
    for tag, name in ((90, "platform_pitch"), (91, "platform_roll")):
        v = _num(tags.get(tag))
        if v is not None:
            setattr(md, name, v)
    md.sensor_hae = _num(tags.get(75))
    if md.sensor_hae is None:
        md.sensor_hae = _num(tags.get(104))  # the extended-range form
    md.frame_center_hae = _num(tags.get(78))
    full = [(_num(tags.get(a)), _num(tags.get(b))) for a, b in _FULL_CORNERS]
    if all(la is not None and lo is not None for la, lo in full):
        md.corners = tuple((float(la), float(lo)) for la, lo in full)  # type: ignore[arg-type]
    elif md.frame_center_lat is not None and md.frame_center_lon is not None:
        offs = [(_num(tags.get(a)), _num(tags.get(b))) for a, b in _OFFSET_CORNERS]
        if all(la is not None and lo is not None for la, lo in offs):
            md.corners = tuple((md.frame_center_lat + la, md.frame_center_lon + lo)  # type: ignore[operator]
                               for la, lo in offs)
    return md


def _from_eg0104(tags: dict[Any, Any]) -> SensorMetadata:
    g = tags.get
    md = SensorMetadata(
        time_us=g("User Defined Timestamp") if isinstance(g("User Defined Timestamp"), int) else None,
        platform_heading=_num(g("Platform Heading Angle")),
        platform_pitch=_num(g("Platform Pitch Angle")),
        platform_roll=_num(g("Platform Roll Angle")),
        sensor_lat=_num(g("Device Latitude")),
        sensor_lon=_num(g("Device Longitude")),
        sensor_alt=_num(g("Device Altitude")),
        hfov=_num(g("Horizontal Field of View")),
        vfov=_num(g("Vertical Field of View")),
        slant_range=_num(g("Slant Range")),
        target_width=_num(g("Target Width")),
        frame_center_lat=_num(g("Frame Center Latitude")),
        frame_center_lon=_num(g("Frame Center Longitude")),
        frame_center_elev=_num(g("Frame Center Elevation")),
        platform_designation=g("Device Designation") if isinstance(g("Device Designation"), str) else None,
        mission_id=g("Episode Number") if isinstance(g("Episode Number"), str) else None,
    )
    # EG 0104 gives the sensor's pointing in earth terms: "Angle to North" (absolute azimuth)
    # and "Obliquity Angle" (real encoders, e.g. the aphill sample, carry the depression as a
    # negative elevation; the 0-360 "270 = down" convention is folded by 180 - x).
    az = _num(g("Angle to North"))
    el = _num(g("Obliquity Angle"))
    if el is not None and el > 90.0:
        el = 180.0 - el
        el = (el + 180.0) % 360.0 - 180.0
    md.sensor_abs_az = az % 360.0 if az is not None else None
    md.sensor_abs_el = el
    if az is not None and md.platform_heading is not None:
        md.sensor_rel_az = (az - md.platform_heading) % 360.0  # exact only for a level platform
    md.sensor_rel_el = el
    md.sensor_rel_roll = _num(g("Sensor Roll Angle"))
    names = [(f"Corner Latitude Point {i}", f"Corner Longitude Point {i}") for i in (1, 2, 3, 4)]
    corners = [(_num(g(a)), _num(g(b))) for a, b in names]
    if all(la is not None and lo is not None for la, lo in corners):
        md.corners = tuple((float(la), float(lo)) for la, lo in corners)  # type: ignore[arg-type]
    return md


def to_metadata(pkt: Any) -> SensorMetadata | None:
    """SensorMetadata from a decoded ST 0601 or EG 0104 `KlvPacket`; None for other sets/errors."""
    if getattr(pkt, "error", None) is not None:
        return None
    name = getattr(pkt, "set_name", None)
    if name == "ST0601":
        return _from_st0601(pkt.tags)
    if name == "EG0104":
        return _from_eg0104(pkt.tags)
    return None
