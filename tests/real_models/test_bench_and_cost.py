"""Issue 13 on the device side and in cost counting: the models of tests/real_models/models.py
benchmarked on the inputs users give (shapes, values, real arrays, fed-back state), and costed
with their control flow and dynamic dims."""

from __future__ import annotations

import math

import numpy as np
import pytest

from edgepack.benchmarks.errors import BenchmarkError
from edgepack.benchmarks.estimate import estimate_latency
from edgepack.benchmarks.harness import _feedback, _streamer, benchmark
from edgepack.benchmarks.inputs import InputSpec, parse_input_spec
from edgepack.cli.main import main
from edgepack.device_profiles import load_profile
from edgepack.packing import assemble_pack
from edgepack.runtime import load

from ..conftest import require

onnx = require("onnx")
from edgepack.compress.cost import CostError, cost_or_none, cost_summary  # noqa: E402

from . import models  # noqa: E402

FAST = ["--min-count", "20", "--min-duration", "0", "--warmup", "1", "--cold-starts", "0"]
VAD_INPUTS = ["--input", "sr=16000", "--input", "input=1x512", "--input", "state=2x1x64:zeros"]


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("real-models")
    files = models.write_all(root / "onnx")
    packs = {}
    for name, path in files.items():
        assemble_pack(root / name, [path], name=name.replace("_", "-"))
        packs[name] = root / name
    return files, packs


def test_input_specs_read_shapes_values_and_ranges():
    assert parse_input_spec("sr=16000") == ("sr", InputSpec(None, 16000.0))
    assert parse_input_spec("state=2x1x64:zeros") == ("state", InputSpec((2, 1, 64), "zeros"))
    assert parse_input_spec("ids=1x128:0..30522")[1].values == (0.0, 30522.0)
    assert parse_input_spec("tokens=512x")[1].shape == (512,)
    assert parse_input_spec("scale=scalar:0.5")[1] == InputSpec((), 0.5)
    for bad in ("sr", "=3", "x=1x3:purple", "x=5..1"):
        with pytest.raises(BenchmarkError, match="--input"):
            parse_input_spec(bad)


