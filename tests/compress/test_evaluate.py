"""Metrics in numpy, and evaluation through the runtime of a tiny ONNX classifier."""

from __future__ import annotations

import numpy as np
import pytest

from edgepack.compress.data import ArrayDataset
from edgepack.compress.evaluate import (
    agreement_metrics,
    classification_metrics,
    evaluate,
    measure_latency,
    run_batched,
)
from edgepack.runtime import InputError


def test_classification_metrics_match_scikit_learn():
    from sklearn import metrics

    rng = np.random.default_rng(0)
    labels = rng.integers(0, 4, 200)
    predictions = np.where(rng.random(200) < 0.6, labels, rng.integers(0, 5, 200))
    got = classification_metrics(labels, predictions)
    expected = {
        "accuracy": metrics.accuracy_score(labels, predictions),
        "macro_f1": metrics.f1_score(labels, predictions, average="macro", zero_division=0),
        "precision": metrics.precision_score(labels, predictions, average="macro", zero_division=0),
        "recall": metrics.recall_score(labels, predictions, average="macro", zero_division=0),
    }
    for name, value in expected.items():
        assert got[name] == pytest.approx(100 * value), name


def test_classification_metrics_perfect_and_mismatched():
    assert classification_metrics(np.array([0, 1, 2]), np.array([0, 1, 2]))["macro_f1"] == 100.0
    with pytest.raises(InputError, match="as many predictions as labels"):
        classification_metrics(np.array([0, 1]), np.array([0]))


def test_agreement_metrics():
    reference = np.array([[1.0, 2.0], [3.0, 1.0]], np.float32)
    same = agreement_metrics(reference, reference)
    assert same["agreement"] == 100.0
    assert same["cosine"] == pytest.approx(100.0)
    flipped = agreement_metrics(reference[:, ::-1].copy(), reference)
    assert flipped["agreement"] == 0.0
    assert flipped["cosine"] < 100.0


@pytest.fixture()
def labelled(classifier):
    path, reference = classifier
    x = np.random.default_rng(1).normal(size=(50, 4)).astype(np.float32)
    return path, ArrayDataset({"x": x}, reference(x).argmax(-1)), reference(x)


def test_evaluate_through_the_runtime(labelled):
    path, data, expected = labelled
    result = evaluate(path, data, batch_size=8, progress=False)
    assert result.metrics["accuracy"] == 100.0
    np.testing.assert_allclose(result.outputs, expected, rtol=1e-4, atol=1e-4)
    against_itself = evaluate(path, data, reference=result.outputs, progress=False)
    assert against_itself.metrics["agreement"] == 100.0


def test_unlabelled_data_needs_a_reference(labelled):
    path, data, _ = labelled
    unlabelled = ArrayDataset(data.inputs)
    with pytest.raises(InputError, match="no labels and no reference"):
        evaluate(path, unlabelled, progress=False)
    reference = run_batched(path, unlabelled, progress=False)
    assert evaluate(path, unlabelled, reference=reference, progress=False).metrics["cosine"] > 99


def test_labels_outside_the_models_classes(labelled):
    path, data, _ = labelled
    bad = ArrayDataset(data.inputs, np.full(len(data), 7))
    with pytest.raises(InputError, match=r"labels \[7\] are outside the model's 3 classes"):
        evaluate(path, bad, progress=False)


def test_wrong_dtype_is_rejected_before_running(labelled):
    path, data, _ = labelled
    wrong = ArrayDataset({"x": data.inputs["x"].astype(np.float64)}, data.labels)
    with pytest.raises(InputError, match="dtype float64; the model expects float32"):
        evaluate(path, wrong, progress=False)


def test_latency_side_by_side(labelled):
    path, data, _ = labelled
    feeds = data.subset(slice(0, 1)).inputs
    first, second = measure_latency([path, path], feeds, min_runs=10, min_seconds=0.05)
    assert first.runs >= 10 and second.runs >= 10
    assert 0 < first.p50_ms <= first.p90_ms
