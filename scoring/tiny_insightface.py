"""Tiny ONNX stand-ins for an insightface model pack, built offline with onnx.helper (tests and demos).

`write_tiny_insightface_pack(directory)` writes a pack that `InsightFaceBackend` loads like a real one
(`headshot models tiny DIR` puts it in DIR/insightface/); its "face" is a fixed place, its embeddings a
fixed random projection of the pixels: it recognises nobody. onnx is imported with this module, which
only the tiny-model writer and the tests import (onnx is in the `insightface` extra).

- `build_detector`: an SCRFD-shaped detector (3 strides of 8, 16 and 32, 2 anchors per location, outputs
  scores x3, boxes x3 and, by default, keypoints x3: 9 outputs, 6 without keypoints) with a dynamic input
  size like insightface's det_10g. It finds one "face" at a fixed point of the letterboxed detector input
  (`FACE_CENTRE`, an anchor of stride 32), with a fixed box and keypoints tuned to the face in
  shared/data/faces/img1.jpg at 640x640. The score depends on the pixels there, so a dark image has none.
- `build_recogniser`: an ArcFace-shaped model, 1x3x112x112 in and 1x512 out (8x8 average pooling, then a
  fixed random projection), so embeddings are deterministic and differ between crops.
"""

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 17
IR_VERSION = 8
STRIDES = (8, 16, 32)
ANCHORS = 2
FACE_STRIDE = 32
FACE_CENTRE = (256.0, 224.0)  # x, y in the 640x640 detector input; an anchor centre of stride 32
FACE_HALF_SIDE = 112.0  # the box is FACE_CENTRE +- this, in detector input pixels
# Offsets from FACE_CENTRE in detector input pixels: eye centres, nose tip, mouth corners (insightface order).
FACE_KEYPOINTS = np.array([[-55, -42], [38, -42], [-8, 11], [-47, 66], [30, 66]], dtype=np.float32)
SCORE_GAIN = 12.0  # logit = SCORE_GAIN * (mean normalised pixel + SCORE_FLOOR) - squared distance / WIDTH
SCORE_FLOOR = 0.6  # black pixels normalise to about -1, so a dark image scores sigmoid(-4.8)
SCORE_WIDTH = 100.0  # in squared pixels: the neighbouring anchors, 32 pixels away, score near zero
EMBEDDING_SIZE = 512
DETECTOR_FILE = "tiny_scrfd.onnx"
RECOGNISER_FILE = "tiny_arcface.onnx"
README = """# Tiny insightface-shaped pack (tests and demos only)

Two ONNX models with the input and output shapes of insightface's SCRFD detector ({detector}) and ArcFace
recogniser ({recogniser}), so that `HEADSHOT_INSIGHTFACE_PACK` and IP-Adapter FaceID can be tried offline.
They were never trained: the detector reports one "face" at a fixed place of any bright enough image, and
the recogniser's 512-number embedding is a fixed random projection of the pixels there. It recognises nobody.
"""


