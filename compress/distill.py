"""Knowledge distillation: a small student learns a teacher's outputs (and, optionally, its hidden
states and attention), in a plain, resumable, seeded PyTorch loop that also runs distributed.

The loss, per sample (Hinton et al. 2015; TinyBERT, Jiao et al. 2020; MiniLM, Wang et al. 2020):

    L = alpha * T^2 * KL(softmax(z_t / T) || softmax(z_s / T))      soft targets
      + (1 - alpha) * CE(z_s, y)                                      hard labels
      + hidden_weight * mean_l MSE(H_s[l] W_h, H_t[map(l)])           hidden states
      + attention_weight * (tinybert: mean_l MSE(S_s[l], S_t[map(l)]) attention scores QK^T/sqrt(d)
                            minilm:   KL(A_t || A_s) + KL(VR_t || VR_s), last layer, where
                                      A = softmax(QK^T/sqrt(d)), VR = softmax(VV^T/sqrt(d)))

One process:

    python -m edgepack.compress.distill --teacher teacher/ --train train.tsv --eval dev.tsv \\
        --workdir runs/student --set layers=[0,2,4] --set epochs=3

Several processes on one machine (gloo on CPU, nccl on GPUs; the batch size is the global one):

    torchrun --nproc-per-node 2 -m edgepack.compress.distill --teacher teacher/ ...

Several machines (run the same command on each; the endpoint is any one of them, reachable):

    torchrun --nnodes 2 --nproc-per-node 4 --rdzv-backend c10d \\
        --rdzv-endpoint 10.0.0.1:29500 --rdzv-id distill-1 -m edgepack.compress.distill ...

Rank 0 writes the checkpoints, the student and the result; the other ranks never write. Killing
a run and rerunning the same command continues from the last checkpoint in --workdir.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import math
import os
import shutil
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from edgepack.runtime.errors import InputError

from .data import ArrayDataset, TextDataset, load_dataset
from .evaluate import LABEL_METRICS, classification_metrics
from .options import StageOptions, plain_value
from .students import (
    bert_student,
    check_layers,
    encoder_layers,
    is_bert_family,
    narrow_cnn,
    trim_vocab,
)
from .training import LossLog, adamw_warmup_decay, optimizer_step

PathLike = str | os.PathLike[str]
ATTENTION = ("none", "tinybert", "minilm")
FFN_INIT = ("magnitude", "first")
BUCKET = 50  # batches per length bucket: sorted within, so each batch pads to similar lengths
CHECKPOINT = "checkpoint.pt"  # the loop's state: resumes a killed run
BEST = "best.pt"  # the student at its best eval metric (early stopping returns it)
TEACHER_LOGITS = "teacher_logits.pt"
STUDENT = "student"  # the final student: a Hugging Face folder, or student.pt for a module
RESULT = "distill.json"
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DistillOptions(StageOptions):
    """What the distillation does; validated here, and against the teacher by `check`.

    Student (when none is given): layers (teacher layer indices kept, e.g. (0, 2, 4)) and/or
    intermediate_size (FFN width; ffn_init "magnitude" or "first" picks the neurons) for
    BERT-family teachers; channels_keep (fraction of channels kept) for CNNs.
    Loss: temperature, alpha (weight of the soft loss; 1 - alpha goes to the labels),
    hidden_weight, attention ("none", "tinybert", "minilm") and attention_weight; layer_map
    gives the teacher layer each student layer learns from (default: `layers`, else uniform).
    Loop: warmup is the fraction of steps the learning rate ramps up over before decaying
    linearly to 0; patience: epochs without a better eval metric before stopping (None: never);
    checkpoint_every: steps between checkpoints besides the one each epoch (0: epochs only);
    cache_teacher: compute the teacher's logits once (when no intermediate loss needs it live);
    trim_vocab: keep only the word pieces of the training data in the student.
    """

    layers: tuple[int, ...] | None = None
    intermediate_size: int | None = None
    ffn_init: str = "magnitude"
    channels_keep: float | None = None
    temperature: float = 2.0
    alpha: float = 0.5
    hidden_weight: float = 0.0
    attention: str = "none"
    attention_weight: float = 0.0
    layer_map: tuple[int, ...] | None = None
    epochs: int = 3
    batch_size: int = 32
    max_length: int = 128
    learning_rate: float = 5e-5
    weight_decay: float = 0.01
    warmup: float = 0.1
    clip_norm: float = 1.0
    seed: int = 0
    metric: str = "accuracy"
    patience: int | None = None
    checkpoint_every: int = 0
    cache_teacher: bool = True
    trim_vocab: bool = False
    device: str = "auto"

    def validate(self) -> None:
        """Ranges and combinations; StageOptions has checked each field's type already."""
        for name in ("layers", "layer_map"):
            value = getattr(self, name)
            if value is not None and (not value or any(not _is_int(i) or i < 0 for i in value)):
                raise InputError(
                    f"{name} must be a non-empty list of layer indices >= 0, got {list(value)}"
                )
        positive = {"epochs": self.epochs, "batch_size": self.batch_size}
        positive |= {"max_length": self.max_length}
        if self.intermediate_size is not None:
            positive["intermediate_size"] = self.intermediate_size
        if self.patience is not None:
            positive["patience"] = self.patience
        for name, value in positive.items():
            if not _is_int(value) or value < 1:
                raise InputError(f"{name} must be a positive integer, got {value!r}")
        if not _is_int(self.checkpoint_every) or self.checkpoint_every < 0:
            raise InputError(
                f"checkpoint_every must be an integer >= 0 (0: each epoch only), got "
                f"{self.checkpoint_every!r}"
            )
        if self.layers is not None:
            check_layers(self.layers, max(self.layers) + 1)  # increasing, no repeats
        if self.channels_keep is not None and not 0 < self.channels_keep <= 1:
            raise InputError(f"channels_keep {self.channels_keep!r} must be in (0, 1]")
        if self.channels_keep is not None and (self.layers or self.intermediate_size):
            raise InputError(
                "channels_keep makes a CNN student, layers/intermediate_size a BERT one; "
                "give one kind"
            )
        if self.layers and self.layer_map and len(self.layers) != len(self.layer_map):
            raise InputError(
                f"layer_map has {len(self.layer_map)} entries but the student has "
                f"{len(self.layers)} layers ({list(self.layers)}); give one teacher layer each"
            )
        checks = [
            (self.temperature > 0, f"temperature must be > 0, got {self.temperature!r}"),
            (0 <= self.alpha <= 1, f"alpha must be in [0, 1], got {self.alpha!r}"),
            (self.hidden_weight >= 0, f"hidden_weight must be >= 0, got {self.hidden_weight!r}"),
            (
                self.attention_weight >= 0,
                f"attention_weight must be >= 0, got {self.attention_weight!r}",
            ),
            (self.learning_rate > 0, f"learning_rate must be > 0, got {self.learning_rate!r}"),
            (0 <= self.warmup < 1, f"warmup must be in [0, 1), got {self.warmup!r}"),
            (self.weight_decay >= 0, f"weight_decay must be >= 0, got {self.weight_decay!r}"),
            (self.clip_norm > 0, f"clip_norm must be > 0, got {self.clip_norm!r}"),
            (self.attention in ATTENTION, f"attention {self.attention!r}; expected {ATTENTION}"),
            (self.ffn_init in FFN_INIT, f"ffn_init {self.ffn_init!r}; expected {FFN_INIT}"),
            (self.metric in LABEL_METRICS, f"metric {self.metric!r}; expected {LABEL_METRICS}"),
            (
                self.device == "auto" or self.device.split(":")[0] in ("cpu", "cuda"),
                f"device {self.device!r}; expected 'auto', 'cpu' or 'cuda[:N]'",
            ),
            (
                (self.attention == "none") == (self.attention_weight == 0),
                f"attention {self.attention!r} with attention_weight {self.attention_weight}: "
                "give both (a method and a weight > 0) or neither",
            ),
        ]
        for ok, message in checks:
            if not ok:
                raise InputError(message)

    @property
    def intermediate_losses(self) -> bool:
        """Whether the loss needs the teacher's hidden states (so it runs on every batch)."""
        return self.hidden_weight > 0 or self.attention != "none"

    def record(self) -> dict[str, Any]:
        """Every field (to_dict gives only those that differ from the defaults): what the
        result and the run's fingerprint record."""
        return {f.name: plain_value(getattr(self, f.name)) for f in fields(self)}

    def check(self, teacher: Any, student: Any = None) -> None:
        """Reject what cannot work with this teacher (and student) before any training starts:
        layers or a layer_map out of the teacher's range, intermediate losses on models that do
        not have BERT's layout, attention losses between different head counts."""
        bert = is_bert_family(teacher)
        if (self.layers or self.intermediate_size) and not bert:
            raise InputError(
                "layers/intermediate_size make a student from a BERT-family Hugging Face "
                f"teacher; the teacher is {_kind(teacher)} (for a CNN use channels_keep)"
            )
        if self.channels_keep is not None and bert:
            raise InputError("channels_keep narrows a CNN; for a BERT teacher use layers")
        if self.trim_vocab and not bert:
            raise InputError(f"trim_vocab needs a text (BERT-family) model; got {_kind(teacher)}")
        if bert:
            count = teacher.config.num_hidden_layers
            if self.layers is not None:
                check_layers(self.layers, count)
            if self.layer_map is not None and max(self.layer_map) >= count:
                raise InputError(
                    f"layer_map {list(self.layer_map)} names teacher layer "
                    f"{max(self.layer_map)}; the teacher has layers 0..{count - 1}"
                )
            size = self.intermediate_size
            if size is not None and size > teacher.config.intermediate_size:
                raise InputError(
                    f"intermediate_size {size} is larger than the teacher's "
                    f"{teacher.config.intermediate_size}; a student FFN can only be narrower"
                )
        if not self.intermediate_losses:
            return
        for role, model in (("teacher", teacher), ("student", student)):
            if model is not None and not is_bert_family(model):
                raise InputError(
                    f"hidden/attention losses need BERT-family Hugging Face models; the {role} "
                    f"is {_kind(model)}: use the logit loss alone (hidden_weight = 0, "
                    "attention = 'none')"
                )
        if student is None:
            return
        if student.config.vocab_size != teacher.config.vocab_size and not self.trim_vocab:
            raise InputError(
                f"the student's vocabulary has {student.config.vocab_size} pieces, the "
                f"teacher's {teacher.config.vocab_size}: both read the teacher's token ids"
            )
        count = len(encoder_layers(student))
        mapping = layer_mapping(self, teacher, student)
        if len(mapping) != count:
            raise InputError(
                f"layer_map has {len(mapping)} entries but the student has {count} layers"
            )
        heads = (teacher.config.num_attention_heads, student.config.num_attention_heads)
        if self.attention != "none" and heads[0] != heads[1]:
            raise InputError(
                f"{self.attention} attention losses compare heads one to one: the teacher has "
                f"{heads[0]} heads, the student {heads[1]}"
            )


