"""TFLite export: a digits CNN and a tiny BERT in fp32, dynamic and full int8, run in LiteRT."""

from __future__ import annotations

import tempfile

import numpy as np
import pytest

from edgepack.runtime import InputError
from tests.conftest import require, tiny_bert_classifier

# Argmax agreement with the fp32 torch module on held-out inputs, run in a bare LiteRT
# interpreter. Measured on these fixtures (litert-torch 0.10, ai-edge-quantizer 0.10): digits
# CNN on 397 held-out images: dynamic 99.5%, full 99.2% (PT2E alone 99.5%); tiny random BERT on
# 64 held-out inputs: dynamic 100%, full 98.4%. Random BERT logits differ by ~0.01 between the
# two classes, so one flip costs 1.6% of 64: the floors leave room for a few flips and still
# catch a wrong scale or zero point, which pushes agreement towards chance.
CNN_FLOOR = {"none": 100.0, "dynamic": 97.0, "full": 97.0}
BERT_FLOOR = {"none": 100.0, "dynamic": 95.0, "full": 90.0}
# fp32 files match torch to float rounding (measured: CNN 5e-6 on logits up to ~20, BERT 1e-8).
FP32_MAX_DIFF = 1e-4


@pytest.fixture(scope="module")
def export_tflite():
    require("litert_torch")
    require("ai_edge_quantizer")
    return require("edgepack.compress.export_tflite").export_tflite


@pytest.fixture(scope="module")
def digits_cnn():
    """A CNN trained for a few seconds on sklearn digits, calibration images, held-out images."""
    torch = require("torch")
    datasets = require("sklearn.datasets")
    digits = datasets.load_digits()
    images = digits.images[:, None].astype(np.float32)  # N x 1 x 8 x 8, values 0..16
    labels = torch.tensor(digits.target)
    torch.manual_seed(0)
    module = torch.nn.Sequential(
        torch.nn.Conv2d(1, 8, 3, padding=1),
        torch.nn.ReLU(),
        torch.nn.MaxPool2d(2),
        torch.nn.Conv2d(8, 16, 3, padding=1),
        torch.nn.ReLU(),
        torch.nn.MaxPool2d(2),
        torch.nn.Flatten(),
        torch.nn.Linear(64, 10),
    )
    optimizer = torch.optim.Adam(module.parameters(), lr=1e-2)
    x = torch.from_numpy(images)
    for _ in range(5):
        for i in range(0, 1400, 64):
            optimizer.zero_grad()
            loss = torch.nn.functional.cross_entropy(module(x[i : i + 64]), labels[i : i + 64])
            loss.backward()
            optimizer.step()
    module.eval()
    calibration = [{"pixels": images[i : i + 1]} for i in range(0, 1400, 11)]  # 128 images
    held_out = [{"pixels": images[i : i + 1]} for i in range(1400, len(images))]
    return module, {"pixels": x[:1]}, calibration, held_out


@pytest.fixture(scope="module")
def tiny_bert():
    """A randomly initialised BERT classifier and padded token batches of varying length."""
    torch = require("torch")
    module = tiny_bert_classifier()
    rng = np.random.default_rng(0)

    def sample() -> dict[str, np.ndarray]:
        length = int(rng.integers(4, 17))
        ids = np.zeros((1, 16), np.int64)
        ids[0, :length] = rng.integers(1, 100, length)
        return {
            "input_ids": ids,
            "attention_mask": (ids != 0).astype(np.int64),
            "token_type_ids": np.zeros((1, 16), np.int64),
        }

    example = {k: torch.from_numpy(v) for k, v in sample().items()}
    return module, example, [sample() for _ in range(64)], [sample() for _ in range(64)]


