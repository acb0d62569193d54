"""PED pipeline: frames -> detections -> tracks -> ground positions. One call: `run(source)`.

Stages (each timed): decode (PyAV, in a reader thread so it overlaps the rest), detect (MTI or
ONNX), geolocate (sensor model per frame from its KLV; box centres to the ground), track.

Live mode: the reader thread keeps only the newest decoded frame (a one-slot mailbox that is
overwritten); frames the detector could not take in time are dropped and counted, so the output
never falls behind the feed. Offline mode: a small bounded queue, nothing dropped.

Without usable KLV the run still produces tracks in pixels; `PedResult.geolocated` is False and
`geolocation_reason` says why. Stable API (the CLI and products call it): `run(...) -> PedResult`.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from kestrel.ped.detect import Detector, FrameLike, make_detector
from kestrel.ped.records import Detections, Track
from kestrel.ped.track import Tracker, TrackerConfig

if TYPE_CHECKING:
    from kestrel.geo.sensor import SensorModel
    from kestrel.klv import SensorMetadata

STAGES = ("decode", "detect", "geolocate", "track")
MAX_PICTURES = 240  # frames waiting in the detector whose picture is kept for the tracker (grey)


@dataclass(slots=True)
class FrameUpdate:
    """Handed to `on_frame` once per finished frame (after tracking), in frame order.

    With the MTI detector this comes `delay` frames after the frame was decoded."""

    frame_index: int
    pts: float | None
    metadata: SensorMetadata | None
    sensor: SensorModel | None
    detections: Detections
    tracks: list[Track]  # confirmed, live (coasting ones included)


@dataclass(slots=True)
class PedResult:
    tracks: list[Track]  # every track that was ever confirmed, by id
    detections: list[Detections]  # one per processed frame, in order
    frames: int = 0  # frames processed
    frames_dropped: int = 0  # live mode: decoded but skipped to keep up
    seconds: dict[str, float] = field(default_factory=dict)  # per stage (decode in its own thread)
    wall_seconds: float = 0.0
    geolocated: bool = False
    geolocation_reason: str | None = None  # why not, when geolocated is False
    width: int = 0
    height: int = 0
    detector: str = "mti"
    tentative_dropped: int = 0  # tracks born that never reached confirmation
    registration_failures: int = 0  # MTI: frames where ego-motion could not be estimated
    interrupted: bool = False  # ended by `stop`, not by the end of the source
    delay_frames: int = 0  # the detector's look-ahead: a frame's result comes this many frames later
    # frame index -> index of the newest frame decoded when its result came out (what a live
    # viewer waits for; larger than delay_frames during an MTI warm-up)
    emitted_at: dict[int, int] = field(default_factory=dict)

    @property
    def fps(self) -> dict[str, float]:
        """Frames per second per stage (frames / stage seconds) and end to end (frames / wall)."""
        out = {s: (self.frames / self.seconds[s]) if self.seconds.get(s) else float("inf") for s in STAGES}
        out["end_to_end"] = self.frames / self.wall_seconds if self.wall_seconds > 0 else float("inf")
        return out

    def report(self) -> dict[str, Any]:
        """JSON-ready summary (for report.json)."""
        return {
            "frames": self.frames,
            "frames_dropped": self.frames_dropped,
            "width": self.width,
            "height": self.height,
            "detector": self.detector,
            "seconds": {k: round(v, 4) for k, v in self.seconds.items()},
            "wall_seconds": round(self.wall_seconds, 4),
            "fps": {k: (round(v, 2) if v != float("inf") else None) for k, v in self.fps.items()},
            "geolocated": self.geolocated,
            "geolocation_reason": self.geolocation_reason,
            "tracks": len(self.tracks),
            "detections": int(sum(len(d) for d in self.detections)),
            "tentative_dropped": self.tentative_dropped,
            "registration_failures": self.registration_failures,
            "interrupted": self.interrupted,
            "delay_frames": self.delay_frames,
        }


_END = object()


class _Reader:
    """Decodes in a thread. Offline: bounded queue (back-pressure). Live: newest frame only."""

    def __init__(self, frames: Iterable[Any], live: bool, max_frames: int | None) -> None:
        self.live = live
        self.dropped = 0
        self.decode_s = 0.0
        self._frames = frames
        self._max = max_frames
        self._q: queue.Queue[Any] = queue.Queue(maxsize=8)
        self._slot: list[Any] = []
        self._cv = threading.Condition()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._work, name="ped-decode", daemon=True)
        self._thread.start()

    def _put(self, item: Any) -> None:
        if self.live:
            with self._cv:
                if self._slot and self._slot[0] is not _END and item is not _END:
                    self.dropped += 1
                    self._slot[0] = item
                elif self._slot and item is _END:
                    self._slot.append(item)
                else:
                    self._slot.append(item)
                self._cv.notify()
            return
        while not self._stop.is_set():
            try:
                self._q.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def _work(self) -> None:
        it: Iterator[Any] = iter(self._frames)
        n = 0
        try:
            while not self._stop.is_set() and (self._max is None or n < self._max):
                t0 = time.perf_counter()
                try:
                    frame = next(it)
                except StopIteration:
                    break
                self.decode_s += time.perf_counter() - t0
                n += 1
                self._put(frame)
        except BaseException as exc:  # handed to the consumer, re-raised there
            self._put(exc)
        finally:
            close = getattr(it, "close", None)
            if close is not None:
                try:
                    close()
                except Exception:
                    pass
            self._put(_END)

    def frames(self, stop: threading.Event | None = None) -> Iterator[Any]:
        """Decoded frames in order; ends at the end of the source or soon after `stop` is set."""
        while True:
            if stop is not None and stop.is_set():
                return
            if self.live:
                with self._cv:
                    if not self._slot:
                        self._cv.wait(timeout=0.1)
                        continue
                    item = self._slot.pop(0)
            else:
                try:
                    item = self._q.get(timeout=0.1)
                except queue.Empty:
                    continue
            if item is _END:
                return
            if isinstance(item, BaseException):
                raise item
            yield item

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


def open_frames(source: str | Path) -> Iterable[Any]:
    """Frames of a file or a live URL through `kestrel.fmv` (raises its input error on bad input)."""
    from kestrel.fmv.ingest import read_frames

    return read_frames(str(source))


class _Geo:
    """Sensor model per frame (cached while the metadata stays the same) and box -> ground."""

    def __init__(self) -> None:
        self.any_metadata = False
        self.any_model = False
        self.reason: str | None = None
        self._last_md: SensorMetadata | None = None
        self._last_model: SensorModel | None = None
        self._size: tuple[int, int] = (0, 0)

    def model(self, md: SensorMetadata | None, width: int, height: int) -> SensorModel | None:
        if md is None:
            return None
        self.any_metadata = True
        if md is self._last_md and self._size == (width, height):
            return self._last_model
        if not (self._last_md is not None and md == self._last_md and self._size == (width, height)):
            from kestrel.geo.build import build_model
            from kestrel.geo.sensor import InsufficientMetadata

            try:  # build once; the exception carries the reason (no second build to explain it)
                self._last_model = build_model(md, width, height)
            except InsufficientMetadata as exc:
                self._last_model = None
                if self.reason is None:
                    self.reason = f"KLV present but not enough for a sensor model: {exc}"
            except Exception as exc:  # a geometry the model rejects must not stop the run
                self._last_model = None
                self.reason = f"sensor model failed: {exc}"
        self._last_md, self._size = md, (width, height)
        if self._last_model is not None:
            self.any_model = True
        return self._last_model

    @staticmethod
    def locate(dets: Detections, sensor: SensorModel | None) -> None:
        if sensor is None or len(dets) == 0:
            return
        try:
            g = np.asarray(sensor.pixels_to_ground(dets.centers.astype(np.float64)), np.float64)
        except Exception:
            return
        dets.ground = g.reshape(-1, 3)


def _grey(img: Any) -> Any:
    import cv2

    return img if img.ndim == 2 else cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)


def run(
    source: str | Path | Iterable[FrameLike],
    *,
    detector: str | Detector = "mti",
    model: str | None = None,
    max_frames: int | None = None,
    live: bool = False,
    on_frame: Callable[[FrameUpdate], None] | None = None,
    tracker: TrackerConfig | None = None,
    stop: threading.Event | None = None,
) -> PedResult:
    """Run PED over `source`: a file path / URL (decoded by kestrel.fmv) or any iterable of frames
    (objects with index, pts, image BGR, metadata). See `PedResult` for what comes back.

    `stop`: set it (e.g. from a SIGINT handler) to end a live run cleanly: reading stops, the
    detector and tracker are flushed and the result is returned (`interrupted` True).
    Raises `ModelError` (a BadInput, exit 2) for a missing/invalid model and the fmv input error
    for a source that is not usable video."""
    det = make_detector(detector, model) if isinstance(detector, str) else detector
    det_name = detector if isinstance(detector, str) else type(detector).__name__
    if model is not None and det_name == "mti":
        det_name = "onnx"
    frames = open_frames(source) if isinstance(source, str | Path) else source
    if tracker is None:  # motion detectors report movers only; object detectors also parked ones
        movers = bool(getattr(det, "finds_movers", True))
        tracker = TrackerConfig.previous(movers) if det_name == "mti-v1" else TrackerConfig(require_motion=movers)
    trk = Tracker(tracker)
    geo = _Geo()
    secs = dict.fromkeys(STAGES, 0.0)
    pending: dict[int, tuple[SensorMetadata | None, SensorModel | None]] = {}  # until finished
    # the grey picture of each frame the detector did not finish when it arrived (its warm-up, a
    # look-ahead): the tracker holds a stopping car on its appearance in those frames too
    pictures: dict[int, Any] = {}
    all_dets: list[Detections] = []
    res = PedResult(tracks=[], detections=all_dets, detector=det_name)

    def finish(done: list[Detections]) -> None:
        for d in done:
            md, sensor = pending.pop(d.frame_index, (None, None))
            t0 = time.perf_counter()
            geo.locate(d, sensor)
            t1 = time.perf_counter()
            # the picture too when this result is the newest frame's (steady state of the MTI): tracks
            # hold through stops on their own appearance
            pic = image if d.frame_index == newest else pictures.pop(d.frame_index, None)
            live_tracks = trk.update(d, pic, sensor)
            t2 = time.perf_counter()
            secs["geolocate"] += t1 - t0
            secs["track"] += t2 - t1
            all_dets.append(d)
            res.emitted_at[d.frame_index] = newest
            if on_frame is not None:
                on_frame(FrameUpdate(d.frame_index, d.pts, md, sensor, d, live_tracks))

    reader = _Reader(frames, live, max_frames)
    newest = 0
    image: Any = None
    wall0 = time.perf_counter()
    try:
        for frame in reader.frames(stop):
            h, w = frame.image.shape[:2]
            res.width, res.height = w, h
            newest, image = frame.index, frame.image
            t0 = time.perf_counter()
            sensor = geo.model(frame.metadata, w, h)
            t1 = time.perf_counter()
            pending[frame.index] = (frame.metadata, sensor)
            done = det.detect(frame, sensor)
            t2 = time.perf_counter()
            secs["geolocate"] += t1 - t0
            secs["detect"] += t2 - t1
            res.frames += 1
            finish(done)
            if tracker.hold_late_frames and frame.index in pending:  # finished later: keep its picture (grey)
                t3 = time.perf_counter()
                pictures[frame.index] = _grey(frame.image)
                while len(pictures) > MAX_PICTURES:
                    del pictures[min(pictures)]
                secs["track"] += time.perf_counter() - t3
        t1 = time.perf_counter()
        done = det.flush()
        image = None
        secs["detect"] += time.perf_counter() - t1
        finish(done)
    finally:
        reader.stop()
    res.wall_seconds = time.perf_counter() - wall0
    secs["decode"] = reader.decode_s
    res.seconds = secs
    res.frames_dropped = reader.dropped
    res.tracks = trk.finish()
    res.tentative_dropped = trk.deleted_tentative
    res.registration_failures = int(getattr(det, "registration_failures", 0))
    res.delay_frames = int(getattr(det, "delay", 0))
    res.interrupted = stop is not None and stop.is_set()
    res.geolocated = geo.any_model
    if not geo.any_model:
        res.geolocation_reason = geo.reason or (
            "no KLV metadata in the stream" if not geo.any_metadata else "no usable sensor model")
    return res
