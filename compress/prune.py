"""Pruning: remove whole units (attention heads and FFN neurons of BERT-family encoders, channels
of CNNs through Torch-Pruning's dependency graph) by ratio or until a device latency estimate
meets a target, then fine-tune; or sparsify weights by global magnitude on a cubic schedule.

Every figure it reports about speed is measured through edgepack.runtime on this host, or is an
estimate (labelled so) for a device profile.

>>> options = PruneOptions(ffn_keep=0.5, heads_keep=0.5)  # doctest: +SKIP
>>> result = prune("teacher/", train, dev, options, "work/prune")  # doctest: +SKIP
>>> result.latency_after["p50_ms"] / result.latency_before["p50_ms"]  # doctest: +SKIP
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import math
import os
import shutil
import tempfile
import time
import zlib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from edgepack.compress.errors import ExportError
from edgepack.runtime.errors import InputError

from .data import ArrayDataset, TextDataset
from .evaluate import evaluate, open_model, run_batched
from .export_onnx import export_hf, export_onnx
from .options import StageOptions
from .prune_units import (
    CHANNEL_IMPORTANCES,
    ChannelUnits,
    TransformerUnits,
    is_transformer,
    logits_of,
    units_for,
)
from .training import LossLog, optimizer_step

PathLike = str | os.PathLike[str]
METHODS = ("structured", "unstructured")
RATIO_KEYS = ("heads_keep", "ffn_keep", "channels_keep")
# A structured run whose p50 is not at least this much below the unpruned model's reports that
# pruning gave no measured gain: two measurements of one model differ by about this much here.
MIN_GAIN = 0.03
# Share of the fine-tuning steps over which the cubic schedule raises sparsity; the rest recovers.
SCHEDULE_SPAN = 0.75
# A reloaded model must reproduce the pruned one exactly (same weights, same kernels).
RELOAD_ATOL = 1e-5


# --- Options and results --------------------------------------------------------------------------


@dataclass(frozen=True)
class PruneOptions(StageOptions):
    """What a prune stage does; validated at construction, round-trips through to_dict/from_dict.

    method: "structured" removes whole units, "unstructured" zeroes single weights.
    Structured, by ratio (any of): heads_keep (share of attention heads kept, ranked over all
    layers, at least one per layer), ffn_keep (share of FFN neurons kept in every layer, the same
    count in each, so the config's intermediate_size stays valid), channels_keep (share of each
    CNN channel group kept). Or by latency: target_latency_ms estimated on `profile` at
    `threads`; each step removes step_fraction of one unit kind (or one channel group), the
    candidate with the least importance lost per estimated millisecond saved (NetAdapt), never
    below min_keep of a layer's original units, at most max_steps steps.
    Unstructured: sparsity, the final share of zero weights in Linear/Conv layers, reached over
    schedule_steps pruning events on a cubic schedule during fine-tuning.
    importance: "taylor" (|activation x gradient|, first-order loss change) or "magnitude"
    (L2 norm of the weights; CNN channels only).
    Fine-tuning: finetune_steps of batch_size (0: none), AdamW at learning_rate (None: 5e-5 for
    transformers, 1e-3 for CNNs); distill: against the unpruned model (or the teacher given),
    loss = alpha x T^2 x KL(teacher/T || student/T) + (1 - alpha) x cross-entropy.
    Latency: measured on this host through the runtime at `threads`, batch 1, text at
    sequence_length tokens, for at least measure_seconds per model, interleaved.
    """

    method: str = "structured"
    heads_keep: float | None = None
    ffn_keep: float | None = None
    channels_keep: float | None = None
    target_latency_ms: float | None = None
    profile: str | None = None
    step_fraction: float = 0.1
    min_keep: float = 0.1
    max_steps: int = 50
    sparsity: float | None = None
    schedule_steps: int = 10
    importance: str = "taylor"
    importance_samples: int = 256
    finetune_steps: int = 200
    batch_size: int = 32
    learning_rate: float | None = None
    distill: bool = True
    temperature: float = 2.0
    alpha: float = 0.5
    max_length: int = 128
    sequence_length: int = 64
    threads: int = 1
    measure_seconds: float = 1.0
    seed: int = 0

    def validate(self) -> None:
        _one_of("method", self.method, METHODS)
        _one_of("importance", self.importance, tuple(CHANNEL_IMPORTANCES))
        for name in RATIO_KEYS:
            value = getattr(self, name)
            if value is not None and not (_is_number(value) and 0 < value <= 1):
                raise InputError(f"{name} must be a share in (0, 1], got {value!r}")
        if self.sparsity is not None and not (_is_number(self.sparsity) and 0 <= self.sparsity < 1):
            raise InputError(f"sparsity must be in [0, 1), got {self.sparsity!r}")
        ratios = [name for name in RATIO_KEYS if getattr(self, name) is not None]
        if self.method == "structured":
            if self.sparsity is not None:
                raise InputError(
                    "sparsity applies to method 'unstructured'; this one is structured"
                )
            if self.target_latency_ms is not None and ratios:
                raise InputError(
                    f"give either keep ratios ({', '.join(ratios)}) or target_latency_ms, not both"
                )
            if self.target_latency_ms is None and not ratios:
                raise InputError(
                    "structured pruning needs heads_keep, ffn_keep, channels_keep or "
                    "target_latency_ms (with profile)"
                )
        else:
            if self.sparsity is None:
                raise InputError("unstructured pruning needs sparsity, the share of zero weights")
            if ratios or self.target_latency_ms is not None:
                given = ", ".join(ratios or ["target_latency_ms"])
                raise InputError(f"{given} apply to method 'structured'; this one is unstructured")
        if self.target_latency_ms is not None:
            if not (_is_number(self.target_latency_ms) and self.target_latency_ms > 0):
                raise InputError(f"target_latency_ms must be > 0, got {self.target_latency_ms!r}")
            if not self.profile:
                raise InputError(
                    "target_latency_ms needs profile, the device it is estimated on "
                    "(e.g. profile = 'rpi4-1.8ghz')"
                )
        if self.profile is not None:
            _check_profile(self.profile)
        shares = {"step_fraction": self.step_fraction, "min_keep": self.min_keep}
        for name, value in shares.items():
            if not (_is_number(value) and 0 < value < 1):
                raise InputError(f"{name} must be in (0, 1), got {value!r}")
        counts = {
            "max_steps": (self.max_steps, 1),
            "schedule_steps": (self.schedule_steps, 1),
            "importance_samples": (self.importance_samples, 1),
            "finetune_steps": (self.finetune_steps, 0),
            "batch_size": (self.batch_size, 1),
            "max_length": (self.max_length, 1),
            "sequence_length": (self.sequence_length, 1),
            "threads": (self.threads, 1),
        }
        for name, (value, least) in counts.items():
            if not isinstance(value, int) or isinstance(value, bool) or value < least:
                raise InputError(f"{name} must be an integer >= {least}, got {value!r}")
        positive = {
            "temperature": self.temperature,
            "measure_seconds": self.measure_seconds,
            "learning_rate": 1.0 if self.learning_rate is None else self.learning_rate,
        }
        for name, value in positive.items():
            if not (_is_number(value) and value > 0):
                raise InputError(f"{name} must be > 0, got {value!r}")
        if not (_is_number(self.alpha) and 0 <= self.alpha <= 1):
            raise InputError(f"alpha must be in [0, 1], got {self.alpha!r}")


@dataclass(frozen=True)
class PruneStep:
    """One state of the model on the way to the target: what the step removed, what remains,
    the device estimate and (filled after all steps, measured side by side) the host p50."""

    step: int
    action: str
    units: dict[str, int]
    parameters: int
    estimated_ms: float | None
    importance_removed: float = 0.0
    measured_p50_ms: float | None = None


@dataclass(frozen=True)
class PruneResult:
    """The pruned model (in memory, as ONNX, and as a Hugging Face folder for transformers) and
    its figures before and after. latency_* are host measurements through the runtime;
    estimated_* are device estimates (only with a latency target). messages: what a user must
    know (no measured gain, target missed, what unstructured sparsity does not give)."""

    method: str
    family: str
    options: dict[str, Any]
    model: nn.Module = field(repr=False)
    onnx: Path
    model_dir: Path | None
    parameters_before: int
    parameters_after: int
    units_before: dict[str, int]
    units_after: dict[str, int]
    onnx_bytes_before: int
    onnx_bytes_after: int
    metrics_before: dict[str, float]
    metrics_after: dict[str, float]
    latency_before: dict[str, float]
    latency_after: dict[str, float]
    measured_speedup: float
    finetune: dict[str, Any]
    seconds: float
    steps: tuple[PruneStep, ...] = ()
    profile: str | None = None
    estimated_before_ms: float | None = None
    estimated_after_ms: float | None = None
    target_latency_ms: float | None = None
    target_met: bool | None = None
    sparsity: float | None = None
    deflate_bytes_before: int | None = None
    deflate_bytes_after: int | None = None
    reload_max_abs_diff: float | None = None
    export_max_abs_diff: float | None = None
    messages: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready figures (the model object left out; paths as strings)."""
        data = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "model"}
        data["onnx"] = str(self.onnx)
        data["model_dir"] = None if self.model_dir is None else str(self.model_dir)
        data["steps"] = [asdict(s) for s in self.steps]
        data["messages"] = list(self.messages)
        return data


