"""Products of a KLV scan (no video decode): metadata series, footprints, frame-centre check.

Pure functions of a `KlvScan` (or, for the check, a packet stream); the CLI does the I/O.
"""

from __future__ import annotations

import bisect
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from kestrel.fmv.scan import KlvScan
from kestrel.klv.metadata import SensorMetadata, to_metadata
from kestrel.klv.packet import KlvPacket


def probe_video(path: str | Path) -> dict[str, Any]:
    """Codec, size and frame rate of the first video stream (PyAV probe, no full decode).

    Files only: a live URL would be a second listener on the same port, so it gets {}."""
    import av

    if "://" in str(path):
        return {}
    try:
        with av.open(str(path), options={"probesize": "2000000"}) as c:
            if not c.streams.video:
                return {}
            vs = c.streams.video[0]
            cc = vs.codec_context
            return {"codec": cc.name, "width": cc.width, "height": cc.height,
                    "fps": float(vs.average_rate) if vs.average_rate else None}
    except (av.error.FFmpegError, OSError):
        return {}


def metadata_series(scan: KlvScan) -> list[tuple[float | None, SensorMetadata]]:
    """(effective time, merged metadata after that packet) for every packet with geometry.

    Packets are taken in effective-time order (untimed ones after the last frame go last), and
    merged like the frame reader does, so partial packets inherit earlier fields.
    """
    order = sorted(range(len(scan.packets)), key=lambda i: (scan.at[i] is None, scan.at[i] or 0.0, i))
    out: list[tuple[float | None, SensorMetadata]] = []
    state: SensorMetadata | None = None
    for i in order:
        p = scan.packets[i]
        if p.error is not None:
            continue
        md = to_metadata(p)
        if md is None:
            continue
        state = md if state is None else state.merged(md)
        out.append((scan.at[i], state))
    return out


def per_frame_metadata(scan: KlvScan) -> list[tuple[float, SensorMetadata | None]]:
    """Metadata in force at each video PES time (the frame reader's alignment rule)."""
    series = [(t, md) for t, md in metadata_series(scan) if t is not None]
    times = [t for t, _ in series]
    out: list[tuple[float, SensorMetadata | None]] = []
    first = scan.video_times[0] if scan.video_times else 0.0
    for t in scan.video_times:
        # timed packets before the first frame apply to the first frame
        k = bisect.bisect_right(times, max(t, first))
        out.append((t, series[k - 1][1] if k else None))
    return out


def _iso(time_us: int | None) -> str | None:
    if time_us is None:
        return None
    try:
        return datetime.fromtimestamp(time_us / 1e6, tz=UTC).isoformat().replace("+00:00", "Z")
    except (OverflowError, OSError, ValueError):
        return None


def footprints(scan: KlvScan, width: int, height: int, per_frame: bool = False) -> dict[str, Any]:
    """GeoJSON FeatureCollection of image footprints (UL, UR, LR, LL, closed), one per metadata
    packet (or per frame). Records whose metadata supports no sensor model are skipped and
    counted in the collection's `skipped` member."""
    from kestrel.geo.build import from_metadata
    from kestrel.geo.sensor import SensorModel

    rows = per_frame_metadata(scan) if per_frame else metadata_series(scan)
    features: list[dict[str, Any]] = []
    skipped = 0
    model: SensorModel | None = None
    last: SensorMetadata | None = None
    for n, (t, md) in enumerate(rows):
        if md is not last:  # per-frame rows repeat the same record until the next packet
            model = from_metadata(md, width, height) if md is not None else None
            last = md
        ring = model.footprint() if model is not None else []
        if md is None or len(ring) != 4:
            skipped += 1
            continue
        coords = [[lon, lat] for lat, lon in ring]
        coords.append(coords[0])
        props: dict[str, Any] = {
            "index": n, "pts": t, "time_us": md.time_us, "time": _iso(md.time_us),
            "model": getattr(model, "kind", None),
        }
        if md.sensor_lat is not None and md.sensor_lon is not None:
            props["sensor"] = [md.sensor_lon, md.sensor_lat, md.sensor_alt]
        if md.frame_center_lat is not None and md.frame_center_lon is not None:
            props["frame_center"] = [md.frame_center_lon, md.frame_center_lat]
        features.append({"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [coords]},
                         "properties": props})
    return {"type": "FeatureCollection", "features": features,
            "properties": {"source": scan.name, "per": "frame" if per_frame else "packet",
                           "width": width, "height": height, "skipped": skipped}}


class CentreSampler:
    """Streaming input for the frame-centre check: packets in arrival order, merged metadata of
    those whose own packet carries the frame-centre tag kept, thinned to at most `cap` records
    (every 2nd, 4th, ... evenly over the stream) so hours of KLV cost bounded memory and time."""

    def __init__(self, cap: int = 2000) -> None:
        self.cap, self.stride, self.seen = cap, 1, 0
        self.kept: list[SensorMetadata] = []
        self._state: SensorMetadata | None = None

    def add(self, pkt: KlvPacket) -> None:
        if pkt.error is not None:
            return
        md = to_metadata(pkt)
        if md is None:
            return
        self._state = md if self._state is None else self._state.merged(md)
        if md.frame_center_lat is None:  # not one inherited by merging: the packet's own tag
            return
        if self.seen % self.stride == 0:
            self.kept.append(self._state)
            if len(self.kept) > self.cap:
                self.kept = self.kept[::2]
                self.stride *= 2
        self.seen += 1

    def summary(self) -> dict[str, Any]:
        """Distance between ray-traced image centre and the KLV frame-centre tag (median, p90)."""
        from kestrel.geo.check import summarize_frame_center

        out = summarize_frame_center(self.kept).as_dict()
        out["sampled_every"] = self.stride
        return out


def frame_centre_check(scan: KlvScan) -> dict[str, Any]:
    """`CentreSampler` over a collected scan."""
    sampler = CentreSampler()
    for p in scan.packets:
        sampler.add(p)
    return sampler.summary()
