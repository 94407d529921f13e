"""Int8 quantization: each method on a digits CNN, the accuracy-aware search, and bad input."""

from __future__ import annotations

import json
import tempfile

import numpy as np
import pytest
import torch
from torch import nn

from edgepack.compress.calibration import FeedReader, calibration_feeds
from edgepack.compress.data import ArrayDataset, load_sklearn
from edgepack.compress.errors import QuantizationError
from edgepack.compress.evaluate import evaluate
from edgepack.compress.export_onnx import export_onnx
from edgepack.compress.quantize import (
    Budget,
    Candidate,
    DynamicOptions,
    StaticOptions,
    _choose,
    options_for_profile,
    options_from_dict,
    quantize,
    quantize_model,
)
from edgepack.device_profiles import detect_host, load_profile
from edgepack.packing import describe_model_file
from edgepack.runtime import InputError, TensorSpec
from tests.conftest import text_classifier_onnx

NO_SPEED_RULE = Budget(min_speedup=None)  # int8 kernels lose to fp32 on models this small


@pytest.fixture(scope="module")
def digits():
    data = load_sklearn("digits", sample_shape=(1, 8, 8))
    x = data.inputs["input"] / 16.0
    order = np.random.default_rng(0).permutation(len(x))
    train, test = order[:1200], order[1200:]
    return (x[train], data.labels[train]), (x[test], data.labels[test])


def _train(model: nn.Module, x: np.ndarray, y: np.ndarray, epochs: int) -> nn.Module:
    torch.manual_seed(0)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    xs, ys = torch.from_numpy(x), torch.from_numpy(y)
    for _ in range(epochs):
        for start in range(0, len(xs), 64):
            optimizer.zero_grad()
            loss = nn.functional.cross_entropy(
                model(xs[start : start + 64]), ys[start : start + 64]
            )
            loss.backward()
            optimizer.step()
    return model.eval()


@pytest.fixture(scope="module")
def cnn(digits, tmp_path_factory):
    """A digits CNN trained for a couple of seconds, exported; with its test set."""
    (x, y), (tx, ty) = digits
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(8 * 4 * 4, 10),
    )
    _train(model, x, y, epochs=3)
    path = tmp_path_factory.mktemp("cnn") / "digits.onnx"
    export_onnx(model, {"pixels": torch.from_numpy(x[:2])}, path)
    return path, ArrayDataset({"pixels": x}), ArrayDataset({"pixels": tx}, ty)


class OutlierMLP(nn.Module):
    def __init__(self):
        super().__init__()
        self.hidden = nn.Linear(64, 32)
        self.head = nn.Linear(32, 10)

    def forward(self, x):
        return self.head(torch.relu(self.hidden(x)))


@pytest.fixture(scope="module")
def outlier_mlp(digits, tmp_path_factory):
    """An MLP whose first layer int8 cannot represent: one weight column is huge.

    Pixel 0 of every digit is 0, so fp32 never sees the column, but a per-tensor int8 scale
    sized for it rounds every other weight of that layer to zero. The head quantizes fine.
    """
    (x, y), (tx, ty) = digits
    x, tx = x.reshape(len(x), 64), tx.reshape(len(tx), 64)
    assert not x[:, 0].any()
    torch.manual_seed(0)
    model = _train(OutlierMLP(), x, y, epochs=6)
    with torch.no_grad():
        model.hidden.weight[:, 0] = 200.0
    path = tmp_path_factory.mktemp("mlp") / "mlp.onnx"
    export_onnx(model, {"x": torch.from_numpy(x[:2])}, path)
    return path, ArrayDataset({"x": x}), ArrayDataset({"x": tx}, ty)