# --- Schedules and losses -------------------------------------------------------------------------


def cubic_sparsity(step: int, steps: int, final: float, initial: float = 0.0) -> float:
    """Sparsity at pruning event `step` of `steps` (Zhu & Gupta 2017, eq. 1):
    s_t = s_f + (s_i - s_f) (1 - t/n)^3. It rises fast while many weights are redundant and
    slowly near the end, when each weight removed costs more.

    >>> [round(cubic_sparsity(t, 4, 0.8), 4) for t in range(5)]
    [0.0, 0.4625, 0.7, 0.7875, 0.8]
    """
    t = min(max(step, 0), steps)
    return final + (initial - final) * (1 - t / steps) ** 3


def distillation_loss(
    student: torch.Tensor,
    teacher: torch.Tensor,
    labels: torch.Tensor | None,
    temperature: float,
    alpha: float,
) -> torch.Tensor:
    """Hinton et al. 2015: alpha x T^2 x KL(softmax(teacher/T) || softmax(student/T)) plus
    (1 - alpha) x cross-entropy on the labels. T^2 keeps the soft term's gradients on the scale
    of the hard one as T changes."""
    soft = nn.functional.kl_div(
        nn.functional.log_softmax(student / temperature, -1),
        nn.functional.log_softmax(teacher / temperature, -1),
        log_target=True,
        reduction="batchmean",
    )
    loss = alpha * temperature**2 * soft
    if labels is not None and alpha < 1:
        loss = loss + (1 - alpha) * nn.functional.cross_entropy(student, labels)
    return loss


