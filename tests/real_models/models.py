"""ONNX models with the patterns of models people ship, built with onnx.helper (issue 13):

- `ocr_detector`: NCHW float image with dynamic batch, height and width (exporter-style names
  that say nothing: 'p2o.DynamicDimension.N'), every weight a `Constant` node, not an initializer.
- `ocr_recognizer`: fixed height 48, dynamic width; per-position character softmax (class 0 the
  CTC blank); Constant weights.
- `question_classifier`: a classifier whose height and width are both named '?', and whose
  batch is stored as dim_value -1.
- `streaming_vad`: a stateful voice-activity model: the whole graph sits in `If` branches chosen
  by a rank-0 int64 sample rate (16000 runs 512-sample chunks, anything else the 8 kHz branch,
  which fails on a 512-sample chunk), and a [2, batch, 64] state fed back each call.

`python -m tests.real_models.models DIR` writes all four to DIR (for experiments/real_models.py).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 17
VAD_CHUNK = 512  # samples per call at 16 kHz
VAD_STATE = 64


def _constant(name: str, array: np.ndarray) -> onnx.NodeProto:
    return helper.make_node("Constant", [], [name], value=numpy_helper.from_array(array, name))


def _save(graph: onnx.GraphProto, path: Path) -> Path:
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def _conv_weights(rng: np.random.Generator, out: int, inp: int, k: int) -> np.ndarray:
    return (rng.standard_normal((out, inp, k, k)) * np.sqrt(2.0 / (inp * k * k))).astype(np.float32)


def ocr_detector(path: str | Path, seed: int = 0) -> Path:
    """x[N, 3, H, W] -> maps[N, 1, H, W] (a text-probability map), weights as Constant nodes."""
    rng = np.random.default_rng(seed)
    dims = [f"p2o.DynamicDimension.{i}" for i in range(3)]
    nodes = [
        _constant("w1", _conv_weights(rng, 8, 3, 3)),
        _constant("b1", rng.standard_normal(8).astype(np.float32) * 0.1),
        _constant("w2", _conv_weights(rng, 16, 8, 3)),
        _constant("w3", _conv_weights(rng, 16, 16, 3)),
        _constant("w4", _conv_weights(rng, 4, 16, 1)),
        helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1], name="conv1"),
        helper.make_node("Relu", ["c1"], ["r1"]),
        helper.make_node("Conv", ["r1", "w2"], ["c2"], pads=[1, 1, 1, 1], strides=[2, 2]),
        helper.make_node("Relu", ["c2"], ["r2"]),
        helper.make_node("Conv", ["r2", "w3"], ["c3"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c3"], ["r3"]),
        helper.make_node("Conv", ["r3", "w4"], ["c4"]),
        helper.make_node("DepthToSpace", ["c4"], ["up"], blocksize=2, mode="CRD"),
        helper.make_node("Sigmoid", ["up"], ["maps"]),
    ]
    graph = helper.make_graph(
        nodes,
        "ocr_detector",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [dims[0], 3, dims[1], dims[2]])],
        [helper.make_tensor_value_info("maps", TensorProto.FLOAT, [dims[0], 1, dims[1], dims[2]])],
    )
    return _save(graph, Path(path))


def ocr_recognizer(path: str | Path, classes: int = 37, seed: int = 1) -> Path:
    """x[N, 3, 48, W] -> probs[N, W/4, classes]; Constant weights; the blank class (0) has a
    bias far above the others, as trained CTC heads do."""
    rng = np.random.default_rng(seed)
    head = (rng.standard_normal((32, classes)) * 0.5).astype(np.float32)
    bias = np.zeros(classes, np.float32)
    bias[0] = 3.9  # about half the positions are blank, as in a line of text
    head[:, 0] *= 0.01
    nodes = [
        _constant("w1", _conv_weights(rng, 16, 3, 3)),
        _constant("w2", _conv_weights(rng, 32, 16, 3)),
        _constant("head", head),
        _constant("bias", bias),
        helper.make_node("Conv", ["x", "w1"], ["c1"], pads=[1, 1, 1, 1], strides=[2, 2]),
        helper.make_node("Relu", ["c1"], ["r1"]),
        helper.make_node("Conv", ["r1", "w2"], ["c2"], pads=[1, 1, 1, 1], strides=[2, 2]),
        helper.make_node("Relu", ["c2"], ["r2"]),
        helper.make_node("ReduceMean", ["r2"], ["pooled"], axes=[2], keepdims=0),
        helper.make_node("Transpose", ["pooled"], ["seq"], perm=[0, 2, 1]),
        helper.make_node("MatMul", ["seq", "head"], ["mm"]),
        helper.make_node("Add", ["mm", "bias"], ["logits"]),
        helper.make_node("Softmax", ["logits"], ["probs"], axis=-1),
    ]
    graph = helper.make_graph(
        nodes,
        "ocr_recognizer",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3, 48, "width"])],
        [helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["batch", "steps", classes])],
    )
    return _save(graph, Path(path))


def question_classifier(path: str | Path, classes: int = 10, seed: int = 2) -> Path:
    """input[-1, 3, ?, ?] -> logits[-1, classes]: H and W share the placeholder name '?'."""
    rng = np.random.default_rng(seed)
    inits = [
        numpy_helper.from_array(_conv_weights(rng, 16, 3, 3), "w1"),
        numpy_helper.from_array(_conv_weights(rng, 32, 16, 3), "w2"),
        numpy_helper.from_array(rng.standard_normal((32, classes)).astype(np.float32), "fc"),
        numpy_helper.from_array(rng.standard_normal(classes).astype(np.float32), "fc_b"),
    ]
    nodes = [
        helper.make_node("Conv", ["input", "w1"], ["c1"], pads=[1, 1, 1, 1], strides=[2, 2]),
        helper.make_node("Relu", ["c1"], ["r1"]),
        helper.make_node("Conv", ["r1", "w2"], ["c2"], pads=[1, 1, 1, 1], strides=[2, 2]),
        helper.make_node("Relu", ["c2"], ["r2"]),
        helper.make_node("GlobalAveragePool", ["r2"], ["gap"]),
        helper.make_node("Flatten", ["gap"], ["flat"], axis=1),
        helper.make_node("Gemm", ["flat", "fc", "fc_b"], ["logits"]),
    ]
    graph = helper.make_graph(
        nodes,
        "question_classifier",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [-1, 3, "?", "?"])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [-1, classes])],
        inits,
    )
    return _save(graph, Path(path))


def _vad_branch(name: str, rng: np.random.Generator, frames: int, width: int) -> onnx.GraphProto:
    """One sample rate's network: chunk [N, frames*width] -> frames x width -> projection,
    recurrent state update with the outer `state` [2, N, S], speech probability."""
    s = VAD_STATE
    proj = (rng.standard_normal((width, s)) / np.sqrt(width)).astype(np.float32)
    rec = (rng.standard_normal((s, s)) / np.sqrt(s)).astype(np.float32)
    out = (rng.standard_normal((s, 1)) / np.sqrt(s)).astype(np.float32)
    p = f"{name}_"
    nodes = [
        _constant(p + "shape", np.array([0, frames, width], np.int64)),
        _constant(p + "proj", proj),
        _constant(p + "rec", rec),
        _constant(p + "out", out),
        helper.make_node("Reshape", ["input", p + "shape"], [p + "frames"], name=p + "reshape"),
        helper.make_node("MatMul", [p + "frames", p + "proj"], [p + "x"], name=p + "project"),
        helper.make_node("ReduceMean", [p + "x"], [p + "xm"], axes=[1], keepdims=0),
        helper.make_node("Split", ["state"], [p + "h0", p + "c0"], axis=0),
        helper.make_node("Squeeze", [p + "h0", p + "zero"], [p + "h"]),
        helper.make_node("MatMul", [p + "h", p + "rec"], [p + "hr"], name=p + "recur"),
        helper.make_node("Add", [p + "hr", p + "xm"], [p + "pre"]),
        helper.make_node("Tanh", [p + "pre"], [p + "h1"]),
        helper.make_node("Unsqueeze", [p + "h1", p + "zero"], [p + "h1u"]),
        helper.make_node("Concat", [p + "h1u", p + "c0"], [p + "stateN"], axis=0),
        helper.make_node("MatMul", [p + "h1", p + "out"], [p + "logit"], name=p + "classify"),
        helper.make_node("Sigmoid", [p + "logit"], [p + "output"]),
    ]
    nodes.insert(0, _constant(p + "zero", np.array([0], np.int64)))
    return helper.make_graph(
        nodes,
        name,
        [],
        [
            helper.make_tensor_value_info(p + "output", TensorProto.FLOAT, None),
            helper.make_tensor_value_info(p + "stateN", TensorProto.FLOAT, None),
        ],
    )


def streaming_vad(path: str | Path, seed: int = 3) -> Path:
    """input[N, 512] float, state[2, N, 64] float, sr int64 (rank 0) -> output[N, 1],
    stateN[2, N, 64]; everything runs inside If(sr == 16000)."""
    rng = np.random.default_rng(seed)
    nodes = [
        _constant("sr16k", np.array(16000, np.int64)),
        helper.make_node("Equal", ["sr", "sr16k"], ["is16k"]),
        helper.make_node(
            "If",
            ["is16k"],
            ["output", "stateN"],
            name="by_rate",
            then_branch=_vad_branch("rate16k", rng, frames=4, width=128),
            else_branch=_vad_branch("rate8k", rng, frames=2, width=128),
        ),
    ]
    graph = helper.make_graph(
        nodes,
        "streaming_vad",
        [
            helper.make_tensor_value_info("input", TensorProto.FLOAT, [None, None]),
            helper.make_tensor_value_info("state", TensorProto.FLOAT, [2, None, VAD_STATE]),
            helper.make_tensor_value_info("sr", TensorProto.INT64, []),
        ],
        [
            helper.make_tensor_value_info("output", TensorProto.FLOAT, [None, 1]),
            helper.make_tensor_value_info("stateN", TensorProto.FLOAT, [2, None, VAD_STATE]),
        ],
    )
    return _save(graph, Path(path))


BUILDERS: dict[str, Callable[[Path], Path]] = {
    "ocr_detector": ocr_detector,
    "ocr_recognizer": ocr_recognizer,
    "question_classifier": question_classifier,
    "streaming_vad": streaming_vad,
}


# The inputs each model is really used with, as `edgepack pack --input` takes them.
EXAMPLE_INPUTS = {
    "ocr_detector": ["x=1x3x480x640:0..1"],
    "ocr_recognizer": ["x=1x3x48x320:0..1"],
    "question_classifier": ["input=1x3x48x192:0..1"],
    "streaming_vad": [f"input=1x{VAD_CHUNK}", f"state=2x1x{VAD_STATE}:zeros", "sr=16000"],
}


def write_all(folder: str | Path) -> dict[str, Path]:
    """Every model above as FOLDER/<name>.onnx, and FOLDER/inputs.json of EXAMPLE_INPUTS."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "inputs.json").write_text(json.dumps(EXAMPLE_INPUTS, indent=1))
    return {name: build(folder / f"{name}.onnx") for name, build in BUILDERS.items()}


if __name__ == "__main__":
    for name, path in write_all(sys.argv[1] if len(sys.argv) > 1 else "real_models").items():
        print(f"{name}: {path}")