def test_options_round_trip_through_a_recipe_dict():
    static = StaticOptions(calibration="entropy", per_channel=True, op_types=["Conv", "MatMul"])
    assert static.op_types == ("Conv", "MatMul")  # lists from a recipe file become tuples
    data = json.loads(json.dumps(static.to_dict()))
    assert data["method"] == "static"
    assert options_from_dict(data) == static
    assert options_from_dict({"method": "dynamic"}) == DynamicOptions()


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"method": "fp16"}, "unknown quantization method"),
        (
            {"method": "dynamic", "calibration": "entropy"},
            "unknown option 'calibration' for method 'dynamic'",
        ),
        ({"method": "static", "calibration": "kl"}, "unknown calibration 'kl'"),
        ({"method": "static", "percentile": 120.0}, r"percentile must be in \(0, 100\]"),
        ({"method": "static", "op_types": ["Softmax2"]}, r"op types \['Softmax2'\] cannot be"),
        ({"method": "dynamic", "op_types": "MatMul"}, "must be a list of strings"),
        ({"method": "dynamic", "weight_type": "int4"}, "unknown int type 'int4'"),
        ({"method": "static", "activation_type": "int8", "weight_type": "uint8"}, "not a kernel"),
        ({"method": "static", "calibration_samples": 0}, "positive integer"),
    ],
)
def test_options_reject_bad_values(data, message):
    with pytest.raises(InputError, match=message):
        options_from_dict(data)


def test_budget_validation():
    with pytest.raises(InputError, match="unknown metric 'bleu'"):
        Budget(metric="bleu")
    with pytest.raises(InputError, match="max_drop must be >= 0"):
        Budget(max_drop=-1)
    assert Budget().to_dict()["max_drop"] == 1.0


@pytest.mark.parametrize(
    ("options", "precision"),
    [
        (DynamicOptions(), "int8-dynamic"),
        (DynamicOptions(per_channel=True, reduce_range=True), "int8-dynamic"),
        (StaticOptions(), "int8-static"),
        (StaticOptions(calibration="entropy", preprocess=True), "int8-static"),
        (StaticOptions(calibration="percentile", percentile=99.9, per_channel=True), "int8-static"),
        (StaticOptions(op_types=("Conv",), activation_type="int8"), "int8-static"),
    ],
    ids=["dynamic", "dynamic-pc-rr", "minmax", "entropy-pre", "percentile-pc", "conv-only-s8s8"],
)
def test_each_method_keeps_digits_accuracy(cnn, options, precision, tmp_path):
    path, calib, test = cnn
    out = quantize_model(path, tmp_path / "int8.onnx", options, calib=calib, progress=False)
    assert describe_model_file(out).precision == precision
    fp32 = evaluate(path, test, progress=False).metrics["accuracy"]
    int8 = evaluate(out, test, progress=False).metrics["accuracy"]
    assert fp32 > 85
    assert int8 >= fp32 - 3


def test_conv_only_leaves_the_linear_layer_float(cnn, tmp_path):
    path, calib, _ = cnn
    out = quantize_model(
        path, tmp_path / "q.onnx", StaticOptions(op_types=("Conv",)), calib=calib, progress=False
    )
    import onnx

    graph = onnx.load(str(out)).graph
    weights = {i.name for i in graph.initializer}
    gemm = next(n for n in graph.node if n.op_type == "Gemm")
    assert gemm.input[1] in weights  # fed by the float weight itself, not a DequantizeLinear


@pytest.mark.parametrize("options", [StaticOptions(), DynamicOptions()], ids=["static", "dynamic"])
def test_accuracy_aware_search_keeps_the_outlier_layer_float(outlier_mlp, options, tmp_path):
    path, calib, test = outlier_mlp
    out = tmp_path / "int8.onnx"
    report = quantize(path, out, options, calib=calib, eval_data=test, budget=NO_SPEED_RULE)
    chosen = report.candidates[report.chosen]
    assert [n.name for n in chosen.float_nodes] == ["/hidden/Gemm"]
    assert chosen.float_nodes[0].error > 0.5
    assert chosen.within_budget and chosen.drop <= 1.0
    assert chosen.options["nodes_to_exclude"] == ["/hidden/Gemm"]
    assert out.exists()
    # The recorded options reproduce the result without a search.
    again = quantize_model(
        path, tmp_path / "again.onnx", options_from_dict(chosen.options), calib=calib
    )
    assert evaluate(again, test, progress=False).metrics["accuracy"] == pytest.approx(chosen.metric)
    json.dumps(report.to_dict())  # goes into the manifest as is
    assert "float nodes" in report.table()


