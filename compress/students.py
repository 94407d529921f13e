"""Students made from a teacher: a BERT-family classifier with fewer layers and/or a narrower FFN,
initialised from the teacher's weights, or a CNN narrowed by Torch-Pruning's channel pruning.

A student that starts from the teacher's weights learns in a fraction of the steps of one that
starts from random ones (TinyBERT, DistilBERT both initialise this way).
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import torch

from edgepack.runtime.errors import InputError

FfnInit = Literal["magnitude", "first"]
# Hugging Face model types whose encoder is `encoder.layer[i]` with BERT's FFN (intermediate.dense
# then output.dense) and self-attention (attention.self.query/key/value): what the layer copy
# and the attention losses rely on.
BERT_LAYOUT = ("bert", "roberta", "xlm-roberta", "electra", "camembert")


def is_bert_family(model: Any) -> bool:
    """True for a Hugging Face model whose encoder has BERT's layout (see BERT_LAYOUT)."""
    config = getattr(model, "config", None)
    return getattr(config, "model_type", None) in BERT_LAYOUT


def encoder_layers(model: Any) -> torch.nn.ModuleList:
    """The transformer layers of a BERT-family model, in order."""
    if not is_bert_family(model):
        kind = getattr(getattr(model, "config", None), "model_type", type(model).__name__)
        raise InputError(
            f"{kind} is not a BERT-family Hugging Face model; layer and FFN students and the "
            f"hidden/attention losses support model types {list(BERT_LAYOUT)}"
        )
    return model.base_model.encoder.layer


def bert_student(
    teacher: Any,
    layers: Sequence[int] | None = None,
    intermediate_size: int | None = None,
    ffn_init: FfnInit = "magnitude",
) -> Any:
    """A copy of a BERT-family teacher keeping only `layers` (teacher layer indices, in order)
    and `intermediate_size` FFN neurons per layer, initialised from the teacher's weights.

    ffn_init picks the FFN neurons kept: "magnitude" keeps, per layer, the neurons j with the
    largest |W_in[j, :]| * |W_out[:, j]| (L2 norms of the weights into and out of neuron j: a
    data-free importance; data-driven scores are the prune stage's job), "first" the first k.
    Embeddings, pooler and classifier are the teacher's.

    >>> student = bert_student(teacher, layers=[0, 2, 4], intermediate_size=768)  # doctest: +SKIP
    """
    blocks = encoder_layers(teacher)
    count = len(blocks)
    layers = list(range(count)) if layers is None else list(layers)
    check_layers(layers, count)
    width = teacher.config.intermediate_size
    if intermediate_size is not None and not 0 < intermediate_size <= width:
        raise InputError(
            f"intermediate_size {intermediate_size} must be in 1..{width} (the teacher's FFN)"
        )
    config = copy.deepcopy(teacher.config)
    config.num_hidden_layers = len(layers)
    config.intermediate_size = intermediate_size or width
    student = type(teacher)(config)
    keep = [
        ffn_neurons(blocks[t], config.intermediate_size, ffn_init) if intermediate_size else None
        for t in layers
    ]
    student.load_state_dict(_student_state(teacher.state_dict(), layers, keep), strict=True)
    return student.eval()


def check_layers(layers: Sequence[int], count: int) -> None:
    """Reject a layer list that is empty, out of range, repeated or out of order."""
    if not layers or any(not isinstance(i, int) or not 0 <= i < count for i in layers):
        raise InputError(
            f"layers {list(layers)} must be teacher layer indices in 0..{count - 1} "
            f"(the teacher has {count} layers), e.g. [0, 2, 4]"
        )
    if list(layers) != sorted(set(layers)):
        raise InputError(f"layers {list(layers)} must be increasing and without repeats")


def ffn_neurons(block: torch.nn.Module, k: int, how: FfnInit = "magnitude") -> torch.Tensor:
    """Indices (sorted) of the k FFN neurons of a BERT layer to keep."""
    if how == "first":
        return torch.arange(k)
    if how != "magnitude":
        raise InputError(f"ffn_init {how!r}; expected 'magnitude' or 'first'")
    w_in = block.intermediate.dense.weight  # [intermediate, hidden]
    w_out = block.output.dense.weight  # [hidden, intermediate]
    score = w_in.norm(dim=1) * w_out.norm(dim=0)
    return score.topk(k).indices.sort().values


def _student_state(
    state: Mapping[str, torch.Tensor],
    layers: Sequence[int],
    keep: Sequence[torch.Tensor | None],
) -> dict[str, torch.Tensor]:
    """The teacher's state dict renamed to the student's layer numbers, FFN rows sliced."""
    source = {t: s for s, t in enumerate(layers)}
    pattern = re.compile(r"^(.*\.encoder\.layer\.)(\d+)\.(.*)$")
    out: dict[str, torch.Tensor] = {}
    for name, tensor in state.items():
        match = pattern.match(name)
        if match is None:
            out[name] = tensor.clone()
            continue
        prefix, teacher_layer, rest = match.groups()
        if int(teacher_layer) not in source:
            continue
        student_layer = source[int(teacher_layer)]
        rows = keep[student_layer]
        if rows is not None and rest.startswith("intermediate.dense."):
            tensor = tensor[rows]  # weight [intermediate, hidden] and bias [intermediate]
        elif rows is not None and rest == "output.dense.weight":
            tensor = tensor[:, rows]  # [hidden, intermediate]
        out[f"{prefix}{student_layer}.{rest}"] = tensor.clone()
    return out


def narrow_cnn(
    teacher: torch.nn.Module,
    keep: float,
    example_inputs: torch.Tensor,
    *,
    ignored_layers: Sequence[torch.nn.Module] | None = None,
) -> torch.nn.Module:
    """A copy of a CNN with `keep` of its channels (and hidden units) in every prunable layer,
    removed by Torch-Pruning's dependency graph with L2-magnitude importance.

    The classifier (the last Conv/Linear run by the forward pass) keeps its outputs, which are
    the classes; ignored_layers adds more layers to leave whole (by their module in `teacher`).

    >>> student = narrow_cnn(digits_cnn(), keep=0.5, example_inputs=torch.zeros(1, 1, 8, 8))
    >>> student[0].out_channels
    16
    """
    import torch_pruning as tp

    if not 0 < keep <= 1:
        raise InputError(f"keep {keep!r} must be in (0, 1]: the fraction of channels kept")
    student = copy.deepcopy(teacher).eval()
    if keep == 1:
        return student
    names = {module: name for name, module in teacher.named_modules()}
    copies = dict(student.named_modules())
    ignored = [copies[names[m]] for m in (ignored_layers or ())]
    ignored.append(_last_layer(student, example_inputs))
    pruner = tp.pruner.MetaPruner(
        student,
        example_inputs,
        importance=tp.importance.MagnitudeImportance(p=2),
        pruning_ratio=1.0 - keep,
        ignored_layers=ignored,
    )
    pruner.step()
    return student


def _last_layer(model: torch.nn.Module, example_inputs: torch.Tensor) -> torch.nn.Module:
    order: list[torch.nn.Module] = []
    handles = [
        m.register_forward_hook(lambda module, args, output: order.append(module))
        for m in model.modules()
        if isinstance(m, torch.nn.Linear | torch.nn.modules.conv._ConvNd)
    ]
    try:
        with torch.no_grad():
            model(example_inputs)
    finally:
        for handle in handles:
            handle.remove()
    if not order:
        raise InputError(
            f"{type(model).__name__} has no Conv or Linear layer for channel pruning to narrow"
        )
    return order[-1]