# --- Data -----------------------------------------------------------------------------------------


@dataclass
class _Data:
    """Training and evaluation data in the form each consumer takes: torch batches for training
    and importance, an ArrayDataset for the runtime, one batch-1 feed for latency."""

    train: ArrayDataset | TextDataset
    eval: ArrayDataset
    tokenizer: Any
    max_length: int
    latency_feeds: dict[str, np.ndarray]

    def example(self) -> dict[str, torch.Tensor]:
        """The batch-1 latency feed as tensors: what exports trace and the graph is built on."""
        return {k: torch.from_numpy(v) for k, v in self.latency_feeds.items()}

    def batches(self, batch_size: int, seed: int) -> Iterator[tuple[dict[str, torch.Tensor], Any]]:
        """Shuffled (feeds, labels) batches without end, epoch after epoch."""
        order = torch.Generator().manual_seed(seed)
        labels = torch.as_tensor(self.train.labels)
        while True:
            for index in torch.randperm(len(self.train), generator=order).split(batch_size):
                if isinstance(self.train, TextDataset):
                    feeds = self.tokenizer(
                        [self.train.texts[i] for i in index],
                        padding="longest",
                        truncation=True,
                        max_length=self.max_length,
                        return_tensors="pt",
                    )
                    feeds = dict(feeds)
                else:
                    feeds = {
                        k: torch.from_numpy(v[index.numpy()]) for k, v in self.train.inputs.items()
                    }
                yield feeds, labels[index].long()


def _prepare_data(
    train: ArrayDataset | TextDataset,
    eval_data: ArrayDataset | TextDataset,
    tokenizer: Any,
    options: PruneOptions,
) -> _Data:
    for role, data in (("training", train), ("evaluation", eval_data)):
        if not isinstance(data, ArrayDataset | TextDataset):
            raise InputError(
                f"the {role} data is a {type(data).__name__}; expected an ArrayDataset or a "
                "TextDataset (see edgepack.compress.data.load_dataset)"
            )
        if isinstance(data, TextDataset) and tokenizer is None:
            raise InputError(
                f"the {role} data is text but there is no tokenizer; pass a Hugging Face model "
                "folder (its tokenizer is used) or tokenizer="
            )
    if train.labels is None:
        raise InputError("the training data has no labels; pruning fine-tunes on labelled data")
    if isinstance(eval_data, TextDataset):
        eval_arrays = eval_data.tokenize(tokenizer, options.max_length)
        encoded = tokenizer(
            [eval_data.texts[0]],
            padding="max_length",
            truncation=True,
            max_length=options.sequence_length,
            return_tensors="np",
        )
        feeds = {k: np.asarray(v, np.int64) for k, v in encoded.items()}
    else:
        eval_arrays = eval_data
        feeds = {k: v[:1] for k, v in eval_data.inputs.items()}
    return _Data(train, eval_arrays, tokenizer, options.max_length, feeds)


