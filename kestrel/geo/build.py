"""Choose and build the best `SensorModel` a `SensorMetadata` record supports.

Order of preference (docs/geo.md):
0. "pose-absolute": sensor lat/lon/alt + earth-referenced pointing (`sensor_abs_az/el`, EG 0104
   angle to north + obliquity) + HFOV: camera -> NED = Rz(abs_az) Ry(abs_el) Rx(sensor roll);
   platform attitude is not applied (it is already inside those angles).
1. "pose": sensor lat/lon/alt + platform heading + sensor relative azimuth/elevation + HFOV.
   Missing platform pitch/roll or sensor roll are taken as 0 and listed in `model.assumed`
   (but if corners are present too, missing platform pitch/roll prefer option 2).
   Missing VFOV: square pixels, vfov = 2 atan(tan(hfov/2) H/W).
2. "corners-pose": four corners + sensor lat/lon/alt: attitude (and FOV if missing) fitted.
3. "corners-plane": four corners only: homography onto flat ground at the frame-centre elevation.
4. otherwise InsufficientMetadata (frame centre alone gives one ground point, not a model).
"""

from __future__ import annotations

import math

from kestrel.geo.corners import PlaneModel, fit_corner_pose
from kestrel.geo.geodesy import Array, HeightFn, msl_to_hae
from kestrel.geo.sensor import InsufficientMetadata, PinholeModel, SensorModel, misb_camera_to_ned, sensor_hae
from kestrel.klv.metadata import SensorMetadata


def _f(v: float | None) -> float:
    """A value the caller has already checked with `_finite`."""
    assert v is not None
    return float(v)


def _finite(*values: float | None) -> bool:
    return all(v is not None and math.isfinite(v) for v in values)


def _position_ok(md: SensorMetadata) -> bool:
    return (
        _finite(md.sensor_lat, md.sensor_lon)
        and (_finite(md.sensor_alt) or _finite(md.sensor_hae))
        and md.sensor_lat is not None
        and -90.0 <= md.sensor_lat <= 90.0
    )


def _corners_ok(md: SensorMetadata) -> bool:
    c = md.corners
    return c is not None and len(c) == 4 and all(len(p) == 2 and _finite(p[0], p[1]) for p in c)


def _fov_ok(v: float | None) -> bool:
    return v is not None and math.isfinite(v) and 0.0 < v < 180.0


def _ground_elev(md: SensorMetadata, geoid: HeightFn | None) -> float:
    """Corner/frame-centre ground height HAE: frame-centre elevation (MSL) + geoid, else the
    frame-centre HAE (ST 0601 tag 78) as carried, else 0."""
    if md.frame_center_elev is None or not math.isfinite(md.frame_center_elev):
        return md.frame_center_hae if _finite(md.frame_center_hae) else 0.0  # type: ignore[return-value]
    lat = md.frame_center_lat if md.frame_center_lat is not None else (md.corners or [(0.0, 0.0)])[0][0]
    lon = md.frame_center_lon if md.frame_center_lon is not None else (md.corners or [(0.0, 0.0)])[0][1]
    return msl_to_hae(md.frame_center_elev, lat, lon, geoid)


def _vfov(md: SensorMetadata, width: int, height: int) -> tuple[float, float, tuple[str, ...]]:
    hfov = _f(md.hfov)
    if _fov_ok(md.vfov):
        return hfov, _f(md.vfov), ()
    vfov = 2.0 * math.degrees(math.atan(math.tan(math.radians(hfov) / 2.0) * height / width))
    return hfov, vfov, ("vfov",)


def _pinhole(
    md: SensorMetadata,
    rot: Array,
    width: int,
    height: int,
    dem: HeightFn | None,
    geoid: HeightFn | None,
    assumed: tuple[str, ...],
    kind: str,
) -> PinholeModel:
    hfov, vfov, more = _vfov(md, width, height)
    return PinholeModel(
        lat=_f(md.sensor_lat),
        lon=_f(md.sensor_lon),
        hae=sensor_hae(md, geoid),
        cam_to_ned=rot,
        hfov=hfov,
        vfov=vfov,
        width=width,
        height=height,
        dem=dem,
        assumed=assumed + more,
        kind=kind,
    )