def run_litert(export, samples: list[dict[str, np.ndarray]]) -> list[dict[str, np.ndarray]]:
    """Run the file in a bare LiteRT interpreter, using only what the export record says."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(export.path))
    interpreter.allocate_tensors()
    inputs = {d["name"]: d for d in interpreter.get_input_details()}
    outputs = {d["name"]: d for d in interpreter.get_output_details()}
    results = []
    for sample in samples:
        for spec in export.inputs:
            detail, value = inputs[spec.file_name], sample[spec.name]
            if spec.quantization is not None:
                q = spec.quantization
                value = np.clip(np.round(value / q.scale) + q.zero_point, -128, 127)
            interpreter.set_tensor(detail["index"], value.astype(detail["dtype"]))
        interpreter.invoke()
        result = {}
        for spec in export.outputs:
            value = interpreter.get_tensor(outputs[spec.file_name]["index"])
            if spec.quantization is not None:
                q = spec.quantization
                value = (value.astype(np.float32) - q.zero_point) * q.scale
            result[spec.name] = value
        results.append(result)
    return results


def run_torch(module, samples: list[dict[str, np.ndarray]], by_keyword: bool) -> list[np.ndarray]:
    torch = require("torch")
    results = []
    with torch.no_grad():
        for sample in samples:
            tensors = {k: torch.from_numpy(v) for k, v in sample.items()}
            if by_keyword:
                results.append(module(**tensors).logits.numpy())
            else:
                results.append(module(*tensors.values()).numpy())
    return results


def agreement(got: list[np.ndarray], expected: list[np.ndarray]) -> float:
    """Percent of samples whose argmax matches, as compress reports it."""
    pairs = zip(got, expected, strict=True)
    return 100.0 * float(np.mean([(g.argmax(-1) == e.argmax(-1)).all() for g, e in pairs]))


def max_diff(got: list[np.ndarray], expected: list[np.ndarray]) -> float:
    return max(float(np.abs(g - e).max()) for g, e in zip(got, expected, strict=True))


@pytest.mark.parametrize("quantization", ["none", "dynamic", "full"])
def test_digits_cnn_runs_in_litert_like_torch(export_tflite, digits_cnn, tmp_path, quantization):
    module, example, calibration, held_out = digits_cnn
    path = tmp_path / "digits.tflite"
    reference = run_torch(module, held_out, by_keyword=False)

    export = export_tflite(module, example, path, quantization, calibration)

    assert all(  # quantizing went through copies: the module itself is unchanged
        np.array_equal(a, b)
        for a, b in zip(run_torch(module, held_out, by_keyword=False), reference, strict=True)
    )
    assert [p.name for p in tmp_path.iterdir()] == ["digits.tflite"]  # no work files left here
    assert export.size_bytes == path.stat().st_size
    assert export.input_names == {"serving_default_args_0": "pixels"}
    assert list(export.output_names.values()) == ["logits"]
    [pixels] = export.inputs
    assert pixels.shape == [1, 1, 8, 8]  # NCHW, as in torch
    logits = [r["logits"] for r in run_litert(export, held_out)]
    assert agreement(logits, reference) >= CNN_FLOOR[quantization]
    assert export.check["samples"] == len(calibration)
    if quantization == "none":
        assert (export.precision, pixels.dtype, pixels.quantization) == ("fp32", "float32", None)
        assert max_diff(logits, reference) < FP32_MAX_DIFF
        assert export.check["max_abs_diff"] < FP32_MAX_DIFF
    elif quantization == "dynamic":
        assert export.precision == "int8-dynamic"
        assert (pixels.dtype, pixels.quantization) == ("float32", None)
    else:
        assert export.precision == "int8-full"
        assert pixels.dtype == "int8" and pixels.quantization.scale > 0
        assert export.outputs[0].dtype == "int8" and export.outputs[0].quantization is not None
        # Both methods were tried and measured; the kept one has the best agreement.
        assert set(export.full_int8_agreement) == {"pt2e", "quantizer"}
        best = max(export.full_int8_agreement.values())
        assert export.full_int8_agreement[export.full_int8_method] == best
        assert export.check["argmax_agreement"] == best


@pytest.mark.parametrize(
    "quantization", ["none", "dynamic", pytest.param("full", marks=pytest.mark.slow)]
)
def test_tiny_bert_runs_in_litert_like_torch(export_tflite, tiny_bert, tmp_path, quantization):
    module, example, calibration, held_out = tiny_bert
    path = tmp_path / "bert.tflite"

    export = export_tflite(module, example, path, quantization, calibration)

    # Positional inputs in the order given, named back to the logical names.
    assert export.input_names == {
        "serving_default_args_0": "input_ids",
        "serving_default_args_1": "attention_mask",
        "serving_default_args_2": "token_type_ids",
    }
    assert list(export.output_names.values()) == ["logits"]  # ModelOutput(logits=...) flattened
    assert {t.dtype for t in export.inputs} == {"int32"}  # int64 is narrowed
    assert all(t.quantization is None for t in export.inputs)  # token ids stay integers
    logits = [r["logits"] for r in run_litert(export, held_out)]
    reference = run_torch(module, held_out, by_keyword=True)
    assert agreement(logits, reference) >= BERT_FLOOR[quantization]
    if quantization == "none":
        assert max_diff(logits, reference) < FP32_MAX_DIFF
    if quantization == "full":
        assert export.outputs[0].dtype == "int8"
        assert export.full_int8_method in export.full_int8_agreement


@pytest.mark.parametrize("quantization", ["none", "full"])
def test_an_op_litert_cannot_lower_is_named_with_its_module(
    export_tflite, tmp_path, monkeypatch, quantization
):
    torch = require("torch")
    from edgepack.compress.errors import ExportError

    class RunningProduct(torch.nn.Module):
        def forward(self, x):
            return torch.cumprod(x, dim=1)

    module = torch.nn.Sequential(torch.nn.Linear(8, 8), RunningProduct())
    path = tmp_path / "out" / "model.tflite"
    path.parent.mkdir()
    path.write_bytes(b"previous export")
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(work))

    with pytest.raises(ExportError) as info:
        data = [{"x": np.ones((1, 8), np.float32)}]
        export_tflite(module, {"x": torch.zeros(1, 8)}, path, quantization, data)

    message = str(info.value)
    assert "aten.cumprod" in message
    assert "module '1' (RunningProduct)" in message
    assert path.read_bytes() == b"previous export"  # untouched, and no partial file beside it
    assert [p.name for p in path.parent.iterdir()] == ["model.tflite"]
    assert list(work.iterdir()) == []  # work files cleaned up


def test_auto_falls_back_when_pt2e_cannot_quantize(export_tflite, tmp_path, monkeypatch):
    # PT2E's prepare step really does fail on some modules (an nn.MaxPool2d used twice fails
    # at random, with the hash seed); a stand-in failure makes the test deterministic.
    torch = require("torch")
    quantize_pt2e = require("torchao.quantization.pt2e.quantize_pt2e")
    from edgepack.compress.errors import QuantizationError

    def prepare_fails(*args, **kwargs):
        raise AssertionError("please make sure only refer to edge or node that has observer")

    monkeypatch.setattr(quantize_pt2e, "prepare_pt2e", prepare_fails)
    torch.manual_seed(0)
    module = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3))
    rng = np.random.default_rng(0)
    data = [{"x": rng.random((1, 4), dtype=np.float32)} for _ in range(16)]
    example = {"x": torch.zeros(1, 4)}

    with pytest.raises(QuantizationError, match="PT2E static quantization failed"):
        export_tflite(module, example, tmp_path / "a.tflite", "full", data, "pt2e")
    assert list(tmp_path.iterdir()) == []

    export = export_tflite(module, example, tmp_path / "b.tflite", "full", data)
    assert export.full_int8_method == "quantizer"
    assert set(export.full_int8_agreement) == {"quantizer"}
    assert "observer" in export.full_int8_errors["pt2e"]


def test_bad_requests_fail_before_converting(export_tflite, tmp_path):
    torch = require("torch")
    module = torch.nn.Linear(4, 2)
    example = {"x": torch.zeros(1, 4)}
    with pytest.raises(InputError, match="representative_data"):
        export_tflite(module, example, tmp_path / "m.tflite", "full")
    with pytest.raises(InputError, match="static shapes"):
        export_tflite(module, example, tmp_path / "m.tflite", "full", [{"x": np.zeros((2, 4))}])
    with pytest.raises(InputError, match="expected"):
        export_tflite(module, example, tmp_path / "m.tflite", "full", [{"y": np.zeros((1, 4))}])
    with pytest.raises(InputError, match="quantization"):
        export_tflite(module, example, tmp_path / "m.tflite", "int4")
    assert list(tmp_path.iterdir()) == []
