"""Synthetic STANAG 4609 clips with ground truth: `kestrel fmv synth OUT.ts`.

A platform orbits a ground point at a known height; the gimbal stares at that point (with a slow
wander); K vehicle-sized targets (4.5 m x 2 m) drive circles at 5-20 m/s on a procedural,
feature-rich ground texture (deterministic by seed). Every frame carries one ST 0601 packet.
`Scenario.scenario = "crossing"` (`--scenario crossing`) instead drives pairs of cars on straight
roads that cross or pass head-on, one of each pair in the ground's own colour (`plan_crossing`).

Agreement by construction: each frame's packet is encoded, *decoded* again, and the picture is
rendered from the decoded (quantised) metadata through `kestrel.geo.SensorModel` — so the image,
the KLV and the truth (`truth.json`: per frame pts and per target id, lat, lon, pixel u/v, box)
describe exactly the same geometry. Pixel convention is the geo one: (0, 0) is the top-left
corner of the image, pixel (i, j) has its centre at (i + 0.5, j + 0.5).

Cost per frame: two KLV encode/decode round trips, one sensor model, one `cv2.warpPerspective`
of the texture into the frame and one x264 encode; the texture is built once (about 1 s).
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from kestrel.fmv.mux import TsWriter
from kestrel.fmv.scenes import CameraPlan, Route, aerial_texture, plan_traffic
from kestrel.geo.build import build_model
from kestrel.geo.geodesy import LocalFrame, geodetic_to_ecef, ned_basis
from kestrel.geo.sensor import SensorModel, misb_camera_to_ned
from kestrel.klv import SensorMetadata, decode, st0601, to_metadata

# libx264's output depends on its thread count, and "auto" counts the CPUs this process may use:
# the same seed made different clips on a 2-core and a 1-core run (and would on an 8-core laptop),
# so the seeded quality floors moved with the machine. Fixed at what auto chose on 2 CPUs (2, the
# machine every published figure was measured on), so those clips stay byte for byte as they were.
ENCODER_THREADS = 2

EPOCH_US = 1_767_268_800_000_000  # 2026-01-01T12:00:00Z: start of every synthetic clip
TARGET_LEN, TARGET_WID = 4.5, 2.0  # m
_PALETTE = np.array(  # BGR ground classes: grass, dry grass, soil, sand, crop, scrub
    [[70, 120, 80], [90, 150, 150], [70, 100, 130], [130, 170, 190], [60, 140, 100], [80, 110, 110]],
    dtype=np.float32,
)
_TARGET_COLOURS = [(245, 245, 245), (15, 15, 15), (40, 40, 220), (210, 90, 20), (30, 230, 240)]


@dataclass(slots=True)
class Scenario:
    seconds: float = 10.0
    fps: int = 30
    width: int = 720
    height: int = 480
    targets: int = 3
    seed: int = 0
    lat0: float = 36.2
    lon0: float = -115.9
    orbit_radius: float = 1500.0  # m, platform distance from the stare point (horizontal)
    altitude: float = 1500.0  # m above the ground (ground is the ellipsoid, h = 0)
    airspeed: float = 40.0  # m/s
    hfov: float = 8.0  # deg
    wander: float = 12.0  # m, amplitude of the stare point's slow wander
    texture_res: float = 0.25  # m per texture pixel
    texture_half: float = 400.0  # m, texture covers [-half, half]^2 around the stare point
    crf: int = 18
    sync_klv: bool = False  # synchronous carriage (0x15 AU cells) instead of async with PTS
    scenario: str = "orbit"  # "orbit": non-crossing circles; "crossing": straight paths that cross (SCENARIOS)
    noise: float = 0.0  # std of Gaussian sensor noise added to every frame (grey levels)
    texture_from: str | None = None  # "aerial": real video to build the ground from (default: the test clip)


SCENARIOS = ("orbit", "crossing", "aerial")
# "aerial" (kestrel.fmv.scenes): a lower, closer platform, a camera that pans and zooms, real imagery,
# stronger compression and sensor noise.
AERIAL = {"altitude": 1000.0, "orbit_radius": 1000.0, "airspeed": 35.0, "texture_res": 0.15,
          "texture_half": 240.0, "crf": 26, "noise": 2.0}


@dataclass(slots=True)
class TargetPath:
    id: int
    centre: tuple[float, float]  # ENU east, north (m)
    radius: float  # m
    speed: float  # m/s
    direction: int  # +1 clockwise, -1 counter-clockwise (seen from above)
    phase: float  # rad
    colour: tuple[int, int, int] = field(default=(245, 245, 245))

    def at(self, t: float) -> tuple[float, float, float]:
        """(east, north, heading deg) at time t."""
        a = self.phase + self.direction * self.speed * t / self.radius
        e = self.centre[0] + self.radius * math.sin(a)
        n = self.centre[1] + self.radius * math.cos(a)
        heading = math.degrees(a) + 90.0 * self.direction
        return e, n, heading % 360.0

    def describe(self) -> dict[str, Any]:
        return {"centre_enu": list(self.centre), "radius_m": self.radius, "direction": self.direction}


@dataclass(slots=True)
class LinePath:
    """Straight road at constant speed: passes `cross` (ENU east, north, m) at time `t_cross`."""

    id: int
    cross: tuple[float, float]
    t_cross: float  # s
    heading: float  # deg, clockwise from north
    speed: float  # m/s
    colour: tuple[int, int, int] = field(default=(245, 245, 245))

    def at(self, t: float) -> tuple[float, float, float]:
        """(east, north, heading deg) at time t."""
        d = self.speed * (t - self.t_cross)
        h = math.radians(self.heading)
        return self.cross[0] + d * math.sin(h), self.cross[1] + d * math.cos(h), self.heading % 360.0

    def describe(self) -> dict[str, Any]:
        return {"kind": "line", "cross_enu": list(self.cross), "t_cross_s": self.t_cross, "heading_deg": self.heading}


def make_texture(seed: int, half: float, res: float) -> np.ndarray:
    """Procedural ground (BGR uint8, north up): fields, multi-scale noise, roads, bushes, huts."""
    rng = np.random.default_rng(seed)
    n = int(round(2 * half / res))
    noise = np.zeros((n, n), np.float32)
    for cells, weight in ((6, 0.3), (24, 0.2), (96, 0.2), (384, 0.15), (n // 4, 0.15)):
        noise += weight * cv2.resize(rng.random((cells, cells), dtype=np.float32), (n, n),
                                     interpolation=cv2.INTER_CUBIC)
    # fields: nearest-seed (Voronoi) labels on a coarse grid, upsampled
    g = 512
    seeds = rng.random((48, 2)) * g
    yy, xx = np.mgrid[0:g, 0:g]
    d = (xx[..., None] - seeds[:, 0]) ** 2 + (yy[..., None] - seeds[:, 1]) ** 2
    labels = np.argmin(d, axis=2).astype(np.uint8)
    colours = _PALETTE[rng.integers(0, len(_PALETTE), 48)]
    base = cv2.resize(colours[labels], (n, n), interpolation=cv2.INTER_LINEAR)
    img = base * (0.55 + 0.9 * noise)[..., None]
    tex = np.clip(img, 0, 255).astype(np.uint8)
    px = 1.0 / res
    for _ in range(5):  # dirt roads
        pts = (rng.random((4, 2)) * n).astype(np.int32)
        cv2.polylines(tex, [pts], False, (150, 170, 175), int(5 * px), cv2.LINE_AA)
    for _ in range(int(half * half / 25)):  # bushes and rocks: corner features
        c = (int(rng.integers(0, n)), int(rng.integers(0, n)))
        r = int(rng.uniform(0.4, 1.4) * px)
        shade = int(rng.integers(20, 70))
        cv2.circle(tex, c, r, (shade, shade + int(rng.integers(10, 40)), shade), -1, cv2.LINE_AA)
    for _ in range(int(half * half / 4e3)):  # huts with a darker rim
        w, h = rng.uniform(6, 18, 2) * px
        cx, cy = rng.random(2) * n
        box = cv2.boxPoints(((float(cx), float(cy)), (float(w), float(h)), float(rng.uniform(0, 90))))
        grey = int(rng.integers(120, 200))
        cv2.fillConvexPoly(tex, box.astype(np.int32), (grey, grey, grey), cv2.LINE_AA)
        cv2.polylines(tex, [box.astype(np.int32)], True, (60, 60, 60), max(1, int(0.5 * px)), cv2.LINE_AA)
    return cv2.GaussianBlur(tex, (3, 3), 0.7)


def plan_targets(rng: np.random.Generator, k: int, room: float) -> list[TargetPath]:
    """K non-crossing circular tracks inside a disc of radius `room` around the stare point."""
    paths: list[TargetPath] = []
    tries = 0
    while len(paths) < k:
        tries += 1
        shrink = 1.0 if tries < 2000 else 0.6
        r = float(rng.uniform(20.0, 45.0)) * shrink
        dist = float(rng.uniform(0.0, max(room - r, 0.0)))
        ang = float(rng.uniform(0, 2 * math.pi))
        c = (dist * math.sin(ang), dist * math.cos(ang))
        gap = 12.0 if tries < 4000 else -1e9  # allow crossings only if there is no room left
        if all(math.dist(c, p.centre) > r + p.radius + gap for p in paths):
            paths.append(TargetPath(
                len(paths) + 1, c, r, float(rng.uniform(5.0, 20.0)), int(rng.choice([-1, 1])),
                float(rng.uniform(0, 2 * math.pi)), _TARGET_COLOURS[len(paths) % len(_TARGET_COLOURS)],
            ))
    return paths


def _ground_colour(texture: np.ndarray, e: float, n: float, half: float, res: float, scale: float) -> tuple[int, int, int]:
    """Mean texture colour of the 30 m square around (e, n), times `scale`: a low-contrast car."""
    c, r, k = int((e + half) / res), int((half - n) / res), int(15.0 / res)
    patch = texture[max(r - k, 0): r + k, max(c - k, 0): c + k].reshape(-1, 3).astype(np.float64)
    b, g, rr = (np.clip(patch.mean(axis=0) * scale, 0, 255) if len(patch) else np.array([90.0, 120.0, 110.0]))
    return int(b), int(g), int(rr)


def plan_crossing(rng: np.random.Generator, k: int, seconds: float, texture: np.ndarray, half: float,
                  res: float) -> list[LinePath]:
    """Pairs of straight paths that meet: pair 1, 3, ... cross at right angles, the second car
    0.1-0.4 s behind the first (their boxes overlap at the crossing); pair 2, 4, ... pass head-on
    4 m apart (centre lines). Crossing points lie within 30 m of the stare point, at 35-65 % of the
    clip, spread >= 25 m apart; speeds 6-12 m/s, so every car stays within ~90 m of the stare point
    for clips up to ~10 s. The second car of each pair is painted in the local ground colour
    (x 0.8 or x 1.2): low contrast. An odd last car drives alone, high contrast."""
    paths: list[LinePath] = []
    crossings: list[tuple[float, float]] = []
    for j in range((k + 1) // 2):
        for _ in range(200):
            d, a = float(rng.uniform(0.0, 30.0)), float(rng.uniform(0, 2 * math.pi))
            x = (d * math.sin(a), d * math.cos(a))
            if all(math.dist(x, c) >= 25.0 for c in crossings):
                break
        crossings.append(x)
        t_c = float(rng.uniform(0.35, 0.65)) * seconds
        h1 = float(rng.uniform(0, 360))
        v1, v2 = float(rng.uniform(6.0, 12.0)), float(rng.uniform(6.0, 12.0))
        hi = _TARGET_COLOURS[j % len(_TARGET_COLOURS)]
        first = LinePath(len(paths) + 1, x, t_c, h1, v1, hi)
        paths.append(first)
        if len(paths) == k:
            break
        scale = 0.8 if rng.random() < 0.5 else 1.2
        if j % 2 == 0:  # perpendicular roads, same point, nearly the same time
            h2 = (h1 + float(rng.choice([-90.0, 90.0]))) % 360.0
            second = LinePath(len(paths) + 1, x, t_c + float(rng.uniform(0.1, 0.4)), h2, v2, (0, 0, 0))
        else:  # head-on, 4 m lateral separation between centre lines
            r = math.radians(h1 + 90.0)
            x2 = (x[0] + 4.0 * math.sin(r), x[1] + 4.0 * math.cos(r))
            second = LinePath(len(paths) + 1, x2, t_c, (h1 + 180.0) % 360.0, v2, (0, 0, 0))
        second.colour = _ground_colour(texture, x[0], x[1], half, res, scale)
        paths.append(second)
    return paths


class _Flight:
    """Platform on a clockwise orbit around the (wandering) stare point; gimbal stares at it."""

    def __init__(self, sc: Scenario, rng: np.random.Generator, frame: LocalFrame,
                 camera: CameraPlan | None = None) -> None:
        self.sc, self.frame, self.camera = sc, frame, camera
        self.phi0 = float(rng.uniform(0, 360))
        self.wander = rng.uniform(0, 2 * math.pi, 2)
        self.bank = math.degrees(math.atan(sc.airspeed**2 / (9.81 * sc.orbit_radius)))

    def values(self, t: float) -> dict[int, Any]:
        sc = self.sc
        phi = self.phi0 + math.degrees(sc.airspeed * t / sc.orbit_radius)
        pe, pn = sc.orbit_radius * math.sin(math.radians(phi)), sc.orbit_radius * math.cos(math.radians(phi))
        slat, slon, _ = self.frame.to_geodetic(pe, pn, 0.0)
        heading, pitch, roll = (phi + 90.0) % 360.0, 2.0, self.bank
        se = sc.wander * math.sin(2 * math.pi * t / 23.0 + self.wander[0])
        sn = sc.wander * math.sin(2 * math.pi * t / 31.0 + self.wander[1])
        hfov = sc.hfov
        if self.camera is not None:  # pans and zooms
            se, sn = self.camera.stare(t)
            hfov = self.camera.hfov(t)
        glat, glon, _ = self.frame.to_geodetic(se, sn, 0.0)
        los = geodetic_to_ecef(glat, glon, 0.0) - geodetic_to_ecef(slat, slon, sc.altitude)
        d = ned_basis(float(slat), float(slon)).T @ los
        b = misb_camera_to_ned(heading, pitch, roll, 0.0, 0.0, 0.0).T @ (d / np.linalg.norm(d))
        el = math.degrees(math.asin(-float(b[2])))
        az = math.degrees(math.atan2(float(b[1]), float(b[0]))) % 360.0
        vfov = 2 * math.degrees(math.atan(math.tan(math.radians(hfov) / 2) * sc.height / sc.width))
        return {
            3: "KESTREL-SYNTH", 5: heading, 6: pitch, 7: roll, 10: "SYNTH-UAS", 11: "EO",
            12: "Geodetic WGS84", 13: float(slat), 14: float(slon), 15: sc.altitude, 16: hfov,
            17: vfov, 18: az, 19: el, 20: 0.0, 56: sc.airspeed,
        }


def _decoded(packet: bytes) -> SensorMetadata:
    pkts = decode(packet)
    md = to_metadata(pkts[0]) if pkts else None
    if md is None or pkts[0].checksum_ok is False:
        raise RuntimeError("synthetic KLV did not decode")  # our own encoder/decoder disagree
    return md


def frame_packet(values: dict[int, Any], t_us: int, w: int, h: int) -> tuple[bytes, SensorMetadata, SensorModel]:
    """Encode, decode, ray-trace frame centre/corners from the decoded angles, encode again."""
    md = _decoded(st0601.encode(values, timestamp_us=t_us))
    model = build_model(md, w, h)
    uv = np.array([[w / 2, h / 2], [0, 0], [w, 0], [w, h], [0, h]], dtype=float)
    g = model.pixels_to_ground(uv, 0.0)
    full = dict(values)
    assert model.sensor_ecef is not None  # a pose model always has the sensor position
    full[21] = float(np.linalg.norm(geodetic_to_ecef(g[0, 0], g[0, 1], 0.0) - model.sensor_ecef))
    full[23], full[24], full[25] = float(g[0, 0]), float(g[0, 1]), 0.0
    for k in range(4):
        full[26 + 2 * k] = float(g[k + 1, 0] - g[0, 0])
        full[27 + 2 * k] = float(g[k + 1, 1] - g[0, 1])
    packet = st0601.encode(full, timestamp_us=t_us)
    md = _decoded(packet)
    return packet, md, build_model(md, w, h)


def _ground_homography(model: SensorModel, frame: LocalFrame, w: int, h: int) -> np.ndarray:
    """3x3 H with (u, v, 1) ~ H (east, north, 1), least squares over a grid of image rays."""
    us, vs = np.meshgrid(np.linspace(0, w, 7), np.linspace(0, h, 5))
    uv = np.stack([us.ravel(), vs.ravel()], axis=1)
    g = model.pixels_to_ground(uv, 0.0)
    ok = np.isfinite(g).all(axis=1)
    en = frame.ground_to_enu(g[ok, 0], g[ok, 1])
    hmat, _ = cv2.findHomography(en.astype(np.float64), uv[ok].astype(np.float64), 0)
    return np.asarray(hmat, dtype=np.float64)


def _footprint_fn(flight: _Flight, frame: LocalFrame, w: int, h: int) -> Any:
    """t -> the view's ground corners [4, 2] in ENU metres (for planning traffic)."""
    def at(t: float) -> np.ndarray:
        _p, _md, model = frame_packet(flight.values(t), EPOCH_US + round(t * 1e6), w, h)
        g = model.pixels_to_ground(np.array([[0, 0], [w, 0], [w, h], [0, h]], float), 0.0)
        return np.asarray(frame.ground_to_enu(g[:, 0], g[:, 1]), np.float64).reshape(4, 2)
    return at


