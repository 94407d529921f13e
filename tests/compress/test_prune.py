"""Pruning on tiny models built here: BERT heads and FFN neurons, CNN channels, the latency-target
loop, the cubic schedule, and options refused before any work."""

from __future__ import annotations

import dataclasses
import itertools
import json

import numpy as np
import pytest

from edgepack.runtime import InputError
from tests.conftest import require, save_tiny_bert

torch = require("torch")
require("torch_pruning")
transformers = require("transformers")

from edgepack.benchmarks.estimate import estimate_latency  # noqa: E402
from edgepack.benchmarks.microbench import measure_host  # noqa: E402
from edgepack.compress.cost import cost_summary  # noqa: E402
from edgepack.compress.data import ArrayDataset, TextDataset  # noqa: E402
from edgepack.compress.evaluate import open_model  # noqa: E402
from edgepack.compress.export_onnx import export_onnx  # noqa: E402
from edgepack.compress.prune import (  # noqa: E402
    PruneOptions,
    cubic_sparsity,
    distillation_loss,
    prune,
)
from edgepack.compress.prune_units import TransformerUnits  # noqa: E402
from edgepack.device_profiles import load_profile  # noqa: E402

FAST = {"importance_samples": 32, "finetune_steps": 4, "batch_size": 16, "measure_seconds": 0.05}
WORDS = ["good", "bad", "film", "plot", "a", "b", "c"]


@pytest.fixture(autouse=True)
def _one_torch_thread():
    # Tiny models on a shared 2-core machine: two threads contend and run several times slower.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def coefficients():
    """This host's quick microbenchmarks (a fraction of a second) for the latency estimator."""
    return measure_host(quick=True)


@pytest.fixture(scope="module")
def bert_dir(tmp_path_factory):
    return save_tiny_bert(tmp_path_factory.mktemp("bert") / "hf")


def _texts(count: int = 48, seed: int = 0) -> TextDataset:
    rng = np.random.default_rng(seed)
    texts = tuple(" ".join(rng.choice(WORDS, rng.integers(3, 9))) for _ in range(count))
    return TextDataset(texts, np.array([int("good" in t) for t in texts]))


def _cnn() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Conv2d(1, 8, 3, padding=1),
        torch.nn.BatchNorm2d(8),
        torch.nn.ReLU(),
        torch.nn.Conv2d(8, 16, 3, padding=1),
        torch.nn.ReLU(),
        torch.nn.MaxPool2d(2),
        torch.nn.Flatten(),
        torch.nn.Linear(16 * 4 * 4, 32),
        torch.nn.ReLU(),
        torch.nn.Linear(32, 3),
    ).eval()


def _images(count: int = 48) -> ArrayDataset:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(count, 1, 8, 8)).astype(np.float32)
    return ArrayDataset({"pixels": x}, (x[:, 0, :4].mean((1, 2)) > 0).astype(np.int64))


def _logits(model, feeds):
    with torch.no_grad():
        out = model(**{k: torch.from_numpy(v) for k, v in feeds.items()})
    return (out.logits if hasattr(out, "logits") else out).numpy()


