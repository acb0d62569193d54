"""Ingest STANAG 4609 transport streams: decoded frames with the KLV that applies to each.

Thin I/O shell. Bytes flow once: PyAV reads the source through `_Tee`, which also feeds every
byte to the sans-I/O `TsDemuxer` (KLV PIDs, PTS, untimed rule) — no second pass, works the same
for files and live `udp://` input. PyAV decodes the pictures; `KlvTimeline` attaches metadata.

Alignment rule (documented in docs/fmv.md): a KLV unit takes effect at its PTS (synchronous, or
asynchronous with PTS); an untimed unit at the PTS of the next video PES after it in byte order.
Each frame gets every unit whose effective time is <= its PTS, merged in time order into the
running `SensorMetadata` (`merged`: newer fields override, missing fields persist). Timed units
before the first frame go to the first frame. A frame is held back until the byte stream has
moved `klv_wait` seconds past it, so KLV muxed slightly after its frame still lands on it.

Damage: demux and decode errors are counted (`stats`) and skipped. Input that is not a transport
stream, has no video, or yields no frame raises `FmvInputError` (one line, names the source).
"""

from __future__ import annotations

import heapq
import itertools
from collections import Counter, deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from kestrel.fmv.frame import FmvInputError, Frame
from kestrel.fmv.live import ByteSource, open_source
from kestrel.fmv.ts import CLOCK, DataUnit, Stream, TsDemuxer, TsStats, VideoStart
from kestrel.klv.metadata import SensorMetadata
from kestrel.klv.packet import KlvPacket

SNIFF = 188 * 8


@dataclass(slots=True)
class KlvStats:
    units: int = 0  # KLV access units (PES payloads / AU cells)
    packets: int = 0  # KLV sets decoded (top level)
    by_set: Counter[str] = field(default_factory=Counter)
    checksum_failures: int = 0
    errors: int = 0  # packets the decoder could not read (error records)
    untimed: int = 0


def _klv_api() -> tuple[Callable[[bytes], list[KlvPacket]], Callable[[KlvPacket], SensorMetadata | None]]:
    from kestrel.klv import decode, to_metadata

    return decode, to_metadata


class KlvTimeline:
    """Sans-I/O: KLV units in (any order), per-frame metadata out (frames in PTS order).

    O(log n) per unit; holds only units not yet taken by a frame.
    """

    def __init__(self) -> None:
        self._decode, self._to_md = _klv_api()
        self._heap: list[tuple[int, int, list[KlvPacket]]] = []
        self._seq = itertools.count()
        self._late: list[KlvPacket] = []  # untimed units after the last video PES
        self.state: SensorMetadata | None = None
        self.stats = KlvStats()

    def decode_unit(self, unit: DataUnit, demux: TsDemuxer) -> list[KlvPacket]:
        pkts = self._decode(unit.payload)
        t = demux.seconds(unit.pts)
        st = self.stats
        st.units += 1
        st.untimed += unit.pts is None
        for p in pkts:
            p.pts, p.stream = t, unit.pid
            st.packets += 1
            st.by_set[p.set_name] += 1
            st.checksum_failures += p.checksum_ok is False
            st.errors += p.error is not None
        return pkts

    def push(self, unit: DataUnit, demux: TsDemuxer) -> None:
        pkts = self.decode_unit(unit, demux)
        if unit.at is None:
            self._late.extend(pkts)
        else:
            heapq.heappush(self._heap, (unit.at, next(self._seq), pkts))

    def rest(self) -> list[KlvPacket]:
        """Packets that never became effective for a frame (after the last one), in time order."""
        out = [p for _at, _seq, pkts in sorted(self._heap) for p in pkts] + self._late
        self._heap, self._late = [], []
        return out

    def take(self, ticks: int) -> tuple[SensorMetadata | None, list[KlvPacket]]:
        """Every packet effective at or before `ticks`, and the merged metadata state."""
        out: list[KlvPacket] = []
        while self._heap and self._heap[0][0] <= ticks:
            out.extend(heapq.heappop(self._heap)[2])
        for p in out:
            if p.error is not None:
                continue
            md = self._to_md(p)
            if md is not None:
                self.state = md if self.state is None else self.state.merged(md)
        return self.state, out


@dataclass(slots=True)
class IngestStats:
    frames: int = 0
    demux_errors: int = 0
    decode_errors: int = 0
    klv: KlvStats = field(default_factory=KlvStats)
    ts: TsStats = field(default_factory=TsStats)
    dropped_bytes: int = 0  # live input: bytes dropped because the reader fell behind

    @property
    def truncated(self) -> bool:
        return self.ts.partial_tail > 0 or self.ts.cut_pes > 0


