"""Back-fill: when a track is confirmed, follow its look backwards through the last second or two.

Goal: a vehicle is in view for a while before the detector first sees it whole (the camera panned
onto it and no older frame saw that ground; a slow car is a strip until it has moved its length).
Once a track is confirmed, its own grey patch is searched for frame by frame going back in time,
where the track's ground-stabilised velocity puts it (normalised cross-correlation, small window):
the frames before its first detection (and the gaps between its first hits) get **held** points
(`TrackPoint.held`), so the track's history starts when the vehicle came into view. Nothing is
reported sooner: these points are added at confirmation, in the past (a live view sees them when
the track is confirmed). Worst case per confirmed track: one small `matchTemplate` per buffered
frame (`back_s` of frames); memory: the grey frames of the last `back_s` seconds.

`look_moves` uses the same walk to tell whether what a box shows moves with the box (a vehicle) or
stays put on the ground (the ghost of where one was): the tracker's ghost test (`ghost_pad`).
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt

F64 = npt.NDArray[np.float64]
U8 = npt.NDArray[np.uint8]


@dataclass(slots=True)
class Past:
    """One buffered frame: its index, time, grey picture, the camera motion into the next frame
    (this frame's pixels -> the next one's; None across a registration gap) and its sensor model."""

    index: int
    pts: float
    grey: U8
    to_next: F64 | None
    sensor: Any


class FrameRing:
    """The last `n` frames' grey pictures (full size) and the camera motion between them, and the
    camera motion (only) of `lag` frames before those."""

    def __init__(self, n: int, lag: int = 0) -> None:
        self.frames: deque[Past] = deque(maxlen=max(1, n))
        self.moves: deque[tuple[int, F64 | None]] = deque(maxlen=max(1, n + lag))  # (index, previous -> it)

    def push(self, index: int, pts: float, grey: U8, homography: F64 | None, sensor: Any) -> None:
        """`homography`: previous frame -> this frame (the detector's), or None."""
        if self.frames:
            prev = self.frames[-1]
            prev.to_next = None if homography is None or prev.index != index - 1 else homography
        if self.moves and self.moves[-1][0] != index - 1:
            self.moves.clear()
        self.moves.append((index, homography))
        self.frames.append(Past(index, pts, grey, None, sensor))

    def seen_before(self, index: int, xyxy: F64, lag: int, shape: tuple[int, ...], edge: int = 3) -> bool:
        """Was box `xyxy` of frame `index` wholly in the picture `lag` frames earlier (through the
        camera motion)? False when that frame is before the first one remembered (a stream's start,
        a registration gap)."""
        moves = list(self.moves)
        if not moves or index - lag < moves[0][0]:
            return False
        pos = {i: k for k, (i, _h) in enumerate(moves)}
        if index not in pos:
            return False
        M = np.eye(3)
        for k in range(pos[index], pos[index] - lag, -1):
            H = moves[k][1]
            if H is None:
                return False
            M = M @ H
        back = cv2.perspectiveTransform(np.array([[[xyxy[0], xyxy[1]]], [[xyxy[2], xyxy[1]]], [[xyxy[2], xyxy[3]]],
                                                  [[xyxy[0], xyxy[3]]]], np.float64), np.linalg.inv(M)).reshape(-1, 2)
        h, w = shape[:2]
        return bool(back.min() >= edge and back[:, 0].max() <= w - edge and back[:, 1].max() <= h - edge)


def walk_back(ring: FrameRing, box: F64, vel: F64, tmpl: U8, *, ncc: float, margin: float,
              skip_newest: int = 1, max_frames: int | None = None, edge: int = 3,
              anchors: dict[int, F64] | None = None) -> tuple[list[tuple[Past, F64, float]], str]:
    """Follow `tmpl` (grey patch of `box`, centre u, v, width, height in the newest frame's pixels,
    moving at `vel` px/s over the ground as the picture shows it) back through the ring, newest
    first, starting `skip_newest` frames back. Returns (frame, box in its pixels, NCC) while the
    patch is found (NCC >= `ncc`) within `margin` (+ 30 % of its size) of where it should be and
    the box stays inside the picture (`edge` pixels from its border: the detector ignores the
    outermost pixels too); stops at the first frame where it is not. Also says why it stopped:
    "edge" (the box reached the picture's edge: the vehicle came into view there), "lost" (not
    found), "start" (the oldest frame remembered), "gap" (no camera motion known), "max".
    `anchors`: frame index -> centre where the track was detected: where the look is not found
    there, the walk goes on from the detection (not returned)."""
    frames = list(ring.frames)
    if len(frames) < 2:
        return [], "start"
    out: list[tuple[Past, F64, float]] = []
    c, size = box[:2].astype(np.float64).copy(), box[2:].astype(np.float64).copy()
    v = vel.astype(np.float64).copy()
    i = len(frames) - 1
    for _ in range(skip_newest):
        if i == 0:
            return out, "start"
        c, size, v = _back(frames[i - 1], c, size, v, frames[i].pts)
        i -= 1
        if c is None:
            return out, "gap"
    th, tw = tmpl.shape
    while i >= 0 and (max_frames is None or len(out) < max_frames):
        f = frames[i]
        img = f.grey
        scale = float(size[0]) / max(1.0, float(tw))
        t = tmpl if abs(scale - 1.0) < 0.05 else cv2.resize(tmpl, (max(2, int(round(tw * scale))),
                                                                    max(2, int(round(th * scale)))))
        h, w = t.shape
        m = int(math.ceil(margin + 0.3 * max(h, w)))
        bx0, by0 = int(round(c[0] - w / 2)), int(round(c[1] - h / 2))
        if bx0 < edge or by0 < edge or bx0 + w > img.shape[1] - edge or by0 + h > img.shape[0] - edge:
            return out, "edge"  # (partly) out of the picture: it came in there
        x0, y0 = max(0, bx0 - m), max(0, by0 - m)
        x1, y1 = min(img.shape[1], bx0 + w + m), min(img.shape[0], by0 + h + m)
        res = cv2.matchTemplate(img[y0:y1, x0:x1], t, cv2.TM_CCOEFF_NORMED)
        _lo, best, _lo_at, (bx, by) = cv2.minMaxLoc(res)
        if best >= ncc:
            c = np.array([x0 + bx + w / 2, y0 + by + h / 2], np.float64)
            out.append((f, np.array([c[0], c[1], size[0], size[1]], np.float64), float(best)))
        elif anchors is not None and f.index in anchors:
            c = np.asarray(anchors[f.index], np.float64)[:2].copy()
        else:
            return out, "lost"
        if i == 0:
            return out, "start"
        c, size, v = _back(frames[i - 1], c, size, v, f.pts)
        if c is None:
            return out, "gap"
        i -= 1
    return out, "max"


def _back(prev: Past, c: F64, size: F64, v: F64, t: float) -> tuple[Any, F64, F64]:
    """Centre, size and velocity one frame back (into `prev`'s pixels), or (None, ...) at a gap."""
    H = prev.to_next
    if H is None:
        return None, size, v
    Hi = np.linalg.inv(H)
    q = Hi @ np.array([c[0], c[1], 1.0])
    p = q[:2] / q[2]
    w = float(Hi[2, 0] * c[0] + Hi[2, 1] * c[1] + Hi[2, 2])
    zoom = math.sqrt(abs(float(np.linalg.det(Hi))) / abs(w) ** 3)
    dt = max(0.0, t - prev.pts)
    return p - v * zoom * dt, size * zoom, v * zoom


def look_moves(ring: FrameRing, box: F64, vel: F64, tmpl: U8, n: int, *, ncc: float) -> bool:
    """Does the picture inside `box` (centre u, v, width, height in the newest frame's pixels; `tmpl`
    its grey patch) move along with the box (`vel` px/s over the ground as the picture shows it),
    rather than stay put on the ground? Its look is followed back `n` frames (`walk_back`, small
    window); True when it is found all the way and ends nearer where the box's velocity puts it
    than where the same ground was. A vehicle's look moves with its box; the ghost of where a
    vehicle was is ground and stays. False when that cannot be told (too few frames, a gap, lost)."""
    frames = list(ring.frames)
    if n < 1 or len(frames) <= n:
        return False
    found, _why = walk_back(ring, box, vel, tmpl, ncc=ncc, margin=2.0, max_frames=n)
    if len(found) < n:
        return False
    ground = np.array([box[0], box[1], 1.0])
    for f in frames[-1 - n:-1][::-1]:  # the same ground, back through the camera motion
        if f.to_next is None:
            return False
        ground = np.linalg.solve(f.to_next, ground)
        ground = ground / ground[2]
    dt = frames[-1].pts - frames[-1 - n].pts
    moved = ground[:2] - vel * dt
    at = found[-1][1][:2]
    return bool(np.hypot(*(at - moved)) < np.hypot(*(at - ground[:2])))
