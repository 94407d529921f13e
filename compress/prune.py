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

from edgepack.runtime.errors import ExportError, InputError

from .data import ArrayDataset, TextDataset
from .evaluate import _open_model, evaluate, predict
from .export_onnx import _call, export_hf, export_onnx

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
class PruneOptions:
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

    def __post_init__(self) -> None:
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

    def to_dict(self) -> dict[str, Any]:
        """The options a recipe file records (None fields left out)."""
        return {k: v for k, v in asdict(self).items() if v is not None}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PruneOptions:
        """Options from a recipe's stage table; an unknown key names the closest valid one."""
        known = [f.name for f in fields(cls)]
        for key in data:
            if key not in known:
                close = difflib.get_close_matches(key, known, n=1)
                hint = f"; did you mean {close[0]!r}?" if close else f"; expected one of {known}"
                raise InputError(f"unknown prune option {key!r}{hint}")
        return cls(**data)


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


# --- Unit families: what can be removed, how it is scored and removed -----------------------------


@dataclass(frozen=True)
class _Plan:
    """Units to remove: kind, {layer key: unit indices}, and their summed importance."""

    kind: str
    removal: dict[Any, list[int]]
    importance: float

    @property
    def count(self) -> int:
        return sum(len(v) for v in self.removal.values())

    def describe(self) -> str:
        return f"{self.kind} -{self.count}"


def _lowest(scores: torch.Tensor, count: int) -> list[int]:
    return sorted(torch.argsort(scores)[:count].tolist())


