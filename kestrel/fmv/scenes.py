"""The `aerial` scene of `kestrel fmv synth`: traffic over real aerial imagery, seen by a camera
that pans and zooms. Pure planning pieces (no rendering, no KLV): `synth.synthesize` draws them.

- Ground: frames of a real aerial clip (by default `tests/data/fmv/aphill_klv_10s.ts`, 360x240
  MPEG-2 with its own compression artefacts), black borders cropped, each source pixel taken as
  `AERIAL_SRC_GSD` m, upscaled to the texture resolution, tiled with random flips and gains.
- Camera (`CameraPlan`): the stare point dwells 3-7 s, then slews 1-2 s to another point up to
  ~70 m away (targets enter and leave the view); the field of view zooms between 4 and 7 deg
  (a 5-9 m vehicle is ~15-65 px long).
- Traffic (`plan_traffic`): vehicles 5-9 m long at 2-20 m/s. "short" ones cross a corner of the
  footprint and are fully in view for 1-3 s; "long" ones turn (90 deg, 15-30 m radius) and/or stop
  for 1-3 s; "pass" pairs meet head-on in lanes 4 m apart. Each route is simulated at the frame
  rate (4 sub-steps) and placed so that it is where the plan wants it at its planned time. A route
  whose vehicle would drive through another's (`collide`) is drawn again: traffic never shares ground.
Worst case: planning costs one footprint per vehicle; a route is 4 arrays of the clip's length.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt

F64 = npt.NDArray[np.float64]
AERIAL_SRC_GSD = 0.3  # m per pixel of the source aerial frames (cars there are ~15 px long)
DEFAULT_AERIAL_SOURCE = Path(__file__).resolve().parents[2] / "tests" / "data" / "fmv" / "aphill_klv_10s.ts"
_VEHICLE_COLOURS = [(235, 235, 235), (25, 25, 25), (130, 130, 130), (40, 40, 190), (40, 90, 40),
                    (110, 150, 170), (160, 110, 60), (190, 190, 200)]


class SceneError(ValueError):
    """The aerial source cannot be read (missing file, no frames)."""


def aerial_texture(source: str | Path, seed: int, half: float, res: float) -> npt.NDArray[np.uint8]:
    """Ground texture (BGR, north up, `2 * half / res` texels square) tiled from real aerial frames."""
    from kestrel.fmv.ingest import read_frames

    path = Path(source)
    if not path.is_file():
        raise SceneError(f"{path}: aerial texture source not found (give --texture-from FILE.ts)")
    frames = []
    for f in read_frames(str(path)):
        frames.append(_crop_black(f.image))
        if len(frames) >= 12:
            break
    if not frames:
        raise SceneError(f"{path}: no video frames to build a texture from")
    rng = np.random.default_rng(seed + 7919)
    n = int(round(2 * half / res))
    k = AERIAL_SRC_GSD / res
    tiles = [cv2.resize(f, (int(f.shape[1] * k), int(f.shape[0] * k)), interpolation=cv2.INTER_CUBIC)
             for f in frames]
    th, tw = tiles[0].shape[:2]
    tex = np.zeros((n, n, 3), np.uint8)
    for r in range(0, n, th):
        for c in range(0, n, tw):
            t = tiles[int(rng.integers(len(tiles)))]
            flip = int(rng.integers(-1, 3))  # -1 both, 0 vertical, 1 horizontal, 2 none
            t = t if flip == 2 else cv2.flip(t, flip)
            gain = rng.uniform(0.9, 1.1, 3)
            t = np.clip(t.astype(np.float32) * gain, 0, 255).astype(np.uint8)
            hh, ww = min(th, n - r), min(tw, n - c)
            tex[r:r + hh, c:c + ww] = t[:hh, :ww]
    return tex


def _crop_black(img: npt.NDArray[np.uint8]) -> npt.NDArray[np.uint8]:
    """Drop dark border rows/columns (letterboxing of the source video)."""
    grey = img.mean(axis=2)
    rows = np.flatnonzero(grey.mean(axis=1) > 25)
    cols = np.flatnonzero(grey.mean(axis=0) > 25)
    if len(rows) < 16 or len(cols) < 16:
        return img
    return img[rows[0] + 2: rows[-1] - 1, cols[0] + 2: cols[-1] - 1]


def _smooth(x: float) -> float:
    x = min(max(x, 0.0), 1.0)
    return x * x * (3 - 2 * x)


@dataclass(slots=True)
class CameraPlan:
    """Stare point (ENU m) and horizontal field of view (deg) over time: dwell, slew, zoom."""

    knots: list[tuple[float, float, tuple[float, float]]]  # (dwell start, slew start, point)
    zooms: list[tuple[float, float]]  # (start of a 2 s zoom change, hfov after it)
    hfov0: float
    slew_s: list[float]

    @classmethod
    def plan(cls, rng: np.random.Generator, seconds: float) -> CameraPlan:
        knots: list[tuple[float, float, tuple[float, float]]] = []
        slews: list[float] = []
        t = 0.0
        p = (float(rng.uniform(-20, 20)), float(rng.uniform(-20, 20)))
        while t < seconds + 10:
            dwell = float(rng.uniform(3.0, 7.0))
            knots.append((t, t + dwell, p))
            slew = float(rng.uniform(1.0, 2.0))
            slews.append(slew)
            t += dwell + slew
            a, d = float(rng.uniform(0, 2 * math.pi)), float(rng.uniform(35, 70))
            q = (p[0] + d * math.sin(a), p[1] + d * math.cos(a))
            if math.hypot(*q) > 70:  # stay over the textured ground
                q = (q[0] * 0.4, q[1] * 0.4)
            p = q
        zooms = []
        t = float(rng.uniform(2.0, 5.0))
        while t < seconds:
            zooms.append((t, float(rng.uniform(4.0, 7.0))))
            t += float(rng.uniform(5.0, 10.0))
        return cls(knots, zooms, float(rng.uniform(4.0, 7.0)), slews)

    def stare(self, t: float) -> tuple[float, float]:
        for j, (t0, t1, p) in enumerate(self.knots):
            nxt = self.knots[j + 1] if j + 1 < len(self.knots) else None
            if nxt is None or t < nxt[0]:
                if t <= t1 or nxt is None:
                    return p
                s = _smooth((t - t1) / max(nxt[0] - t1, 1e-6))
                return (p[0] + s * (nxt[2][0] - p[0]), p[1] + s * (nxt[2][1] - p[1]))
            del t0
        return self.knots[-1][2]

    def hfov(self, t: float) -> float:
        h = self.hfov0
        for t0, to in self.zooms:
            if t >= t0:
                h = h + _smooth((t - t0) / 2.0) * (to - h)
        return h


@dataclass(slots=True)
class Route:
    """A vehicle's path sampled at the frame rate: ENU position (m), heading (deg), speed (m/s)."""

    id: int
    kind: str  # short | long | pass
    e: F64
    n: F64
    heading: F64
    speed: F64
    fps: float
    length: float
    width: float
    colour: tuple[int, int, int]
    events: list[str] = field(default_factory=list)

    def _i(self, t: float) -> int:
        return min(max(int(round(t * self.fps)), 0), len(self.e) - 1)

    def at(self, t: float) -> tuple[float, float, float]:
        i = self._i(t)
        return float(self.e[i]), float(self.n[i]), float(self.heading[i]) % 360.0

    def speed_at(self, t: float) -> float:
        return float(self.speed[self._i(t)])

    def describe(self) -> dict[str, Any]:
        return {"kind": self.kind, "events": self.events}