class _Tee:
    """File object for PyAV: reads the source and feeds the same bytes to the TS demuxer."""

    def __init__(self, src: ByteSource, demux: TsDemuxer) -> None:
        self.src, self.demux = src, demux
        self.events: deque[DataUnit | VideoStart] = deque()
        self.eof = False
        self.head = b""

    def read(self, n: int = -1) -> bytes:
        if self.eof:
            return b""
        data = self.src.read(n if n and n > 0 else 1 << 16)
        if data:
            if len(self.head) < SNIFF:
                self.head += data[: SNIFF - len(self.head)]
            self.events.extend(self.demux.feed(data))
        else:
            self.eof = True
            self.events.extend(self.demux.close())
        return data


def looks_like_ts(head: bytes) -> bool:
    """At least three sync bytes one packet apart within the first packets."""
    for i in range(min(len(head), 188)):
        if head[i] == 0x47 and all(head[i + k * 188] == 0x47 for k in range(1, 3) if i + k * 188 < len(head)):
            return len(head) - i > 2 * 188 or len(head) < 3 * 188
    return False


class VideoReader:
    """Iterate `Frame`s of a file, file object or `udp://host:port` stream.

    `klv_wait`: seconds of stream a frame waits for late KLV. `threads`: decoder threads (0 = auto).
    `with_images=False` skips the BGR conversion (timing/metadata only; `image` is 0x0x3).
    After iteration, `stats` and `streams` describe what was read.
    """

    def __init__(
        self,
        source: str | Path | IO[bytes],
        *,
        klv_wait: float = 0.5,
        threads: int = 0,
        idle_timeout: float = 5.0,
        with_images: bool = True,
    ) -> None:
        self.source = source
        self.klv_wait = int(klv_wait * CLOCK)
        self.threads = threads
        self.idle_timeout = idle_timeout
        self.with_images = with_images  # False: skip the BGR conversion, image is empty (0x0x3)
        self.stats = IngestStats()
        self.trailing: list[KlvPacket] = []  # KLV effective only after the last frame
        self.streams: dict[int, Stream] = {}
        self.width = self.height = 0
        self.fps: float | None = None
        self.codec = ""
        self.name = str(getattr(source, "name", source))

    def __iter__(self) -> Iterator[Frame]:
        import av

        src, self.name, owned = open_source(self.source, idle_timeout=self.idle_timeout)
        demux = TsDemuxer()
        self.stats.ts = demux.stats
        self.streams = demux.streams
        tee = _Tee(src, demux)
        timeline = KlvTimeline()
        self.stats.klv = timeline.stats
        container: Any = None
        try:
            try:
                container = av.open(tee, mode="r", format="mpegts", options={"probesize": "2000000", "analyzeduration": "1000000"})
            except (av.error.FFmpegError, OSError, ValueError) as exc:
                raise FmvInputError(f"{self.name}: {self._why(tee, exc)}") from exc
            if not container.streams.video:
                raise FmvInputError(f"{self.name}: {self._why(tee, None)}")
            vs = container.streams.video[0]
            vs.thread_type = "AUTO"
            if self.threads:
                vs.codec_context.thread_count = self.threads
            self.codec = vs.codec_context.name
            self.fps = float(vs.average_rate) if vs.average_rate else None
            tb = float(vs.time_base) if vs.time_base else 1.0 / CLOCK
            yield from self._frames(container, vs, tb, tee, demux, timeline)
        finally:
            if container is not None:
                container.close()
            if owned:
                src.close()  # type: ignore[attr-defined]
            self.stats.dropped_bytes = int(getattr(src, "dropped_bytes", 0))
        if self.stats.frames == 0:
            raise FmvInputError(f"{self.name}: {self._why(tee, None, decoded=True)}")

    def _why(self, tee: _Tee, exc: Exception | None, decoded: bool = False) -> str:
        if not tee.head:
            return "empty input"
        if not looks_like_ts(tee.head):
            return "not an MPEG transport stream (no 0x47 sync pattern)"
        if not any(s.kind == "video" for s in tee.demux.streams.values()):
            return "no video stream in the transport stream"
        if decoded:
            return "no decodable video frame (truncated or corrupt)"
        return f"cannot open video ({exc})" if exc else "no video stream found by the decoder"

    def _frames(
        self, container: Any, vs: Any, tb: float, tee: _Tee, demux: TsDemuxer, timeline: KlvTimeline
    ) -> Iterator[Frame]:
        import av

        held: deque[tuple[int, Any]] = deque()
        last_ticks: int | None = None
        step = int(CLOCK / self.fps) if self.fps else 3003

        def absorb() -> None:
            while tee.events:
                ev = tee.events.popleft()
                if isinstance(ev, DataUnit):
                    timeline.push(ev, demux)

        def ticks_of(frame: Any) -> int:
            nonlocal last_ticks
            if frame.pts is not None:
                t = round(frame.pts * tb * CLOCK)
            else:
                t = (last_ticks + step) if last_ticks is not None else (demux.origin or 0)
            last_ticks = t
            return t

        def ready() -> Iterator[Frame]:
            absorb()
            mark = demux.last_ticks
            while held and (tee.eof or (mark is not None and mark >= held[0][0] + self.klv_wait)):
                yield self._emit(*held.popleft(), demux, timeline)

        for packet in self._packets(container, vs):
            try:
                frames = vs.codec_context.decode(packet)
            except av.error.FFmpegError:
                self.stats.decode_errors += 1
                continue
            for fr in frames:
                held.append((ticks_of(fr), fr))
            yield from ready()
        try:
            for fr in vs.codec_context.decode(None):
                held.append((ticks_of(fr), fr))
        except av.error.FFmpegError:
            self.stats.decode_errors += 1
        while not tee.eof:
            tee.read(1 << 20)  # drain the rest of the bytes so late KLV still lands
        yield from ready()
        self.trailing = timeline.rest()

    def _packets(self, container: Any, vs: Any) -> Iterator[Any]:
        """Video packets; a demux error is counted and demuxing resumes after it."""
        import av

        failures = 0
        while failures < 100:
            try:
                for packet in container.demux(vs):
                    if packet.size:
                        failures = 0
                        yield packet
                return
            except av.error.EOFError:
                return
            except av.error.FFmpegError:
                self.stats.demux_errors += 1
                failures += 1

    def _emit(self, ticks: int, fr: Any, demux: TsDemuxer, timeline: KlvTimeline) -> Frame:
        md, klv = timeline.take(ticks)
        origin = demux.origin if demux.origin is not None else ticks
        if self.stats.frames == 0:
            self.width, self.height = fr.width, fr.height
        if self.with_images:
            image = fr.to_ndarray(format="bgr24")
        else:
            import numpy as np

            image = np.empty((0, 0, 3), np.uint8)
        frame = Frame(self.stats.frames, (ticks - origin) / CLOCK, image, md, klv)
        self.stats.frames += 1
        return frame


