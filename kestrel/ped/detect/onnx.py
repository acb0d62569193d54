"""ONNX detector: a user-supplied YOLO-style model run with onnxruntime on the CPU.

Nothing is downloaded: the user passes `--model FILE.onnx`. Pre-processing is letterbox (keep the
aspect ratio, pad with grey 114 to the model's input size, BGR -> RGB, 0..1, NCHW float32).
Output layouts decoded (auto-detected, or forced with `layout=`):
- "v8": [1, 4 + nc, N] (YOLOv8/v11: cx, cy, w, h, class scores), channels first;
- "v5": [1, N, 5 + nc] (YOLOv5/v7: cx, cy, w, h, objectness, class scores).
Auto: the smaller of the last two dimensions holds the fields, so channels-first means "v8".
Then a confidence threshold, class-aware NMS (cv2.dnn.NMSBoxes), and boxes mapped back to the
original image. Class names come from the model's metadata (`names`) when it has them.
Cost per frame: one resize + one model run; decoding is vectorised numpy.
"""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt

from kestrel.ped.detect import FrameLike, ModelError
from kestrel.ped.records import Detections


class OnnxDetector:
    delay = 0
    finds_movers = False  # it finds objects, moving or not

    def __init__(self, model: str | Path, *, conf_threshold: float = 0.25, iou_threshold: float = 0.45,
                 layout: str = "auto", classes: list[int] | None = None, threads: int = 0) -> None:
        path = Path(model)
        if not path.is_file():
            raise ModelError(f"{path}: model file not found")
        if layout not in ("auto", "v5", "v8"):
            raise ModelError(f"{path}: unknown output layout {layout!r} (auto, v5 or v8)")
        import onnxruntime as ort

        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = threads
        opts.log_severity_level = 3
        try:
            self.session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises several types for unreadable / invalid graphs
            reason = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
            raise ModelError(f"{path}: not a usable ONNX model ({reason})") from exc
        inputs = self.session.get_inputs()
        if len(inputs) != 1 or len(inputs[0].shape) != 4:
            raise ModelError(f"{path}: expected one image input [1, 3, H, W], got "
                             f"{[list(i.shape) for i in inputs]}")
        shape = inputs[0].shape
        self.input_name = inputs[0].name
        self.in_h = shape[2] if isinstance(shape[2], int) and shape[2] > 0 else 640
        self.in_w = shape[3] if isinstance(shape[3], int) and shape[3] > 0 else 640
        self.path = path
        self.conf_threshold = conf_threshold
        self.iou_threshold = iou_threshold
        self.layout = layout
        self.classes = None if classes is None else set(classes)
        self.names = self._names()

    def _names(self) -> dict[int, str]:
        meta = self.session.get_modelmeta().custom_metadata_map
        raw = meta.get("names")
        if not raw:
            return {}
        try:
            parsed = ast.literal_eval(raw)  # ultralytics stores a dict literal; literal_eval runs no code
        except (ValueError, SyntaxError):
            return {}
        if isinstance(parsed, dict):
            return {int(k): str(v) for k, v in parsed.items()}
        if isinstance(parsed, list):
            return dict(enumerate(str(v) for v in parsed))
        return {}

    # ------------------------------------------------------------------ Detector protocol
    def detect(self, frame: FrameLike, sensor: Any = None) -> list[Detections]:
        return [self.predict(frame.image, frame.index, frame.pts)]

    def flush(self) -> list[Detections]:
        return []

    # ------------------------------------------------------------------ work
    def letterbox(self, image: npt.NDArray[Any]) -> tuple[npt.NDArray[np.float32], float, float, float]:
        """Image -> (NCHW float32 tensor, scale, pad x, pad y)."""
        if image.ndim == 2:
            image = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
        h, w = image.shape[:2]
        r = min(self.in_h / h, self.in_w / w)
        nw, nh = int(round(w * r)), int(round(h * r))
        px, py = (self.in_w - nw) / 2, (self.in_h - nh) / 2
        canvas = np.full((self.in_h, self.in_w, 3), 114, np.uint8)
        x0, y0 = int(round(px - 0.1)), int(round(py - 0.1))
        resized = cv2.resize(image, (nw, nh), interpolation=cv2.INTER_LINEAR) if (nw, nh) != (w, h) else image
        canvas[y0:y0 + nh, x0:x0 + nw] = resized
        blob = cv2.cvtColor(canvas, cv2.COLOR_BGR2RGB).transpose(2, 0, 1)[None].astype(np.float32) / 255.0
        return blob, r, float(x0), float(y0)

    def predict(self, image: npt.NDArray[np.uint8], frame_index: int = 0, pts: float | None = None) -> Detections:
        blob, r, px, py = self.letterbox(image)
        out = np.asarray(self.session.run(None, {self.input_name: blob})[0], np.float32)
        boxes, scores, cls = self.decode(out)
        keep = scores >= self.conf_threshold
        if self.classes is not None:
            keep &= np.isin(cls, list(self.classes))
        boxes, scores, cls = boxes[keep], scores[keep], cls[keep]
        if len(boxes):
            boxes[:, [0, 2]] = (boxes[:, [0, 2]] - px) / r
            boxes[:, [1, 3]] = (boxes[:, [1, 3]] - py) / r
            h, w = image.shape[:2]
            boxes[:, [0, 2]] = boxes[:, [0, 2]].clip(0, w)
            boxes[:, [1, 3]] = boxes[:, [1, 3]].clip(0, h)
            idx = self.nms(boxes, scores, cls)
            boxes, scores, cls = boxes[idx], scores[idx], cls[idx]
        return Detections(xyxy=boxes, confidence=scores, class_id=cls, frame_index=frame_index, pts=pts)

    def decode(self, out: npt.NDArray[np.float32]) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32],
                                                           npt.NDArray[np.int64]]:
        """Raw output -> (xyxy in model-input pixels, score, class)."""
        a = out[0] if out.ndim == 3 else out
        if a.ndim != 2:
            raise ModelError(f"{self.path}: unexpected output shape {list(out.shape)}")
        layout = self.layout
        if layout == "auto":
            layout = "v8" if a.shape[0] < a.shape[1] else "v5"
        if layout == "v8":
            a = a.T  # [N, 4 + nc]
            if a.shape[1] < 5:
                raise ModelError(f"{self.path}: output {list(out.shape)} has no class scores")
            cls_scores = a[:, 4:]
        else:
            if a.shape[1] < 6:
                raise ModelError(f"{self.path}: output {list(out.shape)} is not [N, 5 + classes]")
            cls_scores = a[:, 5:] * a[:, 4:5]
        cls = cls_scores.argmax(axis=1).astype(np.int64)
        scores = cls_scores[np.arange(len(a)), cls].astype(np.float32)
        cx, cy, bw, bh = a[:, 0], a[:, 1], a[:, 2], a[:, 3]
        boxes = np.stack([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2], axis=1).astype(np.float32)
        return boxes, scores, cls

    def nms(self, boxes: npt.NDArray[np.float32], scores: npt.NDArray[np.float32],
            cls: npt.NDArray[np.int64]) -> npt.NDArray[np.intp]:
        """Class-aware NMS: boxes of different classes are offset apart so they never suppress."""
        offset = cls.astype(np.float32)[:, None] * (float(boxes.max()) + 1.0)
        b = boxes + offset
        xywh = np.stack([b[:, 0], b[:, 1], b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]], axis=1)
        idx = cv2.dnn.NMSBoxes(xywh.tolist(), scores.tolist(), self.conf_threshold, self.iou_threshold)
        return np.asarray(idx, np.intp).reshape(-1)
