"""Issue 13 item 6: int8 that is checked before it is trusted, on the models people ship:
Constant-node weights, graphs that sit in If branches, convolution-heavy graphs, collapsing
outputs, and calibration data with a scalar input and a state batched on axis 1."""

from __future__ import annotations

import json

import numpy as np
import pytest

from edgepack.cli.main import main
from edgepack.runtime import read_manifest

from ..conftest import require

require("onnx")
from edgepack.compress.calibration import calibration_feeds  # noqa: E402
from edgepack.compress.data import ArrayDataset, load_npz  # noqa: E402
from edgepack.compress.errors import QuantizationError  # noqa: E402
from edgepack.compress.evaluate import open_model  # noqa: E402
from edgepack.compress.quantize import (  # noqa: E402
    Budget,
    DynamicOptions,
    StaticOptions,
    op_counts,
    quantize,
    suggest_method,
)
from edgepack.runtime.errors import InputError  # noqa: E402

from . import models  # noqa: E402

NO_SPEED = Budget(min_speedup=None)


def _vad_example(batch: int = 4) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {
        "input": rng.standard_normal((batch, 512)).astype(np.float32),
        "state": np.zeros((2, batch, models.VAD_STATE), np.float32),
        "sr": np.array(16000, np.int64),
    }


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    return models.write_all(tmp_path_factory.mktemp("quantize-models"))


def test_constant_node_weights_are_folded_so_dynamic_int8_works(files, tmp_path):
    example = {"x": np.random.default_rng(0).standard_normal((1, 3, 48, 64)).astype(np.float32)}
    report = quantize(
        files["ocr_detector"], tmp_path / "q.onnx", DynamicOptions(),
        example_inputs=example, budget=NO_SPEED, progress=False,
    )  # fmt: skip
    (candidate,) = report.candidates
    assert "5 Constant-node weights folded into initializers" in candidate.notes
    assert candidate.quantized_ops and op_counts(tmp_path / "q.onnx")["ConvInteger"] == 4
    # checked against fp32 although there is no evaluation data, and timed
    assert candidate.check["on"] == "the example inputs" and candidate.check["cosine"] > 99
    assert candidate.p50_ms is not None and candidate.speed_kind == "measured"


def test_the_speed_rule_applies_without_evaluation_data(files, tmp_path):
    example = {"x": np.random.default_rng(0).standard_normal((1, 3, 96, 128)).astype(np.float32)}
    try:
        report = quantize(
            files["ocr_detector"], tmp_path / "q.onnx", DynamicOptions(),
            example_inputs=example, progress=False,
        )  # fmt: skip
    except QuantizationError as exc:  # dynamic int8 convolutions: usually slower than fp32
        assert "slower than fp32 on this machine" in str(exc)
        assert not (tmp_path / "q.onnx").exists()
    else:
        assert report.candidates[0].speedup >= 1.0


def test_if_branches_are_quantized_by_dynamic_and_static_says_nothing_to_quantize(files, tmp_path):
    report = quantize(
        files["streaming_vad"], tmp_path / "d.onnx", DynamicOptions(),
        example_inputs=_vad_example(), budget=NO_SPEED, progress=False,
    )  # fmt: skip
    assert op_counts(tmp_path / "d.onnx")["MatMulInteger"] == 6  # 3 per branch
    assert report.candidates[0].check["cosine"] > 99
    with pytest.raises(QuantizationError, match="nothing to quantize.*inside If/Loop/Scan"):
        quantize(
            files["streaming_vad"], tmp_path / "s.onnx", StaticOptions(),
            example_inputs=_vad_example(), budget=NO_SPEED, progress=False,
        )  # fmt: skip
    assert not (tmp_path / "s.onnx").exists()


def test_a_collapsed_int8_model_is_refused(files, tmp_path):
    # One corrupted image in the calibration set stretches the input's int8 range 10000-fold:
    # every ordinary pixel rounds to zero and the recognizer's output collapses.
    x = np.random.default_rng(0).standard_normal((8, 3, 48, 64)).astype(np.float32)
    x[0] *= 1e4
    with pytest.raises(QuantizationError, match="REFUSED: int8 output collapsed") as caught:
        quantize(
            files["ocr_recognizer"], tmp_path / "q.onnx", StaticOptions(),
            calib={"x": x}, budget=NO_SPEED, progress=False,
        )  # fmt: skip
    (candidate,) = caught.value.report.candidates
    assert candidate.check["on"] == "8 calibration samples" and candidate.check["cosine"] < 90
    clean = quantize(
        files["ocr_recognizer"], tmp_path / "q.onnx", StaticOptions(),
        calib={"x": x[1:]}, budget=NO_SPEED, progress=False,
    )  # fmt: skip
    assert clean.candidates[0].within_budget is not False