def read_frames(source: str | Path | IO[bytes], **kw: Any) -> Iterator[Frame]:
    """Shorthand: `for frame in read_frames("clip.ts"): ...`."""
    return iter(VideoReader(source, **kw))


@dataclass(slots=True)
class KlvScan:
    """Result of the KLV-only fast path (no video decode)."""

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
    """Every KLV packet of a stream with its time, without decoding any video. O(bytes)."""
    src, name, owned = open_source(source)
    demux = TsDemuxer()
    timeline = KlvTimeline()
    packets: list[KlvPacket] = []
    at: list[float | None] = []
    vpts: list[int] = []
    head = b""
    try:
        while True:
            data = src.read(chunk)
            if len(head) < SNIFF:
                head += data[: SNIFF - len(head)]
            events = demux.feed(data) if data else demux.close()
            for ev in events:
                if isinstance(ev, VideoStart):
                    if ev.pts is not None:
                        vpts.append(ev.pts)
                    continue
                pkts = timeline.decode_unit(ev, demux)
                packets.extend(pkts)
                at.extend([demux.seconds(ev.at)] * len(pkts))
            if not data:
                break
    finally:
        if owned:
            src.close()  # type: ignore[attr-defined]
    if not head:
        raise FmvInputError(f"{name}: empty input")
    if not looks_like_ts(head) or demux.stats.packets == 0:
        raise FmvInputError(f"{name}: not an MPEG transport stream (no 0x47 sync pattern)")
    if not demux.streams:
        raise FmvInputError(f"{name}: no program map (PAT/PMT) found: not a usable transport stream")
    if not any(s.kind == "video" for s in demux.streams.values()):
        raise FmvInputError(f"{name}: no video stream in the transport stream")
    times = sorted(demux.seconds(t) or 0.0 for t in vpts)
    first, last = (times[0], times[-1]) if times else (None, None)
    nvid = sum(s.units for s in demux.streams.values() if s.kind == "video")
    return KlvScan(name, demux.streams, packets, timeline.stats, demux.stats, nvid, first, last, times, at)
