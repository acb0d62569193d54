"""SensorModel from MISB angles: exact inverses, known geometry, sign conventions, horizon handling."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pyproj import Geod

from kestrel.geo import (
    PinholeModel,
    distance_bearing,
    from_metadata,
    geodetic_to_ecef,
    ned_basis,
)
from kestrel.geo.geodesy import E2, A
from kestrel.klv.metadata import SensorMetadata

GEOD = Geod(ellps="WGS84")


def nadir(alt: float = 1000.0, hfov: float = 60.0, vfov: float = 40.0, lat: float = 45.0) -> PinholeModel:
    return PinholeModel.from_angles(
        lat=lat,
        lon=10.0,
        hae=alt,
        heading=0.0,
        pitch=0.0,
        roll=0.0,
        az=0.0,
        el=-90.0,
        sensor_roll=0.0,
        hfov=hfov,
        vfov=vfov,
        width=1200,
        height=800,
    )


poses = st.fixed_dictionaries(
    {
        "lat": st.floats(-80.0, 80.0),
        "lon": st.floats(-180.0, 180.0),
        "hae": st.floats(100.0, 20000.0),
        "heading": st.floats(0.0, 360.0),
        "pitch": st.floats(-20.0, 20.0),
        "roll": st.floats(-40.0, 40.0),
        "az": st.floats(0.0, 360.0),
        "el": st.floats(-90.0, -2.0),
        "sensor_roll": st.floats(-45.0, 45.0),
        "hfov": st.floats(0.5, 100.0),
        "aspect": st.sampled_from([(1280, 720), (720, 480), (640, 480), (160, 120)]),
    }
)


def make(pose: dict) -> PinholeModel:
    p = dict(pose)
    w, h = p.pop("aspect")
    vfov = 2 * math.degrees(math.atan(math.tan(math.radians(p["hfov"]) / 2) * h / w))
    return PinholeModel.from_angles(**p, vfov=vfov, width=w, height=h)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(poses, st.floats(-100.0, 2000.0))
def test_round_trips_over_pixel_grid(pose: dict, ground_h: float) -> None:
    m = make(pose)
    ground_h = min(ground_h, m.sensor_llh[2] - 50.0)
    us, vs = np.meshgrid(np.linspace(0, m.width, 9), np.linspace(0, m.height, 7))
    uv = np.column_stack([us.ravel(), vs.ravel()])
    g = m.pixels_to_ground(uv, ground_h)
    hit: np.ndarray = np.asarray(np.isfinite(g).all(axis=1))
    # Misses only where the ray really does not come down to the surface: never for rays that
    # point more than a degree below the local horizontal at a height well above the surface.
    assert m.sensor_ecef is not None
    d = m.rays(uv)
    down = (d / np.linalg.norm(d, axis=1, keepdims=True)) @ ned_basis(*m.sensor_llh[:2])[:, 2]
    dip = math.degrees(math.acos((6.3e6 + ground_h) / (6.3e6 + m.sensor_llh[2])))
    steep: np.ndarray = np.asarray(np.degrees(np.arcsin(np.clip(down, -1, 1))) > dip + 1.0)
    assert hit[steep].all()
    if not hit.any():
        return
    # pixel -> ground -> pixel
    back = m.grounds_to_pixels(g[hit])
    assert np.abs(back - uv[hit]).max() < 1e-4  # px; float64 noise on 0.5° FOVs reaches 1e-5
    # ground -> pixel -> ground: < 1 mm
    again = m.pixels_to_ground(back, ground_h)
    p1 = geodetic_to_ecef(g[hit, 0], g[hit, 1], g[hit, 2])
    p2 = geodetic_to_ecef(again[:, 0], again[:, 1], again[:, 2])
    assert np.linalg.norm(p1 - p2, axis=1).max() < 1e-3
    assert np.abs(g[hit, 2] - ground_h).max() < 1e-4


def test_scalar_and_vector_agree() -> None:
    m = PinholeModel.from_angles(
        lat=38.0,
        lon=-77.0,
        hae=3000.0,
        heading=45.0,
        pitch=2.0,
        roll=-5.0,
        az=30.0,
        el=-35.0,
        sensor_roll=3.0,
        hfov=20.0,
        vfov=15.0,
        width=640,
        height=480,
    )
    uv = np.array([[0.0, 0.0], [320.0, 240.0], [639.5, 479.5], [100.25, 400.75]])
    vec = m.pixels_to_ground(uv, 120.0)
    for row, (u, v) in zip(vec, uv, strict=True):
        one = m.pixel_to_ground(u, v, 120.0)
        assert one is not None and np.allclose(row, one, atol=1e-9)
        px = m.ground_to_pixel(*one)
        assert px is not None and px == pytest.approx((u, v), abs=1e-6)


def test_nadir_footprint_and_gsd() -> None:
    alt, hfov, vfov = 1000.0, 60.0, 40.0
    m = nadir(alt, hfov, vfov)
    ul, ur, lr, ll = m.footprint()
    width_m, bearing = distance_bearing(ul[0], ul[1], ur[0], ur[1])
    height_m, bearing_v = distance_bearing(ul[0], ul[1], ll[0], ll[1])
    assert width_m == pytest.approx(2 * alt * math.tan(math.radians(hfov / 2)), rel=1e-3)
    assert height_m == pytest.approx(2 * alt * math.tan(math.radians(vfov / 2)), rel=1e-3)
    assert bearing == pytest.approx(90.0, abs=0.01)  # heading north: image right is east
    assert bearing_v == pytest.approx(180.0, abs=0.01)  # image down is south
    gu, gv = m.gsd_xy(600.0, 400.0) or (0, 0)
    assert gu == pytest.approx(alt * math.tan(math.radians(hfov / 2)) / 600, rel=1e-4)
    assert gv == pytest.approx(alt * math.tan(math.radians(vfov / 2)) / 400, rel=1e-4)
    assert m.gsd(600.0, 400.0) == pytest.approx(math.sqrt(gu * gv), rel=1e-6)
    c = m.image_center_ground()
    assert c is not None and c[:2] == pytest.approx((45.0, 10.0), abs=1e-9)
    # GSD scales with the height of the ground below the sensor.
    assert m.gsd(600.0, 400.0, 500.0) == pytest.approx(m.gsd(600.0, 400.0) / 2, rel=1e-3)  # type: ignore[operator]


def _osculating_radius(lat: float, azimuth: float) -> float:
    s2 = math.sin(math.radians(lat)) ** 2
    m = A * (1 - E2) / (1 - E2 * s2) ** 1.5
    n = A / math.sqrt(1 - E2 * s2)
    a = math.radians(azimuth)
    return 1.0 / (math.cos(a) ** 2 / m + math.sin(a) ** 2 / n)


@pytest.mark.parametrize(
    ("lat", "heading", "alt", "dep"),
    [
        (0.0, 0.0, 3000.0, 10.0),
        (45.0, 90.0, 5000.0, 5.0),
        (-33.0, 210.0, 800.0, 30.0),
        (70.0, 300.0, 12000.0, 8.0),
    ],
)
def test_level_camera_depression_against_geod(lat: float, heading: float, alt: float, dep: float) -> None:
    """Level platform, camera on the nose looking `dep` below the horizon along `heading`.

    Independent answer: on the sphere osculating the ellipsoid along that azimuth (Euler radius),
    the ray meets the surface after slant s = r0 sin(d) - sqrt(R^2 - r0^2 cos^2 d), r0 = R + alt,
    at central angle asin(s cos d / R); pyproj Geod walks that arc length along the heading.
    """
    m = PinholeModel.from_angles(
        lat=lat,
        lon=20.0,
        hae=alt,
        heading=heading,
        pitch=0.0,
        roll=0.0,
        az=0.0,
        el=-dep,
        sensor_roll=0.0,
        hfov=10.0,
        vfov=10.0,
        width=100,
        height=100,
    )
    got = m.image_center_ground(0.0)
    assert got is not None
    r = _osculating_radius(lat, heading)
    r0, d = r + alt, math.radians(dep)
    s = r0 * math.sin(d) - math.sqrt(r * r - (r0 * math.cos(d)) ** 2)
    arc = r * math.asin(s * math.cos(d) / r)
    lon2, lat2, _ = GEOD.fwd(20.0, lat, heading, arc)
    miss, _ = distance_bearing(got[0], got[1], lat2, lon2)
    assert miss < 0.05 + 1e-5 * arc, (miss, arc)
    _, bearing = distance_bearing(lat, 20.0, got[0], got[1])
    assert (bearing - heading + 180) % 360 - 180 == pytest.approx(0.0, abs=1e-6)


def _range_bearing(m: PinholeModel, u: float | None = None, v: float | None = None) -> tuple[float, float]:
    g = m.pixel_to_ground(m.width / 2 if u is None else u, m.height / 2 if v is None else v, 0.0)
    assert g is not None
    d, b = distance_bearing(m.sensor_llh[0], m.sensor_llh[1], g[0], g[1])
    return float(d), float(b)


def pose(**kw: float) -> PinholeModel:
    base = dict(
        lat=10.0,
        lon=10.0,
        hae=1000.0,
        heading=0.0,
        pitch=0.0,
        roll=0.0,
        az=0.0,
        el=-45.0,
        sensor_roll=0.0,
        hfov=20.0,
        vfov=20.0,
    )
    base.update(kw)
    return PinholeModel.from_angles(**base, width=200, height=200)  # type: ignore[arg-type]


def test_sign_conventions_follow_st0601() -> None:
    # Heading clockwise from north: heading 90, look 45 down -> ground ~alt metres to the east.
    d, b = _range_bearing(pose(heading=90.0))
    assert b == pytest.approx(90.0, abs=1e-6) and d == pytest.approx(1000.0, rel=1e-3)
    # Sensor azimuth clockwise from the nose: heading 10 + az 80 -> east as well.
    assert _range_bearing(pose(heading=10.0, az=80.0))[1] == pytest.approx(90.0, abs=1e-6)
    # Pitch positive = nose up: 10 deg up with 30 deg down on the gimbal -> 20 deg depression.
    d, _ = _range_bearing(pose(pitch=10.0, el=-30.0))
    assert d == pytest.approx(1000.0 / math.tan(math.radians(20.0)), rel=2e-3)
    # Roll positive = right wing down: camera looking out of the right wing (az 90, el 0) now
    # looks 10 deg down, to the east of a north-flying platform.
    d, b = _range_bearing(pose(roll=10.0, az=90.0, el=0.0))
    assert b == pytest.approx(90.0, abs=1e-3) and d == pytest.approx(
        1000.0 / math.tan(math.radians(10.0)), rel=5e-3
    )
    # ...and the left wing (az 270) then looks up: no ground.
    assert pose(roll=10.0, az=270.0, el=0.0).image_center_ground() is None
    # Sensor roll positive = camera twisted clockwise seen from behind: the right edge of the
    # image drops (sees closer ground), the left edge rises.
    m = pose(sensor_roll=20.0, el=-20.0)
    right, _ = _range_bearing(m, u=200.0)
    left, _ = _range_bearing(m, u=0.0)
    assert right < left
    # Image right is to the right of the line of sight (north-looking camera: east).
    m = pose()
    assert m.ground_to_pixel(*m.pixel_to_ground(190.0, 100.0, 0.0))[0] > 100  # type: ignore[index,misc]
    g_right = m.pixel_to_ground(190.0, 100.0, 0.0)
    assert g_right is not None and g_right[1] > 10.0
    # Image top (small v) is farther away than image bottom for a forward-looking camera.
    assert _range_bearing(m, v=10.0)[0] > _range_bearing(m, v=190.0)[0]


def test_horizon_clipping() -> None:
    m = pose(el=0.0, hfov=40.0, vfov=20.0, hae=2000.0)  # horizontal look: top half is sky
    assert m.pixel_to_ground(100.0, 0.0) is None
    assert m.pixel_to_ground(100.0, 200.0) is not None
    fp = m.footprint()
    assert len(fp) == 4
    horizon = math.sqrt(2 * 6.4e6 * 2000.0 + 2000.0**2)
    for lat, lon in fp:
        d, _ = distance_bearing(10.0, 10.0, lat, lon)
        assert d < horizon * 1.01
        px = m.ground_to_pixel(lat, lon, 0.0)
        assert px is not None and -1e-3 <= px[0] <= 200 + 1e-3 and 0 < px[1] <= 200 + 1e-3
    # Top corners were pulled down their vertical edges, bottom corners kept.
    assert m.ground_to_pixel(fp[2][0], fp[2][1]) == pytest.approx((200.0, 200.0), abs=1e-4)
    clipped = m.footprint(max_range=5000.0)
    for lat, lon in clipped:
        assert distance_bearing(10.0, 10.0, lat, lon)[0] < 5000.0
    assert pose(el=30.0).footprint() == []  # all sky


def test_ground_to_pixel_behind_or_hidden() -> None:
    m = pose(heading=0.0, el=-45.0)
    assert m.ground_to_pixel(9.99, 10.0) is None  # south of a north-looking camera: behind it
    assert m.ground_to_pixel(-10.0, -170.0) is None  # antipode: in front of no camera
    # Far side of the earth but in front of a horizontal camera: hidden by the earth.
    m = pose(el=0.0, hfov=60.0, vfov=60.0)
    assert m.ground_to_pixel(40.0, 10.0, 0.0) is None
    # The same direction at high altitude is visible (above the horizon).
    assert m.ground_to_pixel(10.5, 10.0, 30000.0) is not None


def test_dem_hook_moves_the_hit() -> None:
    def plateau(lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
        return np.full(np.shape(lat), 300.0)

    md = SensorMetadata(
        sensor_lat=10.0,
        sensor_lon=10.0,
        sensor_alt=1000.0,
        platform_heading=0.0,
        platform_pitch=0.0,
        platform_roll=0.0,
        sensor_rel_az=0.0,
        sensor_rel_el=-45.0,
        sensor_rel_roll=0.0,
        hfov=20.0,
        vfov=20.0,
    )
    m = from_metadata(md, 200, 200, dem=plateau)
    assert m is not None
    on_dem = m.image_center_ground()
    assert on_dem is not None and on_dem[2] == pytest.approx(300.0, abs=1e-3)
    d_dem, _ = distance_bearing(10.0, 10.0, on_dem[0], on_dem[1])
    assert d_dem == pytest.approx(700.0, rel=1e-3)  # 45 deg down onto ground 700 m below
    flat = m.image_center_ground(0.0)  # an explicit height overrides the DEM: the ellipsoid, 1000 m below
    assert flat is not None and flat[2] == pytest.approx(0.0, abs=1e-6)
    d_flat, _ = distance_bearing(10.0, 10.0, flat[0], flat[1])
    assert d_flat == pytest.approx(1000.0, rel=1e-3)


def test_footprint_geojson_and_bad_pixels() -> None:
    m = nadir()
    geo = m.footprint_geojson()
    assert geo is not None and geo["type"] == "Polygon"
    ring = geo["coordinates"][0]
    assert len(ring) == 5 and ring[0] == ring[-1]
    assert [(lat, lon) for lon, lat in ring[:4]] == m.footprint()
    assert pose(el=30.0).footprint_geojson() is None
    out = m.pixels_to_ground(np.array([[np.nan, 1.0], [600.0, 400.0], [np.inf, 0.0]]))
    assert np.isnan(out[0]).all() and np.isfinite(out[1]).all() and np.isnan(out[2]).all()
    assert m.pixels_to_ground(np.empty((0, 2))).shape == (0, 3)