def test_the_method_follows_the_op_mix(files):
    assert suggest_method(files["ocr_detector"])[0] == "static"
    method, reason = suggest_method(files["streaming_vad"])
    assert method == "dynamic" and "MatMul-heavy (6 MatMul/Gemm vs 0 Conv" in reason


def test_calibration_takes_a_scalar_and_a_state_batched_on_axis_1(files, tmp_path):
    path = tmp_path / "calib.npz"
    rng = np.random.default_rng(0)
    np.savez(
        path,
        input=rng.standard_normal((10, 512)).astype(np.float32),
        state=rng.standard_normal((2, 10, 64)).astype(np.float32),
        sr=np.array(16000),
        _sample_axes=np.array(json.dumps({"state": 1})),
    )
    data = load_npz(path)
    assert len(data) == 10 and data.sample_axes == {"input": 0, "state": 1, "sr": None}
    specs = open_model(files["streaming_vad"]).entry.inputs
    feeds = calibration_feeds(data, specs, batch_size=4)
    assert [f["state"].shape for f in feeds] == [(2, 4, 64), (2, 4, 64), (2, 2, 64)]
    assert all(f["sr"].shape == () for f in feeds)
    picked = data.subset([1, 3])
    np.testing.assert_array_equal(picked.inputs["state"], data.inputs["state"][:, [1, 3]])
    with pytest.raises(InputError, match="sample axis 3 is not one of its axes"):
        ArrayDataset({"x": np.zeros((2, 3))}, sample_axes={"x": 3})


def test_quantize_cli_checks_keeps_its_table_when_quiet_and_reads_the_task(files, tmp_path, capsys):
    out = tmp_path / "vad.edgepack"
    argv = ["quantize", str(files["streaming_vad"]), "-o", str(out), "--quiet"]
    argv += ["--input", "sr=16000", "--input", "input=1x512", "--input", "state=2x1x64:zeros"]
    assert main([*argv, "--min-speedup", "0"]) == 0
    captured = capsys.readouterr()
    assert "method: dynamic: the graph is MatMul-heavy" in captured.err
    assert "checked against fp32 on the example inputs" in captured.out
    assert captured.out.splitlines()[1].startswith("model ")  # the table, under --quiet
    manifest = read_manifest(out)
    assert manifest.models[0].precision == "int8-dynamic"
    assert manifest.metrics["quantize"]["check_cosine"] > 99


def test_the_task_of_a_hugging_face_folder_comes_from_its_config(tmp_path, capsys):
    from edgepack.cli.quantize_command import _task_from_config

    for architecture, task in (
        ("BertForSequenceClassification", "text-classification"),
        ("ViTForImageClassification", "image-classification"),
    ):
        (tmp_path / "config.json").write_text(json.dumps({"architectures": [architecture]}))
        assert _task_from_config(tmp_path) == task
    (tmp_path / "config.json").write_text(json.dumps({"architectures": ["BertForMaskedLM"]}))
    with pytest.raises(InputError, match="pass --task"):
        _task_from_config(tmp_path)


def test_the_search_continues_by_op_type_and_block_up_to_its_cap(files):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((16, 3, 48, 64)).astype(np.float32)
    calib = x.copy()
    calib[0] *= 1e4  # a corrupted calibration image: all-int8 collapses
    budget = Budget(
        max_drop=0.0, metric="cosine", max_float_nodes=1, max_probes=1, max_group_steps=2,
        min_speedup=None, sensitivity_samples=8,
    )  # fmt: skip
    with pytest.raises(QuantizationError) as caught:
        quantize(
            files["ocr_recognizer"], files["ocr_recognizer"].with_suffix(".q.onnx"),
            StaticOptions(), calib={"x": calib}, eval_data={"x": x}, budget=budget,
            progress=False,
        )  # fmt: skip
    (candidate,) = caught.value.report.candidates
    steps = [p["step"] for p in candidate.frontier]
    assert steps[0] == "all int8" and len(steps) == 1 + 1 + 2  # all int8, 1 node, 2 groups
    assert steps[2].startswith("+ all ") and [
        p["float_nodes"] for p in candidate.frontier
    ] == sorted(p["float_nodes"] for p in candidate.frontier)
    assert any("did not reach the budget" in n and "cap of 2" in n for n in candidate.notes)
    table = caught.value.report.table()
    assert "static frontier (float nodes, cosine, size, p50):" in table
