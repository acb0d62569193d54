"""Re-mux the source video with an ST 0903 VMTI KLV stream of the run's detections (`vmti.ts`).

The video is copied packet for packet (no re-encode, so this costs I/O only), and so is the
source's KLV, each stream on its **own PID** (a player reading the original PID still sees the
original ST 0601). Each processed frame gets one ST 0601 packet carrying its Precision Time
Stamp (tag 2) and the frame's VMTI as an ST 0903 local set **nested in tag 74** (how ST 0601
players expect VMTI; even with zero targets: "looked, found nothing"), in an asynchronous KLV
data stream on a new PID (FFmpeg's `klv` data codec: stream type 0x06 with a KLVA registration),
timed at the frame's PTS. A detection that belongs to a track carries the
track id as its VMTI target id; others get ids from 1_000_000 up, unique within the frame.

Time mapping: a detection's `pts` is seconds since the first video PES (kestrel.fmv's rule), so
its 90 kHz tick is origin + pts * 90000 with origin = PTS of the first video packet in stream
order: exactly the PTS of the frame it was detected in. KLV packets are muxed in PTS order no later than the
video packet whose DTS reaches them, so the data stream's timestamps stay monotonic.
O(frames) memory for the packet table; the video itself is streamed.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from kestrel.klv import st0601, st0903

CLOCK = 90_000
UNTRACKED_ID0 = 1_000_000
SYSTEM_NAME = "Kestrel PED"


def frame_packet(dets: Any, width: int, height: int, track_ids: dict[tuple[float, ...], int],
                 utc_us: int | None, frame_number: int) -> bytes:
    """One ST 0601 packet (tag 2 + ST 0903 in tag 74) for one frame's `Detections`."""
    targets: list[st0903.VTarget] = []
    next_id = UNTRACKED_ID0
    for i in range(len(dets)):
        x1, y1, x2, y2 = (float(v) for v in dets.xyxy[i])
        c0 = min(max(int(math.floor(x1)), 0), width - 1)
        r0 = min(max(int(math.floor(y1)), 0), height - 1)
        c1 = min(max(int(math.ceil(x2)) - 1, c0), width - 1)
        r1 = min(max(int(math.ceil(y2)) - 1, r0), height - 1)
        key = tuple(round(float(v), 2) for v in dets.xyxy[i])
        tid = track_ids.get(key)
        if tid is None:
            tid, next_id = next_id, next_id + 1
        extra: dict[int, Any] = {5: int(round(min(max(float(dets.confidence[i]), 0.0), 1.0) * 100))}
        g = dets.ground
        if g is not None and all(math.isfinite(float(v)) for v in g[i]):
            extra[17] = {"latitude": float(g[i, 0]), "longitude": float(g[i, 1]),
                         "altitude": min(max(float(g[i, 2]), -900.0), 19000.0)}
        target = st0903.VTarget.from_box(tid, r0, c0, r1, c1, width)
        target.tags.update(extra)
        targets.append(target)
    vmti: dict[int, Any] = {3: SYSTEM_NAME, 4: st0903.VERSION, 5: len(targets), 6: len(targets),
                            7: frame_number, 8: width, 9: height, 101: targets}
    return st0601.encode({74: vmti}, timestamp_us=utc_us if utc_us is not None else 0)


def track_box_ids(tracks: Iterable[Any]) -> dict[int, dict[tuple[float, ...], int]]:
    """frame index -> {rounded xyxy: track id}, to give tracked detections their track's id."""
    out: dict[int, dict[tuple[float, ...], int]] = {}
    for t in tracks:
        for p in t.points:
            out.setdefault(int(p.frame_index), {})[tuple(round(float(v), 2) for v in p.xyxy)] = int(t.id)
    return out