# --- Model families -------------------------------------------------------------------------------


def _parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _load_model(model: nn.Module | PathLike, tokenizer: Any) -> tuple[nn.Module, Any]:
    """(module, tokenizer) from a Hugging Face model folder, or a copy of a module: the caller's
    model is left as it was."""
    if isinstance(model, nn.Module):
        return copy.deepcopy(model), tokenizer
    folder = Path(model)
    if not (folder / "config.json").is_file():
        raise InputError(
            f"{folder} is not a Hugging Face model folder (no config.json); pass a folder or an "
            "nn.Module"
        )
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    module = AutoModelForSequenceClassification.from_pretrained(str(folder)).eval()
    return module, tokenizer or AutoTokenizer.from_pretrained(str(folder))


def _check_fit(options: PruneOptions, transformer: bool) -> None:
    """Options that name units this model does not have are refused before any work."""
    wrong = ("channels_keep",) if transformer else ("heads_keep", "ffn_keep")
    given = [name for name in wrong if getattr(options, name) is not None]
    if given:
        has = "attention heads and FFN neurons" if transformer else "channels"
        raise InputError(
            f"{', '.join(given)} does not apply to this model, which has {has}; use "
            f"{'heads_keep/ffn_keep' if transformer else 'channels_keep'}"
        )
    if transformer and options.method == "structured" and options.importance != "taylor":
        raise InputError(
            f"importance {options.importance!r} applies to CNN channels; transformer heads and "
            "FFN neurons are scored by 'taylor' (activation x gradient)"
        )


# --- Export, estimate, measure --------------------------------------------------------------------


def _export(model: nn.Module, data: _Data, path: Path) -> Path:
    """The model as ONNX through torch.onnx, checked through the runtime (for transformers,
    batch and sequence axes dynamic)."""
    example = data.example()
    axes = None
    if is_transformer(model):
        axes = {n: {0: "batch", 1: "sequence"} for n in example} | {"logits": {0: "batch"}}
    model.eval()
    return export_onnx(model, example, path, dynamic_axes=axes).path


def _estimator(options: PruneOptions, coefficients: Mapping[str, Any] | None) -> _Estimator | None:
    """The device estimator when options name a profile."""
    if options.profile is None:
        return None
    from edgepack.device_profiles import load_profile

    shapes = {"batch": 1, "sequence": options.sequence_length}
    return _Estimator(load_profile(options.profile), options.threads, shapes, coefficients)


@dataclass
class _Estimator:
    """Device latency estimates of ONNX files through benchmarks.estimate (profile, threads)."""

    profile: Any
    threads: int
    shapes: dict[str, int]
    coefficients: Mapping[str, Any] | None

    def __call__(self, path: Path) -> float:
        from edgepack.benchmarks.estimate import estimate_latency

        from .cost import cost_summary

        cost = cost_summary(path, self.shapes)
        estimate = estimate_latency(
            cost, self.profile, threads=self.threads, coefficients=self.coefficients
        )
        return float(estimate["latency_ms"])


def _measure(
    paths: list[Path], feeds: dict[str, np.ndarray], options: PruneOptions, progress: bool
) -> list[dict]:
    """Host p50/p90 of each file through the runtime, interleaved by the harness's timing loop."""
    from edgepack.benchmarks.scenarios import measure, progress_bar

    runners = [open_model(p, options.threads) for p in paths]
    latencies, _ = measure(
        [lambda r=r: r.run(dict(feeds)) for r in runners],
        warmup=5,
        min_count=20,
        min_duration_s=options.measure_seconds,
        progress=progress_bar("latency") if progress else None,
    )
    return [
        {
            "p50_ms": float(np.percentile(t, 50) * 1e3),
            "p90_ms": float(np.percentile(t, 90) * 1e3),
            "runs": len(t),
            "threads": options.threads,
            "label": "measured on this host through edgepack.runtime",
        }
        for t in latencies
    ]


