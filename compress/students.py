"""Students made from a teacher: a BERT-family classifier with fewer layers and/or a narrower FFN,
initialised from the teacher's weights, or a CNN narrowed by Torch-Pruning's channel pruning; and
vocabulary trimming, which keeps only the word pieces a text student needs.

A student that starts from the teacher's weights learns in a fraction of the steps of one that
starts from random ones (TinyBERT, DistilBERT both initialise this way).
"""

from __future__ import annotations

import copy
import json
import re
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import torch

from edgepack.runtime.errors import InputError, PreprocessingError

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


def trim_vocab(
    student: torch.nn.Module, tokenizer: Any, texts: Sequence[str], max_length: int = 128
) -> tuple[torch.nn.Module, Any, torch.Tensor]:
    """Keep only the word pieces that occur in the training data plus the special tokens: the
    embedding rows are sliced (in vocabulary order) and a new WordPiece tokenizer is written.

    Returns the student, its tokenizer and remap (old id -> new id; pieces dropped map to
    [UNK]). Checks that the new tokenizer gives remap[old ids] for every training text and
    encodes every kept whole-word piece as itself; raises PreprocessingError otherwise.
    """
    from transformers import AutoTokenizer

    if getattr(tokenizer, "vocab_files_names", {}).get("vocab_file") != "vocab.txt":
        raise InputError(
            f"trim_vocab needs a WordPiece tokenizer (one with a vocab.txt); got "
            f"{type(tokenizer).__name__}"
        )
    ids = tokenizer(list(texts), truncation=True, max_length=max_length)["input_ids"]
    old = {int(i) for row in ids for i in row} | set(tokenizer.all_special_ids)
    keep = torch.tensor(sorted(old))
    size = len(tokenizer)
    remap = torch.full((size,), -1, dtype=torch.long)
    remap[keep] = torch.arange(len(keep))
    remap[remap < 0] = int(remap[tokenizer.unk_token_id])
    pieces = tokenizer.convert_ids_to_tokens(keep.tolist())

    with tempfile.TemporaryDirectory(prefix="edgepack-vocab-") as tmp:
        scratch = Path(tmp)
        tokenizer.save_pretrained(tmp)
        (scratch / "vocab.txt").write_text("\n".join(pieces) + "\n", encoding="utf-8")
        (scratch / "tokenizer.json").unlink(missing_ok=True)  # rebuilt from vocab.txt
        _renumber_added_tokens(scratch / "tokenizer_config.json", remap, set(keep.tolist()))
        trimmed = AutoTokenizer.from_pretrained(tmp)

    new_ids = trimmed(list(texts), truncation=True, max_length=max_length)["input_ids"]
    for text, before, after in zip(texts, ids, new_ids, strict=True):
        if remap[torch.as_tensor(before)].tolist() != list(after):
            raise PreprocessingError(f"the trimmed tokenizer encodes {text!r} differently")
    words = [p for p in pieces if not p.startswith("##") and p not in tokenizer.all_special_tokens]
    if words:
        encoded = trimmed(words, add_special_tokens=False)["input_ids"]
        for word, got in zip(words, encoded, strict=True):
            if got != [trimmed.convert_tokens_to_ids(word)]:
                raise PreprocessingError(
                    f"the trimmed tokenizer does not encode {word!r} as one id"
                )

    embeddings = student.get_input_embeddings()
    pad = student.config.pad_token_id
    new_pad = None if pad is None else int(remap[pad])
    table = torch.nn.Embedding(len(keep), embeddings.embedding_dim, padding_idx=new_pad)
    with torch.no_grad():
        table.weight.copy_(embeddings.weight[keep.to(embeddings.weight.device)])
    student.set_input_embeddings(table)
    student.config.vocab_size = len(keep)
    student.config.pad_token_id = new_pad
    return student, trimmed, remap


def _renumber_added_tokens(config_file: Path, remap: torch.Tensor, kept: set[int]) -> None:
    """tokenizer_config.json pins special tokens to their ids ([CLS] at 101 in BERT's vocab):
    give them their new ids, or the rebuilt tokenizer appends them after the trimmed vocab."""
    if not config_file.is_file():
        return
    config = json.loads(config_file.read_text(encoding="utf-8"))
    added = config.get("added_tokens_decoder")
    if added:
        config["added_tokens_decoder"] = {
            str(int(remap[int(i)])): token for i, token in added.items() if int(i) in kept
        }
        config_file.write_text(json.dumps(config, indent=2), encoding="utf-8")