def simulate(frames: int, fps: float, v0: float, heading0: float, turn: tuple[float, float, float] | None = None,
             stop: tuple[float, float] | None = None) -> tuple[F64, F64, F64, F64]:
    """Drive from (0, 0): constant speed v0, optionally a turn (start s, angle deg (+ right),
    radius m) and a stop (start s, dwell s: brake at 2.5 m/s^2, wait, accelerate at 2 m/s^2)."""
    e, n, h, v = 0.0, 0.0, math.radians(heading0), v0
    turned = 0.0
    out = np.zeros((4, frames))
    sub = 4
    dt = 1.0 / (fps * sub)
    stopped_at: float | None = None
    for i in range(frames):
        out[:, i] = (e, n, math.degrees(h), v)
        for s in range(sub):
            t = (i * sub + s) * dt
            if stop is not None:
                ts, dwell = stop
                if t >= ts and stopped_at is None:
                    v = max(0.0, v - 2.5 * dt)
                    if v == 0.0:
                        stopped_at = t
                elif stopped_at is not None and t >= stopped_at + dwell:
                    v = min(v0, v + 2.0 * dt)
            ds = v * dt
            if turn is not None and t >= turn[0] and abs(turned) < abs(math.radians(turn[1])):
                dh = math.copysign(ds / turn[2], turn[1])
                h += dh
                turned += dh
            e += ds * math.sin(h)
            n += ds * math.cos(h)
    return out[0], out[1], out[2] % 360.0, out[3]