def test_large_graphs_are_narrowed_by_op_type_before_node_probes(outlier_mlp, tmp_path):
    path, calib, test = outlier_mlp
    budget = Budget(max_probes=1, min_speedup=None)
    report = quantize(
        path, tmp_path / "q.onnx", StaticOptions(), calib=calib, eval_data=test, budget=budget
    )
    chosen = report.candidates[report.chosen]
    assert [n.name for n in chosen.float_nodes] == ["/hidden/Gemm"]
    assert "probed 1 of 3 quantizable nodes alone" in " ".join(chosen.notes)
    assert next(iter(chosen.op_type_errors)) == "Gemm"  # the type that hurts most comes first

    tight = Budget(metric="cosine", max_drop=0.0, max_float_nodes=1, max_probes=1, min_speedup=None)
    with pytest.raises(QuantizationError, match="these op types move the output most: Gemm"):
        quantize(
            path, tmp_path / "q2.onnx", StaticOptions(), calib=calib, eval_data=test, budget=tight
        )


def test_unmeetable_budget_reports_the_best_result(outlier_mlp, tmp_path):
    path, calib, test = outlier_mlp
    out = tmp_path / "int8.onnx"
    budget = Budget(max_float_nodes=0, min_speedup=None)
    with pytest.raises(QuantizationError, match="no int8 model stays within 1.0 points") as info:
        quantize(path, out, StaticOptions(), calib=calib, eval_data=test, budget=budget)
    assert "Best found: static" in str(info.value)
    report = info.value.report
    assert report.chosen is None
    assert report.candidates[0].drop > 1.0
    assert not out.exists()


def test_int8_slower_than_fp32_is_reported_and_not_chosen(cnn, tmp_path):
    path, _, test = cnn
    out = tmp_path / "int8.onnx"
    budget = Budget(max_drop=100.0, min_speedup=1000.0)
    with pytest.raises(QuantizationError, match="slower than fp32 on this machine") as info:
        quantize(path, out, DynamicOptions(), eval_data=test, budget=budget, progress=False)
    candidate = info.value.report.candidates[0]
    assert candidate.faster is False
    assert candidate.p50_ms > 0 and candidate.fp32_p50_ms > 0
    assert any("slower than fp32" in note for note in candidate.notes)
    assert not out.exists()


def test_fastest_candidate_within_budget_is_chosen(cnn, tmp_path):
    path, calib, test = cnn
    candidates = [DynamicOptions(), StaticOptions()]
    report = quantize(
        path, tmp_path / "q.onnx", candidates, calib=calib, eval_data=test, budget=NO_SPEED_RULE
    )
    assert len(report.candidates) == 2
    speedups = [c.speedup for c in report.candidates]
    assert all(c.speed_kind == "measured" for c in report.candidates)
    fastest = max(range(2), key=lambda i: speedups[i])
    other = 1 - fastest
    if speedups[other] * 1.1 >= speedups[fastest]:  # within 10%: a tie, the metric decides
        better = max(range(2), key=lambda i: (report.candidates[i].metric, speedups[i]))
        assert report.chosen == better
    else:
        assert report.chosen == fastest
    assert report.fp32["metric"] > 85


def test_unlabelled_eval_uses_agreement(cnn, tmp_path):
    path, _, test = cnn
    unlabelled = ArrayDataset(test.inputs)
    with pytest.raises(InputError, match="needs labels"):
        quantize(path, tmp_path / "q.onnx", eval_data=unlabelled)
    budget = Budget(metric="agreement", min_speedup=None)
    report = quantize(path, tmp_path / "q.onnx", eval_data=unlabelled, budget=budget)
    assert report.fp32["metric"] == 100.0
    assert report.candidates[0].metric > 95


@pytest.mark.parametrize(
    ("pixels", "message"),
    [
        (np.zeros((4, 1, 8, 8), np.float64), "dtype float64; the model expects float32"),
        (np.zeros((4, 1, 9, 9), np.float32), "axis 2 must be 8"),
    ],
)
def test_bad_calibration_data_is_rejected_before_calibration(cnn, monkeypatch, pixels, message):
    import edgepack.compress.quantize as module

    def must_not_run(*args, **kwargs):
        raise AssertionError("calibration started")

    monkeypatch.setattr(module, "quantize_static", must_not_run)
    path, _, _ = cnn
    with pytest.raises(InputError, match=message):
        quantize(path, "unused.onnx", StaticOptions(), calib={"pixels": pixels})
    with pytest.raises(InputError, match=message):
        quantize_model(path, "unused.onnx", StaticOptions(), calib={"pixels": pixels})


