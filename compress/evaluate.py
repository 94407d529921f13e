"""Scores an exported or quantized model by running it through edgepack.runtime, as shipped.

Metrics are percentages (0-100), so an accuracy budget of 1.0 means one point.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from tqdm import tqdm

from edgepack.packing import assemble_pack, scratch_dir
from edgepack.runtime import InputError, Model, load

from .data import ArrayDataset, as_dataset, match_inputs

PathLike = str | os.PathLike[str]
LABEL_METRICS = ("accuracy", "macro_f1", "precision", "recall")
REFERENCE_METRICS = ("agreement", "cosine")
METRICS = LABEL_METRICS + REFERENCE_METRICS
# The batch a device runs: one request at a time. Dynamic int8 takes one activation scale per
# tensor over the whole batch, padding included, so a candidate scored in batches of 32 is not
# the model the device runs (MiniLM int8: 86.70% in padded batches, 87.50% one at a time).
DEVICE_BATCH = 1
# How each batch is padded, as the pack's text preprocessing pads: to the batch's longest text.
DEVICE_PADDING = "longest"


def open_model(path: PathLike, threads: int | None = None) -> Model:
    """Load a bare model file the way a device would: as a pack, through the runtime.

    The only place compress/ creates an inference session, so that what is evaluated is what
    ships. The runtime keeps the model bytes in memory, so the temporary pack can go at once
    (a scratch folder: one left by a killed process is removed by the next call).
    """
    with scratch_dir("edgepack-eval-") as tmp:
        pack = tmp / "eval"
        assemble_pack(pack, [path], name="eval")
        return load(pack, backend="onnxruntime", threads=threads)


def classification_metrics(labels: np.ndarray, predictions: np.ndarray) -> dict[str, float]:
    """Accuracy and macro-averaged F1, precision and recall, in percent.

    Macro averages run over the classes present in labels or predictions, as scikit-learn
    does by default; a class with no predicted (or no true) samples scores 0 there.
    """
    labels = np.asarray(labels).ravel()
    predictions = np.asarray(predictions).ravel()
    if labels.shape != predictions.shape or labels.size == 0:
        raise InputError(
            f"need as many predictions as labels (at least one); got {predictions.size} "
            f"predictions for {labels.size} labels"
        )
    classes = np.union1d(labels, predictions)
    hit = (labels[:, None] == classes) & (predictions[:, None] == classes)
    true_pos = hit.sum(0).astype(np.float64)
    predicted = (predictions[:, None] == classes).sum(0)
    actual = (labels[:, None] == classes).sum(0)
    precision = np.divide(true_pos, predicted, out=np.zeros_like(true_pos), where=predicted > 0)
    recall = np.divide(true_pos, actual, out=np.zeros_like(true_pos), where=actual > 0)
    denom = precision + recall
    f1 = np.divide(2 * precision * recall, denom, out=np.zeros_like(denom), where=denom > 0)
    return {
        "accuracy": 100.0 * float(np.mean(labels == predictions)),
        "macro_f1": 100.0 * float(f1.mean()),
        "precision": 100.0 * float(precision.mean()),
        "recall": 100.0 * float(recall.mean()),
    }


def agreement_metrics(outputs: np.ndarray, reference: np.ndarray) -> dict[str, float]:
    """How closely outputs track reference (fp32) outputs: argmax agreement and mean cosine.

    Both in percent; cosine is the mean per-sample cosine similarity times 100.
    """
    if outputs.shape != reference.shape:
        raise InputError(
            f"outputs have shape {outputs.shape} but the reference has {reference.shape}"
        )
    a = outputs.reshape(len(outputs), -1).astype(np.float64)
    b = reference.reshape(len(reference), -1).astype(np.float64)
    norms = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    cosine = np.divide((a * b).sum(1), norms, out=np.ones(len(a)), where=norms > 0)
    agree = outputs.argmax(-1) == reference.argmax(-1)
    return {"agreement": 100.0 * float(agree.mean()), "cosine": 100.0 * float(cosine.mean())}


@dataclass(frozen=True)
class Evaluation:
    """Metrics of one model on one dataset, and its raw outputs for later comparison."""

    metrics: dict[str, float]
    outputs: np.ndarray


def run_batched(
    model: PathLike | Model,
    data: ArrayDataset | Mapping[str, np.ndarray],
    *,
    output: str | None = None,
    batch_size: int = DEVICE_BATCH,
    threads: int | None = None,
    progress: bool = True,
    desc: str = "run",
) -> np.ndarray:
    """Run a model over a dataset in batches and stack one output (the first by default).

    By default as the device runs it: one sample at a time, each batch's text padding trimmed
    to its longest sample (see evaluation_conditions), so what is scored is what ships."""
    runner = model if isinstance(model, Model) else open_model(model, threads)
    data = match_inputs(as_dataset(data), runner.entry.inputs, "evaluation data")
    names = [s.name for s in runner.entry.outputs]
    output = output or names[0]
    if output not in names:
        raise InputError(f"the model has no output {output!r}; it has {names}")
    fixed = runner.entry.inputs[0].shape[0]
    step = fixed if isinstance(fixed, int) and fixed > 0 else batch_size
    trim = _has_dynamic_sequence(runner)
    chunks = [
        runner.run(_trim_padding(feeds) if trim else feeds)[output]
        for feeds in tqdm(
            data.batches(step), desc=desc, total=-(-len(data) // step), disable=not progress
        )
    ]
    return _stack(chunks)


def evaluation_conditions(batch_size: int = DEVICE_BATCH) -> dict[str, Any]:
    """How candidates were evaluated, for the pack's metrics: a figure means little without
    the batch size and padding it was measured at."""
    return {"eval_batch_size": batch_size, "eval_padding": DEVICE_PADDING}


def _has_dynamic_sequence(runner: Model) -> bool:
    specs = {s.name: s for s in runner.entry.inputs}
    mask = specs.get("attention_mask")
    return mask is not None and len(mask.shape) == 2 and not isinstance(mask.shape[1], int)


def _trim_padding(feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Cut the columns past the batch's longest text (the dataset is padded to its longest
    text overall), as the pack's `padding: longest` tokenizer would have sent them."""
    mask = feeds["attention_mask"]
    width = mask.shape[1]
    length = int(mask.sum(axis=1).max(initial=1))
    if length >= width:
        return feeds
    return {
        k: v[:, :length] if v.ndim >= 2 and v.shape[1] == width else v for k, v in feeds.items()
    }


