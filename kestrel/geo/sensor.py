"""`SensorModel`: pixel <-> ground for one video frame, built from `SensorMetadata` (pure, no I/O).

Pixel convention: (0, 0) is the top-left corner of the top-left pixel, u grows right, v grows
down; the centre of pixel (i, j) is (i + 0.5, j + 0.5) and the image centre is (W/2, H/2).

Rotation order (MISB ST 0601): camera -> NED = Rz(heading) Ry(pitch) Rx(roll) . Rz(az) Ry(el) Rx(sroll)
with aerospace signs: heading clockwise from true north seen from above, pitch nose-up positive,
roll right-wing-down positive; sensor azimuth clockwise from the nose seen from above, elevation
positive up (negative = looking down), sensor roll clockwise when looking from behind the camera.
Camera frame: x = boresight, y = image right (+u), z = image down (+v).

Worst case per call: `pixels_to_ground` on N pixels is O(N) numpy work plus a few pyproj
transforms of N points (no Python loop per pixel); with a DEM add up to `max_iter` DEM lookups.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from kestrel.geo.geodesy import (
    Array,
    HeightFn,
    geodetic_to_ecef,
    msl_to_hae,
    ned_basis,
    ray_ellipsoid,
    ray_hit_height,
)
from kestrel.klv.metadata import SensorMetadata

LatLonH = tuple[float, float, float]


class InsufficientMetadata(ValueError):
    """The metadata cannot support a sensor model; str(exc) says what is missing."""


def _rx(deg: float) -> Array:
    c, s = math.cos(math.radians(deg)), math.sin(math.radians(deg))
    return np.array([[1.0, 0.0, 0.0], [0.0, c, -s], [0.0, s, c]])


def _ry(deg: float) -> Array:
    c, s = math.cos(math.radians(deg)), math.sin(math.radians(deg))
    return np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])


def _rz(deg: float) -> Array:
    c, s = math.cos(math.radians(deg)), math.sin(math.radians(deg))
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def misb_camera_to_ned(
    heading: float, pitch: float, roll: float, az: float, el: float, sensor_roll: float
) -> Array:
    """3x3 rotation taking camera-frame vectors (x boresight, y right, z down) to local NED."""
    platform = _rz(heading) @ _ry(pitch) @ _rx(roll)
    gimbal = _rz(az) @ _ry(el) @ _rx(sensor_roll)
    return platform @ gimbal


class SensorModel:
    """Pixel <-> ground geometry of one frame. Build with `kestrel.geo.build.from_metadata`.

    Subclasses: `PinholeModel` (kind "pose" from relative angles, "pose-absolute" from
    earth-referenced pointing, "corners-pose" from corners + sensor position) and `PlaneModel`
    (kind "corners-plane": a homography onto the ground, no camera). docs/geo.md has the rules.
    Heights are metres above the WGS-84 ellipsoid. `height=None` means: the DEM if the model has
    one, else 0 m.
    """

    kind: str = "abstract"
    width: int
    height: int
    dem: HeightFn | None = None
    assumed: tuple[str, ...] = ()  # metadata fields that were missing and taken as 0
    sensor_ecef: Array | None = None

    # --- vectorised core (subclasses) ---------------------------------------------------------
    def pixels_to_ground(self, uv: ArrayLike, height: float | None = None) -> Array:
        """(N, 2) pixels -> (N, 3) lat, lon, h; NaN rows where the ray misses the ground."""
        raise NotImplementedError

    def grounds_to_pixels(self, llh: ArrayLike) -> Array:
        """(N, 3) or (N, 2) lat, lon[, h] -> (N, 2) u, v; NaN rows behind the camera/hidden."""
        raise NotImplementedError

    # --- scalar conveniences ------------------------------------------------------------------
    def pixel_to_ground(self, u: float, v: float, height: float | None = None) -> LatLonH | None:
        """Ground point seen at pixel (u, v), or None if the ray misses (sky, above horizon)."""
        row = self.pixels_to_ground(np.array([[u, v]], dtype=float), height)[0]
        if not np.isfinite(row).all():
            return None
        return float(row[0]), float(row[1]), float(row[2])

    def ground_to_pixel(self, lat: float, lon: float, h: float = 0.0) -> tuple[float, float] | None:
        """Pixel where (lat, lon, h) appears; None if behind the camera or hidden by the earth.

        Points outside the frame still get (out-of-range) coordinates: check the bounds yourself.
        """
        row = self.grounds_to_pixels(np.array([[lat, lon, h]], dtype=float))[0]
        if not np.isfinite(row).all():
            return None
        return float(row[0]), float(row[1])

    def image_center_ground(self, height: float | None = None) -> LatLonH | None:
        """Ground point at the image centre (W/2, H/2)."""
        return self.pixel_to_ground(self.width / 2.0, self.height / 2.0, height)

    def gsd_xy(self, u: float, v: float, height: float | None = None) -> tuple[float, float] | None:
        """Ground size (m) of one pixel step along u and along v at (u, v); None on a miss."""
        uv = np.array([[u - 0.5, v], [u + 0.5, v], [u, v - 0.5], [u, v + 0.5]], dtype=float)
        g = self.pixels_to_ground(uv, height)
        if not np.isfinite(g).all():
            return None
        p = geodetic_to_ecef(g[:, 0], g[:, 1], g[:, 2])
        return float(np.linalg.norm(p[1] - p[0])), float(np.linalg.norm(p[3] - p[2]))

    def gsd(self, u: float, v: float, height: float | None = None) -> float | None:
        """Metres per pixel at (u, v): sqrt of the pixel's ground area (geometric mean of the
        u and v steps; they differ on oblique views). None if the pixel does not see ground."""
        uv = np.array([[u - 0.5, v], [u + 0.5, v], [u, v - 0.5], [u, v + 0.5]], dtype=float)
        g = self.pixels_to_ground(uv, height)
        if not np.isfinite(g).all():
            return None
        p = geodetic_to_ecef(g[:, 0], g[:, 1], g[:, 2])
        return float(math.sqrt(np.linalg.norm(np.cross(p[1] - p[0], p[3] - p[2]))))

    def footprint(
        self, height: float | None = None, max_range: float | None = None
    ) -> list[tuple[float, float]]:
        """Ground corners [UL, UR, LR, LL] as (lat, lon).

        A corner whose ray misses the ground (above the horizon) or lands beyond `max_range`
        metres from the sensor is pulled along the image edge (towards the other end of its
        vertical edge, else its horizontal edge, else the image centre) to the last pixel that
        still sees ground in range (bisection, 1e-4 px). Empty list when nothing sees ground.
        """
        w, h = float(self.width), float(self.height)
        corners = [(0.0, 0.0), (w, 0.0), (w, h), (0.0, h)]
        vertical = {0: 3, 1: 2, 2: 1, 3: 0}
        horizontal = {0: 1, 1: 0, 2: 3, 3: 2}
        centre = (w / 2.0, h / 2.0)
        out: list[tuple[float, float]] = []
        for i, c in enumerate(corners):
            g = self._in_range(np.array([c]), height, max_range)[0]
            if np.isfinite(g).all():
                out.append((float(g[0]), float(g[1])))
                continue
            found = None
            for target in (corners[vertical[i]], corners[horizontal[i]], centre):
                found = self._clip_towards(c, target, height, max_range)
                if found is not None:
                    break
            if found is None:
                return []
            out.append(found)
        return out

    def footprint_geojson(
        self, height: float | None = None, max_range: float | None = None
    ) -> dict[str, Any] | None:
        """The footprint as a GeoJSON Polygon geometry ([lon, lat], closed ring), or None."""
        fp = self.footprint(height, max_range)
        if not fp:
            return None
        ring = [[lon, lat] for lat, lon in fp]
        ring.append(ring[0])
        return {"type": "Polygon", "coordinates": [ring]}

    def _in_range(self, uv: Array, height: float | None, max_range: float | None) -> Array:
        g = self.pixels_to_ground(uv, height)
        if max_range is not None and self.sensor_ecef is not None:
            ok = np.isfinite(g).all(axis=1)
            if ok.any():
                p = geodetic_to_ecef(g[ok, 0], g[ok, 1], g[ok, 2])
                far = np.linalg.norm(p - self.sensor_ecef, axis=1) > max_range
                idx = np.flatnonzero(ok)[far]
                g[idx] = np.nan
        return g

    def _clip_towards(
        self,
        start: tuple[float, float],
        end: tuple[float, float],
        height: float | None,
        max_range: float | None,
    ) -> tuple[float, float] | None:
        a, b = np.array(start), np.array(end)
        g_end = self._in_range(b[None, :], height, max_range)[0]
        if not np.isfinite(g_end).all():
            return None
        lo, hi = 0.0, 1.0  # lo misses, hi hits
        best = g_end
        length = float(np.linalg.norm(b - a)) or 1.0
        while (hi - lo) * length > 1e-4:
            mid = 0.5 * (lo + hi)
            g = self._in_range((a + mid * (b - a))[None, :], height, max_range)[0]
            if np.isfinite(g).all():
                hi, best = mid, g
            else:
                lo = mid
        return float(best[0]), float(best[1])


class PinholeModel(SensorModel):
    """Ideal pinhole camera at a known position and attitude (no lens distortion)."""

    fit_residual_deg: float | None = None  # set for kind "corners-pose": worst corner ray misfit

    def __init__(
        self,
        *,
        lat: float,
        lon: float,
        hae: float,
        cam_to_ned: Array,
        hfov: float,
        vfov: float,
        width: int,
        height: int,
        dem: HeightFn | None = None,
        assumed: tuple[str, ...] = (),
        kind: str = "pose",
    ) -> None:
        if not (0.0 < hfov < 180.0 and 0.0 < vfov < 180.0):
            raise InsufficientMetadata(f"field of view out of range: hfov={hfov} vfov={vfov}")
        if width <= 0 or height <= 0:
            raise InsufficientMetadata(f"bad image size {width}x{height}")
        self.kind = kind
        self.width, self.height = int(width), int(height)
        self.dem, self.assumed = dem, assumed
        self.sensor_llh = (float(lat), float(lon), float(hae))
        self.sensor_ecef = geodetic_to_ecef(lat, lon, hae)
        self.cam_to_ned = np.asarray(cam_to_ned, dtype=float)
        self.cam_to_ecef = ned_basis(lat, lon) @ self.cam_to_ned
        self.hfov, self.vfov = float(hfov), float(vfov)
        self.fx = (self.width / 2.0) / math.tan(math.radians(hfov) / 2.0)
        self.fy = (self.height / 2.0) / math.tan(math.radians(vfov) / 2.0)
        self.cx, self.cy = self.width / 2.0, self.height / 2.0

    @classmethod
    def from_angles(
        cls,
        *,
        lat: float,
        lon: float,
        hae: float,
        heading: float,
        pitch: float,
        roll: float,
        az: float,
        el: float,
        sensor_roll: float,
        hfov: float,
        vfov: float,
        width: int,
        height: int,
        dem: HeightFn | None = None,
    ) -> PinholeModel:
        """A model straight from MISB angles (degrees) and an ellipsoidal sensor height."""
        rot = misb_camera_to_ned(heading, pitch, roll, az, el, sensor_roll)
        return cls(
            lat=lat,
            lon=lon,
            hae=hae,
            cam_to_ned=rot,
            hfov=hfov,
            vfov=vfov,
            width=width,
            height=height,
            dem=dem,
        )

    def rays(self, uv: ArrayLike) -> Array:
        """(N, 2) pixels -> (N, 3) ECEF ray directions (not normalised)."""
        p = np.atleast_2d(np.asarray(uv, dtype=float))
        cam = np.empty((p.shape[0], 3))
        cam[:, 0] = 1.0
        cam[:, 1] = (p[:, 0] - self.cx) / self.fx
        cam[:, 2] = (p[:, 1] - self.cy) / self.fy
        with np.errstate(invalid="ignore"):  # NaN/inf pixels become NaN rays, then misses
            return cam @ self.cam_to_ecef.T

    def pixels_to_ground(self, uv: ArrayLike, height: float | None = None) -> Array:
        d = self.rays(uv)
        assert self.sensor_ecef is not None
        if height is None and self.dem is not None:
            return ray_hit_height(self.sensor_ecef, d, dem=self.dem)
        return ray_hit_height(self.sensor_ecef, d, 0.0 if height is None else height)

    def grounds_to_pixels(self, llh: ArrayLike) -> Array:
        g = np.atleast_2d(np.asarray(llh, dtype=float))
        hh = g[:, 2] if g.shape[1] > 2 else np.zeros(g.shape[0])
        assert self.sensor_ecef is not None
        rel = geodetic_to_ecef(g[:, 0], g[:, 1], hh) - self.sensor_ecef
        cam = rel @ self.cam_to_ecef  # == cam_to_ecef.T @ rel for each row
        out = np.full((g.shape[0], 2), np.nan)
        front = cam[:, 0] > 0.0
        out[front, 0] = self.cx + self.fx * cam[front, 1] / cam[front, 0]
        out[front, 1] = self.cy + self.fy * cam[front, 2] / cam[front, 0]
        # Hidden behind the earth: the line of sight dips below the point's own height surface
        # (1 m margin) before reaching it. Terrain (DEM) occlusion is not modelled.
        below = front & (hh < self.sensor_llh[2] - 1.0)
        if below.any():
            dist = np.linalg.norm(rel[below], axis=1)
            t = ray_ellipsoid(self.sensor_ecef, rel[below] / dist[:, None], hh[below] - 1.0)
            hidden = np.isfinite(t) & (t < dist - 1.0)
            idx = np.flatnonzero(below)[hidden]
            out[idx] = np.nan
        return out

    def boresight_ned(self) -> Array:
        """Unit boresight in local NED at the sensor."""
        return np.asarray(self.cam_to_ned[:, 0], dtype=float)

    def describe(self) -> dict[str, Any]:
        """Plain dict for logs/JSON."""
        lat, lon, hae = self.sensor_llh
        return {
            "kind": self.kind,
            "sensor": [lat, lon, hae],
            "hfov": self.hfov,
            "vfov": self.vfov,
            "width": self.width,
            "height": self.height,
            "assumed": list(self.assumed),
        }


def sensor_hae(md: SensorMetadata, geoid: HeightFn | None) -> float:
    """Sensor height above the ellipsoid: from the MSL altitude in the metadata (plus the geoid
    hook), or, when only an ellipsoid height was carried (ST 0601 tags 75/104), that height as is."""
    if (md.sensor_alt is None or not math.isfinite(md.sensor_alt)) and md.sensor_hae is not None:
        return md.sensor_hae
    assert md.sensor_alt is not None and md.sensor_lat is not None and md.sensor_lon is not None
    return msl_to_hae(md.sensor_alt, md.sensor_lat, md.sensor_lon, geoid)