def synthesize(out: str | Path, sc: Scenario, truth_path: str | Path | None = None) -> dict[str, Any]:
    """Write the clip to `out` (and `truth_path`); return the truth dict."""
    if sc.scenario not in SCENARIOS:
        raise ValueError(f"scenario {sc.scenario!r}: expected one of {', '.join(SCENARIOS)}")
    if sc.scenario == "aerial":
        sc = replace(sc, **AERIAL)  # type: ignore[arg-type]
    rng = np.random.default_rng(sc.seed)
    frame = LocalFrame(sc.lat0, sc.lon0, 0.0)
    w, h, res, half = sc.width, sc.height, sc.texture_res, sc.texture_half
    paths: list[TargetPath] | list[LinePath] | list[Route]
    if sc.scenario == "aerial":
        from kestrel.fmv.scenes import DEFAULT_AERIAL_SOURCE

        texture = aerial_texture(sc.texture_from or DEFAULT_AERIAL_SOURCE, sc.seed, half, res)
        camera = CameraPlan.plan(rng, sc.seconds)
        flight = _Flight(sc, rng, frame, camera)
        paths = plan_traffic(rng, sc.targets, sc.seconds, sc.fps, _footprint_fn(flight, frame, w, h))
    else:
        texture = make_texture(sc.seed, sc.texture_half, sc.texture_res)
        flight = _Flight(sc, rng, frame)
        if sc.scenario == "crossing":
            paths = plan_crossing(rng, sc.targets, sc.seconds, texture, sc.texture_half, sc.texture_res)
        else:
            paths = plan_targets(rng, sc.targets, room=95.0)
    noise_rng = np.random.default_rng(sc.seed + 1)
    # texture index (col, row) -> ENU (east, north); OpenCV samples at pixel centres
    tex_to_en = np.array([[res, 0, -half + 0.5 * res], [0, -res, half - 0.5 * res], [0, 0, 1]], float)
    to_index = np.array([[1, 0, -0.5], [0, 1, -0.5], [0, 0, 1]], float)  # geo u,v -> OpenCV index
    unit = np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]], float) / 2  # (along, across) corners
    n = int(round(sc.seconds * sc.fps))
    frames_truth: list[dict[str, Any]] = []
    with TsWriter(out, w, h, fps=sc.fps, crf=sc.crf, sync=sc.sync_klv, threads=ENCODER_THREADS) as writer:
        for i in range(n):
            t = i / sc.fps
            t_us = EPOCH_US + round(t * 1e6)
            packet, _md, model = frame_packet(flight.values(t), t_us, w, h)
            hmat = _ground_homography(model, frame, w, h)
            image = cv2.warpPerspective(texture, to_index @ hmat @ tex_to_en, (w, h), flags=cv2.INTER_LINEAR,
                                        borderMode=cv2.BORDER_REFLECT)
            targets = []
            for p in paths:
                e, nn, hd = p.at(t)
                length, width = getattr(p, "length", TARGET_LEN), getattr(p, "width", TARGET_WID)
                pix = _vehicle_pixels(unit * [length, width], e, nn, hd, hmat)
                box = [float(pix[:, 0].min()), float(pix[:, 1].min()), float(pix[:, 0].max()), float(pix[:, 1].max())]
                if box[2] > -w and box[0] < 2 * w and box[3] > -h and box[1] < 2 * h:  # near the view: draw it
                    _draw_vehicle(image, pix, p.colour, isinstance(p, Route),
                                  _vehicle_pixels(unit * [length * 0.18, width * 0.8], e, nn, hd, hmat,
                                                  ahead=length * 0.12))
                lat, lon, _ = frame.to_geodetic(e, nn, 0.0)
                uv = model.ground_to_pixel(float(lat), float(lon), 0.0)
                u, v = uv if uv is not None else (float("nan"), float("nan"))
                speed = p.speed_at(t) if isinstance(p, Route) else p.speed
                targets.append({
                    "id": p.id, "lat": float(lat), "lon": float(lon), "u": u, "v": v, "box": box,
                    "visible": bool(0 <= u < w and 0 <= v < h), "heading": hd, "speed": speed,
                    # the whole vehicle is in the picture (what the scorer counts)
                    "in_view": bool(box[0] >= 0 and box[1] >= 0 and box[2] <= w and box[3] <= h),
                })
            if sc.noise > 0:
                image = cv2.add(image, noise_rng.normal(0.0, sc.noise, image.shape), dtype=cv2.CV_8U)
            writer.write(image, packet)
            frames_truth.append({"index": i, "pts": t, "time_us": t_us, "targets": targets})
    truth = {
        "version": 2, "generator": "kestrel fmv synth", "scenario": asdict(sc),
        "pixel_convention": "u right, v down; pixel (i, j) centre at (i + 0.5, j + 0.5)",
        "targets": [{"id": p.id, "length_m": getattr(p, "length", TARGET_LEN),
                     "width_m": getattr(p, "width", TARGET_WID),
                     "speed_mps": p.speed if not isinstance(p, Route) else float(p.speed.max()),
                     "colour_bgr": list(p.colour), "path": p.describe()} for p in paths],
        "frames": frames_truth,
    }
    if truth_path is not None:
        Path(truth_path).write_text(json.dumps(truth))
    return truth


