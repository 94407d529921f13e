"""Issue 13 items 1, 2 and 4 (runtime): packing models with dynamic shapes never fails on the
cost summary, the pack carries its example inputs for bench, '?' dims are independent, and a
stateful model runs in a loop that feeds its state back."""

from __future__ import annotations

import numpy as np
import pytest

from edgepack.cli.main import main
from edgepack.runtime import load, read_manifest

from ..conftest import require

require("onnx")
from . import models  # noqa: E402

FAST = ["--min-count", "10", "--min-duration", "0", "--warmup", "1", "--cold-starts", "0"]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    return models.write_all(tmp_path_factory.mktemp("pack-models"))


def test_pack_without_shapes_warns_and_packs(files, tmp_path, capsys):
    out = tmp_path / "det"
    assert main(["pack", str(files["ocr_detector"]), "-o", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "warning: ocr_detector.onnx: no cost summary (cannot size dynamic dim(s)" in printed
    assert "--input-shape" in printed and read_manifest(out).models[0].cost is None
    assert main(["estimate", str(out), "--profile", "rpi5"]) == 1
    assert "no cost summary" in capsys.readouterr().err


def test_pack_counts_the_cost_at_the_shapes_named_and_bench_uses_them(files, tmp_path, capsys):
    out = tmp_path / "det"
    argv = ["pack", str(files["ocr_detector"]), "-o", str(out), "--input", "x=1x3x96x128:0..1"]
    assert main(argv) == 0
    manifest = read_manifest(out)
    assert manifest.models[0].cost["shape_assumptions"] == {"x:0": 1, "x:2": 96, "x:3": 128}
    assert manifest.example_inputs == {
        "inputs": {"x": {"shape": [1, 3, 96, 128], "values": [0.0, 1.0]}}
    }
    capsys.readouterr()
    assert main(["info", str(out)]) == 0
    assert 'example input x: {"shape": [1, 3, 96, 128]' in capsys.readouterr().out
    assert main(["bench", str(out), *FAST]) == 0  # no --input: the pack's own
    assert "x 1x3x96x128 uniform 0..1" in capsys.readouterr().out
    assert main(["estimate", str(out), "--profile", "rpi5"]) == 0
    assert "estimated" in capsys.readouterr().out


def test_pack_input_shape_and_assume_size_the_cost(files, tmp_path):
    out = tmp_path / "rec"
    argv = ["pack", str(files["ocr_recognizer"]), "-o", str(out), "--assume", "width=320"]
    assert main(argv) == 0
    assert read_manifest(out).models[0].cost["shape_assumptions"] == {"batch": 1, "width": 320}
    argv = ["pack", str(files["question_classifier"]), "-o", str(tmp_path / "q")]
    assert main([*argv, "--input-shape", "input=1x3x48x192"]) == 0
    cost = read_manifest(tmp_path / "q").models[0].cost
    assert cost["flops"] > 0 and all(op["flops"] >= 0 for op in cost["ops"])  # batch -1


def test_pack_carries_real_samples_and_refuses_unknown_input_names(files, tmp_path, capsys):
    samples = tmp_path / "samples.npz"
    np.savez(samples, input=np.ones((1, 512), np.float32), sr=np.array(16000))
    out = tmp_path / "vad"
    argv = ["pack", str(files["streaming_vad"]), "-o", str(out), "--inputs", str(samples)]
    assert main([*argv, "--input", "state=2x1x64:zeros", "--input", "sr=16000"]) == 0
    manifest = read_manifest(out)
    assert manifest.example_inputs["file"] == "example_inputs.npz"
    assert [f.role for f in manifest.files] == ["example-inputs"]
    capsys.readouterr()
    assert main(["bench", str(out), "--stream", *FAST]) == 0
    table = capsys.readouterr().out
    assert "input 1x512 given array; state 2x1x64 zeros; sr scalar given array" in table
    assert "feeds state <- stateN" in table
    argv = ["pack", str(files["streaming_vad"]), "-o", str(tmp_path / "x"), "--input", "rate=1"]
    assert main(argv) == 1
    assert "has no input(s) ['rate']" in capsys.readouterr().err


def test_dims_named_question_mark_are_independent(files, tmp_path):
    assert main(["pack", str(files["question_classifier"]), "-o", str(tmp_path / "q")]) == 0
    model = load(tmp_path / "q", threads=1)
    assert model.entry.inputs[0].shape[2:] == ["?", "?"]
    x = np.random.default_rng(0).standard_normal((1, 3, 48, 192)).astype(np.float32)
    import onnxruntime as ort

    bare = ort.InferenceSession(str(files["question_classifier"])).run(None, {"input": x})[0]
    np.testing.assert_array_equal(model.run({"input": x})["logits"], bare)


def test_a_stream_loop_feeds_the_state_back_without_copies(files, tmp_path):
    import onnxruntime as ort

    from edgepack.runtime.model import _checked

    assert main(["pack", str(files["streaming_vad"]), "-o", str(tmp_path / "v")]) == 0
    model = load(tmp_path / "v", threads=1)
    chunk = np.random.default_rng(1).standard_normal((1, 512)).astype(np.float32)
    feeds = {"input": chunk, "state": np.zeros((2, 1, 64), np.float32), "sr": np.array(16000)}
    session = ort.InferenceSession(str(files["streaming_vad"]))
    bare = np.zeros((2, 1, 64), np.float32)
    for _ in range(3):  # the pattern README documents
        outputs = model.run(feeds)
        feeds["state"] = outputs["stateN"]  # a rebinding
        _, bare = session.run(None, {**feeds, "state": bare})
    np.testing.assert_array_equal(feeds["state"], bare)
    # run() hands arrays of the right dtype to the interpreter as they are: no copy per call
    for check in model._checks:
        assert _checked(feeds[check.spec.name], check, {}) is feeds[check.spec.name]