def _chord(poly: F64, c: F64, d: F64, off: float) -> tuple[float, F64]:
    """Length and midpoint of the line {c + off * normal + s * d} inside the convex polygon."""
    nrm = np.array([d[1], -d[0]])
    p0 = c + off * nrm
    lo, hi = -1e9, 1e9
    k = len(poly)
    centre = poly.mean(axis=0)
    for j in range(k):
        a, b = poly[j], poly[(j + 1) % k]
        edge = b - a
        inward = np.array([-edge[1], edge[0]])
        if float(inward @ (centre - a)) < 0:
            inward = -inward
        den = float(inward @ d)
        num = float(inward @ (p0 - a))
        if abs(den) < 1e-12:
            if num < 0:
                return 0.0, p0
            continue
        s = -num / den
        if den > 0:
            lo = max(lo, s)
        else:
            hi = min(hi, s)
    if hi <= lo:
        return 0.0, p0
    return hi - lo, p0 + d * (lo + hi) / 2


def plan_traffic(rng: np.random.Generator, count: int, seconds: float, fps: float,
                 footprint: Callable[[float], F64]) -> list[Route]:
    """`count` vehicles (see the module doc); `footprint(t)` gives the view's ground corners
    (ENU, [4, 2]) at time t."""
    frames = int(round(seconds * fps))
    routes: list[Route] = []
    kinds = ("short", "long", "short", "pass", "long")
    j = redraws = 0
    seen = _near_view(footprint, seconds, fps, frames)
    while len(routes) < count:
        kind = kinds[j % len(kinds)]
        j += 1
        if kind == "pass" and count - len(routes) < 2:
            kind = "long"
        length = float(rng.uniform(5.0, 9.0))
        width = min(2.6, max(1.8, 0.42 * length))
        tm = float(rng.uniform(min(1.5, seconds / 3), max(seconds - 1.5, seconds * 2 / 3)))
        poly = np.asarray(footprint(tm), np.float64)
        centre = poly.mean(axis=0)
        hd = float(rng.uniform(0, 360))
        d = np.array([math.sin(math.radians(hd)), math.cos(math.radians(hd))])
        reach = float(np.max(np.linalg.norm(poly - centre, axis=1)))
        v = float(rng.uniform(2.0, 20.0))
        turn = stop = None
        events: list[str] = []
        if kind == "short":  # fully in view for 1-3 s: a chord of v * d + its length
            want = v * float(rng.uniform(1.0, 3.0)) + length
            lo, hi = 0.0, reach
            sign = 1.0 if rng.random() < 0.5 else -1.0
            if _chord(poly, centre, d, 0.0)[0] > want:
                for _ in range(40):
                    mid = (lo + hi) / 2
                    lo, hi = (mid, hi) if _chord(poly, centre, d, sign * mid)[0] > want else (lo, mid)
            _, m = _chord(poly, centre, d, sign * lo)
        else:
            off = float(rng.uniform(-0.35, 0.35)) * reach
            _, m = _chord(poly, centre, d, off)
        if kind == "long":
            v = float(rng.uniform(3.0, 15.0))
            if rng.random() < 0.6:
                turn = (tm - 1.5, float(rng.choice([-90.0, 90.0])), float(rng.uniform(15.0, 30.0)))
                events.append(f"turn at {turn[0]:.1f}s")
            if rng.random() < 0.6 or turn is None:
                ts = tm + float(rng.uniform(-1.0, 1.0))
                stop = (ts, float(rng.uniform(1.0, 3.0)))
                events.append(f"stop at {ts:.1f}s for {stop[1]:.1f}s")
        lanes = [(hd, 0.0)] if kind != "pass" else [(hd, -2.0), ((hd + 180.0) % 360.0, -2.0)]
        speeds = [v] if kind != "pass" else [float(rng.uniform(6.0, 15.0)), float(rng.uniform(6.0, 15.0))]
        drawn: list[Route] = []
        for (lane_hd, lat), lane_v in zip(lanes, speeds, strict=True):
            e, n, h, s = simulate(frames, fps, lane_v, lane_hd, turn, stop)
            im = min(max(int(round(tm * fps)), 0), frames - 1)
            r = math.radians(lane_hd + 90.0)
            shift = m + lat * np.array([math.sin(r), math.cos(r)])
            colour = _VEHICLE_COLOURS[int(rng.integers(len(_VEHICLE_COLOURS)))]
            drawn.append(Route(len(routes) + len(drawn) + 1, kind, e - e[im] + shift[0], n - n[im] + shift[1], h, s,
                               fps, length, width, colour, list(events)))
        if any(collide(a, b, seen) for a in drawn for b in routes) and redraws < MAX_REDRAWS:
            redraws += 1  # vehicles never share ground: draw this one (or pair) again, same kind
            j -= 1
            continue
        routes += drawn
    return routes[:count]


