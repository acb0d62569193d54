"""Detectors: one small interface, several engines (MTI needs no weights; ONNX runs a user's model).

A detector sees every frame in order and hands back the frames it has finished. Most detectors
finish each frame at once (`delay == 0`, one `Detections` per call). The MTI detector compares a
frame with frames *after* it, so it finishes frame `i` when frame `i + delay` arrives; `flush()`
finishes the rest at the end of the stream. Every frame given to `detect` comes back exactly once,
in order, as a `Detections` (possibly empty) carrying that frame's index and PTS.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

from kestrel.errors import BadInput
from kestrel.ped.records import Detections

if TYPE_CHECKING:
    from kestrel.geo.sensor import SensorModel
    from kestrel.klv import SensorMetadata

__all__ = ["Detector", "FrameLike", "ModelError", "make_detector"]


class FrameLike(Protocol):
    """What a detector needs of `kestrel.fmv.Frame`."""

    index: int
    pts: float | None
    image: npt.NDArray[np.uint8]  # H x W x 3 BGR (or H x W grey)
    metadata: SensorMetadata | None


@runtime_checkable
class Detector(Protocol):
    delay: int  # frames between receiving a frame and returning its detections
    finds_movers: bool  # True: only moving things (MTI); False: objects, moving or not (ONNX)

    def detect(self, frame: FrameLike, sensor: SensorModel | None = None) -> list[Detections]:
        """Take the next frame (and its sensor model, or None); return the frames now finished."""
        ...

    def flush(self) -> list[Detections]:
        """End of stream: return every frame not yet returned."""
        ...


class ModelError(BadInput):
    """A missing or unusable model file (the CLI turns this into exit code 2)."""


def make_detector(name: str = "mti", model: str | None = None, **options: Any) -> Detector:
    """`mti` (default, no weights), `mti-early` (MTI that reports sooner after a start, for some
    recall: `MtiConfig.early_start()`), `mti-v1` (the previous MTI settings, kept for comparison) or
    `onnx` (needs `model`, a YOLO-style .onnx file)."""
    if model is not None and name == "mti":
        name = "onnx"
    if name in ("mti", "mti-v1", "mti-early"):
        from kestrel.ped.detect.mti import MtiConfig, MtiDetector

        cfg = {"mti-v1": MtiConfig.previous, "mti-early": MtiConfig.early_start}.get(name)
        return MtiDetector(cfg() if cfg else None, **options)
    if name == "onnx":
        if model is None:
            raise ModelError("onnx detector: --model FILE.onnx is required")
        from kestrel.ped.detect.onnx import OnnxDetector

        return OnnxDetector(model, **options)
    raise BadInput(f"unknown detector {name!r} (choose mti, mti-early, mti-v1 or onnx)")
