"""Random access to a video file's pictures by index: frame N is the N-th picture PyAV's decoder
yields (0-based), exactly as `fmv.ingest.VideoReader` numbers them, so a box stored for frame N
is drawn on the picture it was detected in.

How: one pass over the file records each decoded picture's PTS and key-frame flag (the index;
built lazily, in the background, while the first pictures are already served by decoding
forward from the start). A request for frame N then seeks to the last key frame at or before N
and decodes forward, matching pictures by PTS (never by count after a seek, which may land on an
earlier key frame). A cursor remembers where the decoder stands, so stepping forward costs one
decode. Worst case per request: one GOP of decodes. Decoded pictures are kept in a small LRU of
encoded JPEG/PNG bytes. Thread-safe (one lock per file; PyAV containers are not shared).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kestrel.fmv.frame import FmvInputError


class FrameOutOfRange(LookupError):
    """A frame index the video does not have (negative or past the end)."""


@dataclass(slots=True)
class FrameIndex:
    pts: list[int | None] = field(default_factory=list)  # per picture, stream time base
    key: list[bool] = field(default_factory=list)
    complete: bool = False


class FrameSource:
    """Pictures of one video file by 0-based index. `image(n)` -> HxWx3 uint8 (RGB)."""

    def __init__(self, path: str | Path, *, cache: int = 64) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise FmvInputError(f"{self.path}: no such video file")
        self.index = FrameIndex()
        self.width = self.height = 0
        self.fps: float | None = None
        self._lock = threading.Lock()
        self._cache: OrderedDict[tuple[int, str], bytes] = OrderedDict()
        self._cache_max = cache
        self._container: Any = None
        self._cursor: Iterator[Any] | None = None
        self._next = 0  # index of the picture the cursor yields next (when sequential)
        self._probe()

    # ---- opening -------------------------------------------------------------------------------
    def _open(self) -> tuple[Any, Any]:
        import av

        try:
            c = av.open(str(self.path))
        except (av.error.FFmpegError, OSError) as exc:
            raise FmvInputError(f"{self.path}: cannot open video ({exc})") from None
        if not c.streams.video:
            c.close()
            raise FmvInputError(f"{self.path}: no video stream")
        vs = c.streams.video[0]
        vs.thread_type = "AUTO"
        return c, vs

    def _probe(self) -> None:
        c, vs = self._open()
        try:
            self.width, self.height = vs.codec_context.width, vs.codec_context.height
            self.fps = float(vs.average_rate) if vs.average_rate else None
        finally:
            c.close()

    def build_index(self) -> FrameIndex:
        """Decode the whole file once (no colour conversion) to learn every picture's PTS."""
        import av

        c, vs = self._open()
        idx = FrameIndex()
        try:
            for fr in _decode(c, vs, av):
                idx.pts.append(fr.pts)
                idx.key.append(bool(fr.key_frame))
        finally:
            c.close()
        idx.complete = True
        with self._lock:
            self.index = idx
        return idx

    def start_indexing(self) -> threading.Thread:
        t = threading.Thread(target=self.build_index, name=f"index {self.path.name}", daemon=True)
        t.start()
        return t

    @property
    def frame_count(self) -> int | None:
        """Number of pictures once the index is complete; None before."""
        return len(self.index.pts) if self.index.complete else None

    # ---- access --------------------------------------------------------------------------------
    def image(self, n: int) -> Any:
        """Frame n as an RGB numpy array. Raises FrameOutOfRange."""
        with self._lock:
            return self._frame(n).to_ndarray(format="rgb24")

    def encoded(self, n: int, fmt: str = "jpeg", quality: int = 90) -> bytes:
        """Frame n as JPEG (default) or PNG bytes, cached."""
        key = (n, fmt)
        with self._lock:
            got = self._cache.get(key)
            if got is not None:
                self._cache.move_to_end(key)
                return got
            rgb = self._frame(n).to_ndarray(format="bgr24")
        import cv2

        ok, buf = cv2.imencode(".png" if fmt == "png" else ".jpg", rgb,
                               [] if fmt == "png" else [cv2.IMWRITE_JPEG_QUALITY, quality])
        if not ok:
            raise FmvInputError(f"{self.path}: cannot encode frame {n}")
        data = bytes(buf)
        with self._lock:
            self._cache[key] = data
            while len(self._cache) > self._cache_max:
                self._cache.popitem(last=False)
        return data

    def _frame(self, n: int) -> Any:
        if n < 0:
            raise FrameOutOfRange(n)
        idx = self.index
        if idx.complete and n >= len(idx.pts):
            raise FrameOutOfRange(n)
        if self._cursor is not None and self._next <= n and (n - self._next < 60 or not idx.complete):
            return self._forward(n)
        if not idx.complete or idx.pts[n] is None:
            self._restart()
            return self._forward(n)
        return self._seek(n)

    def _restart(self) -> None:
        import av

        self._close_cursor()
        self._container, vs = self._open()
        self._cursor = _decode(self._container, vs, av)
        self._next = 0

    def _forward(self, n: int) -> Any:
        assert self._cursor is not None
        for fr in self._cursor:
            i = self._next
            self._next += 1
            if i == n:
                return fr
        self._close_cursor()
        raise FrameOutOfRange(n)

    def _seek(self, n: int) -> Any:
        import av

        idx = self.index
        k = n
        while k > 0 and not idx.key[k]:
            k -= 1
        target = idx.pts[n]
        self._close_cursor()
        self._container, vs = self._open()
        key_pts = idx.pts[k]
        if k > 0 and key_pts is not None:
            self._container.seek(key_pts, stream=vs, backward=True, any_frame=False)
        self._cursor = _decode(self._container, vs, av)
        for fr in self._cursor:
            if fr.pts == target:
                self._next = n + 1
                return fr
            if fr.pts is not None and target is not None and fr.pts > target:
                break
        # The seek missed (damaged stream, duplicate PTS): decode from the start, counting.
        self._restart()
        return self._forward(n)

    def _close_cursor(self) -> None:
        if self._container is not None:
            self._container.close()
        self._container = None
        self._cursor = None
        self._next = 0

    def close(self) -> None:
        with self._lock:
            self._close_cursor()


def _decode(container: Any, vs: Any, av: Any) -> Iterator[Any]:
    """Pictures in decoder output order; a damaged packet is skipped like `VideoReader` does."""
    for packet in container.demux(vs):
        if not packet.size:
            continue
        try:
            yield from vs.codec_context.decode(packet)
        except av.error.FFmpegError:
            continue
    try:
        yield from vs.codec_context.decode(None)
    except av.error.FFmpegError:
        return