class TransformerUnits:
    """Attention heads and FFN neurons of a BERT-layout encoder (base_model.encoder.layer[i]
    with attention.self, intermediate.dense and output.dense: BERT, RoBERTa, ELECTRA, MiniLM).

    Both are scored by |activation x gradient| summed per unit (Molchanov et al. 2017): for a
    head that is its context output times its gradient, which equals the gradient of the loss
    with respect to a mask on that head (Michel et al. 2019), so both kinds are first-order
    estimates of the loss change, on one scale. Heads go through the model's own prune_heads
    (recorded in config.pruned_heads); FFN neurons are sliced out of intermediate.dense and
    output.dense, the same number in every layer, so config.intermediate_size stays valid and a
    stock from_pretrained reloads the folder.
    """

    kinds = ("heads", "ffn")

    def __init__(self, model: nn.Module):
        self.model = model
        base = getattr(model, "base_model", None)
        layers = getattr(getattr(base, "encoder", None), "layer", None)
        layer = layers[0] if layers else None
        if layer is None or not all(
            hasattr(layer, path) for path in ("attention", "intermediate", "output")
        ):
            kind = getattr(getattr(model, "config", None), "model_type", type(model).__name__)
            raise InputError(
                f"cannot prune heads and FFN neurons of {kind}: expected a BERT-layout encoder "
                "(bert, roberta, electra, MiniLM) with encoder.layer[i].attention/intermediate"
            )
        self.original = {"heads": self._heads_total(model), "ffn": self._ffn_total(model)}
        self.scores: dict[str, list[torch.Tensor]] = {}

    @staticmethod
    def _layers(model: nn.Module) -> list[nn.Module]:
        return list(model.base_model.encoder.layer)

    def _heads_total(self, model: nn.Module) -> int:
        return sum(la.attention.self.num_attention_heads for la in self._layers(model))

    def _ffn_total(self, model: nn.Module) -> int:
        return sum(la.intermediate.dense.out_features for la in self._layers(model))

    def counts(self, model: nn.Module) -> dict[str, int]:
        return {"heads": self._heads_total(model), "ffn": self._ffn_total(model)}

    def score(self, model: nn.Module, batches: Iterator, samples: int, progress: bool) -> None:
        """Accumulate |sum(activation x gradient)| per head and per FFN neuron over batches."""
        layers = self._layers(model)
        totals = {
            "heads": [torch.zeros(la.attention.self.num_attention_heads) for la in layers],
            "ffn": [torch.zeros(la.intermediate.dense.out_features) for la in layers],
        }
        captured: list[tuple[str, int, torch.Tensor]] = []

        def keep(kind: str, index: int) -> Callable:
            def hook(module: nn.Module, args: Any, output: Any) -> None:
                tensor = output[0] if isinstance(output, tuple) else output
                tensor.retain_grad()
                captured.append((kind, index, tensor))

            return hook

        handles = []
        for i, la in enumerate(layers):
            handles.append(la.attention.self.register_forward_hook(keep("heads", i)))
            handles.append(la.intermediate.register_forward_hook(keep("ffn", i)))
        model.eval()  # scores of the deterministic model, without dropout noise
        try:
            _run_scoring(model, batches, samples, progress, captured, totals, _unit_sums)
        finally:
            for handle in handles:
                handle.remove()
        self.scores = totals

    def ratio_plans(self, options: PruneOptions) -> list[_Plan]:
        plans = []
        if options.heads_keep is not None:
            total = sum(len(s) for s in self.scores["heads"])
            plans.append(
                self._heads_plan(total - _keep(self.original["heads"], options.heads_keep))
            )
        if options.ffn_keep is not None:
            per_layer = self.original["ffn"] // len(self.scores["ffn"])
            current = len(self.scores["ffn"][0])
            plans.append(self._ffn_plan(current - _keep(per_layer, options.ffn_keep)))
        return [p for p in plans if p.count]

    def step_plans(self, fraction: float, min_keep: float) -> list[_Plan]:
        heads = sum(len(s) for s in self.scores["heads"])
        layers = len(self.scores["ffn"])
        floor_heads = _keep(self.original["heads"] // layers, min_keep) * layers
        current = len(self.scores["ffn"][0])
        floor_ffn = _keep(self.original["ffn"] // layers, min_keep)
        plans = [
            self._heads_plan(min(math.ceil(fraction * heads), heads - floor_heads)),
            self._ffn_plan(min(math.ceil(fraction * current), current - floor_ffn)),
        ]
        return [p for p in plans if p.count > 0]

    def _heads_plan(self, count: int) -> _Plan:
        """The `count` lowest heads over all layers, keeping at least one in each layer."""
        pool = [(float(s), layer, h) for layer, ss in enumerate(self.scores["heads"]) for h, s in
                enumerate(ss)]  # fmt: skip
        left = [len(ss) for ss in self.scores["heads"]]
        removal: dict[int, list[int]] = {}
        total = 0.0
        for value, layer, head in sorted(pool):
            if count <= 0:
                break
            if left[layer] > 1:
                removal.setdefault(layer, []).append(head)
                left[layer] -= 1
                total += value
                count -= 1
        return _Plan("heads", removal, total)

    def _ffn_plan(self, count: int) -> _Plan:
        """The `count` lowest neurons of every layer (the same count in each)."""
        removal = {i: _lowest(s, count) for i, s in enumerate(self.scores["ffn"])}
        total = sum(float(self.scores["ffn"][i][idx].sum()) for i, idx in removal.items())
        return _Plan("ffn", removal if count > 0 else {}, total)

    def apply(self, model: nn.Module, plan: _Plan) -> None:
        from transformers.pytorch_utils import prune_linear_layer

        layers = self._layers(model)
        if plan.kind == "heads":
            # prune_heads takes the original head numbers; the scores index the current heads.
            pruned = model.config.pruned_heads
            mapping = {}
            for layer, heads in plan.removal.items():
                original = layers[layer].attention.self.num_attention_heads + len(
                    pruned.get(layer, ())
                )
                alive = [h for h in range(original) if h not in set(pruned.get(layer, ()))]
                mapping[layer] = [alive[h] for h in heads]
            model.prune_heads(mapping)
            return
        for layer, drop in plan.removal.items():
            block = layers[layer]
            width = block.intermediate.dense.out_features
            kept = torch.tensor([i for i in range(width) if i not in set(drop)], dtype=torch.long)
            block.intermediate.dense = prune_linear_layer(block.intermediate.dense, kept, dim=0)
            block.output.dense = prune_linear_layer(block.output.dense, kept, dim=1)
        model.config.intermediate_size = layers[0].intermediate.dense.out_features


def _run_scoring(
    model: nn.Module,
    batches: Iterator,
    samples: int,
    progress: bool,
    captured: list,
    totals: dict[str, list[torch.Tensor]],
    reduce: Callable[[torch.Tensor, int], torch.Tensor],
) -> None:
    """Forward and backward over about `samples` training samples; per batch, add the reduced
    activation x gradient of every captured tensor to totals[kind][layer]."""
    seen = 0
    bar = tqdm(total=samples, desc="importance", disable=not progress)
    while seen < samples:
        feeds, labels = next(batches)
        captured.clear()
        model.zero_grad(set_to_none=True)
        loss = nn.functional.cross_entropy(_logits(model, feeds), labels)
        loss.backward()
        for kind, index, tensor in captured:
            totals[kind][index] += reduce(tensor, len(totals[kind][index])).detach()
        seen += len(labels)
        bar.update(len(labels))
    bar.close()
    model.zero_grad(set_to_none=True)


def _unit_sums(tensor: torch.Tensor, units: int) -> torch.Tensor:
    """|sum of activation x gradient| per unit over batch and tokens; the last axis holds the
    units' features (a head's features are contiguous: units x head size)."""
    product = (tensor * tensor.grad).sum(dim=tuple(range(tensor.ndim - 1)))
    return product.view(units, -1).sum(1).abs()


def _taylor_importance() -> Any:
    import torch_pruning as tp

    # No normalizer: raw |weight x gradient| is a first-order loss change, comparable across
    # groups, which the latency-aware step needs.
    return tp.importance.TaylorImportance(normalizer=None)


def _magnitude_importance() -> Any:
    import torch_pruning as tp

    return tp.importance.MagnitudeImportance(p=2, normalizer=None)


# The swappable channel importance: name -> a factory of a Torch-Pruning importance callable.
CHANNEL_IMPORTANCES: dict[str, Callable[[], Any]] = {
    "taylor": _taylor_importance,
    "magnitude": _magnitude_importance,
}


class ChannelUnits:
    """Output channels of a CNN's Conv/Linear layers, in the coupled groups Torch-Pruning's
    dependency graph finds (a conv, its BatchNorm, the next layer's inputs, a residual sum...).
    The last Conv/Linear the forward pass calls produces the model's outputs and is left whole.
    The graph is built once for the model being pruned; candidate copies get their own."""

    kinds = ("channels",)

    def __init__(self, model: nn.Module, example: dict[str, torch.Tensor], importance: str):
        self.example = example
        self.importance = CHANNEL_IMPORTANCES[importance]()
        self.needs_gradients = importance == "taylor"
        self.model = model
        self.graph = self._graph(model)
        self.original = {name: len(g[0][1]) for name, g in self._groups(model, self.graph)}
        if not self.original:
            raise InputError(
                f"{type(model).__name__} has no prunable channel group: channels_keep needs "
                "Conv or Linear layers before the output layer"
            )
        self.scores: dict[str, torch.Tensor] = {}

    def _graph(self, model: nn.Module) -> Any:
        import torch_pruning as tp

        inputs = list(self.example.values())
        return tp.DependencyGraph().build_dependency(
            model,
            example_inputs=inputs[0] if len(inputs) == 1 else inputs,
            forward_fn=lambda m, _: _logits(m, self.example),
        )

    def _output_layer(self, model: nn.Module) -> nn.Module:
        called: list[nn.Module] = []
        handles = [
            m.register_forward_hook(lambda m, a, o: called.append(m))
            for m in model.modules()
            if isinstance(m, nn.Linear | nn.modules.conv._ConvNd)
        ]
        try:
            with torch.no_grad():
                _logits(model, self.example)
        finally:
            for handle in handles:
                handle.remove()
        return called[-1]

    def _groups(self, model: nn.Module, graph: Any) -> list[tuple[str, Any]]:
        names = {m: n for n, m in model.named_modules()}
        groups = graph.get_all_groups(
            ignored_layers=[self._output_layer(model)],
            root_module_types=(nn.modules.conv._ConvNd, nn.Linear),
        )
        return [(names[g[0].dep.target.module], g) for g in groups]

    def counts(self, model: nn.Module) -> dict[str, int]:
        graph = self.graph if model is self.model else self._graph(model)
        return {"channels": sum(len(g[0][1]) for _, g in self._groups(model, graph))}

    def score(self, model: nn.Module, batches: Iterator, samples: int, progress: bool) -> None:
        """Importance of every channel of every group; Taylor first accumulates gradients."""
        model.eval()
        if self.needs_gradients:
            model.zero_grad(set_to_none=True)
            seen = 0
            bar = tqdm(total=samples, desc="importance", disable=not progress)
            while seen < samples:
                feeds, labels = next(batches)
                nn.functional.cross_entropy(_logits(model, feeds), labels).backward()
                seen += len(labels)
                bar.update(len(labels))
            bar.close()
        self.scores = {
            name: self.importance(g).detach() for name, g in self._groups(model, self.graph)
        }
        model.zero_grad(set_to_none=True)

    def ratio_plans(self, options: PruneOptions) -> list[_Plan]:
        if options.channels_keep is None:
            return []
        plans = []
        for name, scores in self.scores.items():
            drop = len(scores) - _keep(self.original[name], options.channels_keep)
            if drop > 0:
                idx = _lowest(scores, drop)
                plans.append(_Plan(f"channels of {name}", {name: idx}, float(scores[idx].sum())))
        return plans

    def step_plans(self, fraction: float, min_keep: float) -> list[_Plan]:
        plans = []
        for name, scores in self.scores.items():
            drop = min(
                math.ceil(fraction * len(scores)),
                len(scores) - _keep(self.original[name], min_keep),
            )
            if drop > 0:
                idx = _lowest(scores, drop)
                plans.append(_Plan(f"channels of {name}", {name: idx}, float(scores[idx].sum())))
        return plans

    def apply(self, model: nn.Module, plan: _Plan) -> None:
        graph = self.graph if model is self.model else self._graph(model)
        groups = dict(self._groups(model, graph))
        for name, idx in plan.removal.items():
            groups[name].prune(idxs=idx)


def _keep(total: int, share: float) -> int:
    return max(1, round(total * share))


# --- Model families -------------------------------------------------------------------------------


def _is_transformer(model: nn.Module) -> bool:
    from transformers import PreTrainedModel

    return isinstance(model, PreTrainedModel)


def _logits(model: nn.Module, feeds: Mapping[str, torch.Tensor]) -> torch.Tensor:
    output = _call(model, feeds)
    if hasattr(output, "logits"):
        return output.logits
    return output[0] if isinstance(output, tuple | list) else output


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


def _export(model: nn.Module, data: _Data, path: Path, transformer: bool) -> Path:
    """The model as ONNX (torch.onnx; for transformers, batch and sequence axes dynamic)."""
    example = {k: torch.from_numpy(v) for k, v in data.latency_feeds.items()}
    axes = None
    if transformer:
        axes = {n: {0: "batch", 1: "sequence"} for n in example} | {"logits": {0: "batch"}}
    model.eval()
    return export_onnx(model, example, path, dynamic_axes=axes).path


@dataclass
class _Estimator:
    """Device latency estimates of ONNX files through benchmarks.predict (profile, threads)."""

    profile: Any
    threads: int
    shapes: dict[str, int]
    coefficients: Mapping[str, Any] | None

    def __call__(self, path: Path) -> float:
        from edgepack.benchmarks.predict import predict_latency

        from .cost import cost_summary

        cost = cost_summary(path, self.shapes)
        estimate = predict_latency(
            cost, self.profile, threads=self.threads, coefficients=self.coefficients
        )
        return float(estimate["latency_ms"])


def _measure(
    paths: list[Path], feeds: dict[str, np.ndarray], options: PruneOptions, progress: bool
) -> list[dict]:
    """Host p50/p90 of each file through the runtime, interleaved by the harness's timing loop."""
    from edgepack.benchmarks.scenarios import measure, progress_bar

    runners = [_open_model(p, options.threads) for p in paths]
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
        outputs = predict(model, data.eval, progress=progress, desc="evaluate")
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
    losses: list[float] = []
    bar = tqdm(total=steps, desc="fine-tune", disable=not progress)
    for step in range(steps):
        if on_step is not None:
            on_step(step)
        model.train()
        feeds, labels = next(batches)
        logits = _logits(model, feeds)
        if teacher is None:
            loss = nn.functional.cross_entropy(logits, labels)
        else:
            with torch.no_grad():
                target = _logits(teacher, feeds)
            loss = distillation_loss(logits, target, labels, temperature, alpha)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        schedule.step()
        losses.append(loss.item())
        bar.update()
        bar.set_postfix(loss=f"{np.mean(losses[-20:]):.3f}")
    bar.close()
    model.eval()
    return losses


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
    save_pretrained folder with its tokenizer, which reloads and exports to the same outputs).

    model: a Hugging Face sequence-classification folder or PreTrainedModel (heads, FFN
    neurons), or any nn.Module (CNN channels). train: labelled data for importance and
    fine-tuning; eval_data: what the metrics and the latency feed come from. teacher: the model
    distilled from when options.distill (default: a frozen copy of the unpruned model).
    tokenizer: for text data with a model object. coefficients: this host's microbenchmark
    coefficients for the estimator (default: the cached ones, measured on first use).
    Nothing is left in workdir when it fails part-way.
    """
    start = time.perf_counter()
    if not isinstance(options, PruneOptions):
        raise InputError(f"options must be PruneOptions, got {type(options).__name__}")
    module, tokenizer = _load_model(model, tokenizer)
    transformer = _is_transformer(module)
    _check_fit(options, transformer)
    data = _prepare_data(train, eval_data, tokenizer, options)
    module = module.eval()
    torch.manual_seed(options.seed)
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".prune-", dir=workdir) as tmp:
        scratch = Path(tmp)
        if options.method == "unstructured":
            outcome = _unstructured(module, data, options, scratch, transformer, progress, teacher)
        else:
            outcome = _structured(
                module, data, options, scratch, transformer, progress, teacher, coefficients
            )
        outcome |= _finish(module, data, tokenizer, scratch, transformer, progress)
        outcome["messages"] = tuple(outcome["messages"])
        for name in ("onnx", "model"):
            target = workdir / name
            if (scratch / name).exists():
                if target.exists():
                    shutil.rmtree(target)
                os.replace(scratch / name, target)
    onnx_path = workdir / "onnx" / "model.onnx"
    return PruneResult(
        options=options.to_dict(),
        family="transformer" if transformer else "cnn",
        model=module,
        onnx=onnx_path,
        model_dir=workdir / "model" if transformer else None,
        seconds=time.perf_counter() - start,
        **outcome,
    )


def _finish(
    module: nn.Module, data: _Data, tokenizer: Any, scratch: Path, transformer: bool, progress: bool
) -> dict[str, Any]:
    """Write the shipped form: a CNN's ONNX, or a transformer's save_pretrained folder that
    reloads to identical outputs and its Optimum export (checked against the reloaded model)."""
    if not transformer:
        (scratch / "onnx").mkdir()
        os.replace(scratch / "after.onnx", scratch / "onnx" / "model.onnx")  # already checked
        return {}
    from transformers import AutoModelForSequenceClassification

    folder = scratch / "model"
    module.save_pretrained(str(folder))
    if tokenizer is not None:
        tokenizer.save_pretrained(str(folder))
    reloaded = AutoModelForSequenceClassification.from_pretrained(str(folder)).eval()
    feeds = {k: torch.from_numpy(v) for k, v in data.eval.subset(slice(0, 8)).inputs.items()}
    with torch.no_grad():
        diff = float((_logits(module, feeds) - _logits(reloaded, feeds)).abs().max())
    if not diff <= RELOAD_ATOL:
        raise ExportError(
            f"the pruned model saved and reloaded gives different outputs (max abs diff "
            f"{diff:.3g}); the config does not describe the pruned shapes"
        )
    exported = export_hf(
        folder, scratch / "onnx", check_inputs=data.eval.subset(slice(0, 8)).inputs
    )
    return {"reload_max_abs_diff": diff, "export_max_abs_diff": exported.check.max_abs_diff}


def _baseline(module, data, scratch, transformer, progress):
    before = _export(module, data, scratch / "before.onnx", transformer)
    metrics, outputs = _scores(before, data, progress)
    return before, metrics, outputs


def _structured(
    module: nn.Module,
    data: _Data,
    options: PruneOptions,
    scratch: Path,
    transformer: bool,
    progress: bool,
    teacher: nn.Module | None,
    coefficients: Mapping[str, Any] | None,
) -> dict[str, Any]:
    batches = data.batches(options.batch_size, options.seed)
    example = {k: torch.from_numpy(v) for k, v in data.latency_feeds.items()}
    units = (
        TransformerUnits(module)
        if transformer
        else ChannelUnits(module, example, options.importance)
    )
    if options.distill and teacher is None:
        teacher = copy.deepcopy(module).eval()
    before, metrics_before, reference = _baseline(module, data, scratch, transformer, progress)
    params_before, units_before = _parameters(module), units.counts(module)
    messages: list[str] = []
    estimator = None
    if options.profile is not None:
        from edgepack.device_profiles import load_profile

        estimator = _Estimator(
            load_profile(options.profile),
            options.threads,
            {"batch": 1, "sequence": options.sequence_length},
            coefficients,
        )
    step_files = [before]
    steps = [
        PruneStep(
            0, "unpruned", units_before, params_before, estimator(before) if estimator else None
        )
    ]
    target_met = None
    if options.target_latency_ms is None:
        units.score(module, batches, options.importance_samples, progress)
        plans = units.ratio_plans(options)
        for plan in plans:
            units.apply(module, plan)
        pruned = _export(module, data, scratch / "pruned.onnx", transformer)
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
        target_met, why = _latency_loop(
            module, units, data, options, scratch, transformer, progress, batches, estimator,
            steps, step_files,
        )  # fmt: skip
        if not target_met:
            messages.append(why)
    losses = _finetune(module, batches, options, transformer, teacher, progress)
    after = _export(module, data, scratch / "after.onnx", transformer)
    metrics_after, _ = _scores(after, data, progress, reference=reference)
    latencies = _measure([*step_files, after], data.latency_feeds, options, progress)
    steps = [
        PruneStep(**{**asdict(s), "measured_p50_ms": lat["p50_ms"]})
        for s, lat in zip(steps, latencies, strict=False)
    ]
    latency_before, latency_after = latencies[0], latencies[-1]
    speedup = latency_before["p50_ms"] / latency_after["p50_ms"]
    if speedup < 1 / (1 - MIN_GAIN):
        messages.append(
            f"no measured gain: p50 {latency_before['p50_ms']:.3f} ms before pruning, "
            f"{latency_after['p50_ms']:.3f} ms after (x{speedup:.2f}) on this host at "
            f"{options.threads} thread(s)"
        )
    estimated_after = estimator(after) if estimator else None
    if target_met:  # fine-tuning changes weights, not shapes: this is a check, not a new figure
        target_met = estimated_after <= options.target_latency_ms
    return {
        "method": "structured",
        "parameters_before": params_before,
        "parameters_after": _parameters(module),
        "units_before": units_before,
        "units_after": units.counts(module),
        "onnx_bytes_before": before.stat().st_size,
        "onnx_bytes_after": after.stat().st_size,
        "metrics_before": metrics_before,
        "metrics_after": metrics_after,
        "latency_before": latency_before,
        "latency_after": latency_after,
        "measured_speedup": speedup,
        "finetune": _finetune_record(losses, teacher is not None),
        "steps": tuple(steps),
        "profile": options.profile,
        "estimated_before_ms": steps[0].estimated_ms,
        "estimated_after_ms": estimated_after,
        "target_latency_ms": options.target_latency_ms,
        "target_met": target_met,
        "messages": messages,
    }


def _latency_loop(
    module: nn.Module,
    units: TransformerUnits | ChannelUnits,
    data: _Data,
    options: PruneOptions,
    scratch: Path,
    transformer: bool,
    progress: bool,
    batches: Iterator,
    estimator: _Estimator,
    steps: list[PruneStep],
    step_files: list[Path],
) -> tuple[bool, str]:
    """NetAdapt-style: while the estimate is above the target, score the units, estimate each
    candidate removal on an exported copy, and apply the one that loses the least importance per
    millisecond saved. Returns (target met, why not)."""
    target = options.target_latency_ms
    current = steps[-1].estimated_ms
    bar = tqdm(total=options.max_steps, desc="latency steps", disable=not progress)
    try:
        for number in range(1, options.max_steps + 1):
            if current <= target:
                return True, ""
            units.score(module, batches, options.importance_samples, progress=False)
            best = None
            for index, plan in enumerate(units.step_plans(options.step_fraction, options.min_keep)):
                candidate = copy.deepcopy(module)
                units.apply(candidate, plan)
                path = _export(candidate, data, scratch / f"candidate-{index}.onnx", transformer)
                saved = current - estimator(path)
                path.unlink()
                if saved > 0:
                    cost = plan.importance / saved
                    if best is None or cost < best[0]:
                        best = (cost, plan, current - saved)
            if best is None:
                return False, (
                    f"target {target} ms on {options.profile} not met: estimate "
                    f"{current:.3f} ms after {number - 1} step(s); no unit can go without "
                    f"falling below min_keep={options.min_keep} or no removal lowers the estimate"
                )
            _, plan, current = best
            units.apply(module, plan)
            step_files.append(_export(module, data, scratch / f"step-{number}.onnx", transformer))
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


def _finetune(
    module, batches, options, transformer, teacher, progress, on_step=None
) -> list[float]:
    if options.finetune_steps == 0:
        if on_step is not None:
            on_step(0)
        return []
    rate = options.learning_rate or (5e-5 if transformer else 1e-3)
    return finetune_pruned(
        module,
        batches,
        options.finetune_steps,
        rate,
        teacher=teacher if options.distill else None,
        temperature=options.temperature,
        alpha=options.alpha,
        on_step=on_step,
        progress=progress,
    )


def _finetune_record(losses: list[float], distilled: bool) -> dict[str, Any]:
    tail = max(1, len(losses) // 10)
    return {
        "steps": len(losses),
        "distilled": distilled,
        "final_loss": float(np.mean(losses[-tail:])) if losses else None,
    }


def _unstructured(
    module: nn.Module,
    data: _Data,
    options: PruneOptions,
    scratch: Path,
    transformer: bool,
    progress: bool,
    teacher: nn.Module | None,
) -> dict[str, Any]:
    """Global magnitude pruning of Linear/Conv weights on the cubic schedule while fine-tuning."""
    from torch.nn.utils import prune as torch_prune

    batches = data.batches(options.batch_size, options.seed)
    if options.distill and teacher is None:
        teacher = copy.deepcopy(module).eval()
    before, metrics_before, reference = _baseline(module, data, scratch, transformer, progress)
    params_before = _parameters(module)
    targets = [
        (m, "weight")
        for m in module.modules()
        if isinstance(m, nn.Linear | nn.modules.conv._ConvNd)
    ]
    total = sum(m.weight.numel() for m, _ in targets)
    span = max(1, int(SCHEDULE_SPAN * options.finetune_steps))
    events = {
        min(span, round(i * span / options.schedule_steps)): i
        for i in range(1, options.schedule_steps + 1)
    }
    if options.finetune_steps == 0:
        events = {0: options.schedule_steps}  # one shot: nothing to spread the schedule over

    def on_step(step: int) -> None:
        if step not in events:
            return
        wanted = round(
            cubic_sparsity(events[step], options.schedule_steps, options.sparsity) * total
        )
        zeros = sum(int((m.weight == 0).sum()) for m, _ in targets)
        if wanted > zeros:
            torch_prune.global_unstructured(
                targets, pruning_method=torch_prune.L1Unstructured, amount=wanted - zeros
            )

    losses = _finetune(module, batches, options, transformer, teacher, progress, on_step)
    for m, name in targets:
        if torch_prune.is_pruned(m):
            torch_prune.remove(m, name)
    zeros = sum(int((m.weight == 0).sum()) for m, _ in targets)
    after = _export(module, data, scratch / "after.onnx", transformer)
    metrics_after, _ = _scores(after, data, progress, reference=reference)
    latency_before, latency_after = _measure([before, after], data.latency_feeds, options, progress)
    deflate_before, deflate_after = _deflated(before), _deflated(after)
    sparsity = zeros / total
    speedup = latency_before["p50_ms"] / latency_after["p50_ms"]
    messages = [
        f"unstructured sparsity {sparsity:.0%} leaves the graph dense: it does not speed up dense "
        f"kernels (measured p50 {latency_before['p50_ms']:.3f} -> {latency_after['p50_ms']:.3f} "
        f"ms on this host) and the file is as large; what it gives is a smaller "
        f"deflate-compressed file for over-the-air updates: {deflate_before / 1e6:.2f} -> "
        f"{deflate_after / 1e6:.2f} MB"
    ]
    return {
        "method": "unstructured",
        "parameters_before": params_before,
        "parameters_after": _parameters(module),
        "units_before": {"nonzero_weights": total},
        "units_after": {"nonzero_weights": total - zeros},
        "onnx_bytes_before": before.stat().st_size,
        "onnx_bytes_after": after.stat().st_size,
        "metrics_before": metrics_before,
        "metrics_after": metrics_after,
        "latency_before": latency_before,
        "latency_after": latency_after,
        "measured_speedup": speedup,
        "finetune": _finetune_record(losses, teacher is not None),
        "sparsity": sparsity,
        "deflate_bytes_before": deflate_before,
        "deflate_bytes_after": deflate_after,
        "messages": messages,
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
