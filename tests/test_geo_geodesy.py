"""WGS-84 geodesy helpers: ECEF, local frames, distance/bearing, ray-ellipsoid hits, DEM hook."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pyproj import Geod

from kestrel.geo import (
    LocalFrame,
    destination,
    distance_bearing,
    ecef_to_geodetic,
    geodetic_to_ecef,
    msl_to_hae,
    ray_ellipsoid,
    ray_hit_height,
)
from kestrel.geo.geodesy import A, B

lats = st.floats(-89.9, 89.9)
lons = st.floats(-180.0, 180.0)


def test_ecef_known_points() -> None:
    assert np.allclose(geodetic_to_ecef(0.0, 0.0, 0.0), [A, 0.0, 0.0], atol=1e-6)
    assert np.allclose(geodetic_to_ecef(0.0, 90.0, 100.0), [0.0, A + 100.0, 0.0], atol=1e-6)
    assert np.allclose(geodetic_to_ecef(90.0, 0.0, 0.0), [0.0, 0.0, B], atol=1e-6)
    assert np.allclose(ecef_to_geodetic([0.0, 0.0, -B - 5.0]), [-90.0, 0.0, 5.0], atol=1e-6)


@settings(max_examples=60, deadline=None)
@given(lats, lons, st.floats(-500.0, 30000.0))
def test_ecef_round_trip(lat: float, lon: float, h: float) -> None:
    back = ecef_to_geodetic(geodetic_to_ecef(lat, lon, h))
    p1, p2 = geodetic_to_ecef(lat, lon, h), geodetic_to_ecef(*back)
    assert np.linalg.norm(p1 - p2) < 1e-4


def test_local_frame_against_geod() -> None:
    frame = LocalFrame(51.0, -1.5)
    lat, lon = destination(51.0, -1.5, 0.0, 1000.0)  # 1 km due north on the ellipsoid
    e, n, u = frame.to_enu(lat, lon, 0.0)
    assert abs(e) < 1e-6
    assert n == pytest.approx(1000.0, abs=0.01)
    assert u == pytest.approx(-(1000.0**2) / (2 * 6.37e6), abs=0.02)  # the ellipsoid falls away
    lat, lon = destination(51.0, -1.5, 90.0, 250.0)
    e, n, _ = frame.to_enu(lat, lon)
    assert e == pytest.approx(250.0, abs=0.01)


@settings(max_examples=40, deadline=None)
@given(lats, lons, st.floats(-5000, 5000), st.floats(-5000, 5000), st.floats(-100, 3000))
def test_local_frame_round_trip(lat: float, lon: float, e: float, n: float, u: float) -> None:
    frame = LocalFrame(lat, lon, 10.0)
    llh = frame.to_geodetic(e, n, u)
    assert np.allclose(frame.to_enu(*llh), [e, n, u], atol=1e-6)


def test_local_frame_vectorised() -> None:
    frame = LocalFrame(10.0, 20.0)
    e = np.linspace(-100, 100, 7)
    llh = frame.to_geodetic(e, 2 * e)
    assert llh.shape == (7, 3)
    assert np.allclose(frame.ground_to_enu(llh[:, 0], llh[:, 1]), np.column_stack([e, 2 * e]), atol=1e-3)


def test_distance_bearing_matches_geod() -> None:
    d, b = distance_bearing(0.0, 0.0, 1.0, 0.0)
    assert d == pytest.approx(110574.389, abs=0.01)  # one degree of latitude at the equator
    assert b == pytest.approx(0.0, abs=1e-9)
    d, b = distance_bearing(0.0, 0.0, 0.0, -1.0)
    assert b == pytest.approx(270.0)
    lat2, lon2 = destination(40.0, -75.0, 33.0, 12345.0)
    geod = Geod(ellps="WGS84")
    az, _, dist = geod.inv(-75.0, 40.0, lon2, lat2)
    assert dist == pytest.approx(12345.0, abs=1e-6) and az == pytest.approx(33.0, abs=1e-9)
    d, b = distance_bearing(
        np.array([0.0, 0.0]), np.array([0.0, 0.0]), np.array([1.0, 0.0]), np.array([0.0, 1.0])
    )
    assert d.shape == (2,) and b[1] == pytest.approx(90.0)


def test_msl_to_hae_geoid_hook() -> None:
    assert msl_to_hae(100.0, 10.0, 20.0) == 100.0
    assert msl_to_hae(100.0, 10.0, 20.0, lambda lat, lon: -30.0) == 70.0


def test_ray_ellipsoid_closed_form() -> None:
    origin = np.array([A + 1000.0, 0.0, 0.0])
    down = np.array([[-1.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    t = ray_ellipsoid(origin, down, 0.0)
    assert t[0] == pytest.approx(1000.0, abs=1e-6)
    assert np.isnan(t[1]) and np.isnan(t[2])  # away from the earth; tangent-ish sideways misses
    assert ray_ellipsoid(origin, down[:1], 400.0)[0] == pytest.approx(600.0, abs=1e-6)
    # From inside the inflated ellipsoid the exit point is returned.
    assert ray_ellipsoid(origin, down[1:2], 2000.0)[0] == pytest.approx(1000.0, abs=1e-6)
    # Along the polar axis the minor semi-axis counts.
    t = ray_ellipsoid(np.array([0.0, 0.0, B + 500.0]), np.array([[0.0, 0.0, -2.0]]), 0.0)
    assert t[0] == pytest.approx(250.0, abs=1e-6)  # t in units of |dir|


@settings(max_examples=60, deadline=None)
@given(
    lats,
    lons,
    st.floats(50.0, 25000.0),
    st.floats(0.0, 360.0),
    st.floats(1.0, 90.0),
    st.floats(-200.0, 3000.0),
)
def test_ray_hit_height_is_on_ray_and_at_height(
    lat: float, lon: float, alt: float, az: float, dep: float, h: float
) -> None:
    if h >= alt - 1.0:
        h = alt - 10.0
    # Stay below the horizon: the dip to the height-h surface, with a conservative radius.
    dip = math.degrees(math.acos((6.3e6 + h) / (6.3e6 + alt)))
    dep = max(dep, dip + 0.2)
    origin = geodetic_to_ecef(lat, lon, alt)
    p, lam = math.radians(lat), math.radians(lon)
    north = np.array([-math.sin(p) * math.cos(lam), -math.sin(p) * math.sin(lam), math.cos(p)])
    east = np.array([-math.sin(lam), math.cos(lam), 0.0])
    up = np.array([math.cos(p) * math.cos(lam), math.cos(p) * math.sin(lam), math.sin(p)])
    a, d = math.radians(az), math.radians(dep)
    ray = math.cos(d) * (math.cos(a) * north + math.sin(a) * east) - math.sin(d) * up
    hit = ray_hit_height(origin, ray[None, :], h)[0]
    assert np.isfinite(hit).all()
    assert hit[2] == pytest.approx(h, abs=1e-4)
    rel = geodetic_to_ecef(*hit) - origin
    cross = np.linalg.norm(np.cross(rel, ray))  # distance of the hit from the ray line
    assert cross < 1e-4 and float(rel @ ray) > 0


def test_ray_hit_misses_are_nan() -> None:
    origin = geodetic_to_ecef(0.0, 0.0, 1000.0)
    up = origin / np.linalg.norm(origin)
    hits = ray_hit_height(origin, np.stack([up, -up]), 0.0)
    assert np.isnan(hits[0]).all()
    assert hits[1] == pytest.approx([0.0, 0.0, 0.0], abs=1e-6)


def test_dem_constant_equals_height() -> None:
    origin = geodetic_to_ecef(30.0, 40.0, 5000.0)
    rays = np.array([[-1.0, 0.2, -0.5], [-1.0, -0.1, -0.3]]) @ np.diag([1, 1, 1])
    rays = -origin / np.linalg.norm(origin) + 0.3 * rays
    flat = ray_hit_height(origin, rays, 250.0)
    dem = ray_hit_height(origin, rays, dem=lambda la, lo: np.full(np.shape(la), 250.0))
    assert np.allclose(flat, dem, atol=1e-9)


def test_dem_slope_converges_onto_terrain() -> None:
    # Terrain rising 50 m per km northwards (a 2.9 degree slope) around 45N.
    def dem(la: np.ndarray, lo: np.ndarray) -> np.ndarray:
        return 100.0 + (np.asarray(la) - 45.0) * 111_000.0 * 0.05

    origin = geodetic_to_ecef(44.95, 7.0, 3000.0)
    frame = LocalFrame(44.95, 7.0, 3000.0)
    dirs = np.array([[0.0, 1.0, -0.6], [0.3, 1.0, -0.4], [-0.2, 0.5, -1.0]])
    ecef_dirs = dirs @ frame.basis.T
    hits = ray_hit_height(origin, ecef_dirs, dem=dem)
    assert np.isfinite(hits).all()
    assert np.allclose(hits[:, 2], dem(hits[:, 0], hits[:, 1]), atol=2e-3)
    for hit, d in zip(hits, ecef_dirs, strict=True):
        rel = geodetic_to_ecef(*hit) - origin
        assert np.linalg.norm(np.cross(rel, d / np.linalg.norm(d))) < 1e-4


def test_origin_below_target_height_is_a_miss() -> None:
    origin = geodetic_to_ecef(10.0, 10.0, -50.0)  # bad altitude: sensor under the ground
    down = -origin / np.linalg.norm(origin)
    assert np.isnan(ray_hit_height(origin, down[None, :], 0.0)).all()
    assert np.isnan(ray_hit_height(origin, -down[None, :], 0.0)).all()  # not through the earth either
    assert np.isfinite(ray_hit_height(origin, down[None, :], -100.0)).all()


def test_conversions_are_thread_safe() -> None:
    from concurrent.futures import ThreadPoolExecutor

    rng = np.random.default_rng(3)
    pts = np.column_stack(
        [rng.uniform(-80, 80, 2000), rng.uniform(-180, 180, 2000), rng.uniform(0, 9000, 2000)]
    )
    expected = geodetic_to_ecef(pts[:, 0], pts[:, 1], pts[:, 2])

    def work(_: int) -> float:
        worst = 0.0
        for _ in range(20):
            got = geodetic_to_ecef(pts[:, 0], pts[:, 1], pts[:, 2])
            back = ecef_to_geodetic(got)
            worst = max(
                worst, float(np.abs(got - expected).max()), float(np.abs(back[:, 2] - pts[:, 2]).max())
            )
        return worst

    with ThreadPoolExecutor(4) as pool:
        assert max(pool.map(work, range(4))) < 1e-4


@pytest.mark.parametrize(("slope", "dep"), [(0.5, 20.0), (1.0, 10.0), (0.3, 5.0), (-0.3, 45.0), (2.0, 45.0)])
def test_dem_steep_and_grazing(slope: float, dep: float) -> None:
    """Where slope x cot(depression) > 1 a plain fixed-point iteration diverges; we must not."""

    def dem(la: np.ndarray, lo: np.ndarray) -> np.ndarray:
        return 100.0 + (np.asarray(la) - 45.0) * 111_000.0 * slope

    origin = geodetic_to_ecef(44.95, 7.0, 3100.0)
    frame = LocalFrame(44.95, 7.0)
    d = math.radians(dep)
    ray = np.array([[0.0, math.cos(d), -math.sin(d)]]) @ frame.basis.T
    hit = ray_hit_height(origin, ray, dem=dem)[0]
    assert np.isfinite(hit).all()
    assert hit[2] == pytest.approx(float(dem(hit[0], hit[1])), abs=2e-3)
    rel = geodetic_to_ecef(*hit) - origin
    assert np.linalg.norm(np.cross(rel, ray[0])) < 1e-4 and float(rel @ ray[0]) > 0


def test_dem_no_hit_and_no_data() -> None:
    frame = LocalFrame(44.95, 7.0)
    origin = geodetic_to_ecef(44.95, 7.0, 3100.0)
    d = math.radians(5.0)
    ray = np.array([[0.0, math.cos(d), -math.sin(d)]]) @ frame.basis.T
    # Terrain falling away faster than the ray descends: never met.
    falling = ray_hit_height(
        origin, ray, dem=lambda la, lo: 100.0 - (np.asarray(la) - 44.95) * 111_000.0 * 0.2
    )
    assert np.isnan(falling).all()
    # A DEM that has no data (NaN) there.
    assert np.isnan(ray_hit_height(origin, ray, dem=lambda la, lo: np.full(np.shape(la), np.nan))).all()