def _scores(model: Path, data: _Data, progress: bool, reference: np.ndarray | None = None):
    """(metrics, outputs) of an ONNX file on the evaluation data, through the runtime."""
    if data.eval.labels is None and reference is None:
        outputs = run_batched(model, data.eval, progress=progress, desc="evaluate")
        return {}, outputs
    result = evaluate(model, data.eval, reference=reference, progress=progress)
    return result.metrics, result.outputs


# --- Fine-tuning ----------------------------------------------------------------------------------


def finetune_pruned(
    model: nn.Module,
    batches: Iterator,
    steps: int,
    learning_rate: float,
    *,
    teacher: nn.Module | None = None,
    temperature: float = 2.0,
    alpha: float = 0.5,
    on_step: Callable[[int], None] | None = None,
    progress: bool = True,
) -> list[float]:
    """AdamW with linear decay over `steps` batches; with a teacher, the distillation loss.
    on_step(i) runs before step i (the gradual schedule prunes there). Returns each step's loss."""
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=learning_rate, weight_decay=0.01)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda i: max(0.0, 1 - i / steps))
    if teacher is not None:
        teacher.eval()
    log = LossLog(steps, "fine-tune", progress=progress)
    for step in range(steps):
        if on_step is not None:
            on_step(step)
        model.train()
        feeds, labels = next(batches)
        logits = logits_of(model, feeds)
        if teacher is None:
            loss = nn.functional.cross_entropy(logits, labels)
        else:
            with torch.no_grad():
                target = logits_of(teacher, feeds)
            loss = distillation_loss(logits, target, labels, temperature, alpha)
        optimizer_step(loss, optimizer, schedule, params, clip_norm=1.0)
        log.add(loss.item())
    log.close()
    model.eval()
    return log.losses


# --- The entry point ------------------------------------------------------------------------------


def prune(
    model: nn.Module | PathLike,
    train: ArrayDataset | TextDataset,
    eval_data: ArrayDataset | TextDataset,
    options: PruneOptions,
    workdir: PathLike,
    progress: bool = True,
    *,
    teacher: nn.Module | None = None,
    tokenizer: Any = None,
    coefficients: Mapping[str, Any] | None = None,
) -> PruneResult:
    """Prune `model` as `options` say, fine-tune it, and write it to workdir: onnx/model.onnx
    (the pruned model, checked through the runtime) and, for a Hugging Face model, model/ (a
    save_pretrained folder with its tokenizer, which reloads to the same outputs; onnx/ is its
    Optimum export, with the tokenizer files beside it).

    model: a Hugging Face sequence-classification folder or PreTrainedModel (heads, FFN
    neurons), or any nn.Module (CNN channels); a module passed in is copied, not changed.
    train: labelled data for importance and fine-tuning; eval_data: what the metrics and the
    latency feed come from. teacher: the model distilled from when options.distill (default: a
    frozen copy of the unpruned model). tokenizer: for text data with a model object.
    coefficients: this host's microbenchmark coefficients for the estimator (default: the cached
    ones, measured on first use). Nothing is left in workdir when it fails part-way.
    """
    start = time.perf_counter()
    if not isinstance(options, PruneOptions):
        raise InputError(f"options must be PruneOptions, got {type(options).__name__}")
    module, tokenizer = _load_model(model, tokenizer)
    transformer = is_transformer(module)
    _check_fit(options, transformer)
    data = _prepare_data(train, eval_data, tokenizer, options)
    torch.manual_seed(options.seed)
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    method = _structured if options.method == "structured" else _unstructured
    with tempfile.TemporaryDirectory(prefix=".prune-", dir=workdir) as tmp:
        scratch = Path(tmp)
        outcome = method(
            _Run(module.eval(), data, options, scratch, progress, teacher, coefficients)
        )
        for name in ("onnx", "model"):  # the shipped form, moved in only once all went well
            if (scratch / "after" / name).exists():
                if (workdir / name).exists():
                    shutil.rmtree(workdir / name)
                os.replace(scratch / "after" / name, workdir / name)
    return PruneResult(
        method=options.method,
        family="transformer" if transformer else "cnn",
        options=options.to_dict(),
        model=module,
        onnx=workdir / "onnx" / "model.onnx",
        model_dir=workdir / "model" if transformer else None,
        seconds=time.perf_counter() - start,
        **outcome,
    )


