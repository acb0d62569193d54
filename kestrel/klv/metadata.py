"""`SensorMetadata`: the sensor/platform geometry of one instant, normalised from any KLV set.

Angles in degrees, distances in metres, heights above the WGS-84 ellipsoid unless named
otherwise (MISB altitudes are MSL; we carry them as given and say so). `None` = not present.
This is the record that flows from `klv` (decode) to `geo` (sensor model) and `fmv` (frames).
"""

from __future__ import annotations

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

    def merged(self, newer: SensorMetadata) -> SensorMetadata:
        """A copy with every field `newer` has overriding ours (for partial/delta packets)."""
        out = SensorMetadata()
        for f in fields(self):
            value: Any = getattr(newer, f.name)
            setattr(out, f.name, value if value is not None else getattr(self, f.name))
        return out
