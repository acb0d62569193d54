"""ONNX detector against tiny graphs built here with the `onnx` package.

The graph is a real (if simple) detector: the image is average-pooled into 8x8-pixel cells of the
64x64 model input; each cell's score is its mean brightness and its box is the cell itself (or a
wider box, to make neighbours overlap and exercise NMS). So the expected output is a known
function of the input, and letterbox, decode (v5 and v8 layouts), threshold, NMS and the mapping
back to original pixels are all checked end to end through onnxruntime."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from kestrel.errors import BadInput
from kestrel.ped.detect import ModelError, make_detector
from kestrel.ped.detect.onnx import OnnxDetector

CELL, SIZE = 8, 64


def build_model(path: Path, layout: str, box: float = CELL, names: str | None = None) -> Path:
    g = SIZE // CELL
    n = g * g
    cy, cx = np.mgrid[0:g, 0:g]
    boxes = np.stack([cx.ravel() * CELL + CELL / 2, cy.ravel() * CELL + CELL / 2,
                      np.full(n, box), np.full(n, box)]).astype(np.float32)[None]  # [1, 4, N]
    nodes = [
        helper.make_node("ReduceMean", ["images"], ["grey"], axes=[1], keepdims=1),  # [1,1,64,64]
        helper.make_node("AveragePool", ["grey"], ["cells"], kernel_shape=[CELL, CELL], strides=[CELL, CELL]),
        helper.make_node("Reshape", ["cells", "shape"], ["score"]),  # [1, 1, N]
    ]
    inits = [numpy_helper.from_array(np.array([1, 1, n], np.int64), "shape"),
             numpy_helper.from_array(boxes, "boxes")]
    if layout == "v8":  # [1, 4 + 1, N]
        nodes.append(helper.make_node("Concat", ["boxes", "score"], ["out"], axis=1))
        out_shape = [1, 5, n]
    else:  # v5: [1, N, 4 + obj + 2 classes]; obj = 1, class 0 = brightness, class 1 = 1 - brightness
        inits += [numpy_helper.from_array(np.ones((1, 1, n), np.float32), "obj"),
                  numpy_helper.from_array(np.ones((1, 1, n), np.float32), "one")]
        nodes += [helper.make_node("Sub", ["one", "score"], ["dark"]),
                  helper.make_node("Concat", ["boxes", "obj", "score", "dark"], ["cat"], axis=1),
                  helper.make_node("Transpose", ["cat"], ["out"], perm=[0, 2, 1])]
        out_shape = [1, n, 7]
    graph = helper.make_graph(
        nodes, "cells", [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, SIZE, SIZE])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, out_shape)], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    if names:
        model.metadata_props.add(key="names", value=names)
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def image_with_square(x1: int, y1: int, x2: int, y2: int) -> np.ndarray:
    img = np.zeros((96, 128, 3), np.uint8)  # 4:3 -> letterboxed to 64x48 plus 8 px bands
    img[y1:y2, x1:x2] = 255
    return img


def test_v8_letterbox_and_mapping_back(tmp_path: Path) -> None:
    det = OnnxDetector(build_model(tmp_path / "m.onnx", "v8", names="{0: 'car'}"), conf_threshold=0.6)
    assert det.names == {0: "car"} and (det.in_w, det.in_h) == (64, 64)
    # square (32..48, 32..48) -> letterbox scale 0.5, pad y 8 -> exactly the cell x 16..24, y 24..32
    d = det.predict(image_with_square(32, 32, 48, 48), frame_index=7, pts=0.25)
    assert len(d) == 1 and d.frame_index == 7 and d.pts == 0.25
    np.testing.assert_allclose(d.xyxy[0], [32, 32, 48, 48], atol=1e-3)
    assert d.confidence[0] == pytest.approx(1.0, abs=1e-3) and d.class_id[0] == 0
    # The grey letterbox bands (114/255 = 0.45) score below the threshold: nothing from them.
    assert len(det.predict(np.zeros((96, 128, 3), np.uint8))) == 0


def test_v5_objectness_classes_and_nms(tmp_path: Path) -> None:
    det = OnnxDetector(build_model(tmp_path / "m5.onnx", "v5", box=24), conf_threshold=0.6)
    # two neighbouring bright cells: their 24-px boxes overlap with IoU 0.5 > 0.45 -> one survives
    d = det.predict(image_with_square(32, 32, 64, 48))
    assert len(d[d.class_id == 0]) == 1
    # class 1 (darkness) fires on black cells far from the square; class-aware NMS keeps both kinds
    assert (d.class_id == 1).any()
    bright = d[d.class_id == 0]
    cx = float(bright.centers[0, 0])
    assert cx in (pytest.approx(40.0), pytest.approx(56.0))


def test_detector_protocol_and_factory(tmp_path: Path) -> None:
    path = build_model(tmp_path / "m.onnx", "v8")
    det = make_detector("mti", model=str(path), conf_threshold=0.6)
    assert isinstance(det, OnnxDetector) and det.delay == 0

    class F:
        index, pts, metadata = 3, 0.1, None
        image = image_with_square(32, 32, 48, 48)

    out = det.detect(F())
    assert len(out) == 1 and out[0].frame_index == 3 and len(out[0]) == 1
    assert det.flush() == []


def test_missing_and_invalid_models_are_bad_input(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="not found"):
        OnnxDetector(tmp_path / "nope.onnx")
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"this is not a protobuf")
    with pytest.raises(ModelError, match="not a usable ONNX model"):
        OnnxDetector(junk)
    with pytest.raises(BadInput):
        make_detector("onnx")  # no model given
    assert issubclass(ModelError, BadInput)  # the CLI turns it into exit code 2


def test_pipeline_with_onnx(tmp_path: Path) -> None:
    from kestrel.ped.pipeline import run

    class F:
        def __init__(self, i: int) -> None:
            self.index, self.pts, self.metadata = i, i / 10, None
            self.image = image_with_square(16 * i, 32, 16 * i + 16, 48)  # one model cell per frame

    path = build_model(tmp_path / "m.onnx", "v8")
    with pytest.raises(ModelError):
        run([F(0)], model=str(tmp_path / "missing.onnx"))
    res = run([F(i) for i in range(6)], detector=OnnxDetector(path, conf_threshold=0.6))
    assert res.frames == 6 and all(len(d) == 1 for d in res.detections)
    assert len(res.tracks) == 1

    class Parked(F):
        def __init__(self, i: int) -> None:
            super().__init__(0)
            self.index, self.pts = i, i / 10

    # A parked object never moves: the MTI's "is it a mover" test must not apply to an object detector.
    res = run([Parked(i) for i in range(8)], detector=OnnxDetector(path, conf_threshold=0.6))
    assert len(res.tracks) == 1 and len(res.tracks[0].points) == 8