# --- Options --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"ffn_keep": 0.0}, "ffn_keep must be a share in (0, 1]"),
        ({"heads_keep": 1.5}, "heads_keep must be a share in (0, 1]"),
        ({"channels_keep": True}, "channels_keep must be float or None, got True"),
        ({"method": "unstructured", "sparsity": 1.0}, "sparsity must be in [0, 1)"),
        ({"method": "unstructured", "sparsity": -0.1}, "sparsity must be in [0, 1)"),
        ({"method": "structurd", "ffn_keep": 0.5}, "did you mean 'structured'"),
        ({"ffn_keep": 0.5, "importance": "tailor"}, "did you mean 'taylor'"),
        ({}, "structured pruning needs heads_keep"),
        ({"target_latency_ms": 5.0}, "target_latency_ms needs profile"),
        ({"target_latency_ms": 5.0, "profile": "rpi44"}, "unknown profile 'rpi44'"),
        ({"target_latency_ms": 5.0, "profile": "rpi5", "ffn_keep": 0.5}, "not both"),
        ({"method": "unstructured"}, "needs sparsity"),
        ({"method": "unstructured", "sparsity": 0.5, "ffn_keep": 0.5}, "apply to method"),
        ({"ffn_keep": 0.5, "sparsity": 0.5}, "sparsity applies to method 'unstructured'"),
        ({"ffn_keep": 0.5, "finetune_steps": -1}, "finetune_steps must be an integer >= 0"),
        ({"ffn_keep": 0.5, "alpha": 2}, "alpha must be in [0, 1]"),
        ({"ffn_keep": 0.5, "step_fraction": 1.0}, "step_fraction must be in (0, 1)"),
    ],
)
def test_invalid_options_are_refused_at_construction(options, message):
    with pytest.raises(InputError) as error:
        PruneOptions(**options)
    assert message in str(error.value)


def test_options_round_trip_and_unknown_keys_name_the_closest():
    options = PruneOptions(target_latency_ms=3.0, profile="rpi4-1.8ghz", step_fraction=0.2)
    assert PruneOptions.from_dict(options.to_dict()) == options
    assert "ffn_keep" not in options.to_dict()  # unset ratios stay out of the recipe
    with pytest.raises(InputError, match="did you mean 'heads_keep'"):
        PruneOptions.from_dict({"head_keep": 0.5})


def test_options_that_do_not_fit_the_model_are_refused_before_any_work(bert_dir, tmp_path):
    work = tmp_path / "work"
    with pytest.raises(InputError, match="channels_keep does not apply"):
        prune(bert_dir, _texts(), _texts(), PruneOptions(channels_keep=0.5), work)
    with pytest.raises(InputError, match="heads_keep, ffn_keep does not apply"):
        prune(_cnn(), _images(), _images(), PruneOptions(heads_keep=0.5, ffn_keep=0.5), work)
    with pytest.raises(InputError, match="no tokenizer"):
        prune(_cnn(), _texts(), _texts(), PruneOptions(channels_keep=0.5), work)
    assert not work.exists()


def test_a_failure_part_way_leaves_nothing_in_workdir(tmp_path):
    data = _images()
    bad = ArrayDataset(data.inputs, np.full(len(data), 7))  # labels beyond the model's 3 classes
    with pytest.raises(InputError, match="outside the model's 3 classes"):
        prune(_cnn(), data, bad, PruneOptions(channels_keep=0.5, **FAST), tmp_path, progress=False)
    assert list(tmp_path.iterdir()) == []


# --- Schedules and losses -------------------------------------------------------------------------


def test_cubic_schedule_follows_zhu_and_gupta():
    values = [cubic_sparsity(t, 10, 0.9) for t in range(11)]
    assert values[0] == 0.0 and values[-1] == pytest.approx(0.9)
    assert values[5] == pytest.approx(0.9 * (1 - 0.5**3))
    steps = np.diff(values)
    assert np.all(steps > 0) and np.all(np.diff(steps) < 0)  # rises fast, then slowly
    assert cubic_sparsity(3, 4, 0.8, initial=0.2) == pytest.approx(0.8 - 0.6 / 64)
    assert cubic_sparsity(12, 10, 0.9) == pytest.approx(0.9)  # past the end it stays at s_f


def test_distillation_loss_mixes_soft_and_hard_terms():
    torch.manual_seed(0)
    student, teacher = torch.randn(4, 3), torch.randn(4, 3)
    labels = torch.tensor([0, 1, 2, 0])
    hard = torch.nn.functional.cross_entropy(student, labels)
    assert distillation_loss(student, teacher, labels, 2.0, 0.0) == pytest.approx(hard.item())
    assert distillation_loss(teacher, teacher, labels, 2.0, 1.0).item() == pytest.approx(
        0, abs=1e-6
    )
    assert distillation_loss(student, teacher, None, 2.0, 1.0) > 0