def write_vmti_ts(source: str | Path, out: Path, detections: Sequence[Any], tracks: Iterable[Any],
                  width: int, height: int, utc_us_of_frame: dict[int, int] | None = None) -> dict[str, Any]:
    """Copy `source`'s video into `out` (MPEG-TS) with a VMTI KLV stream; returns counts."""
    import av

    utc = utc_us_of_frame or {}
    ids = track_box_ids(tracks)
    tmp = out.with_name(f".{out.name}.tmp")
    packets_in = klv_out = 0
    copied = {"klv": 0, "errors": 0}
    with av.open(str(source)) as ic:
        if not ic.streams.video:
            raise ValueError(f"{source}: no video stream to re-mux")
        vs = ic.streams.video[0]
        tb = vs.time_base
        assert tb is not None
        data_in = [s for s in ic.streams if s.type == "data"]
        with av.open(str(tmp), "w", format="mpegts") as oc:
            ov = oc.add_stream_from_template(vs)
            ov.id = vs.id
            # The source's own KLV (ST 0601, EG 0104, ...) is kept, one output stream per input
            # one, each on the PID it had; ours goes on a new PID after all of them.
            copies = {}
            for s in data_in:
                copies[s.index] = oc.add_data_stream("klv")
                copies[s.index].id = s.id
            ds = oc.add_data_stream("klv")
            ds.id = max([vs.id, *(s.id for s in data_in)]) + 1
            last_dts: dict[int, int] = {}
            pending: list[tuple[int, int, bytes]] = []  # (ticks, seq, packet) min-heap
            queued = False
            video_dts = 0

            def put(pkt: Any, stream: Any, ticks: int) -> None:
                ticks = max(ticks, last_dts.get(stream.index, -(1 << 62)))  # monotonic per stream
                pkt.stream = stream
                pkt.time_base = tb
                pkt.pts = pkt.dts = ticks
                oc.mux(pkt)
                last_dts[stream.index] = ticks

            def mux_klv(upto: int | None) -> None:
                nonlocal klv_out
                while pending and (upto is None or pending[0][0] <= upto):
                    ticks, _, data = heapq.heappop(pending)
                    put(av.Packet(data), ds, ticks)
                    klv_out += 1

            for pkt in _packets(ic, [vs, *data_in], copied):
                if pkt.stream.index in copies:  # untimed KLV keeps its place after the last video
                    put(pkt, copies[pkt.stream.index], pkt.pts if pkt.pts is not None else video_dts)
                    copied["klv"] += 1
                    continue
                if pkt.dts is None:
                    continue
                if not queued and pkt.pts is not None:  # the first video PES fixes the origin
                    queued = _queue(pending, detections, ids, utc, width, height, pkt.pts, tb)
                if queued:
                    mux_klv(pkt.dts)
                video_dts = pkt.dts
                pkt.stream = ov
                oc.mux(pkt)
                packets_in += 1
            mux_klv(None)
    tmp.replace(out)
    return {"path": str(out), "video_packets": packets_in, "vmti_packets": klv_out,
            "source_klv_packets": copied["klv"], "demux_errors": copied["errors"]}


def _packets(ic: Any, streams: list[Any], counts: dict[str, int]) -> Iterable[Any]:
    """Packets of `streams`; a demux error (damaged input) is skipped and demuxing resumes."""
    import av

    for _ in range(1000):
        try:
            for pkt in ic.demux(streams):
                if pkt.size:
                    yield pkt
            return
        except av.error.EOFError:
            return
        except av.error.FFmpegError:
            counts["errors"] += 1


def _queue(pending: list[tuple[int, int, bytes]], detections: Sequence[Any],
           ids: dict[int, dict[tuple[float, ...], int]], utc: dict[int, int], width: int, height: int,
           origin: int, tb: Any) -> bool:
    """Encode every frame's packet into the heap once the stream origin is known."""
    per_tick = 1 / (float(tb) * CLOCK)  # stream ticks per 90 kHz tick (1 for MPEG-TS)
    for seq, d in enumerate(detections):
        if d.pts is None:
            continue
        ticks = origin + round(d.pts * CLOCK * per_tick)
        data = frame_packet(d, width, height, ids.get(int(d.frame_index), {}), utc.get(int(d.frame_index)),
                            int(d.frame_index))
        heapq.heappush(pending, (ticks, seq, data))
    return True