@dataclass
class DistillResult:
    """The distilled student and how the run went; `to_dict` is what RESULT records."""

    student: torch.nn.Module = field(repr=False)
    output: str  # the student's Hugging Face folder (with tokenizer) or its student.pt
    options: dict[str, Any]
    steps: int
    epochs: int  # epochs run (fewer than asked when stopped early)
    stopped_early: bool
    resumed_from_step: int | None
    final_loss: float  # mean loss over the last 10% of steps
    history: list[dict[str, Any]]  # per epoch: step, mean loss, eval metrics
    eval: dict[str, float] | None  # the returned (best) student's metrics, percent
    teacher_eval: dict[str, float] | None
    parameters: dict[str, int]
    vocab: dict[str, int] | None  # teacher and student vocabulary sizes when trimmed
    world_size: int
    lineage: dict[str, Any]  # teacher_sha256, student (how it was made), data sha256s
    seconds: float
    tokenizer: Any = field(default=None, repr=False)

    def to_dict(self) -> dict[str, Any]:
        skip = {"student", "tokenizer"}
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name not in skip}


def distill(
    teacher: PathLike | torch.nn.Module,
    student: PathLike | torch.nn.Module | None,
    train: PathLike | TextDataset | ArrayDataset,
    eval_data: PathLike | TextDataset | ArrayDataset | None,
    options: DistillOptions,
    workdir: PathLike,
    progress: bool = True,
    *,
    tokenizer: Any = None,
) -> DistillResult:
    """Distill teacher into student on train, checkpointing in workdir; return the student at
    its best eval metric (the last one without eval data).

    teacher: a Hugging Face folder or a module (frozen: it is never trained). student: a folder,
    a module, or None to build one from options (layers / intermediate_size / channels_keep).
    train, eval_data: labelled text (a file or TextDataset, tokenized with the teacher's
    tokenizer) or arrays. tokenizer: for a teacher module given with text data.
    Under torchrun every rank calls this alike; rank 0 writes workdir.

    >>> result = distill("teacher/", None, "train.tsv", "dev.tsv",
    ...                  DistillOptions(layers=(0, 2, 4)), "runs/s")  # doctest: +SKIP
    >>> result.eval["accuracy"], result.output  # doctest: +SKIP
    """
    start = time.perf_counter()
    if not isinstance(options, DistillOptions):
        raise InputError(f"options must be DistillOptions, got {type(options).__name__}")
    workdir = Path(workdir)
    dist = _Distributed.start(options.device)
    try:
        teacher, tokenizer = _load_model(teacher, tokenizer, "teacher")
        teacher.cpu().eval()  # never trained: it runs under no_grad
        options.check(teacher)  # before reading the data: a bad option fails at once
        train_set = _examples(train, tokenizer, options, "training")
        eval_set = None if eval_data is None else _examples(eval_data, tokenizer, options, "eval")
        if train_set.labels is None and options.alpha < 1:
            raise InputError(
                "the training data has no labels: set alpha = 1 (learn from the teacher alone) "
                "or give a label column"
            )
        student, spec = _make_student(student, teacher, options, train_set)
        options.check(teacher, student)
        teacher.to(dist.device)
        _check_fit(teacher, student, train_set, eval_set, dist.device)
        student_tokenizer, remap = tokenizer, None
        if options.trim_vocab:
            if train_set.texts is None:
                raise InputError("trim_vocab needs the training data as text (a file or texts)")
            student, student_tokenizer, remap = trim_vocab(
                student, tokenizer, train_set.texts, options.max_length
            )
        loop = _Loop(teacher, student, train_set, eval_set, options, workdir, dist, remap, spec)
        if remap is not None and eval_set is not None and eval_set.texts is not None:
            # Scored as shipped: the trimmed tokenizer splits a word it lacks into pieces it
            # has, where remapping the teacher's ids would give [UNK] (MiniLM on SST-2: 113
            # [UNK] pieces against 6,082 in 6,735 sentences).
            texts = TextDataset(eval_set.texts, eval_set.labels.numpy())
            loop.student_eval = _examples(texts, student_tokenizer, options, "eval")
        history, resumed, losses, stopped = loop.run(progress)
        output = loop.finish(student_tokenizer) if dist.rank == 0 else str(workdir / STUDENT)
        tail = max(1, len(losses) // 10)
        result = DistillResult(
            student=loop.student,
            output=output,
            options=options.record(),
            steps=loop.step,
            epochs=len(history),
            stopped_early=stopped,
            resumed_from_step=resumed,
            final_loss=float(np.mean(losses[-tail:])) if losses else float("nan"),
            history=history,
            eval=loop.best_metrics,
            teacher_eval=loop.teacher_metrics,
            parameters={"teacher": _count(teacher), "student": _count(loop.student)},
            vocab=None
            if remap is None
            else {"teacher": len(remap), "student": int(remap.max()) + 1},
            world_size=dist.world,
            lineage=loop.lineage,
            seconds=0.0,
            tokenizer=student_tokenizer,
        )
        result.seconds = time.perf_counter() - start
        if dist.rank == 0:
            _atomic_write(workdir / RESULT, json.dumps(result.to_dict(), indent=2) + "\n")
        dist.barrier()
        return result
    finally:
        dist.stop()


# --- the loss -------------------------------------------------------------------------------


def soft_loss(
    student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float
) -> torch.Tensor:
    """Per-sample T^2 * KL(p_t || p_s) at temperature T (Hinton et al. 2015): the T^2 keeps its
    gradients on the scale of the hard loss as T changes."""
    log_p_s = F.log_softmax(student_logits / temperature, dim=-1)
    log_p_t = F.log_softmax(teacher_logits / temperature, dim=-1)
    kl = F.kl_div(log_p_s, log_p_t, log_target=True, reduction="none").sum(-1)
    return temperature**2 * kl


def hidden_loss(
    student_states: Sequence[torch.Tensor],
    teacher_states: Sequence[torch.Tensor],
    pairs: Sequence[tuple[int, int]],
    mask: torch.Tensor,
    projection: torch.nn.Module,
) -> torch.Tensor:
    """Per-sample MSE between projected student hidden states and the mapped teacher ones over
    real (unpadded) tokens, averaged over the mapped layers (TinyBERT's L_hidn, W_h shared)."""
    tokens = mask.sum(1)
    total = 0.0
    for s, t in pairs:
        error = (projection(student_states[s]) - teacher_states[t]).pow(2).mean(-1)
        total = total + (error * mask).sum(1) / tokens
    return total / len(pairs)


def tinybert_attention_loss(
    student_scores: Sequence[torch.Tensor],
    teacher_scores: Sequence[torch.Tensor],
    mask: torch.Tensor,
) -> torch.Tensor:
    """Per-sample MSE between attention scores QK^T/sqrt(d) (before softmax) of mapped layers,
    over heads and real query/key pairs (TinyBERT's L_attn)."""
    pair = mask[:, None, :, None] * mask[:, None, None, :]  # [batch, 1, query, key]
    total = 0.0
    for s, t in zip(student_scores, teacher_scores, strict=True):
        error = (s - t).pow(2) * pair
        total = total + error.sum((1, 2, 3)) / (pair.sum((1, 2, 3)) * s.shape[1])
    return total / len(student_scores)


def minilm_attention_loss(
    student_qkv: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
    teacher_qkv: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
    mask: torch.Tensor,
) -> torch.Tensor:
    """Per-sample KL(A_t || A_s) + KL(VR_t || VR_s) on the last layer, per head, averaged over
    heads and real queries (MiniLM's L_AT + L_VR); padded keys get no probability."""

    def relation(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        logits = a @ b.transpose(-1, -2) / math.sqrt(a.shape[-1])
        logits = logits.masked_fill(mask[:, None, None, :] == 0, torch.finfo(a.dtype).min)
        return F.log_softmax(logits, dim=-1)

    (qs, ks, vs), (qt, kt, vt) = student_qkv, teacher_qkv
    queries = mask.sum(1) * qs.shape[1]
    total = 0.0
    for log_s, log_t in (
        (relation(qs, ks), relation(qt, kt)),
        (relation(vs, vs), relation(vt, vt)),
    ):
        terms = log_t.exp() * (log_t - log_s)
        kl = terms.masked_fill(mask[:, None, None, :] == 0, 0.0).sum(-1)  # [batch, heads, query]
        total = total + (kl * mask[:, None, :]).sum((1, 2)) / queries
    return total


class DistillationLoss(torch.nn.Module):
    """The student and the learned projection W_h in one module, so that DDP all-reduces the
    gradients of both; forward gives the per-sample loss terms of a batch."""

    def __init__(
        self, student: torch.nn.Module, teacher: torch.nn.Module, options: DistillOptions
    ) -> None:
        super().__init__()
        self.student = student
        self.options = options
        self.projection: torch.nn.Module = torch.nn.Identity()
        self.pairs: list[tuple[int, int]] = []
        if options.intermediate_losses:
            mapping = layer_mapping(options, teacher, student)
            # hidden_states[0] is the embedding output, [i + 1] the output of layer i.
            self.pairs = [(0, 0)] + [(s + 1, t + 1) for s, t in enumerate(mapping)]
            widths = (student.config.hidden_size, teacher.config.hidden_size)
            if widths[0] != widths[1]:
                self.projection = torch.nn.Linear(*widths, bias=False)

    def forward(
        self,
        feeds: dict[str, torch.Tensor],
        labels: torch.Tensor | None,
        teacher_logits: torch.Tensor,
        teacher_states: Sequence[torch.Tensor] | None = None,
        teacher_attention: Any = None,
    ) -> dict[str, torch.Tensor]:
        o = self.options
        logits, states = _forward(self.student, feeds, o.intermediate_losses)
        terms = {"soft": o.alpha * soft_loss(logits, teacher_logits, o.temperature)}
        if labels is not None and o.alpha < 1:
            terms["hard"] = (1 - o.alpha) * F.cross_entropy(logits, labels, reduction="none")
        mask = _mask(feeds)
        if o.hidden_weight > 0:
            hidden = hidden_loss(states, teacher_states, self.pairs, mask, self.projection)
            terms["hidden"] = o.hidden_weight * hidden
        if o.attention == "tinybert":
            layers = [s - 1 for s, _ in self.pairs[1:]]
            scores = [_scores(*_qkv(self.student, states, i, mask)[:2]) for i in layers]
            terms["attention"] = o.attention_weight * tinybert_attention_loss(
                scores, teacher_attention, mask
            )
        elif o.attention == "minilm":
            last = len(encoder_layers(self.student)) - 1
            student_qkv = _qkv(self.student, states, last, mask)
            terms["attention"] = o.attention_weight * minilm_attention_loss(
                student_qkv, teacher_attention, mask
            )
        return terms


def layer_mapping(options: DistillOptions, teacher: Any, student: Any) -> list[int]:
    """The teacher layer each student layer learns from: layer_map, else the layers the
    student was made of, else TinyBERT's uniform map g(m) = m * N / M (1-based)."""
    if options.layer_map is not None:
        return list(options.layer_map)
    count = len(encoder_layers(student))
    if options.layers is not None and len(options.layers) == count:
        return list(options.layers)
    total = len(encoder_layers(teacher))
    return [(m + 1) * total // count - 1 for m in range(count)]


def _qkv(model: Any, states: Sequence[torch.Tensor], layer: int, mask: torch.Tensor):
    """Queries, keys and values [batch, heads, seq, head_size] of one BERT layer, recomputed
    from its input hidden state (hidden_states[layer]) through its own projections."""
    attention = encoder_layers(model)[layer].attention.self
    x = states[layer]
    heads, size = attention.num_attention_heads, attention.attention_head_size

    def split(linear: torch.nn.Module) -> torch.Tensor:
        return linear(x).view(x.shape[0], x.shape[1], heads, size).transpose(1, 2)

    return split(attention.query), split(attention.key), split(attention.value)


def _scores(q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    return q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])


# --- the loop -------------------------------------------------------------------------------


class _Loop:
    """One distillation run's state: what a checkpoint holds and a resumed run restores."""

    def __init__(
        self,
        teacher: torch.nn.Module,
        student: torch.nn.Module,
        train: _Examples,
        eval_set: _Examples | None,
        options: DistillOptions,
        workdir: Path,
        dist: _Distributed,
        remap: torch.Tensor | None,
        spec: dict[str, Any],
    ) -> None:
        self.teacher, self.train, self.eval_set = teacher, train, eval_set
        self.options, self.workdir, self.dist = options, workdir, dist
        self.remap = None if remap is None else remap.to(dist.device)
        _seed(options.seed)  # the projection's initial weights
        self.loss = DistillationLoss(student, teacher, options).to(dist.device)
        self.student = self.loss.student
        self.model = dist.wrap(self.loss)
        self.batches_per_epoch = len(self._batches(0))
        total = self.batches_per_epoch * options.epochs
        self.optimizer, self.schedule = adamw_warmup_decay(
            self.loss,
            options.learning_rate,
            options.weight_decay,
            warmup=options.warmup,
            total=total,
        )
        self.total = total
        self.step = 0
        self.epoch, self.batch = 0, 0  # where the next step starts
        self.history: list[dict[str, Any]] = []
        self.losses: list[float] = []
        self.best: float | None = None
        self.best_metrics: dict[str, float] | None = None
        self.bad_epochs = 0
        self.finished = False
        self.stopped = False
        self.teacher_metrics: dict[str, float] | None = None
        self.student_eval = eval_set  # the eval data as the student reads it
        self.lineage = _lineage(teacher, student, spec, train, eval_set)
        # A checkpoint with another fingerprint (options, teacher, student or data) is refused.
        self.fingerprint = hashlib.sha256(
            json.dumps([options.record(), self.lineage], sort_keys=True).encode()
        ).hexdigest()

    def _batches(self, epoch: int) -> list[torch.Tensor]:
        batches = length_buckets(
            self.train.lengths, self.options.batch_size, self.options.seed, epoch
        )
        return [b for b in batches if len(b) >= self.dist.world]  # every rank needs a sample

    def run(self, progress: bool) -> tuple[list[dict[str, Any]], int | None, list[float], bool]:
        if self.dist.rank == 0:
            self.workdir.mkdir(parents=True, exist_ok=True)
            for stale in self.workdir.glob(".*.tmp*"):  # left by a run killed mid-write
                _remove(stale)
        self.dist.barrier()
        resumed = self._resume()
        cached = self._teacher_cache()
        if self.teacher_metrics is None and self.eval_set is not None:
            self.teacher_metrics = self._evaluate(self.teacher, self.eval_set, remap=False)
        log = LossLog(
            self.total,
            "distill",
            progress=progress and self.dist.rank == 0,
            losses=self.losses,
            initial=self.step,
        )
        while not self.finished:
            batches = self._batches(self.epoch)
            self.model.train()
            for index in range(self.batch, len(batches)):
                loss = self._train_step(batches[index], cached)
                self.batch = index + 1
                log.add(loss, **self._shown())
                every = self.options.checkpoint_every
                if every and self.step % every == 0 and self.batch < len(batches):
                    self._checkpoint()
            self._end_epoch()
            log.show(**self._shown())
            self._checkpoint()
        log.close()
        self._restore_best()
        return self.history, resumed, self.losses, self.stopped

    def _train_step(self, batch: torch.Tensor, cached: torch.Tensor | None) -> float:
        """One step on a global batch (this rank's share of it); returns the batch's mean loss
        over every rank."""
        dist, options = self.dist, self.options
        # Seeded per step and rank, so a resumed run draws the same dropout masks as one that
        # never stopped, on every rank, without saving RNG states.
        _seed(
            int(np.random.SeedSequence([options.seed, self.step, dist.rank]).generate_state(1)[0])
        )
        local = batch[dist.rank :: dist.world]
        feeds, labels = self.train.collate(local, dist.device)
        student_feeds = self._student_feeds(feeds)
        states = attention = None
        if cached is not None:
            teacher_logits = cached[local].to(dist.device)
        else:
            with torch.no_grad():
                teacher_logits, states = _forward(self.teacher, feeds, options.intermediate_losses)
                attention = self._teacher_attention(states, _mask(feeds))
        terms = self.model(student_feeds, labels, teacher_logits, states, attention)
        # Each rank sums its samples' losses over the global batch size; DDP averages the
        # gradients over ranks, so world * sum / global is the 1-process batch mean exactly.
        per_sample = sum(terms.values())
        loss = per_sample.sum() * dist.world / len(batch)
        optimizer_step(
            loss, self.optimizer, self.schedule, self.loss.parameters(), options.clip_norm
        )
        self.step += 1
        return dist.sum(per_sample.detach().sum()) / len(batch)

    def _student_feeds(self, feeds: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        if self.remap is None:
            return feeds
        return {**feeds, "input_ids": self.remap[feeds["input_ids"]]}

    def _teacher_attention(self, states: Any, mask: torch.Tensor | None) -> Any:
        if self.options.attention == "tinybert":
            layers = [t - 1 for _, t in self.loss.pairs[1:]]
            return [_scores(*_qkv(self.teacher, states, i, mask)[:2]) for i in layers]
        if self.options.attention == "minilm":
            return _qkv(self.teacher, states, len(encoder_layers(self.teacher)) - 1, mask)
        return None

    def _end_epoch(self) -> None:
        mean = float(np.mean(self.losses[-self.batches_per_epoch :])) if self.losses else 0.0
        record: dict[str, Any] = {"epoch": self.epoch + 1, "step": self.step, "loss": mean}
        if self.eval_set is not None:
            remap = self.student_eval is self.eval_set  # teacher-tokenized: remap the ids
            metrics = self._evaluate(self.student, self.student_eval, remap)
            record["eval"] = metrics
            value = metrics[self.options.metric]
            if self.best is None or value > self.best:
                self.best, self.best_metrics, self.bad_epochs = value, metrics, 0
                if self.dist.rank == 0:
                    _atomic_save(self.student.state_dict(), self.workdir / BEST)
            else:
                self.bad_epochs += 1
        self.history.append(record)
        self.epoch, self.batch = self.epoch + 1, 0
        patience = self.options.patience
        if patience is not None and self.bad_epochs >= patience:
            self.stopped = self.epoch < self.options.epochs
            self.finished = True
        if self.epoch >= self.options.epochs:
            self.finished = True

    def _shown(self) -> dict[str, str]:
        if not self.history or "eval" not in self.history[-1]:
            return {}
        return {self.options.metric: f"{self.history[-1]['eval'][self.options.metric]:.1f}"}

    @torch.no_grad()
    def _evaluate(self, model: torch.nn.Module, data: _Examples, remap: bool) -> dict[str, float]:
        """Label metrics (percent) of model on the eval set; each rank scores a shard and the
        predictions are gathered, so every rank takes the same early-stopping decision."""
        was_training = model.training
        model.eval()
        order = torch.argsort(data.lengths, stable=True)[self.dist.rank :: self.dist.world]
        predictions = torch.empty(len(data), dtype=torch.long)
        for chunk in order.split(self.options.batch_size):
            feeds, _ = data.collate(chunk, self.dist.device)
            feeds = self._student_feeds(feeds) if remap else feeds
            predictions[chunk] = _forward(model, feeds, False)[0].argmax(-1).cpu()
        predictions = self.dist.gather_rows(predictions, order)
        model.train(was_training)
        return classification_metrics(data.labels.numpy(), predictions.numpy())

    @torch.no_grad()
    def _teacher_cache(self) -> torch.Tensor | None:
        """The teacher's logits for every training sample, computed once (teacher frozen, no
        augmentation) and kept in workdir for a resumed run; None when a loss needs the
        teacher's hidden states on each batch anyway."""
        if not self.options.cache_teacher or self.options.intermediate_losses:
            return None
        path = self.workdir / TEACHER_LOGITS
        if path.is_file():
            saved = torch.load(path, map_location="cpu", weights_only=True)
            if saved["fingerprint"] == self.fingerprint:
                return saved["logits"]
        order = torch.argsort(self.train.lengths, stable=True)[self.dist.rank :: self.dist.world]
        first, _ = self.train.collate(torch.arange(1), self.dist.device)
        logits = torch.empty(len(self.train), _forward(self.teacher, first, False)[0].shape[-1])
        for chunk in order.split(self.options.batch_size * 2):
            feeds, _ = self.train.collate(chunk, self.dist.device)
            logits[chunk] = _forward(self.teacher, feeds, False)[0].float().cpu()
        logits = self.dist.gather_rows(logits, order)
        if self.dist.rank == 0:
            _atomic_save({"fingerprint": self.fingerprint, "logits": logits}, path)
        return logits

    def _checkpoint(self) -> None:
        if self.dist.rank == 0:
            state = {
                "fingerprint": self.fingerprint,
                "step": self.step,
                "epoch": self.epoch,
                "batch": self.batch,
                "model": self.loss.state_dict(),
                "optimizer": self.optimizer.state_dict(),
                "schedule": self.schedule.state_dict(),
                "history": self.history,
                "losses": self.losses,
                "best": self.best,
                "best_metrics": self.best_metrics,
                "bad_epochs": self.bad_epochs,
                "finished": self.finished,
                "stopped": self.stopped,
                "teacher_metrics": self.teacher_metrics,
            }
            _atomic_save(state, self.workdir / CHECKPOINT)
            log.info(
                "checkpoint at step %d (epoch %d, batch %d)", self.step, self.epoch, self.batch
            )
        self.dist.barrier()

    def _resume(self) -> int | None:
        path = self.workdir / CHECKPOINT
        if not path.is_file():
            return None
        state = torch.load(path, map_location=self.dist.device, weights_only=False)
        if state.get("fingerprint") != self.fingerprint:
            raise InputError(
                f"{self.workdir} holds a checkpoint of a different run (other options, data, "
                "teacher or student); use another workdir, or delete it to start over"
            )
        self.loss.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.schedule.load_state_dict(state["schedule"])
        for key in ("step", "epoch", "batch", "history", "losses", "best", "best_metrics"):
            setattr(self, key, state[key])
        for key in ("bad_epochs", "finished", "stopped", "teacher_metrics"):
            setattr(self, key, state[key])
        log.info("resuming at step %d (epoch %d, batch %d)", self.step, self.epoch, self.batch)
        return self.step

    def _restore_best(self) -> None:
        best = self.workdir / BEST
        if self.best is None:
            return
        self.dist.barrier()  # rank 0 wrote it
        self.student.load_state_dict(torch.load(best, map_location=self.dist.device))

    def finish(self, tokenizer: Any) -> str:
        """Write the student (rank 0): a Hugging Face folder with its tokenizer, or the whole
        module pickled for a plain nn.Module. Atomic: a folder appears whole or not at all."""
        student = self.student.to("cpu").eval()
        if hasattr(student, "save_pretrained"):
            target = self.workdir / STUDENT
            tmp = self.workdir / f".{STUDENT}.tmp{os.getpid()}"
            _remove(tmp)
            student.save_pretrained(str(tmp))
            if tokenizer is not None:
                tokenizer.save_pretrained(str(tmp))
            old = self.workdir / f".{STUDENT}.old.tmp{os.getpid()}"
            if target.exists():
                target.rename(old)
            tmp.rename(target)
            _remove(old)
            return str(target)
        target = self.workdir / f"{STUDENT}.pt"
        _atomic_save(student, target)
        return str(target)


def length_buckets(
    lengths: torch.Tensor, batch_size: int, seed: int, epoch: int
) -> list[torch.Tensor]:
    """Global batches for one epoch: shuffled, then sorted by length within buckets of BUCKET
    batches so each batch pads to similar lengths, then the batches shuffled. A function of
    (seed, epoch) alone, so every rank and every resumed run sees the same batches.

    This is the distributed sampler too: rank r of W trains on batch[r::W] of each global batch.
    torch's DistributedSampler shards samples before batching, so the ranks' batches would
    neither share a length bucket nor add up to the batch a single process would train on."""
    generator = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    order = torch.randperm(len(lengths), generator=generator)
    chunks = []
    for bucket in order.split(batch_size * BUCKET):
        chunks.append(bucket[torch.argsort(lengths[bucket], stable=True)])
    batches = list(torch.cat(chunks).split(batch_size))
    shuffle = torch.randperm(len(batches), generator=generator)
    return [batches[i] for i in shuffle]


# --- data -----------------------------------------------------------------------------------


@dataclass
class _Examples:
    """Samples stored unpadded (text) or stacked (arrays); collate pads a batch to its longest."""

    inputs: dict[str, list[torch.Tensor] | torch.Tensor]
    labels: torch.Tensor | None
    lengths: torch.Tensor
    text: bool
    pad_id: int = 0
    texts: tuple[str, ...] | None = None

    def __len__(self) -> int:
        return len(self.lengths)

    def collate(self, index: torch.Tensor, device: torch.device):
        labels = None if self.labels is None else self.labels[index].to(device)
        if not self.text:
            return {k: v[index].to(device) for k, v in self.inputs.items()}, labels
        width = int(self.lengths[index].max())
        feeds = {}
        for name, rows in self.inputs.items():
            fill = self.pad_id if name == "input_ids" else 0
            batch = torch.full((len(index), width), fill, dtype=torch.long)
            for row, i in enumerate(index.tolist()):
                batch[row, : len(rows[i])] = rows[i]
            feeds[name] = batch.to(device)
        return feeds, labels


def _examples(
    data: PathLike | TextDataset | ArrayDataset, tokenizer: Any, options: DistillOptions, role: str
) -> _Examples:
    if not isinstance(data, TextDataset | ArrayDataset):
        if not str(data).startswith("sklearn:") and not Path(data).exists():
            raise InputError(f"the {role} data {data} does not exist")
        data = load_dataset(data)
    labels = None if data.labels is None else torch.as_tensor(data.labels, dtype=torch.long)
    if isinstance(data, TextDataset):
        if tokenizer is None:
            raise InputError(
                f"the {role} data is text: give a Hugging Face teacher folder, or tokenizer="
            )
        encoded = tokenizer(list(data.texts), truncation=True, max_length=options.max_length)
        rows = {k: [torch.tensor(r, dtype=torch.long) for r in v] for k, v in encoded.items()}
        lengths = torch.tensor([len(r) for r in rows["input_ids"]])
        pad = tokenizer.pad_token_id or 0
        return _Examples(rows, labels, lengths, True, pad, tuple(data.texts))
    arrays = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in data.inputs.items()}
    if "attention_mask" in arrays:  # tokenized text, padded: store each row at its length
        lengths = arrays["attention_mask"].sum(1).long()
        rows = {k: [v[i, : lengths[i]] for i in range(len(v))] for k, v in arrays.items()}
        pad = getattr(tokenizer, "pad_token_id", 0) or 0
        return _Examples(rows, labels, lengths, True, pad)
    return _Examples(arrays, labels, torch.ones(len(data), dtype=torch.long), False)


def _mask(feeds: dict[str, torch.Tensor]) -> torch.Tensor | None:
    """The attention mask of a text batch (all ones when the data came without one)."""
    if "attention_mask" in feeds:
        return feeds["attention_mask"]
    ids = feeds.get("input_ids")
    return None if ids is None else torch.ones_like(ids)


def _forward(model: torch.nn.Module, feeds: dict[str, torch.Tensor], states: bool):
    """(logits, hidden states or None) of a Hugging Face model or a plain module."""
    if hasattr(model, "config") and hasattr(model, "save_pretrained"):
        out = model(**feeds, output_hidden_states=states)
        return out.logits, out.hidden_states if states else None
    out = model(*feeds.values())
    return (out if isinstance(out, torch.Tensor) else out[0]), None


# --- the student ----------------------------------------------------------------------------


def _load_model(model: PathLike | torch.nn.Module, tokenizer: Any, role: str):
    if isinstance(model, torch.nn.Module):
        return model, tokenizer
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    folder = Path(model)
    if not (folder / "config.json").is_file():
        raise InputError(
            f"the {role} {model} is not a Hugging Face model folder (no config.json); "
            "expected a folder or an nn.Module"
        )
    loaded = AutoModelForSequenceClassification.from_pretrained(str(folder))
    if tokenizer is None and (folder / "tokenizer_config.json").is_file():
        tokenizer = AutoTokenizer.from_pretrained(str(folder))
    return loaded, tokenizer


def _make_student(
    student: PathLike | torch.nn.Module | None,
    teacher: torch.nn.Module,
    options: DistillOptions,
    train: _Examples,
) -> tuple[torch.nn.Module, dict[str, Any]]:
    """The student and a description of how it was made, for the lineage."""
    if student is not None:
        if options.layers or options.intermediate_size or options.channels_keep:
            raise InputError(
                "a student was given and the options also ask to build one (layers, "
                "intermediate_size or channels_keep); give one or the other"
            )
        source = None if isinstance(student, torch.nn.Module) else str(student)
        model = _load_model(student, None, "student")[0].cpu()
        return model, {"kind": "given", "class": type(model).__name__, "source": source}
    if is_bert_family(teacher):
        model = bert_student(teacher, options.layers, options.intermediate_size, options.ffn_init)
        layers = list(options.layers or range(teacher.config.num_hidden_layers))
        spec = {"kind": "teacher_layers", "layers": layers}
        if options.intermediate_size:
            spec |= {"intermediate_size": options.intermediate_size, "ffn_init": options.ffn_init}
        return model, spec
    if options.channels_keep is None:
        raise InputError(
            f"no student given and none to build for a {_kind(teacher)} teacher: pass a student, "
            "or channels_keep (CNN) / layers (BERT-family)"
        )
    example, _ = train.collate(torch.arange(1), torch.device("cpu"))
    model = narrow_cnn(teacher, options.channels_keep, next(iter(example.values())))
    return model, {"kind": "narrow_cnn", "channels_keep": options.channels_keep}


def _check_fit(
    teacher: torch.nn.Module,
    student: torch.nn.Module,
    train: _Examples,
    eval_set: _Examples | None,
    device: torch.device,
) -> None:
    """One forward pass of both on a training sample: the student must give the teacher's
    output shape (the same classes), and the labels must be among them."""
    student.to(device)
    feeds, _ = train.collate(torch.arange(min(2, len(train))), device)
    with torch.no_grad():
        try:
            ours = _forward(student.eval(), feeds, False)[0]
        except Exception as exc:
            raise InputError(
                f"the student cannot run on the training data: {type(exc).__name__}: {exc}"
            ) from exc
        theirs = _forward(teacher, feeds, False)[0]
    if ours.shape != theirs.shape:
        raise InputError(
            f"the student's outputs have shape {tuple(ours.shape)}, the teacher's "
            f"{tuple(theirs.shape)}: the student must predict the teacher's classes"
        )
    classes = theirs.shape[-1]
    for data, role in ((train, "training"), (eval_set, "eval")):
        if data is not None and data.labels is not None and int(data.labels.max()) >= classes:
            raise InputError(
                f"the {role} labels go up to {int(data.labels.max())}, but the teacher has "
                f"{classes} classes (0..{classes - 1})"
            )


# --- distributed ----------------------------------------------------------------------------


@dataclass
class _Distributed:
    """This process's place in a torchrun job (rank 0 of 1 without one)."""

    rank: int
    world: int
    device: torch.device
    owned: bool = False  # whether this call started the process group (and so ends it)

    @classmethod
    def start(cls, device: str) -> _Distributed:
        import torch.distributed as dist

        world = int(os.environ.get("WORLD_SIZE", "1"))
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise InputError(f"device {device!r}, but torch sees no CUDA device here")
        gpu = device.startswith("cuda") or (device == "auto" and torch.cuda.is_available())
        if world == 1:
            name = device if device != "auto" else ("cuda" if gpu else "cpu")
            return cls(0, 1, torch.device(name))
        owned = not dist.is_initialized()
        if owned:
            dist.init_process_group("nccl" if gpu else "gloo")
        local = int(os.environ.get("LOCAL_RANK", "0"))
        if gpu:
            torch.cuda.set_device(local)
        target = torch.device(f"cuda:{local}" if gpu else "cpu")
        return cls(dist.get_rank(), dist.get_world_size(), target, owned)

    def wrap(self, module: torch.nn.Module) -> torch.nn.Module:
        if self.world == 1:
            return module
        from torch.nn.parallel import DistributedDataParallel

        ids = [self.device.index] if self.device.type == "cuda" else None
        return DistributedDataParallel(module, device_ids=ids)

    def barrier(self) -> None:
        if self.world > 1:
            torch.distributed.barrier()

    def sum(self, value: torch.Tensor) -> float:
        if self.world > 1:
            value = value.clone().to(self.device)
            torch.distributed.all_reduce(value)
        return float(value)

    def gather_rows(self, values: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        """values holds this rank's rows at index; return the full tensor, from every rank."""
        if self.world == 1:
            return values
        pieces: list[Any] = [None] * self.world
        torch.distributed.all_gather_object(pieces, (index, values[index]))
        for rows, part in pieces:
            values[rows] = part
        return values

    def stop(self) -> None:
        if self.owned and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()


# --- small helpers --------------------------------------------------------------------------


def _atomic_save(obj: Any, path: Path) -> None:
    """torch.save to a temp file beside path, then rename: a kill leaves the old file whole."""
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    with open(tmp, "wb") as f:
        torch.save(obj, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, path)


def _remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


def weights_sha256(model: torch.nn.Module) -> str:
    """sha256 over a model's state dict (names and bytes, in order): the teacher's identity in
    the lineage, and part of the run's fingerprint."""
    digest = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().reshape(-1).contiguous().view(torch.uint8).numpy())
    return digest.hexdigest()


def _data_sha256(data: _Examples) -> str:
    digest = hashlib.sha256()
    for name, rows in sorted(data.inputs.items()):
        digest.update(name.encode())
        tensor = torch.cat([r.flatten() for r in rows]) if data.text else rows
        digest.update(tensor.reshape(-1).contiguous().view(torch.uint8).numpy())
    digest.update(data.lengths.numpy())
    if data.labels is not None:
        digest.update(data.labels.numpy())
    return digest.hexdigest()


def _lineage(
    teacher: torch.nn.Module,
    student: torch.nn.Module,
    spec: dict[str, Any],
    train: _Examples,
    eval_set: _Examples | None,
) -> dict[str, Any]:
    """What the student came from: the teacher's weights, how the student was made (and its
    initial weights), and the data, each by sha256."""
    return {
        "teacher_sha256": weights_sha256(teacher),
        "student": spec,
        "student_init_sha256": weights_sha256(student),
        "train_sha256": _data_sha256(train),
        "eval_sha256": None if eval_set is None else _data_sha256(eval_set),
    }


def _seed(seed: int) -> None:
    torch.manual_seed(seed)


def _count(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _kind(model: Any) -> str:
    config = getattr(model, "config", None)
    return getattr(config, "model_type", None) or type(model).__name__


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


# --- command line ---------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--teacher", required=True, help="Hugging Face classifier folder")
    parser.add_argument("--student", help="a student folder (default: built from the options)")
    parser.add_argument("--train", required=True, help="labelled text (.tsv/.csv/.jsonl)")
    parser.add_argument("--eval", dest="eval_data", help="labelled text for the eval metric")
    parser.add_argument("--workdir", required=True, help="checkpoints and the student go here")
    parser.add_argument("--options", help="a TOML or JSON file of DistillOptions fields")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="one option, VALUE as JSON: --set layers=[0,2,4] --set epochs=2",
    )
    parser.add_argument("--threads", type=int, help="torch intra-op threads per process")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        values = _read_options(args.options) if args.options else {}
        for item in args.set:
            key, sep, raw = item.partition("=")
            if not sep:
                raise InputError(f"--set {item!r}: expected KEY=VALUE")
            try:
                values[key] = json.loads(raw)
            except json.JSONDecodeError:
                values[key] = raw  # a bare word: a string option such as attention=minilm
        options = DistillOptions.from_dict(values, "distill options")
        result = distill(
            args.teacher,
            args.student,
            args.train,
            args.eval_data,
            options,
            args.workdir,
            progress=not args.quiet,
        )
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if int(os.environ.get("RANK", "0")) == 0:
        metric = f", eval {options.metric} {result.eval[options.metric]:.2f}" if result.eval else ""
        print(
            f"distilled {result.parameters['teacher']:,} -> {result.parameters['student']:,} "
            f"parameters in {result.steps} steps on {result.world_size} process(es) "
            f"({result.seconds:.0f} s, final loss {result.final_loss:.4f}{metric}); "
            f"saved to {result.output}"
        )
    return 0


def _read_options(path: PathLike) -> dict[str, Any]:
    text = Path(path).read_text("utf-8")
    if str(path).endswith(".json"):
        return dict(json.loads(text))
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - Python 3.10
        import tomli as tomllib
    return dict(tomllib.loads(text))


if __name__ == "__main__":
    sys.exit(main())