def _vehicle_pixels(corners: np.ndarray, e: float, n: float, hd: float, hmat: np.ndarray,
                    ahead: float = 0.0) -> np.ndarray:
    """(along, across) metres around a point `ahead` of (e, n) along heading hd -> pixels [4, 2]."""
    s, c = math.sin(math.radians(hd)), math.cos(math.radians(hd))
    rot = np.array([[s, c], [c, -s]])  # (along, across) -> (east, north)
    en = corners @ rot + [e + ahead * s, n + ahead * c]
    return np.asarray(cv2.perspectiveTransform(en[None].astype(np.float64), hmat)[0], np.float64)


def _draw_vehicle(image: np.ndarray, pix: np.ndarray, colour: tuple[int, int, int], detail: bool,
                  windscreen: np.ndarray) -> None:
    """Body (anti-aliased, 1/16 px); with `detail`, a dark windscreen band across the front half."""
    cv2.fillConvexPoly(image, np.round((pix - 0.5) * 16).astype(np.int32), colour, cv2.LINE_AA, shift=4)
    if detail:
        dark = tuple(int(c * 0.35) for c in colour)
        cv2.fillConvexPoly(image, np.round((windscreen - 0.5) * 16).astype(np.int32), dark, cv2.LINE_AA, shift=4)
