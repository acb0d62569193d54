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

from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from kestrel.fmv.align import SNIFF, KlvStats, KlvTimeline, looks_like_ts
from kestrel.fmv.frame import FmvInputError, Frame
from kestrel.fmv.live import DEFAULT_IDLE_TIMEOUT, ByteSource, open_source
from kestrel.fmv.scan import KlvScan, KlvScanner, scan_klv
from kestrel.fmv.ts import CLOCK, DataUnit, Stream, TsDemuxer, TsStats, VideoStart
from kestrel.klv.packet import KlvPacket

__all__ = [
    "Frame", "FmvInputError", "KlvScan", "KlvScanner", "KlvStats", "KlvTimeline", "VideoReader", "read_frames",
    "scan_klv",
]

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


class VideoReader:
    """Iterate `Frame`s of a file, file object or `udp://host:port` stream.

    `klv_wait`: seconds of stream a frame waits for late KLV. `threads`: decoder threads (0 = auto).
    `idle_timeout`: live input ends after this many seconds without a datagram (0 = wait forever).
    `with_images=False` skips the BGR conversion (timing/metadata only; `image` is 0x0x3).
    After iteration, `stats` and `streams` describe what was read.
    """

    def __init__(
        self,
        source: str | Path | IO[bytes],
        *,
        klv_wait: float = 0.5,
        threads: int = 0,
        idle_timeout: float = DEFAULT_IDLE_TIMEOUT,
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
                raise FmvInputError(self._why(tee, exc)) from exc
            if not container.streams.video:
                raise FmvInputError(self._why(tee, None))
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
            raise FmvInputError(self._why(tee, None, decoded=True))

    def _why(self, tee: _Tee, exc: Exception | None, decoded: bool = False) -> str:
        """One line naming the source: why it gave no frame."""
        if not tee.head:
            if getattr(tee.src, "timed_out", False):
                secs = getattr(tee.src, "idle_timeout", self.idle_timeout)
                return f"no data on {self.name} for {secs:g} s (--idle-timeout S sets the wait, 0 = forever)"
            return f"{self.name}: empty input"
        return f"{self.name}: {self._what(tee, exc, decoded)}"

    @staticmethod
    def _what(tee: _Tee, exc: Exception | None, decoded: bool) -> str:
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
            # IndexError: PyAV meets a stream FFmpeg added mid-file (e.g. a damaged PMT) that is
            # not in its stream list; the packet is not video, skip it like any demux error.
            except (av.error.FFmpegError, IndexError):
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


