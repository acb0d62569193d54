"""Sensor models from frame-corner coordinates, for metadata without usable angles.

Two fallbacks (see docs/geo.md):
- `fit_corner_pose`: corners + sensor position -> a full `PinholeModel`. The four corner rays
  (sensor -> ground corner) fix the camera attitude (Kabsch/SVD on unit vectors) and, when the
  FOV is missing, the focal lengths (closed form from the angles between corner rays).
- `PlaneModel`: corners only -> a homography from the image onto the ground's tangent plane.

Worst case: O(1) per frame to build (an 8x8 solve or a 3x3 SVD); O(N) numpy per N pixels.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import ArrayLike

from kestrel.geo.geodesy import Array, LocalFrame, geodetic_to_ecef, ned_basis, ray_hit_height
from kestrel.geo.sensor import InsufficientMetadata, PinholeModel, SensorModel


def image_corners(width: float, height: float) -> Array:
    """Pixel corners UL, UR, LR, LL (pixel-edge convention, see sensor.py)."""
    return np.array([[0.0, 0.0], [width, 0.0], [width, height], [0.0, height]])


def homography(src: Array, dst: Array) -> Array:
    """3x3 H with dst ~ H @ [src, 1] from exactly four point pairs (DLT, h33 = 1).

    Both quadrilaterals must be convex (a rectangle seen by any camera in front of it is), which
    also rules out repeated or collinear corners.
    """
    for quad in (src, dst):
        edges = np.roll(quad, -1, axis=0) - quad
        turns = (
            edges[:, 0] * np.roll(edges, -1, axis=0)[:, 1] - edges[:, 1] * np.roll(edges, -1, axis=0)[:, 0]
        )
        scale = float(np.sum(edges**2))
        if scale == 0.0 or not (np.all(turns > 1e-9 * scale) or np.all(turns < -1e-9 * scale)):
            raise InsufficientMetadata("corner coordinates are degenerate (not a convex quadrilateral)")
    rows, rhs = [], []
    for (x, y), (X, Y) in zip(src, dst, strict=True):
        rows.append([x, y, 1.0, 0.0, 0.0, 0.0, -x * X, -y * X])
        rows.append([0.0, 0.0, 0.0, x, y, 1.0, -x * Y, -y * Y])
        rhs.extend([X, Y])
    try:
        h = np.linalg.solve(np.array(rows), np.array(rhs))
    except np.linalg.LinAlgError as exc:
        raise InsufficientMetadata("corner coordinates are degenerate") from exc
    return np.append(h, 1.0).reshape(3, 3)


def _ray_angle(a: Array, b: Array) -> float:
    return float(np.arccos(np.clip(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b)), -1.0, 1.0)))


def fov_from_corner_rays(rays: Array) -> tuple[float, float]:
    """(hfov, vfov) degrees of a centred pinhole whose corner rays (UL, UR, LR, LL) are given.

    With a = W/2fx, b = H/2fy: cos(angle UL-UR) = (1 - a^2 + b^2)/S and cos(angle UL-LL) =
    (1 + a^2 - b^2)/S, S = 1 + a^2 + b^2; averaged over the two opposite edges.
    """
    cu = math.cos(0.5 * (_ray_angle(rays[0], rays[1]) + _ray_angle(rays[3], rays[2])))
    cv = math.cos(0.5 * (_ray_angle(rays[0], rays[3]) + _ray_angle(rays[1], rays[2])))
    if cu + cv <= 0.0:
        raise InsufficientMetadata("corner rays span more than a hemisphere")
    s = 2.0 / (cu + cv)
    diff = (cu - cv) / (cu + cv)  # b^2 - a^2
    a2 = ((s - 1.0) - diff) / 2.0
    b2 = ((s - 1.0) + diff) / 2.0
    if a2 <= 0.0 or b2 <= 0.0:
        raise InsufficientMetadata("corner rays are not consistent with a pinhole camera")
    return 2.0 * math.degrees(math.atan(math.sqrt(a2))), 2.0 * math.degrees(math.atan(math.sqrt(b2)))


def fit_corner_pose(
    sensor: tuple[float, float, float],
    corners: ArrayLike,
    corner_hae: float,
    width: int,
    height: int,
    *,
    hfov: float | None = None,
    vfov: float | None = None,
    max_residual_deg: float | None = None,
) -> PinholeModel:
    """Pinhole model whose corner pixels see `corners` ((lat, lon) UL, UR, LR, LL at corner_hae).

    Raises InsufficientMetadata when the corners cannot come from a pinhole at `sensor`
    (worst angular residual above `max_residual_deg`, default 5 % of the diagonal FOV).
    """
    lat, lon, hae = sensor
    c = np.asarray(corners, dtype=float)
    ground = geodetic_to_ecef(c[:, 0], c[:, 1], np.full(4, corner_hae))
    world = ground - geodetic_to_ecef(lat, lon, hae)
    world /= np.linalg.norm(world, axis=1, keepdims=True)
    if hfov is None:
        hfov, vfov_est = fov_from_corner_rays(world)
        vfov = vfov if vfov is not None else vfov_est
    elif vfov is None:
        vfov = 2.0 * math.degrees(math.atan(math.tan(math.radians(hfov) / 2.0) * height / width))
    fx = (width / 2.0) / math.tan(math.radians(hfov) / 2.0)
    fy = (height / 2.0) / math.tan(math.radians(vfov) / 2.0)
    px = image_corners(width, height)
    cam = np.column_stack([np.ones(4), (px[:, 0] - width / 2.0) / fx, (px[:, 1] - height / 2.0) / fy])
    cam /= np.linalg.norm(cam, axis=1, keepdims=True)
    # Kabsch: rotation R (camera -> ECEF) minimising sum |world_i - R cam_i|^2.
    u, _s, vt = np.linalg.svd(cam.T @ world)
    d = np.sign(np.linalg.det(vt.T @ u.T)) or 1.0
    rot = vt.T @ np.diag([1.0, 1.0, d]) @ u.T
    residual = max(_ray_angle(rot @ cam[i], world[i]) for i in range(4))
    diag = 2.0 * math.atan(math.hypot(math.tan(math.radians(hfov) / 2), math.tan(math.radians(vfov) / 2)))
    limit = math.radians(max_residual_deg) if max_residual_deg is not None else 0.05 * diag
    if residual > limit:
        raise InsufficientMetadata(
            f"corners disagree with a pinhole at the sensor position by {math.degrees(residual):.2f} deg"
        )
    model = PinholeModel(
        lat=lat,
        lon=lon,
        hae=hae,
        cam_to_ned=ned_basis(lat, lon).T @ rot,
        hfov=hfov,
        vfov=vfov,
        width=width,
        height=height,
        kind="corners-pose",
    )
    model.fit_residual_deg = math.degrees(residual)
    return model


class PlaneModel(SensorModel):
    """Homography from the image onto the tangent plane of the ground corners (no camera).

    Exact at the four corners by construction; in between it assumes flat ground at `elev`.
    `height` arguments are ignored (there is no ray to re-intersect): every ground point is
    returned at `elev`, and `grounds_to_pixels` ignores the h it is given.
    Ground <-> plane coordinates: the point at `elev` under the tangent-plane (east, north) — its
    inverse is an exact vertical ray hit, so the pair round-trips to ~1e-5 m.
    """

    kind = "corners-plane"

    def __init__(self, corners: ArrayLike, width: int, height: int, elev: float = 0.0) -> None:
        c = np.asarray(corners, dtype=float)
        if c.shape != (4, 2) or not np.isfinite(c).all():
            raise InsufficientMetadata("need four finite corner (lat, lon) pairs")
        self.width, self.height = int(width), int(height)
        self.elev = float(elev)
        lon_ref = c[0, 1]
        lons = lon_ref + (c[:, 1] - lon_ref + 180.0) % 360.0 - 180.0  # unwrap across +-180
        self.frame = LocalFrame(
            float(c[:, 0].mean()), float(((lons.mean() + 180.0) % 360.0) - 180.0), self.elev
        )
        en = self.frame.to_enu(c[:, 0], c[:, 1], self.elev)[:, :2]
        self.h = homography(image_corners(width, height), en)
        self.h_inv = np.linalg.inv(self.h)
        centre = self.h @ np.array([width / 2.0, height / 2.0, 1.0])
        self._sign = 1.0 if centre[2] > 0 else -1.0

    def pixels_to_ground(self, uv: ArrayLike, height: float | None = None) -> Array:
        p = np.atleast_2d(np.asarray(uv, dtype=float))
        w = np.column_stack([p, np.ones(p.shape[0])]) @ self.h.T
        ok = w[:, 2] * self._sign > 1e-12
        out = np.full((p.shape[0], 3), np.nan)
        if ok.any():
            en = w[ok, :2] / w[ok, 2:3]
            out[ok] = self._plane_to_ground(en)
        return out

    def _plane_to_ground(self, en: Array) -> Array:
        basis = self.frame.basis
        top = self.frame.origin + en[:, 0:1] * basis[:, 0] + en[:, 1:2] * basis[:, 1] + 1000.0 * basis[:, 2]
        down = np.broadcast_to(-basis[:, 2], top.shape)
        return ray_hit_height(top, down, self.elev)

    def grounds_to_pixels(self, llh: ArrayLike) -> Array:
        g = np.atleast_2d(np.asarray(llh, dtype=float))
        en = self.frame.to_enu(g[:, 0], g[:, 1], self.elev)[:, :2]
        w = np.column_stack([en, np.ones(en.shape[0])]) @ self.h_inv.T
        out = np.full((g.shape[0], 2), np.nan)
        ok = np.abs(w[:, 2]) > 1e-15
        out[ok] = w[ok, :2] / w[ok, 2:3]
        # Points whose plane coordinates lie beyond the image horizon map back "behind" the camera.
        back = np.column_stack([out, np.ones(g.shape[0])]) @ self.h.T
        bad = ~(back[:, 2] * self._sign > 0)
        out[bad] = np.nan
        return out
