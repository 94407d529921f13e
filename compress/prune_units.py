"""The prunable units of a model, how each is scored and how it is removed: attention heads and FFN
neurons of BERT-layout encoders, and CNN channels in Torch-Pruning's coupled groups.

Both families answer the same four calls: score (importance from training batches), ratio_plans
and step_plans (what to remove), apply (remove it from a model or from a copy of it).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from tqdm import tqdm

from edgepack.runtime.errors import InputError

from .export_onnx import _call


def logits_of(model: nn.Module, feeds: Mapping[str, torch.Tensor]) -> torch.Tensor:
    """The first output of a module or the logits of a Hugging Face model."""
    output = _call(model, feeds)
    if hasattr(output, "logits"):
        return output.logits
    return output[0] if isinstance(output, tuple | list) else output


@dataclass(frozen=True)
class Removal:
    """Units to remove: their kind, {layer key: unit indices}, and their summed importance
    (the first-order loss change expected from removing them)."""

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

    def ratio_plans(self, keep: Mapping[str, float | None]) -> list[Removal]:
        """Removals that leave keep["heads_keep"] of the original heads (over all layers) and
        keep["ffn_keep"] of each layer's original FFN neurons; None keeps that kind whole."""
        plans = []
        if keep.get("heads_keep") is not None:
            total = sum(len(s) for s in self.scores["heads"])
            plans.append(
                self._heads_plan(total - _keep(self.original["heads"], keep["heads_keep"]))
            )
        if keep.get("ffn_keep") is not None:
            per_layer = self.original["ffn"] // len(self.scores["ffn"])
            current = len(self.scores["ffn"][0])
            plans.append(self._ffn_plan(current - _keep(per_layer, keep["ffn_keep"])))
        return [p for p in plans if p.count]

    def step_plans(self, fraction: float, min_keep: float) -> list[Removal]:
        """Two candidates: `fraction` of the heads left (the lowest over all layers), or of each
        layer's FFN neurons, never below min_keep of the original count."""
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

    def _heads_plan(self, count: int) -> Removal:
        """The `count` lowest heads over all layers, keeping at least one in each layer."""
        pool = sorted(
            (float(score), layer, head)
            for layer, scores in enumerate(self.scores["heads"])
            for head, score in enumerate(scores)
        )
        left = [len(scores) for scores in self.scores["heads"]]
        removal: dict[int, list[int]] = {}
        total = 0.0
        for value, layer, head in pool:
            if count <= 0:
                break
            if left[layer] > 1:
                removal.setdefault(layer, []).append(head)
                left[layer] -= 1
                total += value
                count -= 1
        return Removal("heads", removal, total)

    def _ffn_plan(self, count: int) -> Removal:
        """The `count` lowest neurons of every layer (the same count in each)."""
        if count <= 0:
            return Removal("ffn", {}, 0.0)
        removal = {i: _lowest(s, count) for i, s in enumerate(self.scores["ffn"])}
        total = sum(float(self.scores["ffn"][i][idx].sum()) for i, idx in removal.items())
        return Removal("ffn", removal, total)

    def apply(self, model: nn.Module, plan: Removal) -> None:
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
        loss = nn.functional.cross_entropy(logits_of(model, feeds), labels)
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
            forward_fn=lambda m, _: logits_of(m, self.example),
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
                logits_of(model, self.example)
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
                nn.functional.cross_entropy(logits_of(model, feeds), labels).backward()
                seen += len(labels)
                bar.update(len(labels))
            bar.close()
        self.scores = {
            name: self.importance(g).detach() for name, g in self._groups(model, self.graph)
        }
        model.zero_grad(set_to_none=True)

    def ratio_plans(self, keep: Mapping[str, float | None]) -> list[Removal]:
        """Removals that leave keep["channels_keep"] of every group's original channels."""
        share = keep.get("channels_keep")
        if share is None:
            return []
        plans = []
        for name, scores in self.scores.items():
            drop = len(scores) - _keep(self.original[name], share)
            if drop > 0:
                idx = _lowest(scores, drop)
                plans.append(Removal(f"channels of {name}", {name: idx}, float(scores[idx].sum())))
        return plans

    def step_plans(self, fraction: float, min_keep: float) -> list[Removal]:
        """One candidate per group: `fraction` of its channels left, never below min_keep."""
        plans = []
        for name, scores in self.scores.items():
            drop = min(
                math.ceil(fraction * len(scores)),
                len(scores) - _keep(self.original[name], min_keep),
            )
            if drop > 0:
                idx = _lowest(scores, drop)
                plans.append(Removal(f"channels of {name}", {name: idx}, float(scores[idx].sum())))
        return plans

    def apply(self, model: nn.Module, plan: Removal) -> None:
        graph = self.graph if model is self.model else self._graph(model)
        groups = dict(self._groups(model, graph))
        for name, idx in plan.removal.items():
            groups[name].prune(idxs=idx)


def _keep(total: int, share: float) -> int:
    return max(1, round(total * share))


# Which units a model has: the one place that tells model families apart.
def units_for(
    model: nn.Module, example: Mapping[str, torch.Tensor], importance: str
) -> TransformerUnits | ChannelUnits:
    """TransformerUnits for a Hugging Face model, ChannelUnits (with that importance) otherwise."""
    if is_transformer(model):
        return TransformerUnits(model)
    return ChannelUnits(model, dict(example), importance)


def is_transformer(model: nn.Module) -> bool:
    from transformers import PreTrainedModel

    return isinstance(model, PreTrainedModel)