def _stack(chunks: list[np.ndarray]) -> np.ndarray:
    """Concatenate batch outputs; per-token outputs of trimmed batches get zero padding back."""
    shape = np.max([c.shape for c in chunks], axis=0)
    if all(c.shape[1:] == tuple(shape[1:]) for c in chunks):
        return np.concatenate(chunks)
    padded = [
        np.pad(c, [(0, 0)] + [(0, s - n) for s, n in zip(shape[1:], c.shape[1:], strict=True)])
        for c in chunks
    ]
    return np.concatenate(padded)


def evaluate(
    model: PathLike | Model,
    data: ArrayDataset | Mapping[str, np.ndarray],
    *,
    reference: np.ndarray | None = None,
    output: str | None = None,
    batch_size: int = DEVICE_BATCH,
    threads: int | None = None,
    progress: bool = True,
    desc: str = "evaluate",
) -> Evaluation:
    """Score a model: label metrics when the data has labels, agreement when given reference.

    >>> fp32 = evaluate("model.onnx", data)  # doctest: +SKIP
    >>> int8 = evaluate("model.int8.onnx", data, reference=fp32.outputs)  # doctest: +SKIP
    >>> int8.metrics["accuracy"], int8.metrics["agreement"]  # doctest: +SKIP
    """
    data = as_dataset(data)
    if data.labels is None and reference is None:
        raise InputError(
            "the evaluation data has no labels and no reference outputs were given; "
            "pass labels, or reference= the fp32 model's outputs to measure agreement"
        )
    runner = model if isinstance(model, Model) else open_model(model, threads)
    classes = runner.entry.outputs[0].shape[-1] if output is None else None
    if data.labels is not None and isinstance(classes, int):
        _check_labels(data.labels, classes)  # before a long run, when the file says the count
    outputs = run_batched(
        runner,
        data,
        output=output,
        batch_size=batch_size,
        threads=threads,
        progress=progress,
        desc=desc,
    )
    metrics: dict[str, float] = {}
    if data.labels is not None:
        _check_labels(data.labels, outputs.shape[-1])
        metrics |= classification_metrics(data.labels, outputs.argmax(-1))
    if reference is not None:
        metrics |= agreement_metrics(outputs, reference)
    return Evaluation(metrics, outputs)


class ChanceLevelError(InputError):
    """The source model's fp32 accuracy is no better than guessing: nothing worth shipping."""


def check_above_chance(accuracy: float, labels: np.ndarray, source: str) -> None:
    """Refuse a source that scores no better than always answering the most common class.

    A base checkpoint (e.g. MiniLM from a hub) loaded for classification gets a random head;
    quantizing it writes a pack that is confidently meaningless (45.7% on a 2-class task)."""
    counts = np.bincount(np.asarray(labels).ravel())
    majority = 100.0 * float(counts.max()) / float(counts.sum())
    if accuracy <= majority:
        raise ChanceLevelError(
            f"{source} scores {accuracy:.1f}% fp32 accuracy on the evaluation data, no better "
            f"than always answering its most common class ({majority:.1f}%): it has not learned "
            "this task. Train it first (a Hugging Face folder: `edgepack finetune MODEL --train "
            "train.tsv --eval dev.tsv -o finetuned/`), or check the evaluation data's labels"
        )


def _check_labels(labels: np.ndarray, num_classes: int) -> None:
    outside = labels[(labels < 0) | (labels >= num_classes)]
    if outside.size:
        raise InputError(
            f"labels {sorted({int(v) for v in outside})[:5]} are outside the model's "
            f"{num_classes} classes (0..{num_classes - 1}); check the label column or the model"
        )


@dataclass(frozen=True)
class Latency:
    """Wall time of single runs: median and 90th percentile in milliseconds."""

    p50_ms: float
    p90_ms: float
    runs: int


def measure_latency(
    models: Sequence[PathLike | Model],
    feeds: Mapping[str, np.ndarray],
    *,
    threads: int | None = 1,
    warmup: int = 5,
    min_runs: int = 20,
    min_seconds: float = 0.5,
) -> list[Latency]:
    """p50/p90 of each model on the same feeds, measured side by side in one call.

    The timing is the harness's own loop (edgepack.benchmarks.scenarios.measure): models take
    turns in short blocks, so a change in machine load hits all of them alike, and compress
    times candidates exactly as `edgepack bench` times packs.
    """
    from edgepack.benchmarks.scenarios import measure

    runners = [m if isinstance(m, Model) else open_model(m, threads) for m in models]
    calls = [lambda runner=runner: runner.run(dict(feeds)) for runner in runners]
    latencies, _ = measure(calls, warmup=warmup, min_count=min_runs, min_duration_s=min_seconds)
    return [
        Latency(float(np.percentile(t, 50)) * 1e3, float(np.percentile(t, 90)) * 1e3, len(t))
        for t in latencies
    ]
