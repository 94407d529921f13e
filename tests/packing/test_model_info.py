"""Describing model files without onnx/TF: opset, TFLite schema, precision, tensor specs."""

from __future__ import annotations

import pytest

from edgepack.packing import describe_model_file, tflite_schema_version
from edgepack.runtime import EdgepackError
from tests.conftest import require


def test_onnx_description_matches_the_onnx_package(classifier):
    onnx = require("onnx")
    entry = describe_model_file(classifier[0])
    model = onnx.load(str(classifier[0]))
    assert entry.opset == model.opset_import[0].version == 17
    assert entry.format == "onnx" and entry.backends == ["onnxruntime"]
    assert entry.precision == "fp32"
    assert [(t.name, t.dtype, t.shape) for t in entry.inputs] == [("x", "float32", ["batch", 4])]
    assert [(t.name, t.shape) for t in entry.outputs] == [("logits", ["batch", 3])]


def test_quantized_onnx_is_recognised(tmp_path, classifier):
    quantization = require("onnxruntime.quantization")
    quantization.quantize_dynamic(str(classifier[0]), str(tmp_path / "q.onnx"))
    assert describe_model_file(tmp_path / "q.onnx").precision == "int8-dynamic"
    assert describe_model_file(tmp_path / "q.onnx", precision="mixed").precision == "mixed"


def test_tflite_description(classifier_tflite):
    entry = describe_model_file(classifier_tflite[0], names={"serving_default_args_0": "x"})
    assert entry.format == "tflite" and entry.backends == ["litert"]
    assert entry.tflite_schema == 3
    assert entry.precision == "fp32"
    first = entry.inputs[0]
    assert (first.name, first.tensor_name, first.shape) == ("x", "serving_default_args_0", [1, 4])


def test_non_model_files_are_rejected(tmp_path):
    (tmp_path / "m.pt").write_bytes(b"x")
    with pytest.raises(EdgepackError, match=r"expected a \.onnx or \.tflite file"):
        describe_model_file(tmp_path / "m.pt")
    with pytest.raises(EdgepackError, match="TFL3"):
        tflite_schema_version(b"\0" * 16)
