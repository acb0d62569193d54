"""WGS-84 geodesy: geodetic <-> ECEF, local ENU/NED frames, distance/bearing, ray-ellipsoid hits.

Goal: every conversion is vectorised numpy (N points per call, no Python loop per point) and the
pairs are exact inverses (pyproj round trip ~µm). Heights are metres above the WGS-84 ellipsoid
(HAE); MISB carries MSL, so `msl_to_hae` applies a geoid hook (undulation N, HAE = MSL + N)
that defaults to 0 — see docs/geo.md for what that costs (|N| reaches ~100 m).

Worst case: `ray_hit_height` costs one closed-form quadratic plus `HEIGHT_ITERATIONS` pyproj
ECEF->geodetic calls over the N rays; a DEM adds one DEM lookup per iteration.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray
from pyproj import Geod, Transformer

A = 6378137.0  # WGS-84 semi-major axis, m
F = 1.0 / 298.257223563
B = A * (1.0 - F)  # semi-minor axis, m
E2 = F * (2.0 - F)  # first eccentricity squared

Array = NDArray[np.float64]
# (lat, lon) -> height; must accept numpy arrays and broadcast (scalars work too).
HeightFn = Callable[[Any, Any], Any]

GEOD = Geod(ellps="WGS84")
_LOCAL = threading.local()  # pyproj transformers are not thread-safe: one pair per thread


def _transformers() -> tuple[Transformer, Transformer]:
    pair: tuple[Transformer, Transformer] | None = getattr(_LOCAL, "pair", None)
    if pair is None:
        pair = (
            Transformer.from_crs("EPSG:4979", "EPSG:4978", always_xy=True),
            Transformer.from_crs("EPSG:4978", "EPSG:4979", always_xy=True),
        )
        _LOCAL.pair = pair
    return pair


HEIGHT_TOL = 1e-5  # m: stop refining a ray hit when the geodetic height is this close
HEIGHT_ITERATIONS = 6


def zero_geoid(lat: Any, lon: Any) -> Any:
    """Default geoid hook: undulation 0 m everywhere (MSL taken as HAE)."""
    return np.zeros(np.broadcast(np.asarray(lat), np.asarray(lon)).shape)


def msl_to_hae(alt_msl: float, lat: float, lon: float, geoid: HeightFn | None = None) -> float:
    """Height above ellipsoid from a MISB MSL altitude (HAE = MSL + N(lat, lon))."""
    n = 0.0 if geoid is None else float(np.asarray(geoid(lat, lon)))
    return float(alt_msl) + n


def geodetic_to_ecef(lat: ArrayLike, lon: ArrayLike, h: ArrayLike = 0.0) -> Array:
    """(lat, lon, h) in degrees/metres -> ECEF metres, shape broadcast(...) + (3,)."""
    la, lo, hh = np.broadcast_arrays(
        np.asarray(lat, dtype=float), np.asarray(lon, dtype=float), np.asarray(h, dtype=float)
    )
    x, y, z = _transformers()[0].transform(lo, la, hh)
    return np.stack([np.asarray(x), np.asarray(y), np.asarray(z)], axis=-1)


def ecef_to_geodetic(xyz: ArrayLike) -> Array:
    """ECEF metres (..., 3) -> (..., 3) of lat, lon (degrees) and h (metres HAE)."""
    p = np.asarray(xyz, dtype=float)
    lo, la, hh = _transformers()[1].transform(p[..., 0], p[..., 1], p[..., 2])
    return np.stack([np.asarray(la), np.asarray(lo), np.asarray(hh)], axis=-1)


def enu_basis(lat: float, lon: float) -> Array:
    """3x3 matrix whose columns are East, North, Up unit vectors (ECEF) at (lat, lon)."""
    p, lam = np.radians(lat), np.radians(lon)
    sp, cp, sl, cl = np.sin(p), np.cos(p), np.sin(lam), np.cos(lam)
    east = [-sl, cl, 0.0]
    north = [-sp * cl, -sp * sl, cp]
    up = [cp * cl, cp * sl, sp]
    return np.array([east, north, up], dtype=float).T


def ned_basis(lat: float, lon: float) -> Array:
    """3x3 matrix whose columns are North, East, Down unit vectors (ECEF) at (lat, lon)."""
    enu = enu_basis(lat, lon)
    return np.stack([enu[:, 1], enu[:, 0], -enu[:, 2]], axis=1)


class LocalFrame:
    """Exact local tangent-plane frame (ENU metres) around a reference point.

    `to_enu`/`to_geodetic` go through ECEF, so they are exact inverses at any distance (the plane
    is tangent at the reference; far away "up" is height above the tangent plane, not above the
    ellipsoid). For tracking on the ground within a few km the tangent plane is what you want.
    """

    def __init__(self, lat0: float, lon0: float, h0: float = 0.0) -> None:
        self.lat0, self.lon0, self.h0 = float(lat0), float(lon0), float(h0)
        self.origin = geodetic_to_ecef(lat0, lon0, h0)
        self.basis = enu_basis(lat0, lon0)  # columns E, N, U

    def to_enu(self, lat: ArrayLike, lon: ArrayLike, h: ArrayLike = 0.0) -> Array:
        """(lat, lon, h) -> (..., 3) east, north, up metres."""
        return (geodetic_to_ecef(lat, lon, h) - self.origin) @ self.basis

    def to_geodetic(self, east: ArrayLike, north: ArrayLike, up: ArrayLike = 0.0) -> Array:
        """east, north, up metres -> (..., 3) lat, lon, h."""
        e, n, u = np.broadcast_arrays(
            np.asarray(east, dtype=float), np.asarray(north, dtype=float), np.asarray(up, dtype=float)
        )
        enu = np.stack([e, n, u], axis=-1)
        return ecef_to_geodetic(self.origin + enu @ self.basis.T)

    def ground_to_enu(self, lat: ArrayLike, lon: ArrayLike) -> Array:
        """(lat, lon) on the ellipsoid -> (..., 2) east, north (the tangent-plane projection)."""
        return self.to_enu(lat, lon, 0.0)[..., :2]


def distance_bearing(lat1: ArrayLike, lon1: ArrayLike, lat2: ArrayLike, lon2: ArrayLike) -> tuple[Any, Any]:
    """Geodesic distance (m) and initial bearing (deg, 0..360 clockwise from true north), WGS-84."""
    az, _back, dist = GEOD.inv(lon1, lat1, lon2, lat2)
    return dist, np.mod(az, 360.0)


def destination(lat: ArrayLike, lon: ArrayLike, bearing: ArrayLike, distance: ArrayLike) -> tuple[Any, Any]:
    """Point reached from (lat, lon) along a geodesic: returns (lat, lon)."""
    lon2, lat2, _ = GEOD.fwd(lon, lat, bearing, distance)
    return lat2, lon2


def ray_ellipsoid(origin: Array, dirs: Array, h: ArrayLike = 0.0) -> Array:
    """Distance along each ray to the first hit of the ellipsoid inflated by h (axes a+h, b+h).

    origin (3,), dirs (N, 3) unit or not (t is in units of |dir|), h scalar or (N,).
    Returns t (N,), NaN where the ray misses or the hit is behind the origin. Closed form.
    If the origin is inside the inflated ellipsoid, the exit point is returned.
    """
    hh = np.asarray(h, dtype=float)
    ax = A + hh
    bx = B + hh
    o = np.asarray(origin, dtype=float)
    d = np.asarray(dirs, dtype=float)
    # Scale to the unit sphere: x/ax, y/ax, z/bx.
    ox, oy, oz = o[..., 0] / ax, o[..., 1] / ax, o[..., 2] / bx
    dx, dy, dz = d[..., 0] / ax, d[..., 1] / ax, d[..., 2] / bx
    qa = dx * dx + dy * dy + dz * dz
    qb = 2.0 * (ox * dx + oy * dy + oz * dz)
    qc = ox * ox + oy * oy + oz * oz - 1.0
    disc = qb * qb - 4.0 * qa * qc
    with np.errstate(invalid="ignore"):
        sq = np.sqrt(disc)
        # Numerically stable roots.
        q = -0.5 * (qb + np.copysign(sq, qb))
        t1 = q / qa
        t2 = np.where(q != 0.0, qc / np.where(q != 0.0, q, 1.0), np.nan)
    lo = np.fmin(t1, t2)
    hi = np.fmax(t1, t2)
    t = np.where(lo > 0.0, lo, np.where(hi > 0.0, hi, np.nan))
    return np.asarray(np.where(disc >= 0.0, t, np.nan), dtype=float)


def ray_hit_height(
    origin: ArrayLike,
    dirs: ArrayLike,
    height: ArrayLike = 0.0,
    *,
    dem: HeightFn | None = None,
    max_iter: int = 30,
) -> Array:
    """Points (N, 3) lat, lon, h where each ray first reaches `height` HAE (or the DEM surface).

    origin: (3,) shared by all rays or (N, 3) one per ray; dirs: (N, 3).
    Closed-form hit on the inflated ellipsoid, then Newton steps along the ray on the true
    geodetic height (the inflated ellipsoid is not a constant-height surface; it is off by up to
    1.4e-6*h, 1.4 mm at 1 km), so the result lies on the ray and at the requested height to
    HEIGHT_TOL.
    With a DEM (lat, lon) -> HAE: the height h where dem(hit(h)) = h is bracketed between just
    under the sensor and the DEM under the sensor minus 50/500/5000 m, then solved by false
    position (Illinois) to 1 mm; robust on steep slopes and grazing views where a plain
    fixed-point iteration diverges. Worst case: `max_iter` DEM lookups per ray; where relief hides
    relief (several crossings) one crossing is returned, not necessarily the nearest. Rays with no
    bracket (sky, sensor under the terrain, outside the DEM: NaN from `dem`) are NaN.
    Misses (sky, above the horizon) are NaN, and so are rays whose origin is at or below the
    height it should hit.
    """
    d = np.atleast_2d(np.asarray(dirs, dtype=float))
    n = d.shape[0]
    o_in = np.asarray(origin, dtype=float)
    o = np.broadcast_to(o_in, (n, 3))
    target = np.broadcast_to(np.asarray(height, dtype=float), (n,)).copy()
    dn = d / np.linalg.norm(d, axis=1, keepdims=True)
    # Geodetic height under each origin (once when the origin is shared).
    nadir = np.broadcast_to(ecef_to_geodetic(o_in), (n, 3)) if o_in.ndim == 1 else ecef_to_geodetic(o)
    if dem is None:
        return _hit_exact(o, dn, target, nadir[:, 2])
    return _hit_dem(o, dn, nadir, dem, max_iter)


def _dem_residual(o: Array, dn: Array, h: Array, origin_h: Array, dem: HeightFn) -> tuple[Array, Array]:
    """F(h) = dem(hit at h) - h for each ray, and the hits; NaN where the ray or the DEM gives none."""
    llh = _hit_exact(o, dn, h, origin_h)
    f = np.full(h.shape, np.nan)
    ok = np.isfinite(llh[:, 0])
    if ok.any():
        f[ok] = np.asarray(dem(llh[ok, 0], llh[ok, 1]), dtype=float) - h[ok]
    return f, llh


def _hit_dem(o: Array, dn: Array, nadir: Array, dem: HeightFn, max_iter: int) -> Array:
    n = dn.shape[0]
    out = np.full((n, 3), np.nan)
    origin_h = np.ascontiguousarray(nadir[:, 2])
    ground0 = np.asarray(dem(nadir[:, 0], nadir[:, 1]), dtype=float) * np.ones(n)
    h_hi = origin_h - 0.01  # F < 0 just under a sensor that is above the terrain
    f_hi, _ = _dem_residual(o, dn, h_hi, origin_h, dem)
    h_lo = np.full(n, np.nan)
    f_lo = np.full(n, np.nan)
    need = f_hi < 0.0
    for drop in (50.0, 500.0, 5000.0):
        idx = np.flatnonzero(need)
        if idx.size == 0:
            break
        h_try = np.minimum(ground0[idx] - drop, h_hi[idx] - 1.0)
        f_try, _ = _dem_residual(o[idx], dn[idx], h_try, origin_h[idx], dem)
        found = f_try > 0.0
        h_lo[idx[found]], f_lo[idx[found]] = h_try[found], f_try[found]
        need[idx[found | np.isnan(f_try)]] = False  # bracketed, or the ray left the earth
    active = np.isfinite(f_lo) & (f_hi < 0.0)
    side = np.zeros(n, dtype=np.int8)  # which end was replaced last: +1 hi, -1 lo
    for _ in range(max_iter):
        idx = np.flatnonzero(active)
        if idx.size == 0:
            break
        lo, hi, flo, fhi = h_lo[idx], h_hi[idx], f_lo[idx], f_hi[idx]
        h_new = lo - flo * (hi - lo) / (fhi - flo)
        f_new, llh = _dem_residual(o[idx], dn[idx], h_new, origin_h[idx], dem)
        done = np.abs(f_new) < 1e-3
        out[idx[done]] = llh[done]
        lost = np.isnan(f_new)
        neg = (f_new < 0.0) & ~done & ~lost
        pos = (f_new > 0.0) & ~done & ~lost
        i_neg, i_pos = idx[neg], idx[pos]
        h_hi[i_neg], f_hi[i_neg] = h_new[neg], f_new[neg]
        f_lo[i_neg[side[i_neg] == 1]] *= 0.5  # Illinois: halve the end that keeps surviving
        side[i_neg] = 1
        h_lo[i_pos], f_lo[i_pos] = h_new[pos], f_new[pos]
        f_hi[i_pos[side[i_pos] == -1]] *= 0.5
        side[i_pos] = -1
        active[idx[done | lost]] = False
    return out


def _hit_exact(o: Array, dn: Array, target: Array, origin_h: Array) -> Array:
    """Hit of unit rays dn from origins o (N, 3) at geodetic height `target` (N,).

    An origin at or below its target height never "hits from above": NaN (a sensor under the
    ground it is asked to look at is bad metadata, not a ray to trace out through the earth).
    """
    t = ray_ellipsoid(o, dn, target)
    llh = np.full((dn.shape[0], 3), np.nan)
    good = np.isfinite(t) & (origin_h > target)
    if not good.any():
        return llh
    og, dg, tg, hg = o[good], dn[good], t[good], target[good]
    cur = ecef_to_geodetic(og + tg[:, None] * dg)
    for _ in range(HEIGHT_ITERATIONS):
        err = cur[:, 2] - hg
        if np.all(np.abs(err) < HEIGHT_TOL):
            break
        rate = np.einsum("ij,ij->i", dg, _up_vectors(cur[:, 0], cur[:, 1]))  # dh/dt along the ray
        with np.errstate(divide="ignore", invalid="ignore"):
            tg = tg - np.where(np.abs(rate) > 1e-9, err / rate, 0.0)
        cur = ecef_to_geodetic(og + tg[:, None] * dg)
    cur[tg <= 0.0] = np.nan
    llh[good] = cur
    return llh


def _up_vectors(lat: Array, lon: Array) -> Array:
    p, lam = np.radians(lat), np.radians(lon)
    cp = np.cos(p)
    return np.stack([cp * np.cos(lam), cp * np.sin(lam), np.sin(p)], axis=-1)