# --- Transformers ---------------------------------------------------------------------------------


def test_head_scores_equal_the_head_mask_gradient(bert_dir):
    """The activation x gradient score of a head is Michel et al.'s |dL/d mask|."""
    model = transformers.AutoModelForSequenceClassification.from_pretrained(
        bert_dir, attn_implementation="eager"
    ).eval()
    tokenizer = transformers.AutoTokenizer.from_pretrained(bert_dir)
    data = _texts(16)
    feeds = dict(tokenizer(list(data.texts), padding=True, return_tensors="pt"))
    labels = torch.as_tensor(data.labels)
    units = TransformerUnits(model)
    units.score(model, iter([(feeds, labels)]), len(labels), progress=False)
    mask = torch.ones(2, 2, requires_grad=True)
    loss = torch.nn.functional.cross_entropy(model(**feeds, head_mask=mask).logits, labels)
    loss.backward()
    expected = mask.grad.abs()
    got = torch.stack(units.scores["heads"])
    assert torch.allclose(got, expected, rtol=1e-4, atol=1e-9)
    assert [len(s) for s in units.scores["ffn"]] == [64, 64]


def test_bert_heads_and_ffn_pruning_shrinks_reloads_and_exports(bert_dir, tmp_path):
    options = PruneOptions(heads_keep=0.5, ffn_keep=0.5, sequence_length=16, **FAST)
    result = prune(bert_dir, _texts(), _texts(16, seed=1), options, tmp_path, progress=False)

    assert result.units_before == {"heads": 4, "ffn": 128}
    assert result.units_after == {"heads": 2, "ffn": 64}
    assert result.parameters_after < result.parameters_before
    assert result.onnx_bytes_after < result.onnx_bytes_before
    config = transformers.AutoConfig.from_pretrained(result.model_dir)
    assert config.intermediate_size == 32
    assert sum(len(h) for h in config.pruned_heads.values()) == 2
    assert all(len(h) < 2 for h in config.pruned_heads.values())  # a head left in every layer

    # save_pretrained -> from_pretrained -> export all give the pruned model's outputs.
    tokenizer = transformers.AutoTokenizer.from_pretrained(result.model_dir)
    encoded = tokenizer(["good film", "bad plot a b c"], padding=True, return_tensors="np")
    feeds = {k: np.asarray(v, np.int64) for k, v in encoded.items()}
    reloaded = transformers.AutoModelForSequenceClassification.from_pretrained(result.model_dir)
    expected = _logits(result.model.eval(), feeds)
    np.testing.assert_array_equal(_logits(reloaded.eval(), feeds), expected)
    shipped = open_model(result.onnx).run(feeds)["logits"]
    np.testing.assert_allclose(shipped, expected, atol=1e-4)
    assert result.reload_max_abs_diff == 0.0

    assert result.latency_before["p50_ms"] > 0 and result.latency_after["p50_ms"] > 0
    assert {"accuracy", "agreement"} <= set(result.metrics_after)
    assert [s.step for s in result.steps] == [0, 1]
    assert all(s.measured_p50_ms for s in result.steps)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model", "onnx"]  # no scratch left


# --- CNNs -----------------------------------------------------------------------------------------


def test_cnn_channel_pruning_keeps_outputs_and_runs_through_the_runtime(tmp_path):
    model = _cnn()
    shapes = [p.shape for p in model.parameters()]
    result = prune(
        model, _images(), _images(), PruneOptions(channels_keep=0.5, **FAST), tmp_path, False
    )
    assert [p.shape for p in model.parameters()] == shapes  # the caller's model is untouched
    pruned = result.model
    assert [pruned[0].out_channels, pruned[3].out_channels, pruned[7].out_features] == [4, 8, 16]
    assert pruned[1].num_features == 4 and pruned[9].out_features == 3  # coupled BN; outputs kept
    assert result.units_before == {"channels": 56} and result.units_after == {"channels": 28}
    assert result.parameters_after < result.parameters_before / 2

    x = _images(5).inputs["pixels"]
    runner = open_model(result.onnx)
    out = runner.run({"pixels": x})["logits"]
    assert out.shape == (5, 3)
    np.testing.assert_allclose(out, _logits(pruned, {"input": x}), atol=1e-4)
    assert result.onnx_bytes_after < result.onnx_bytes_before
    assert result.finetune["distilled"] and result.finetune["steps"] == FAST["finetune_steps"]