def _ship(module: nn.Module, data: _Data, folder: Path) -> tuple[Path, dict[str, float]]:
    """The model in the form that ships, in folder/onnx/model.onnx: a CNN's torch.onnx export;
    a transformer's save_pretrained folder (folder/model), checked to reload to identical
    outputs, and its Optimum export (checked against the reloaded model), as the recipe's export
    stage makes it. Returns the ONNX path and the checks' figures."""
    if not is_transformer(module):
        return _export(module, data, folder / "onnx" / "model.onnx"), {}
    from transformers import AutoModelForSequenceClassification

    module.save_pretrained(str(folder / "model"))
    if data.tokenizer is not None:
        data.tokenizer.save_pretrained(str(folder / "model"))
    reloaded = AutoModelForSequenceClassification.from_pretrained(str(folder / "model")).eval()
    sample = data.eval.subset(slice(0, 8)).inputs
    feeds = {k: torch.from_numpy(v) for k, v in sample.items()}
    with torch.no_grad():
        diff = float((logits_of(module.eval(), feeds) - logits_of(reloaded, feeds)).abs().max())
    if not diff <= RELOAD_ATOL:
        raise ExportError(
            f"the pruned model saved and reloaded gives different outputs (max abs diff "
            f"{diff:.3g}); its config does not describe the pruned shapes"
        )
    exported = export_hf(folder / "model", folder / "onnx", check_inputs=sample)
    return exported.path, {
        "reload_max_abs_diff": diff,
        "export_max_abs_diff": exported.check.max_abs_diff,
    }


@dataclass
class _Shipped:
    """One shipped form of the model (its ONNX file) with its scores on the evaluation data."""

    path: Path
    metrics: dict[str, float]
    outputs: np.ndarray
    checks: dict[str, float]  # reload and export differences (transformers)


@dataclass
class _Run:
    """What both methods work on: the model being pruned (in place), its data and options, the
    scratch folder for exports, the teacher (when distilling) and the estimator's coefficients."""

    module: nn.Module
    data: _Data
    options: PruneOptions
    scratch: Path
    progress: bool
    teacher: nn.Module | None
    coefficients: Mapping[str, Any] | None

    def __post_init__(self) -> None:
        self.batches = self.data.batches(self.options.batch_size, self.options.seed)

    def unpruned(self) -> _Shipped:
        """The 'before' of every figure: the unpruned model shipped and scored. When distilling
        without a given teacher, a frozen copy of it becomes the teacher."""
        if self.options.distill and self.teacher is None:
            self.teacher = copy.deepcopy(self.module).eval()
        return self.ship("before")

    def ship(self, name: str, reference: np.ndarray | None = None) -> _Shipped:
        """The model as it ships, in scratch/name, scored (against reference, when given)."""
        path, checks = _ship(self.module, self.data, self.scratch / name)
        metrics, outputs = _scores(path, self.data, self.progress, reference=reference)
        return _Shipped(path, metrics, outputs, checks)

    def finetune(self, on_step: Callable[[int], None] | None = None) -> list[float]:
        """finetune_pruned as the options say (distilled from the teacher when asked);
        on_step(i) runs before step i, and once with 0 when there are no steps."""
        options = self.options
        if options.finetune_steps == 0:
            if on_step is not None:
                on_step(0)
            return []
        default = 5e-5 if is_transformer(self.module) else 1e-3
        return finetune_pruned(
            self.module,
            self.batches,
            options.finetune_steps,
            options.learning_rate or default,
            teacher=self.teacher if options.distill else None,
            temperature=options.temperature,
            alpha=options.alpha,
            on_step=on_step,
            progress=self.progress,
        )


def _figures(
    run: _Run,
    before: _Shipped,
    after: _Shipped,
    latency: tuple[dict[str, float], dict[str, float]],
    losses: list[float],
) -> dict[str, Any]:
    """The PruneResult fields both methods fill alike, from the model before and after."""
    return {
        "onnx_bytes_before": before.path.stat().st_size,
        "onnx_bytes_after": after.path.stat().st_size,
        "metrics_before": before.metrics,
        "metrics_after": after.metrics,
        "latency_before": latency[0],
        "latency_after": latency[1],
        "measured_speedup": latency[0]["p50_ms"] / latency[1]["p50_ms"],
        "finetune": _finetune_record(losses, run.options.distill),
        **after.checks,
    }