def write_tiny_insightface_pack(directory: Path) -> Path:
    """Write the tiny detector, recogniser and a README into `directory`; return `directory`."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    build_detector(directory / DETECTOR_FILE)
    build_recogniser(directory / RECOGNISER_FILE)
    (directory / "README.md").write_text(README.format(detector=DETECTOR_FILE, recogniser=RECOGNISER_FILE))
    return directory


def build_detector(path: Path, keypoints: bool = True) -> Path:
    nodes: list[onnx.NodeProto] = []
    initializers: list[onnx.TensorProto] = []
    heads: dict[str, list[str]] = {"score": [], "bbox": [], "kps": []}
    for stride in STRIDES:
        pooled = f"pooled_{stride}"
        nodes.append(
            helper.make_node("AveragePool", ["input.1"], [pooled], kernel_shape=[stride] * 2, strides=[stride] * 2)
        )
        if stride == FACE_STRIDE:
            logits = _face_logits(nodes, initializers, pooled, stride)
        else:
            logits = _constant_head(nodes, initializers, pooled, f"score_head_{stride}", np.full(ANCHORS, -20.0))
        nodes.append(helper.make_node("Sigmoid", [logits], [f"score_sigmoid_{stride}"]))
        heads["score"].append(_flatten(nodes, initializers, f"score_sigmoid_{stride}", f"score_{stride}", 1))
        box = np.full(4, FACE_HALF_SIDE / stride)  # left, top, right, bottom distances in strides
        bbox = _constant_head(nodes, initializers, pooled, f"bbox_head_{stride}", np.tile(box, ANCHORS))
        heads["bbox"].append(_flatten(nodes, initializers, bbox, f"bbox_{stride}", 4))
        if keypoints:
            offsets = (FACE_KEYPOINTS / stride).ravel()
            kps = _constant_head(nodes, initializers, pooled, f"kps_head_{stride}", np.tile(offsets, ANCHORS))
            heads["kps"].append(_flatten(nodes, initializers, kps, f"kps_{stride}", 10))
    widths = {"score": 1, "bbox": 4, "kps": 10}
    outputs = [
        helper.make_tensor_value_info(name, TensorProto.FLOAT, [None, widths[kind]])
        for kind in ("score", "bbox", "kps")
        for name in heads[kind]
    ]
    image = helper.make_tensor_value_info("input.1", TensorProto.FLOAT, [1, 3, "height", "width"])
    return _save(helper.make_graph(nodes, "tiny_scrfd", [image], outputs, initializers), path)


def build_recogniser(path: Path, seed: int = 0) -> Path:
    features = 3 * 14 * 14
    projection = np.random.default_rng(seed).standard_normal((features, EMBEDDING_SIZE)).astype(np.float32)
    nodes = [
        helper.make_node("AveragePool", ["input.1"], ["pooled"], kernel_shape=[8, 8], strides=[8, 8]),
        helper.make_node("Flatten", ["pooled"], ["flat"], axis=1),
        helper.make_node("MatMul", ["flat", "projection"], ["683"]),
    ]
    image = helper.make_tensor_value_info("input.1", TensorProto.FLOAT, ["None", 3, 112, 112])
    embedding = helper.make_tensor_value_info("683", TensorProto.FLOAT, ["None", EMBEDDING_SIZE])
    initializers = [numpy_helper.from_array(projection, "projection")]
    return _save(helper.make_graph(nodes, "tiny_arcface", [image], [embedding], initializers), path)


def _face_logits(nodes: list, initializers: list, pooled: str, stride: int) -> str:
    """Two anchor channels: the first scores high only at FACE_CENTRE on bright enough pixels."""
    constants = {
        "axis_x": np.array(3, dtype=np.int64),
        "axis_y": np.array(2, dtype=np.int64),
        "one": np.array(1.0, dtype=np.float32),
        "stride": np.array(float(stride), dtype=np.float32),
        "centre_x": np.array(FACE_CENTRE[0], dtype=np.float32),
        "centre_y": np.array(FACE_CENTRE[1], dtype=np.float32),
        "gain": np.array(SCORE_GAIN, dtype=np.float32),
        "floor": np.array(SCORE_FLOOR, dtype=np.float32),
        "width": np.array(SCORE_WIDTH, dtype=np.float32),
        "cold": np.array(-20.0, dtype=np.float32),
    }
    initializers.extend(numpy_helper.from_array(value, name) for name, value in constants.items())
    ones = helper.make_tensor("ones_value", TensorProto.FLOAT, [1], [1.0])
    nodes += [
        helper.make_node("ReduceMean", [pooled], ["brightness"], axes=[1], keepdims=1),
        helper.make_node("Shape", ["brightness"], ["grid_shape"]),
        helper.make_node("ConstantOfShape", ["grid_shape"], ["ones"], value=ones),
        # Anchor centres are (column * stride, row * stride), as in insightface's SCRFD decoding.
        helper.make_node("CumSum", ["ones", "axis_x"], ["column_plus_one"]),
        helper.make_node("CumSum", ["ones", "axis_y"], ["row_plus_one"]),
        helper.make_node("Sub", ["column_plus_one", "one"], ["column"]),
        helper.make_node("Sub", ["row_plus_one", "one"], ["row"]),
        helper.make_node("Mul", ["column", "stride"], ["anchor_x"]),
        helper.make_node("Mul", ["row", "stride"], ["anchor_y"]),
        helper.make_node("Sub", ["anchor_x", "centre_x"], ["dx"]),
        helper.make_node("Sub", ["anchor_y", "centre_y"], ["dy"]),
        helper.make_node("Mul", ["dx", "dx"], ["dx2"]),
        helper.make_node("Mul", ["dy", "dy"], ["dy2"]),
        helper.make_node("Add", ["dx2", "dy2"], ["distance2"]),
        helper.make_node("Div", ["distance2", "width"], ["falloff"]),
        helper.make_node("Add", ["brightness", "floor"], ["lifted"]),
        helper.make_node("Mul", ["lifted", "gain"], ["evidence"]),
        helper.make_node("Sub", ["evidence", "falloff"], ["face_logit"]),
        helper.make_node("Mul", ["ones", "cold"], ["cold_logit"]),
        helper.make_node("Concat", ["face_logit", "cold_logit"], ["face_logits"], axis=1),
    ]
    return "face_logits"


def _constant_head(nodes: list, initializers: list, pooled: str, name: str, bias: np.ndarray) -> str:
    """A 1x1 convolution with zero weights: the same `bias` vector at every location."""
    weights = np.zeros((len(bias), 3, 1, 1), dtype=np.float32)
    initializers += [
        numpy_helper.from_array(weights, f"{name}_weight"),
        numpy_helper.from_array(bias.astype(np.float32), f"{name}_bias"),
    ]
    nodes.append(helper.make_node("Conv", [pooled, f"{name}_weight", f"{name}_bias"], [name]))
    return name


def _flatten(nodes: list, initializers: list, source: str, output: str, width: int) -> str:
    """NCHW with channels (anchor, value) to rows ordered (row, column, anchor), as SCRFD decodes them."""
    initializers.append(numpy_helper.from_array(np.array([-1, width], dtype=np.int64), f"{output}_shape"))
    nodes += [
        helper.make_node("Transpose", [source], [f"{output}_nhwc"], perm=[0, 2, 3, 1]),
        helper.make_node("Reshape", [f"{output}_nhwc", f"{output}_shape"], [output]),
    ]
    return output


def _save(graph: onnx.GraphProto, path: Path) -> Path:
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = IR_VERSION
    onnx.checker.check_model(model, full_check=True)
    onnx.save(model, path)
    return path
