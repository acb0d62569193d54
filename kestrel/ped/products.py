"""Run products made from the review store: `tracks.geojson`, `tracks.kml`, `detections.csv`.

All writers go through a temporary file and an atomic rename, so a reader (a GIS watching the
folder, a second `kestrel ped review`) never sees half a file. O(points) each; no network.
GeoJSON follows RFC 7946 (WGS-84, [lon, lat] order); tracks that could not be geolocated are
kept as features with `"geometry": null` so the product still lists every track.
"""

from __future__ import annotations

import csv
import json
import math
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape, quoteattr

from kestrel.ped.review import PlatformState, StoredTrack, iso_utc


def atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _r(v: float | None, nd: int = 3) -> float | None:
    return None if v is None or not math.isfinite(v) else round(v, nd)


def track_properties(t: StoredTrack) -> dict[str, Any]:
    """The properties every product shows for a track (GeoJSON, KML description, review list)."""
    return {
        "id": t.id,
        "label": t.label,
        "review": t.state,
        "affiliation": t.affiliation,
        "analyst": t.analyst,
        "reviewed_at": t.reviewed_at,
        "frames": t.frames or len(t.points),
        "first_seen": _r(t.first_seen),
        "last_seen": _r(t.last_seen),
        "first_seen_utc": iso_utc(t.first_utc),
        "last_seen_utc": iso_utc(t.last_utc),
        "speed_mps": _r(t.speed, 2),
        "heading_deg": _r(t.heading, 1),
        "confidence": _r(t.confidence, 3),
        "geolocated": t.geolocated,
    }


def tracks_geojson(tracks: Sequence[StoredTrack]) -> dict[str, Any]:
    """FeatureCollection: per track a LineString of its ground path (>= 2 points) and a Point at
    its latest position; a null-geometry feature for a track with no ground position."""
    features: list[dict[str, Any]] = []
    for t in tracks:
        props = track_properties(t)
        path = t.ground_path
        if len(path) >= 2:
            features.append({
                "type": "Feature", "id": f"track-{t.id}-path",
                "geometry": {"type": "LineString", "coordinates": [[round(lon, 7), round(lat, 7)] for lat, lon in path]},
                "properties": {**props, "feature": "path"},
            })
        if t.lat is not None and t.lon is not None:
            geom: dict[str, Any] | None = {"type": "Point", "coordinates": [round(t.lon, 7), round(t.lat, 7)]}
        else:
            geom = None
        features.append({"type": "Feature", "id": f"track-{t.id}", "geometry": geom,
                         "properties": {**props, "feature": "latest"}})
    return {"type": "FeatureCollection", "features": features}


def write_geojson(path: Path, tracks: Sequence[StoredTrack]) -> None:
    atomic_write(path, json.dumps(tracks_geojson(tracks), indent=1).encode())


# ---- detections.csv ------------------------------------------------------------------------------
CSV_COLUMNS = ("frame", "pts", "x1", "y1", "x2", "y2", "confidence", "class_id", "lat", "lon", "hae", "track_id")


def detection_rows(detections: Any) -> Iterable[tuple[Any, ...]]:
    """Rows of one `kestrel.ped.records.Detections` (numpy-backed), one per box."""
    ground = detections.ground
    tids = detections.track_id
    for i in range(len(detections)):
        x1, y1, x2, y2 = (round(float(v), 2) for v in detections.xyxy[i])
        lat = lon = hae = None
        if ground is not None and math.isfinite(float(ground[i, 0])):
            lat, lon, hae = (round(float(v), 7) for v in ground[i])
        yield (detections.frame_index, _r(detections.pts, 4), x1, y1, x2, y2,
               round(float(detections.confidence[i]), 4), int(detections.class_id[i]), lat, lon, hae,
               int(tids[i]) if tids is not None and tids[i] >= 0 else None)


def write_detections_csv(path: Path, per_frame: Iterable[Any]) -> int:
    """Write every frame's detections; returns the number of rows. Streams: O(1) memory."""
    n = 0
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(CSV_COLUMNS)
        for dets in per_frame:
            for row in detection_rows(dets):
                w.writerow(["" if v is None else v for v in row])
                n += 1
    os.replace(tmp, path)
    return n


# ---- tracks.kml (hand-written KML 2.2) -----------------------------------------------------------
_STYLE_COLOR = {"confirmed": "ff0000ff", "pending": "ff00ffff", "rejected": "ff888888"}  # aabbggrr


def _coords(points: Iterable[tuple[float, float]]) -> str:
    return " ".join(f"{lon:.7f},{lat:.7f},0" for lat, lon in points)


def tracks_kml(tracks: Sequence[StoredTrack], platform: Sequence[PlatformState] = (), name: str = "Kestrel PED") -> str:
    """A KML document: one folder of tracks (path + latest point), the platform path and the last
    image footprint. Only geolocated tracks appear (KML has no null geometry)."""
    out = ['<?xml version="1.0" encoding="UTF-8"?>',
           '<kml xmlns="http://www.opengis.net/kml/2.2"><Document>',
           f"<name>{escape(name)}</name>"]
    for state, color in _STYLE_COLOR.items():
        out.append(f'<Style id="{state}"><LineStyle><color>{color}</color><width>3</width></LineStyle>'
                   f"<IconStyle><color>{color}</color></IconStyle></Style>")
    out.append("<Folder><name>Tracks</name>")
    for t in tracks:
        path = t.ground_path
        if not path:
            continue
        props = track_properties(t)
        desc = "".join(f"<tr><td>{escape(k)}</td><td>{escape(str(v))}</td></tr>" for k, v in props.items())
        out.append(f"<Placemark><name>{escape(f'Track {t.id} ({t.label}, {t.state})')}</name>"
                   f"<description>{escape(f'<table>{desc}</table>')}</description>"
                   f"<styleUrl>#{t.state}</styleUrl><ExtendedData>")
        out.extend(f"<Data name={quoteattr(k)}><value>{escape(str(v))}</value></Data>" for k, v in props.items())
        out.append("</ExtendedData><MultiGeometry>")
        if len(path) >= 2:
            out.append(f"<LineString><tessellate>1</tessellate><coordinates>{_coords(path)}</coordinates></LineString>")
        out.append(f"<Point><coordinates>{_coords(path[-1:])}</coordinates></Point></MultiGeometry></Placemark>")
    out.append("</Folder>")
    located = [p for p in platform if p.lat is not None and p.lon is not None]
    if located:
        pts = [(p.lat, p.lon) for p in located if p.lat is not None and p.lon is not None]
        out.append("<Placemark><name>Platform path</name><LineString><tessellate>1</tessellate>"
                   f"<coordinates>{_coords(pts)}</coordinates></LineString></Placemark>")
    last_fp = next((p.footprint for p in reversed(platform) if p.footprint), None)
    if last_fp:
        ring = [*last_fp, last_fp[0]]
        out.append("<Placemark><name>Last image footprint</name><Polygon><outerBoundaryIs><LinearRing>"
                   f"<coordinates>{_coords(ring)}</coordinates></LinearRing></outerBoundaryIs></Polygon></Placemark>")
    out.append("</Document></kml>")
    return "\n".join(out) + "\n"


def write_kml(path: Path, tracks: Sequence[StoredTrack], platform: Sequence[PlatformState] = ()) -> None:
    atomic_write(path, tracks_kml(tracks, platform).encode())


def write_json(path: Path, obj: Any) -> None:
    atomic_write(path, (json.dumps(obj, indent=1, default=str) + "\n").encode())