def _structured(run: _Run) -> dict[str, Any]:
    """Score, remove (by ratio or step by step to the latency target), fine-tune; every state
    estimated when a profile is given, and all of them measured side by side at the end."""
    module, data, options, scratch = run.module, run.data, run.options, run.scratch
    units = units_for(module, data.example(), options.importance)
    unpruned = run.unpruned()
    before = unpruned.path
    estimator = _estimator(options, run.coefficients)
    # Steps are compared with each other, so all go through one exporter (torch.onnx, fast);
    # for a CNN that is the shipped form itself.
    first = before if not is_transformer(module) else _export(module, data, scratch / "step-0.onnx")
    step_files = [first]
    units_before, params_before = units.counts(module), _parameters(module)
    steps = [
        PruneStep(
            0, "unpruned", units_before, params_before, estimator(first) if estimator else None
        )
    ]
    messages: list[str] = []
    target_met = None
    if options.target_latency_ms is None:
        units.score(module, run.batches, options.importance_samples, run.progress)
        plans = units.ratio_plans({k: getattr(options, k) for k in RATIO_KEYS})
        for plan in plans:
            units.apply(module, plan)
        pruned = _export(module, data, scratch / "step-1.onnx")
        step_files.append(pruned)
        steps.append(
            PruneStep(
                1,
                ", ".join(p.describe() for p in plans) or "nothing to remove",
                units.counts(module),
                _parameters(module),
                estimator(pruned) if estimator else None,
                sum(p.importance for p in plans),
            )
        )
    else:
        target_met, why = _latency_loop(run, units, estimator, steps, step_files)
        if not target_met:
            messages.append(why)
    losses = run.finetune()
    final = run.ship("after", reference=unpruned.outputs)
    after = final.path
    files = list(dict.fromkeys([before, *step_files, after]))  # a CNN's step 0 is `before`
    timed = _measure(files, data.latency_feeds, options, run.progress)
    measured = dict(zip(files, timed, strict=True))
    steps = [
        dataclasses.replace(s, measured_p50_ms=measured[f]["p50_ms"])
        for s, f in zip(steps, step_files, strict=True)
    ]
    figures = _figures(run, unpruned, final, (measured[before], measured[after]), losses)
    speedup = figures["measured_speedup"]
    if speedup < 1 / (1 - MIN_GAIN):
        messages.append(
            f"no measured gain: p50 {measured[before]['p50_ms']:.3f} ms before pruning, "
            f"{measured[after]['p50_ms']:.3f} ms after (x{speedup:.2f}) on this host at "
            f"{options.threads} thread(s)"
        )
    return {
        **figures,
        "parameters_before": params_before,
        "parameters_after": _parameters(module),
        "units_before": units_before,
        "units_after": units.counts(module),
        "steps": tuple(steps),
        "profile": options.profile,
        "estimated_before_ms": estimator(before) if estimator else None,
        "estimated_after_ms": estimator(after) if estimator else None,
        "target_latency_ms": options.target_latency_ms,
        "target_met": target_met,
        "messages": tuple(messages),
    }


def _latency_loop(
    run: _Run,
    units: TransformerUnits | ChannelUnits,
    estimator: _Estimator,
    steps: list[PruneStep],
    step_files: list[Path],
) -> tuple[bool, str]:
    """NetAdapt-style: while the estimate is above the target, score the units, estimate each
    candidate removal on an exported copy, and apply the one that loses the least importance per
    millisecond saved. Appends each step; returns (target met, why not)."""
    module, data, options, scratch = run.module, run.data, run.options, run.scratch
    target = options.target_latency_ms
    current = steps[-1].estimated_ms
    bar = tqdm(total=options.max_steps, desc="latency steps", disable=not run.progress)
    try:
        for number in range(1, options.max_steps + 1):
            if current <= target:
                return True, ""
            units.score(module, run.batches, options.importance_samples, progress=False)
            best = None
            for index, plan in enumerate(units.step_plans(options.step_fraction, options.min_keep)):
                candidate = copy.deepcopy(module)
                units.apply(candidate, plan)
                path = _export(candidate, data, scratch / f"candidate-{index}.onnx")
                estimate = estimator(path)
                path.unlink()
                saved = current - estimate
                if saved > 0 and (best is None or plan.importance / saved < best[0]):
                    best = (plan.importance / saved, plan, estimate)
            if best is None:
                return False, (
                    f"target {target} ms on {options.profile} not met: estimate "
                    f"{current:.3f} ms after {number - 1} step(s); every unit left is at "
                    f"min_keep={options.min_keep}, or no removal lowers the estimate"
                )
            _, plan, current = best
            units.apply(module, plan)
            step_files.append(_export(module, data, scratch / f"step-{number}.onnx"))
            steps.append(
                PruneStep(
                    number,
                    plan.describe(),
                    units.counts(module),
                    _parameters(module),
                    current,
                    plan.importance,
                )
            )
            bar.update()
            bar.set_postfix(estimate=f"{current:.3f} ms")
    finally:
        bar.close()
    if current <= target:
        return True, ""
    return False, (
        f"target {target} ms on {options.profile} not met after max_steps={options.max_steps} "
        f"steps: estimate {current:.3f} ms"
    )