def _estimator(profile, coefficients):
    def estimate(path):
        cost = cost_summary(path, {"batch": 1})
        return estimate_latency(cost, profile, threads=1, coefficients=coefficients)["latency_ms"]

    return estimate


def test_latency_target_loop_stops_as_soon_as_the_estimate_meets_it(tmp_path, coefficients):
    profile = load_profile("rpi4-1.8ghz")
    estimate = _estimator(profile, coefficients)
    example = {"pixels": torch.from_numpy(_images(1).inputs["pixels"])}
    unpruned = estimate(export_onnx(_cnn(), example, tmp_path / "unpruned.onnx").path)
    target = 0.9 * unpruned
    options = PruneOptions(
        target_latency_ms=target, profile="rpi4-1.8ghz", step_fraction=0.2, **FAST
    )
    result = prune(
        _cnn(), _images(), _images(), options, tmp_path / "w", False, coefficients=coefficients
    )
    estimates = [s.estimated_ms for s in result.steps]
    assert estimates[0] == pytest.approx(unpruned)
    assert result.target_met is True
    assert estimates[-1] <= target and all(e > target for e in estimates[:-1])
    assert len(result.steps) >= 2 and all(b < a for a, b in itertools.pairwise(estimates))
    assert all(s.measured_p50_ms > 0 for s in result.steps)
    assert result.estimated_after_ms == pytest.approx(estimates[-1])
    assert result.steps[1].action.startswith("channels of ")


def test_latency_target_out_of_reach_says_so(tmp_path, coefficients):
    options = PruneOptions(
        target_latency_ms=1e-6, profile="rpi4-1.8ghz", max_steps=1, **FAST | {"finetune_steps": 0}
    )
    result = prune(
        _cnn(), _images(), _images(), options, tmp_path, False, coefficients=coefficients
    )
    assert result.target_met is False
    assert len(result.steps) == 2
    assert any("not met after max_steps=1" in m for m in result.messages)


# --- Unstructured ---------------------------------------------------------------------------------


def test_unstructured_reaches_the_sparsity_and_reports_compressed_size(tmp_path):
    options = PruneOptions(method="unstructured", sparsity=0.8, schedule_steps=4, **FAST)
    result = prune(_cnn(), _images(), _images(), options, tmp_path, progress=False)
    assert result.sparsity == pytest.approx(0.8, abs=0.01)
    linear = [m for m in result.model.modules() if isinstance(m, torch.nn.Linear | torch.nn.Conv2d)]
    zeros = sum(int((m.weight == 0).sum()) for m in linear)
    assert zeros / sum(m.weight.numel() for m in linear) == pytest.approx(result.sparsity)
    assert result.deflate_bytes_after < 0.6 * result.deflate_bytes_before
    assert result.onnx_bytes_after == pytest.approx(result.onnx_bytes_before, rel=0.02)
    assert "does not speed up dense kernels" in result.messages[0]
    assert not hasattr(result.model[0], "weight_mask")  # masks folded into the weights


def test_result_is_json_ready(tmp_path):
    options = PruneOptions(method="unstructured", sparsity=0.5, schedule_steps=2, **FAST)
    result = prune(_cnn(), _images(), _images(), options, tmp_path, progress=False)
    data = json.loads(json.dumps(result.to_dict()))
    assert data["method"] == "unstructured" and "model" not in data
    assert PruneOptions.from_dict(data["options"]) == dataclasses.replace(options)
