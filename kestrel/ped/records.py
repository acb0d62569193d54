"""PED records: `Detections` (one frame's boxes) and `Track` (one mover over time).

supervision-style: one small numpy-backed record flows detector -> tracker -> products.
Pixel boxes are in full-resolution image pixels, xyxy (x1, y1, x2, y2), x right, y down.
Ground positions are (lat deg, lon deg, height m above the ellipsoid) from the sensor model.
The review fields of `Track` (review, label, affiliation, analyst, reviewed_at) belong to the
analyst: the tracker leaves them at their defaults and the review store sets them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import numpy as np
import numpy.typing as npt

F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]


@dataclass(slots=True)
class Detections:
    """The detections of one frame. `len()` is the number of boxes; a boolean mask selects."""

    xyxy: F32 = field(default_factory=lambda: np.zeros((0, 4), np.float32))
    confidence: F32 = field(default_factory=lambda: np.zeros((0,), np.float32))
    class_id: I64 = field(default_factory=lambda: np.zeros((0,), np.int64))
    ground: F64 | None = None  # [N, 3] lat, lon, height; NaN rows where the ray missed the ground
    frame_index: int = 0
    pts: float | None = None  # seconds
    # 3x3 homography mapping the previous frame's pixels to this frame's (the detector's ego-motion
    # estimate), or None when unknown. Lets the tracker tell a mover from the camera's motion.
    homography: F64 | None = None
    # [N] id of the confirmed track each box went to, -1 for none (set by the tracker; None until then)
    track_id: I64 | None = None

    def __post_init__(self) -> None:
        self.xyxy = np.asarray(self.xyxy, np.float32).reshape(-1, 4)
        n = len(self.xyxy)
        self.confidence = np.asarray(self.confidence, np.float32).reshape(-1)
        self.class_id = np.asarray(self.class_id, np.int64).reshape(-1)
        if len(self.confidence) != n or len(self.class_id) != n:
            raise ValueError(f"Detections: {n} boxes but {len(self.confidence)} scores, {len(self.class_id)} classes")
        if self.ground is not None:
            self.ground = np.asarray(self.ground, np.float64).reshape(-1, 3)
            if len(self.ground) != n:
                raise ValueError(f"Detections: {n} boxes but {len(self.ground)} ground points")

    @classmethod
    def empty(cls, frame_index: int = 0, pts: float | None = None) -> Detections:
        return cls(frame_index=frame_index, pts=pts)

    def __len__(self) -> int:
        return len(self.xyxy)

    def __getitem__(self, index: Any) -> Detections:
        """Select boxes by boolean mask, index array or slice; the frame stays the same."""
        if isinstance(index, int | np.integer):
            index = [int(index)]
        return Detections(
            xyxy=self.xyxy[index],
            confidence=self.confidence[index],
            class_id=self.class_id[index],
            ground=None if self.ground is None else self.ground[index],
            frame_index=self.frame_index,
            pts=self.pts,
            homography=self.homography,
            track_id=None if self.track_id is None else self.track_id[index],
        )

    @property
    def centers(self) -> F32:
        """[N, 2] box centres (u, v) in pixels."""
        return np.stack([(self.xyxy[:, 0] + self.xyxy[:, 2]) / 2, (self.xyxy[:, 1] + self.xyxy[:, 3]) / 2], axis=1)

    @property
    def area(self) -> F32:
        return (self.xyxy[:, 2] - self.xyxy[:, 0]) * (self.xyxy[:, 3] - self.xyxy[:, 1])


class TrackState(StrEnum):
    TENTATIVE = "tentative"  # born, not yet N-of-M hits
    CONFIRMED = "confirmed"  # being tracked (seen, or coasting a short while)
    LOST = "lost"  # coasted too long; finished


class ReviewState(StrEnum):
    PENDING = "pending"
    CONFIRMED = "confirmed"
    REJECTED = "rejected"


LABELS = ("vehicle", "person", "vessel", "unknown")


@dataclass(slots=True)
class TrackPoint:
    """One observation of a track: the detected box, and its ground position when known."""

    frame_index: int
    pts: float | None
    xyxy: tuple[float, float, float, float]
    confidence: float
    lat: float | None = None  # filtered ground position (deg)
    lon: float | None = None
    hae: float | None = None  # m above the ellipsoid
    speed_mps: float | None = None  # filtered ground speed at this point
    heading_deg: float | None = None  # filtered course over ground at this point, deg true
    # True: no detection this frame; the box is the track's held estimate (carried by the camera
    # motion, the track's own size) while it coasts through a stop or a detector miss.
    held: bool = False

    def to_dict(self) -> dict[str, Any]:
        extra = {"held": True} if self.held else {}
        return {
            "frame_index": self.frame_index,
            "pts": self.pts,
            "xyxy": [round(float(v), 2) for v in self.xyxy],
            "confidence": round(float(self.confidence), 4),
            "lat": self.lat,
            "lon": self.lon,
            "hae": self.hae,
            "speed_mps": None if self.speed_mps is None else round(self.speed_mps, 3),
            "heading_deg": None if self.heading_deg is None else round(self.heading_deg, 2),
            **extra,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrackPoint:
        x1, y1, x2, y2 = (float(v) for v in d["xyxy"])
        return cls(d["frame_index"], d.get("pts"), (x1, y1, x2, y2), float(d.get("confidence", 1.0)),
                   d.get("lat"), d.get("lon"), d.get("hae"), d.get("speed_mps"), d.get("heading_deg"),
                   bool(d.get("held", False)))


@dataclass(slots=True)
class Track:
    """A mover. `points` holds every frame it was detected in (coasted frames are not points)."""

    id: int
    state: TrackState = TrackState.TENTATIVE
    points: list[TrackPoint] = field(default_factory=list)
    speed_mps: float | None = None  # smoothed ground speed
    heading_deg: float | None = None  # smoothed course over ground, deg true, 0..360
    class_id: int = 0  # detector class of the most recent detection
    confirmed_frame: int | None = None  # frame whose detections confirmed it (None: unknown)
    # Analyst review (set by the review store, never by the tracker).
    review: ReviewState = ReviewState.PENDING
    label: str = "unknown"  # one of LABELS
    affiliation: str = "unknown"  # friend | hostile | neutral | unknown
    analyst: str | None = None
    reviewed_at: str | None = None  # ISO 8601 UTC

    @property
    def first_seen_pts(self) -> float | None:
        return self.points[0].pts if self.points else None

    @property
    def last_seen_pts(self) -> float | None:
        return self.points[-1].pts if self.points else None

    @property
    def pixel_history(self) -> F32:
        """[N, 4] xyxy of every point."""
        return np.array([p.xyxy for p in self.points], np.float32).reshape(-1, 4)

    @property
    def ground_history(self) -> F64:
        """[N, 3] lat, lon, hae of every point (NaN where not geolocated)."""
        nan = float("nan")
        return np.array(
            [(p.lat if p.lat is not None else nan, p.lon if p.lon is not None else nan,
              p.hae if p.hae is not None else nan) for p in self.points], np.float64).reshape(-1, 3)

    @property
    def latest_ground(self) -> tuple[float, float, float] | None:
        for p in reversed(self.points):
            if p.lat is not None and p.lon is not None:
                return (p.lat, p.lon, p.hae if p.hae is not None else 0.0)
        return None

    def to_dict(self) -> dict[str, Any]:
        def fin(v: float | None) -> float | None:
            return None if v is None or not math.isfinite(v) else round(v, 3)

        return {
            "id": self.id,
            "state": self.state.value,
            "speed_mps": fin(self.speed_mps),
            "heading_deg": fin(self.heading_deg),
            "class_id": self.class_id,
            "confirmed_frame": self.confirmed_frame,
            "first_seen_pts": self.first_seen_pts,
            "last_seen_pts": self.last_seen_pts,
            "review": self.review.value,
            "label": self.label,
            "affiliation": self.affiliation,
            "analyst": self.analyst,
            "reviewed_at": self.reviewed_at,
            "points": [p.to_dict() for p in self.points],
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Track:
        return cls(
            id=int(d["id"]),
            state=TrackState(d.get("state", "confirmed")),
            points=[TrackPoint.from_dict(p) for p in d.get("points", [])],
            speed_mps=d.get("speed_mps"),
            heading_deg=d.get("heading_deg"),
            class_id=int(d.get("class_id", 0)),
            confirmed_frame=d.get("confirmed_frame"),
            review=ReviewState(d.get("review", "pending")),
            label=d.get("label", "unknown"),
            affiliation=d.get("affiliation", "unknown"),
            analyst=d.get("analyst"),
            reviewed_at=d.get("reviewed_at"),
        )