def _finetune_record(losses: list[float], distilled: bool) -> dict[str, Any]:
    tail = max(1, len(losses) // 10)
    return {
        "steps": len(losses),
        "distilled": distilled and bool(losses),
        "final_loss": float(np.mean(losses[-tail:])) if losses else None,
    }


def _unstructured(run: _Run) -> dict[str, Any]:
    """Global magnitude pruning of Linear/Conv weights on the cubic schedule while fine-tuning,
    pruning at schedule_steps evenly spaced steps over the first SCHEDULE_SPAN of them."""
    from torch.nn.utils import prune as torch_prune

    module, options = run.module, run.options
    before = run.unpruned()
    params = [
        (m, "weight")
        for m in module.modules()
        if isinstance(m, nn.Linear | nn.modules.conv._ConvNd)
    ]
    total = sum(m.weight.numel() for m, _ in params)
    span = max(1, int(SCHEDULE_SPAN * options.finetune_steps))
    n = options.schedule_steps
    events = {min(span, round(i * span / n)): i for i in range(1, n + 1)}
    if options.finetune_steps == 0:
        events = {0: n}  # one shot: there are no steps to spread the schedule over

    def zeros() -> int:
        return sum(int((m.weight == 0).sum()) for m, _ in params)

    def on_step(step: int) -> None:
        if step in events:
            wanted = round(cubic_sparsity(events[step], n, options.sparsity) * total)
            if wanted > (have := zeros()):
                # Among the weights still unpruned; the masks keep the pruned ones at zero.
                torch_prune.global_unstructured(
                    params, pruning_method=torch_prune.L1Unstructured, amount=wanted - have
                )

    losses = run.finetune(on_step)
    for m, name in params:
        if torch_prune.is_pruned(m):
            torch_prune.remove(m, name)  # fold the mask into the weight
    sparsity = zeros() / total
    after = run.ship("after", reference=before.outputs)
    latency = _measure([before.path, after.path], run.data.latency_feeds, options, run.progress)
    latency_before, latency_after = latency
    deflate_before, deflate_after = _deflated(before.path), _deflated(after.path)
    message = (
        f"unstructured sparsity {sparsity:.0%} leaves every tensor dense: it does not speed up "
        f"dense kernels (measured p50 {latency_before['p50_ms']:.3f} -> "
        f"{latency_after['p50_ms']:.3f} ms on this host) nor shrink the file; it shrinks the "
        f"deflate-compressed file, for over-the-air updates: {deflate_before / 1e6:.3f} -> "
        f"{deflate_after / 1e6:.3f} MB"
    )
    return {
        **_figures(run, before, after, (latency_before, latency_after), losses),
        "parameters_before": _parameters(module),
        "parameters_after": _parameters(module),
        "units_before": {"weights": total, "nonzero_weights": total},
        "units_after": {"weights": total, "nonzero_weights": total - zeros()},
        "sparsity": sparsity,
        "deflate_bytes_before": deflate_before,
        "deflate_bytes_after": deflate_after,
        "messages": (message,),
    }


def _deflated(path: Path) -> int:
    """Bytes of the file compressed with deflate (zlib, level 9): what a sparse model saves on
    the wire; a zero weight costs a few bits there and four bytes in the file."""
    return len(zlib.compress(path.read_bytes(), 9))


# --- Option checks --------------------------------------------------------------------------------


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _one_of(name: str, value: Any, allowed: tuple[str, ...]) -> None:
    if value in allowed:
        return
    close = difflib.get_close_matches(str(value), allowed, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    raise InputError(f"unknown {name} {value!r}; expected one of {list(allowed)}{hint}")


def _check_profile(name: str) -> None:
    from edgepack.device_profiles import list_profiles

    if name.endswith(".toml") or os.sep in name:
        if not Path(name).is_file():
            raise InputError(f"profile file {name} does not exist")
        return
    _one_of("profile", name, tuple(list_profiles()))