def build_model(
    md: SensorMetadata, width: int, height: int, *, dem: HeightFn | None = None, geoid: HeightFn | None = None
) -> SensorModel:
    """The best model the metadata supports; raises `InsufficientMetadata` with the reasons."""
    if width <= 0 or height <= 0:
        raise InsufficientMetadata(f"bad image size {width}x{height}")
    has_pos = _position_ok(md)
    has_abs = _finite(md.sensor_abs_az, md.sensor_abs_el)
    has_angles = _finite(md.platform_heading, md.sensor_rel_az, md.sensor_rel_el)
    has_corners = _corners_ok(md)
    attitude_complete = _finite(md.platform_pitch, md.platform_roll)
    reasons: list[str] = []

    if has_pos and has_abs and _fov_ok(md.hfov):
        # Earth-referenced pointing (EG 0104 angle to north / obliquity): the platform attitude
        # is already inside these angles, so it is not applied again.
        rot = misb_camera_to_ned(
            _f(md.sensor_abs_az),
            _f(md.sensor_abs_el),
            md.sensor_rel_roll or 0.0,
            0.0,
            0.0,
            0.0,
        )
        assumed: tuple[str, ...] = ("sensor_rel_roll",) if md.sensor_rel_roll is None else ()
        return _pinhole(md, rot, width, height, dem, geoid, assumed, "pose-absolute")
    if has_pos and has_angles and _fov_ok(md.hfov) and (attitude_complete or not has_corners):
        assumed = tuple(
            name
            for name in ("platform_pitch", "platform_roll", "sensor_rel_roll")
            if getattr(md, name) is None
        )
        rot = misb_camera_to_ned(
            _f(md.platform_heading),
            md.platform_pitch or 0.0,
            md.platform_roll or 0.0,
            _f(md.sensor_rel_az),
            _f(md.sensor_rel_el),
            md.sensor_rel_roll or 0.0,
        )
        return _pinhole(md, rot, width, height, dem, geoid, assumed, "pose")
    if not has_pos:
        reasons.append("no sensor position (lat/lon/alt)")
    if not has_angles:
        reasons.append("no platform heading / sensor relative azimuth+elevation")
    elif not _fov_ok(md.hfov):
        reasons.append(f"no usable horizontal FOV ({md.hfov})")

    if has_corners:
        corners = [(float(p[0]), float(p[1])) for p in md.corners or ()]
        elev = _ground_elev(md, geoid)
        if has_pos:
            try:
                model = fit_corner_pose(
                    (_f(md.sensor_lat), _f(md.sensor_lon), sensor_hae(md, geoid)),
                    corners,
                    elev,
                    width,
                    height,
                    hfov=md.hfov if _fov_ok(md.hfov) else None,
                    vfov=md.vfov if _fov_ok(md.vfov) else None,
                )
                model.dem = dem
                return model
            except InsufficientMetadata as exc:
                reasons.append(str(exc))
        try:
            return PlaneModel(corners, width, height, elev)
        except InsufficientMetadata as exc:
            reasons.append(str(exc))
    else:
        reasons.append("no four frame corners")
    if _finite(md.frame_center_lat, md.frame_center_lon):
        reasons.append("only the frame centre is known: one ground point, no pixel geometry")
    raise InsufficientMetadata("; ".join(reasons))


def from_metadata(
    md: SensorMetadata, width: int, height: int, *, dem: HeightFn | None = None, geoid: HeightFn | None = None
) -> SensorModel | None:
    """The best model the metadata supports, or None (`explain` says why)."""
    try:
        return build_model(md, width, height, dem=dem, geoid=geoid)
    except InsufficientMetadata:
        return None


def explain(md: SensorMetadata, width: int = 1280, height: int = 720) -> str | None:
    """Why `from_metadata` returns None for this metadata; None when a model can be built."""
    try:
        build_model(md, width, height)
    except InsufficientMetadata as exc:
        return str(exc)
    return None
