"""How far the ray-traced image centre lies from the KLV frame-centre tag (ST 0601 tags 23-25).

A figure to report, not a pass/fail: real encoders compute the tag with their own (often coarse)
earth model and terrain. O(n) in metadata records; one model and one ray per record.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from kestrel.geo.build import build_model
from kestrel.geo.geodesy import HeightFn, distance_bearing, msl_to_hae
from kestrel.geo.sensor import InsufficientMetadata
from kestrel.klv.metadata import SensorMetadata


@dataclass(slots=True)
class FrameCenterSummary:
    records: int  # metadata records seen
    compared: int  # records with both a pose model and a frame-centre tag
    median_m: float | None
    p90_m: float | None
    max_m: float | None
    skipped: dict[str, int]  # reason -> count

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def frame_center_offset(
    md: SensorMetadata, *, geoid: HeightFn | None = None, kinds: tuple[str, ...] = ("pose", "pose-absolute")
) -> float | str:
    """Ground distance (m) between ray-traced image centre and frame-centre tag, or a skip reason.

    The ray is intersected at the tag's own elevation (tag 25, MSL + geoid) when present, so the
    figure measures pointing disagreement rather than terrain. Only models of `kinds` count:
    "pose"/"pose-absolute" (from angles) are the real check; corner-fitted models are nearly
    circular.
    """
    if md.frame_center_lat is None or md.frame_center_lon is None:
        return "no frame-centre tag"
    try:
        model = build_model(md, 1280, 720, geoid=geoid)
    except InsufficientMetadata:
        return "no sensor model"
    if model.kind not in kinds:
        return f"model is {model.kind}"
    h = 0.0
    if md.frame_center_elev is not None and math.isfinite(md.frame_center_elev):
        h = msl_to_hae(md.frame_center_elev, md.frame_center_lat, md.frame_center_lon, geoid)
    g = model.image_center_ground(h)
    if g is None:
        return "image centre above the horizon"
    dist, _ = distance_bearing(g[0], g[1], md.frame_center_lat, md.frame_center_lon)
    return float(dist)


def frame_center_offsets(
    mds: Iterable[SensorMetadata], *, geoid: HeightFn | None = None
) -> list[float | str]:
    """`frame_center_offset` for each record (metres, or the reason it was skipped)."""
    return [frame_center_offset(md, geoid=geoid) for md in mds]


def summarize_frame_center(
    mds: Iterable[SensorMetadata], *, geoid: HeightFn | None = None
) -> FrameCenterSummary:
    """Median / p90 / max distance between image centre and frame-centre tag over many records."""
    dists: list[float] = []
    skipped: dict[str, int] = {}
    n = 0
    for item in frame_center_offsets(mds, geoid=geoid):
        n += 1
        if isinstance(item, str):
            skipped[item] = skipped.get(item, 0) + 1
        else:
            dists.append(item)
    if not dists:
        return FrameCenterSummary(n, 0, None, None, None, skipped)
    arr = np.asarray(dists)
    return FrameCenterSummary(
        n, len(dists), float(np.median(arr)), float(np.percentile(arr, 90)), float(arr.max()), skipped
    )
