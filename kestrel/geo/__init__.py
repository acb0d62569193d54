"""kestrel.geo: WGS-84 geodesy and the sensor model (pixel <-> ground) built from KLV metadata.

Pure computation, no I/O. Conventions (pixels, rotation order, MSL vs HAE): docs/geo.md.
"""

from kestrel.geo.build import build_model, explain, from_metadata
from kestrel.geo.check import (
    FrameCenterSummary,
    frame_center_offset,
    frame_center_offsets,
    summarize_frame_center,
)
from kestrel.geo.corners import PlaneModel, fit_corner_pose
from kestrel.geo.geodesy import (
    LocalFrame,
    destination,
    distance_bearing,
    ecef_to_geodetic,
    enu_basis,
    geodetic_to_ecef,
    msl_to_hae,
    ned_basis,
    ray_ellipsoid,
    ray_hit_height,
    zero_geoid,
)
from kestrel.geo.sensor import InsufficientMetadata, PinholeModel, SensorModel, misb_camera_to_ned

__all__ = [
    "build_model",
    "explain",
    "from_metadata",
    "FrameCenterSummary",
    "frame_center_offset",
    "InsufficientMetadata",
    "LocalFrame",
    "PinholeModel",
    "PlaneModel",
    "SensorModel",
    "destination",
    "distance_bearing",
    "ecef_to_geodetic",
    "enu_basis",
    "fit_corner_pose",
    "frame_center_offsets",
    "geodetic_to_ecef",
    "misb_camera_to_ned",
    "msl_to_hae",
    "ned_basis",
    "ray_ellipsoid",
    "ray_hit_height",
    "summarize_frame_center",
    "zero_geoid",
]