def test_failed_preprocessing_falls_back_to_the_model_as_exported(cnn, monkeypatch, tmp_path):
    import edgepack.compress.quantize as module

    def fail(*args, **kwargs):
        raise ValueError("Incomplete symbolic shape inference")

    monkeypatch.setattr(module, "quant_pre_process", fail)
    path, calib, test = cnn
    options = StaticOptions(preprocess=True)
    report = quantize(
        path, tmp_path / "q.onnx", options, calib=calib, eval_data=test, budget=NO_SPEED_RULE
    )
    assert (
        "quant_pre_process failed (ValueError: Incomplete symbolic" in report.candidates[0].notes[0]
    )
    assert (tmp_path / "q.onnx").exists()


def test_static_needs_calibration_data(cnn):
    with pytest.raises(InputError, match="needs calibration data"):
        quantize(cnn[0], "unused.onnx", StaticOptions())


def test_no_temp_files_left_anywhere_even_when_onnxruntime_fails(tmp_path, monkeypatch):
    """Token ids beyond the vocabulary pass the dtype/shape check but fail inside calibration."""
    models, cwd, scratch = tmp_path / "models", tmp_path / "cwd", tmp_path / "tmp"
    for folder in (models, cwd, scratch):
        folder.mkdir()
    text_classifier_onnx(models / "text.onnx", vocab_size=10)
    monkeypatch.chdir(cwd)
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    ids = np.full((4, 6), 50, np.int64)
    calib = {"input_ids": ids, "attention_mask": np.ones_like(ids), "token_type_ids": 0 * ids}
    with pytest.raises(QuantizationError, match="onnxruntime could not quantize"):
        quantize_model(models / "text.onnx", models / "q.onnx", StaticOptions(), calib=calib)
    assert sorted(p.name for p in models.iterdir()) == ["text.onnx"]
    assert list(cwd.iterdir()) == []
    assert list(scratch.iterdir()) == []
    calib["input_ids"] = ids % 10
    quantize_model(models / "text.onnx", models / "q.onnx", StaticOptions(), calib=calib)
    assert sorted(p.name for p in models.iterdir()) == ["q.onnx", "text.onnx"]
    assert list(cwd.iterdir()) == [] and list(scratch.iterdir()) == []


@pytest.mark.slow
def test_tiny_bert_static_matmul_only_within_agreement_budget(tmp_path):
    from tests.conftest import tiny_bert_classifier

    rng = np.random.default_rng(0)
    ids = rng.integers(5, 100, (48, 16)).astype(np.int64)
    data = ArrayDataset({"input_ids": ids, "attention_mask": np.ones_like(ids)})
    axes = {n: {0: "batch", 1: "sequence"} for n in data.inputs} | {"logits": {0: "batch"}}
    example = {k: torch.from_numpy(v[:2]) for k, v in data.inputs.items()}
    path = export_onnx(
        tiny_bert_classifier(), example, tmp_path / "bert.onnx", dynamic_axes=axes
    ).path
    budget = Budget(metric="agreement", max_drop=5.0, min_speedup=None)
    options = [DynamicOptions(), StaticOptions(op_types=("MatMul",), per_channel=True)]
    report = quantize(path, tmp_path / "q.onnx", options, calib=data, eval_data=data, budget=budget)
    assert all(c.within_budget for c in report.candidates)
    assert report.chosen is not None
    assert [c.options["method"] for c in report.candidates] == ["dynamic", "static"]


SEQ_SPECS = [TensorSpec("input_ids", "int64", ["batch", "sequence"])]