def test_bench_times_the_inputs_given_and_prints_them(built, capsys):
    _, packs = built
    argv = ["bench", str(packs["ocr_detector"]), *FAST, "--input", "x=1x3x96x128:0..1"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert any(
        line.startswith("inputs") and line.endswith("x 1x3x96x128 uniform 0..1")
        for line in out.splitlines()
    )


def test_bench_refuses_unknown_input_and_dim_names(built, capsys):
    _, packs = built
    pack = str(packs["ocr_detector"])
    assert main(["bench", pack, *FAST, "--input", "image=1x3x8x8"]) == 1
    assert "has no input(s) ['image']; it has ['x']" in capsys.readouterr().err
    assert main(["bench", pack, *FAST, "--dim", "height=480"]) == 1
    assert "--dim height: no input has a dimension of that name" in capsys.readouterr().err


def test_a_model_failing_on_its_inputs_is_one_clean_error(built, capsys):
    _, packs = built
    # random values give the sample rate something like 87: the 8 kHz branch fails
    assert main(["bench", str(packs["streaming_vad"]), *FAST]) == 1
    err = capsys.readouterr().err
    # one clean line: the backend's run error, naming what was fed
    assert len(err.strip().splitlines()) == 1 and "could not run the model on " in err
    assert "input float32[1, 64], state float32[2, 64, 64], sr int64[]" in err
    assert "Traceback" not in err


def test_stream_feeds_the_state_back_like_a_bare_loop(built):
    files, packs = built
    model = load(packs["streaming_vad"], threads=1)
    pairs = _feedback(model, {})
    assert pairs == {"state": "stateN"}
    chunk = np.random.default_rng(0).standard_normal((1, 512)).astype(np.float32)
    state = {"input": chunk, "state": np.zeros((2, 1, 64), np.float32), "sr": np.array(16000)}
    call = _streamer(model, state, pairs)
    for _ in range(5):
        call()
    import onnxruntime as ort

    session = ort.InferenceSession(str(files["streaming_vad"]))
    bare = np.zeros((2, 1, 64), np.float32)
    for _ in range(5):
        _, bare = session.run(None, {"input": chunk, "state": bare, "sr": np.array(16000)})
    np.testing.assert_allclose(state["state"], bare, rtol=1e-6)
    assert np.abs(bare).max() > 0  # the state moved


def test_stream_scenario_reports_per_chunk_latency_and_real_time_factor(built, capsys):
    _, packs = built
    assert main(["bench", str(packs["streaming_vad"]), "--stream", *FAST, *VAD_INPUTS]) == 0
    out = capsys.readouterr().out
    assert "p90 per-chunk latency" in out
    assert "of a 32 ms chunk (512 samples of input at sr=16000); feeds state <- stateN" in out
    result = benchmark(
        packs["streaming_vad"],
        scenario="stream",
        min_count=20,
        min_duration_s=0,
        cold_starts=0,
        inputs={"sr": "16000", "input": "1x512", "state": "2x1x64:zeros"},
    )
    rtf = result.details["real_time_factor"]
    assert rtf["p50"] == pytest.approx(result.latency["percentiles_s"]["p50"] / 0.032)


def test_bench_takes_real_arrays_from_an_npz(built, tmp_path, capsys):
    _, packs = built
    arrays = tmp_path / "samples.npz"
    np.savez(arrays, input=np.ones((3, 1, 512), np.float32), sr=np.array(16000))
    argv = ["bench", str(packs["streaming_vad"]), *FAST, "--inputs", str(arrays)]
    assert main([*argv, "--input", "state=2x1x64:zeros"]) == 0
    assert "input 1x512 given array; state 2x1x64 zeros; sr scalar given array" in (
        capsys.readouterr().out
    )


def test_cold_start_runs_on_the_same_inputs(built):
    _, packs = built
    result = benchmark(
        packs["streaming_vad"],
        min_count=5,
        min_duration_s=0,
        cold_starts=1,
        inputs={"sr": "16000", "input": "1x512", "state": "2x1x64:zeros"},
    )
    assert result.cold_start["first_run_s"] > 0


def test_cost_counts_the_larger_if_branch_and_says_so(built):
    files, _ = built
    shapes = {"input": [1, 512], "state": [2, 1, 64]}
    cost = cost_summary(files["streaming_vad"], input_shapes=shapes)
    gemm = [op for op in cost["ops"] if op["op_class"] == "gemm"]  # one row per size range
    # three MatMuls of the 16 kHz branch: 4x128 @ 128x64, 64x64, 64x1
    assert sum(op["count"] for op in gemm) == 3
    assert sum(op["flops"] for op in gemm) == 2 * (4 * 128 * 64 + 64 * 64 + 64)
    assert cost["parameters"] > 0 and "complete" not in cost  # nothing unsized
    assert any("counted then_branch, the larger branch" in n for n in cost["notes"])


def test_a_loop_body_counts_its_trip_count_or_marks_the_cost_incomplete(tmp_path):
    from onnx import TensorProto, helper, numpy_helper

    body = helper.make_graph(
        [
            helper.make_node("MatMul", ["h", "w"], ["h2"]),
            helper.make_node("Identity", ["c"], ["c2"]),
        ],
        "body",
        [
            helper.make_tensor_value_info("i", TensorProto.INT64, []),
            helper.make_tensor_value_info("c", TensorProto.BOOL, []),
            helper.make_tensor_value_info("h", TensorProto.FLOAT, [1, 8]),
        ],
        [
            helper.make_tensor_value_info("c2", TensorProto.BOOL, []),
            helper.make_tensor_value_info("h2", TensorProto.FLOAT, [1, 8]),
        ],
    )

    def loop_model(trips_given: bool) -> onnx.ModelProto:
        inits = [
            numpy_helper.from_array(np.eye(8, dtype=np.float32), "w"),
            numpy_helper.from_array(np.array(True), "cond"),
        ]
        inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8])]
        if trips_given:
            inits.append(numpy_helper.from_array(np.array(5, np.int64), "trips"))
        else:
            inputs.append(helper.make_tensor_value_info("trips", TensorProto.INT64, []))
        graph = helper.make_graph(
            [helper.make_node("Loop", ["trips", "cond", "x"], ["y"], body=body)],
            "loop",
            inputs,
            [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8])],
            inits,
        )
        return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])

    counted = cost_summary(loop_model(True))
    assert counted["flops"] == 5 * 2 * 8 * 8 and "complete" not in counted
    unknown = cost_summary(loop_model(False))
    assert unknown["complete"] is False and unknown["flops"] == 2 * 8 * 8


def test_unnamed_and_placeholder_dims_are_sized_per_axis_or_refused(built):
    files, _ = built
    # '?' x '?' with a dim_value -1 batch: the batch defaults to 1, H and W need a shape
    with pytest.raises(CostError, match="an unnamed dim \\(input 'input', axis 2\\)"):
        cost_summary(files["question_classifier"])
    cost = cost_summary(files["question_classifier"], input_shapes={"input": [1, 3, 48, 192]})
    assert cost["flops"] > 0 and all(op["flops"] >= 0 for op in cost["ops"])
    assert cost["shape_assumptions"] == {"input:0": 1, "input:2": 48, "input:3": 192}
    none, why = cost_or_none(files["ocr_detector"])
    assert none is None and "estimate` cannot estimate" in why


def test_an_incomplete_cost_summary_widens_the_estimate_and_says_so():
    cost = {
        "parameters": 10,
        "flops": 1e6,
        "ops": [{"op_class": "gemm", "precision": "fp32", "count": 1, "flops": 1e6, "bytes": 1e4}],
    }
    profile = load_profile("rpi5")
    sure = estimate_latency({**cost, "complete": True}, profile)
    unsure = estimate_latency({**cost, "complete": False, "notes": ["Loop 'l': ..."]}, profile)
    assert unsure["sigma_log"] > sure["sigma_log"]
    low, high = unsure["range_ms"]
    assert math.log(high / low) > math.log(sure["range_ms"][1] / sure["range_ms"][0])
    assert any("incomplete" in n for n in unsure["notes"])
    assert "cost summary: Loop 'l': ..." in unsure["notes"]
