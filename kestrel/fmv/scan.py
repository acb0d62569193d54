"""KLV-only fast path: every KLV packet of a stream with its time, no video decode. O(bytes).

`KlvScanner` streams (memory bounded by one read chunk plus the demuxer's bounded buffers), so
`kestrel fmv info --json` works on hours of video; `scan_klv` collects everything into a
`KlvScan` for callers that want lists (footprints, tests). Bad input raises `FmvInputError` as
soon as it is known: no sync pattern at the start, a PMT without video, or nothing usable at the end.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from kestrel.fmv.align import SNIFF, KlvStats, KlvTimeline, looks_like_ts
from kestrel.fmv.frame import FmvInputError
from kestrel.fmv.live import open_source
from kestrel.fmv.ts import Stream, TsDemuxer, TsStats, VideoStart
from kestrel.klv.packet import KlvPacket


class KlvScanner:
    """`for pkt, at in KlvScanner("clip.ts"): ...` — `at` is the effective time in seconds
    (see kestrel.fmv.ingest for the rule; None = after the last frame). Attributes describe
    the stream once iteration is over."""

    def __init__(self, source: str | Path | IO[bytes], chunk: int = 1 << 20) -> None:
        self.source, self.chunk = source, chunk
        self.name = str(getattr(source, "name", source))
        self.streams: dict[int, Stream] = {}
        self.stats = KlvStats()
        self.ts = TsStats()
        self.video_times: list[float] = []  # PTS (seconds) of every video PES, sorted at the end

    @property
    def video_pes(self) -> int:
        return sum(s.units for s in self.streams.values() if s.kind == "video")

    @property
    def truncated(self) -> bool:
        return self.ts.partial_tail > 0 or self.ts.cut_pes > 0

    def __iter__(self) -> Iterator[tuple[KlvPacket, float | None]]:
        src, self.name, owned = open_source(self.source)
        demux = TsDemuxer()
        self.streams, self.ts = demux.streams, demux.stats
        timeline = KlvTimeline()
        self.stats = timeline.stats
        vpts: list[int] = []
        head = b""
        try:
            while True:
                data = src.read(self.chunk)
                if len(head) < SNIFF:
                    head += data[: SNIFF - len(head)]
                    if len(head) >= SNIFF and not looks_like_ts(head):
                        raise FmvInputError(f"{self.name}: not an MPEG transport stream (no 0x47 sync pattern)")
                events = demux.feed(data) if data else demux.close()
                if demux.streams and not any(s.kind == "video" for s in demux.streams.values()):
                    raise FmvInputError(f"{self.name}: no video stream in the transport stream")
                for ev in events:
                    if isinstance(ev, VideoStart):
                        if ev.pts is not None:
                            vpts.append(ev.pts)
                        continue
                    at = demux.seconds(ev.at)
                    for pkt in timeline.decode_unit(ev, demux):
                        yield pkt, at
                if not data:
                    break
        finally:
            if owned:
                src.close()  # type: ignore[attr-defined]
        if not head:
            raise FmvInputError(f"{self.name}: empty input")
        if not looks_like_ts(head) or demux.stats.packets == 0:
            raise FmvInputError(f"{self.name}: not an MPEG transport stream (no 0x47 sync pattern)")
        if not demux.streams:
            raise FmvInputError(f"{self.name}: no program map (PAT/PMT) found: not a usable transport stream")
        self.video_times = sorted(demux.seconds(t) or 0.0 for t in vpts)


@dataclass(slots=True)
class KlvScan:
    """Everything a `KlvScanner` saw, as lists."""

    name: str
    streams: dict[int, Stream]
    packets: list[KlvPacket]
    stats: KlvStats
    ts: TsStats
    video_pes: int
    first_video: float | None
    last_video: float | None
    video_times: list[float]  # PTS (seconds) of every video PES, sorted
    at: list[float | None]  # effective time of each packet (seconds), parallel to `packets`

    @property
    def truncated(self) -> bool:
        return self.ts.partial_tail > 0 or self.ts.cut_pes > 0


def scan_klv(source: str | Path | IO[bytes], chunk: int = 1 << 20) -> KlvScan:
    """Every KLV packet of a stream with its effective time, collected (see `KlvScanner`)."""
    sc = KlvScanner(source, chunk)
    packets: list[KlvPacket] = []
    at: list[float | None] = []
    for pkt, t in sc:
        packets.append(pkt)
        at.append(t)
    times = sc.video_times
    first, last = (times[0], times[-1]) if times else (None, None)
    return KlvScan(sc.name, sc.streams, packets, sc.stats, sc.ts, sc.video_pes, first, last, times, at)