MAX_REDRAWS = 200  # per clip: planning always ends (a crowded plan keeps what it drew)
GAP_M = 0.3  # two vehicles closer than this (their outlines) count as colliding


def _near_view(footprint: Callable[[float], F64], seconds: float, fps: float, frames: int) -> F64:
    """Per frame: the view's ground centre (ENU) and a radius 10 m beyond its farthest corner, from
    the footprint sampled every second (the camera slews ~70 m in 1-2 s: 10 m covers it between samples)."""
    ts = np.arange(0.0, seconds + 1.0, 1.0)
    polys = [np.asarray(footprint(float(t)), np.float64) for t in ts]
    cen = np.array([p.mean(axis=0) for p in polys])
    rad = np.array([np.max(np.linalg.norm(p - p.mean(axis=0), axis=1)) for p in polys]) + 10.0
    i = np.minimum(np.round(np.arange(frames) / fps).astype(int), len(ts) - 1)
    return np.column_stack([cen[i], rad[i]])


def collide(a: Route, b: Route, near: F64 | None = None) -> bool:
    """Do the two vehicles' outlines (length x width, along their headings, grown by `GAP_M` / 2)
    overlap at any frame (`near`: only where both are near the view, rows of `_near_view`)?
    Separating-axis test on the four edge directions, every frame at once. Real traffic never
    drives through itself; planned routes are straight lines drawn at random, so without this test
    two of them can share a place for seconds (one car drawn over the other)."""
    k = min(len(a.e), len(b.e))
    ha, hb = np.radians(a.heading[:k]), np.radians(b.heading[:k])
    axes = [np.stack([np.sin(h), np.cos(h)]) for h in (ha, hb)]
    axes += [np.stack([np.cos(h), -np.sin(h)]) for h in (ha, hb)]
    da, na, db, nb = axes[0], axes[2], axes[1], axes[3]
    d = np.stack([b.e[:k] - a.e[:k], b.n[:k] - a.n[:k]])
    la, wa = (a.length + GAP_M) / 2, (a.width + GAP_M) / 2
    lb, wb = (b.length + GAP_M) / 2, (b.width + GAP_M) / 2
    apart = np.zeros(k, bool)
    for u in axes:
        ra = la * np.abs((da * u).sum(0)) + wa * np.abs((na * u).sum(0))
        rb = lb * np.abs((db * u).sum(0)) + wb * np.abs((nb * u).sum(0))
        apart |= np.abs((d * u).sum(0)) > ra + rb
    if near is not None:
        k = min(k, len(near))
        c, r = near[:k, :2], near[:k, 2]
        for v in (a, b):
            apart[:k] |= np.hypot(v.e[:k] - c[:, 0], v.n[:k] - c[:, 1]) > r
    return not bool(apart.all())