def test_calibration_feeds_from_arrays_iterables_and_readers():
    from onnxruntime.quantization import CalibrationDataReader

    arrays = {"input_ids": np.arange(100, dtype=np.int64).reshape(50, 2)}
    feeds = calibration_feeds(arrays, SEQ_SPECS, max_samples=10, batch_size=4)
    picked = np.concatenate([f["input_ids"][:, 0] for f in feeds])
    assert [len(f["input_ids"]) for f in feeds] == [4, 4, 2]
    assert picked[0] == 0 and picked[-1] == 98  # spread over the set, not its first rows

    # Unpadded texts come as one dict per sample, with different sequence lengths.
    ragged = [{"input_ids": np.ones((1, n), np.int64)} for n in (3, 5, 7)]
    assert len(calibration_feeds(iter(ragged), SEQ_SPECS, max_samples=2)) == 2

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.items = iter(ragged)

        def get_next(self):
            return next(self.items, None)

    assert len(calibration_feeds(Reader(), SEQ_SPECS)) == 3
    with pytest.raises(InputError, match="calibration data is empty"):
        calibration_feeds([], SEQ_SPECS)
    with pytest.raises(InputError, match="calibration item 0 is a list"):
        calibration_feeds([[1, 2]], SEQ_SPECS)
    # ids of another integer width are cast, as the runtime casts them; floats are refused
    cast = calibration_feeds([ragged[0], {"input_ids": np.ones((1, 3), np.int32)}], SEQ_SPECS)
    assert cast[1]["input_ids"].dtype == np.int64
    with pytest.raises(InputError, match="calibration item 1 input 'input_ids' has dtype float"):
        calibration_feeds([ragged[0], {"input_ids": np.ones((1, 3), np.float32)}], SEQ_SPECS)


def test_feed_reader_follows_the_onnxruntime_protocol():
    feeds = [{"x": np.zeros((1, 2), np.float32)}] * 2
    reader = FeedReader(feeds, progress=False)
    assert len(reader) == 2
    assert reader.get_next() is feeds[0]
    assert reader.get_next() is feeds[1]
    assert reader.get_next() is None
    reader.rewind()
    assert reader.get_next() is feeds[0]


def test_candidates_within_ten_percent_of_the_fastest_tie_and_accuracy_decides():
    def candidate(speedup: float, metric: float) -> Candidate:
        return Candidate(
            {"method": "dynamic"},
            1,
            metric=metric,
            within_budget=True,
            p50_ms=1.0,
            fp32_p50_ms=speedup,
            faster=True,
        )

    # 2.0x and 1.85x are within 10%: the more accurate one wins
    assert _choose([candidate(2.0, 90.0), candidate(1.85, 92.0)]) == 1
    # 2.0x and 1.5x are not: the faster one wins whatever its accuracy
    assert _choose([candidate(2.0, 90.0), candidate(1.5, 95.0)]) == 0


def test_an_arm_profile_gets_int8_activations_and_x86_keeps_uint8():
    arm = options_for_profile(load_profile("rpi-zero-2w"))  # its default is int8-static
    assert isinstance(arm, StaticOptions)
    assert (arm.activation_type, arm.weight_type) == ("int8", "int8")
    # Not symmetric: a zero point of 0 would keep every Relu in float (test_cost's clamp test).
    assert arm.per_channel and not arm.activation_symmetric
    rpi5 = options_for_profile(load_profile("rpi5"), method="static", calibration="entropy")
    assert (rpi5.activation_type, rpi5.calibration) == ("int8", "entropy")
    assert isinstance(options_for_profile(load_profile("rpi5")), DynamicOptions)
    host = detect_host()
    if not host.cpu.arch.startswith(("arm", "aarch64")):
        x86 = options_for_profile(host, method="static")
        assert (x86.activation_type, x86.activation_symmetric) == ("uint8", False)
    explicit = options_for_profile(load_profile("rpi5"), method="static", activation_type="uint8")
    assert explicit.activation_type == "uint8"  # what the user says wins over the profile


def test_the_speed_rule_is_estimated_for_a_profile_that_is_not_this_host(cnn, tmp_path):
    path, calib, test = cnn
    profile = load_profile("rpi-zero-2w")
    report = quantize(
        path,
        tmp_path / "q.onnx",
        options_for_profile(profile),
        calib=calib,
        eval_data=test,
        budget=Budget(max_drop=5.0, min_speedup=None),
        profile=profile,
        progress=False,
    )
    candidate = report.candidates[0]
    assert candidate.options["activation_type"] == "int8"
    assert (candidate.speed_kind, candidate.speed_on) == ("estimated", "rpi-zero-2w")
    assert candidate.p50_ms > 0 and candidate.fp32_p50_ms > 0
    assert "p50: estimated for rpi-zero-2w" in report.table()
