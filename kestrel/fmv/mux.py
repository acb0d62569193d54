"""Write STANAG 4609 transport streams: H.264 video (libx264 via PyAV) + KLV.

Carriage: asynchronous KLV with PTS (stream type 0x06, 'KLVA' registration descriptor, PES
stream id 0xFC) — FFmpeg's mpegts muxer writes that for a `klv` data stream; or, with
`sync=True`, synchronous carriage (stream type 0x15, metadata AU cells) by rewriting the file
on close (`tssync.to_synchronous`). Each KLV unit is stamped with the PTS of the frame it
describes, so our demuxer (and KWIVER/FFmpeg-based readers) align it exactly. Thin I/O shell: one frame in, packets out; memory is bounded by the encoder.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path
from types import TracebackType
from typing import Any

import av
import numpy as np


class TsWriter:
    """`with TsWriter("out.ts", 720, 480, fps=30) as w: w.write(image_bgr, klv_bytes)`.

    Frames get PTS index/fps; `write(image, klv, index=None)` may carry one KLV buffer (one or
    more whole KLV sets) for that frame. `crf`/`preset` tune libx264 (GOP = 1 s; no B-frames
    unless `bframes` > 0, which reorders decode vs presentation order).
    """

    def __init__(
        self,
        path: str | Path,
        width: int,
        height: int,
        *,
        fps: int = 30,
        crf: int = 18,
        preset: str = "veryfast",
        klv: bool = True,
        sync: bool = False,
        bframes: int = 0,
        threads: int = 0,
    ) -> None:
        if width % 2 or height % 2:
            raise ValueError(f"H.264 4:2:0 needs even sizes, got {width}x{height}")
        self.path = str(path)
        self.sync = sync
        self.width, self.height, self.fps = width, height, fps
        self._tb = Fraction(1, fps)
        self._container: Any = av.open(self.path, mode="w", format="mpegts")
        opts = {"crf": str(crf), "preset": preset, "bf": str(bframes), "g": str(fps), "keyint_min": str(fps)}
        vs = self._container.add_stream("libx264", rate=fps, options=opts)
        vs.width, vs.height, vs.pix_fmt = width, height, "yuv420p"
        if threads:
            vs.codec_context.thread_count = threads
        self._video = vs
        self._data = self._container.add_data_stream("klv") if klv else None
        self._next = 0
        self.frames = 0
        self.klv_units = 0

    def write(self, image: np.ndarray, klv: bytes | None = None, index: int | None = None) -> None:
        if image.shape[:2] != (self.height, self.width):
            raise ValueError(f"frame is {image.shape[1]}x{image.shape[0]}, stream is {self.width}x{self.height}")
        i = self._next if index is None else index
        self._next = i + 1
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="bgr24")
        frame.pts, frame.time_base = i, self._tb
        for pkt in self._video.encode(frame):
            self._container.mux(pkt)
        self.frames += 1
        if klv:
            self.write_klv(klv, i)

    def write_klv(self, klv: bytes, index: int) -> None:
        """One KLV unit stamped with the PTS of frame `index`."""
        if self._data is None:
            raise ValueError("writer was opened with klv=False")
        pkt = av.Packet(klv)
        pkt.stream = self._data
        pkt.time_base = self._tb
        pkt.pts = pkt.dts = index
        self._container.mux(pkt)
        self.klv_units += 1

    def close(self) -> None:
        if self._container is None:
            return
        for pkt in self._video.encode(None):
            self._container.mux(pkt)
        self._container.close()
        self._container = None
        if self.sync and self.klv_units:
            from kestrel.fmv.tssync import to_synchronous

            p = Path(self.path)
            p.write_bytes(to_synchronous(p.read_bytes()))

    def __enter__(self) -> TsWriter:
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None) -> None:
        self.close()
