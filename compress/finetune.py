"""Fine-tunes a Hugging Face sequence classifier on labelled text with a plain, seeded loop: the
teacher that quantization is benchmarked on and that distillation learns from.

    edgepack finetune HF_DIR --train train.tsv --eval validation.tsv -o teacher/
"""

from __future__ import annotations

import json
import math
import os
import random
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from edgepack.runtime.errors import InputError

from .data import TextDataset, load_text
from .evaluate import classification_metrics
from .training import LossLog, adamw_warmup_decay, optimizer_step

PathLike = str | os.PathLike[str]
RESULT_FILE = "finetune.json"  # written next to the model: the config and what it scored


@dataclass(frozen=True)
class FinetuneConfig:
    """What the run does. samples: train on a seeded random subset of this many (None: all).
    warmup: fraction of the steps over which the learning rate ramps up, then it decays to 0."""

    samples: int | None = 4000
    epochs: int = 1
    max_length: int = 64
    batch_size: int = 32
    learning_rate: float = 5e-5
    weight_decay: float = 0.01
    warmup: float = 0.1
    clip_norm: float = 1.0
    seed: int = 0

    def __post_init__(self) -> None:
        sizes = {
            "epochs": self.epochs,
            "max_length": self.max_length,
            "batch_size": self.batch_size,
        }
        if self.samples is not None:
            sizes["samples"] = self.samples
        for name, value in sizes.items():
            if not isinstance(value, int) or value < 1:
                raise InputError(f"{name} must be a positive integer, got {value!r}")
        if not self.learning_rate > 0 or not 0 <= self.warmup < 1:
            raise InputError(
                f"learning_rate must be > 0 and warmup in [0, 1); got {self.learning_rate!r}, "
                f"{self.warmup!r}"
            )


@dataclass
class FinetuneResult:
    """Where the model went, how training went, and its dev metrics (percent) when evaluated."""

    output: str
    config: dict[str, Any]
    labels: list[str]
    train_samples: int
    steps: int
    final_loss: float  # mean loss over the last 10% of steps
    seconds: float
    eval: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def finetune(
    model_dir: PathLike,
    train: PathLike | TextDataset,
    output: PathLike,
    config: FinetuneConfig = FinetuneConfig(),
    *,
    eval_data: PathLike | TextDataset | None = None,
    labels: Sequence[str] | None = None,
    eval_samples: int | None = None,
    progress: bool = True,
) -> FinetuneResult:
    """Fine-tune model_dir (any encoder; its head is replaced to fit the labels) on train and
    save model, tokenizer and RESULT_FILE to output, a folder that from_pretrained reads.

    labels: class names in index order (e.g. negative, positive): they become the model's
    id2label. Default: the data's class names, else "0", "1"... up to the largest label.

    >>> result = finetune(minilm_dir, "train.tsv", "teacher", eval_data="dev.tsv")  # doctest: +SKIP
    >>> result.eval["accuracy"]  # doctest: +SKIP
    """
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    start = time.perf_counter()
    if not (Path(model_dir) / "config.json").is_file():
        raise InputError(f"{model_dir} is not a Hugging Face model folder (no config.json)")
    train_set = _labelled(train, labels, "training")
    present = np.unique(train_set.labels)
    if len(present) < 2:
        raise InputError(
            f"the training data has a single class ({present.tolist()}); a classifier needs "
            "examples of at least two"
        )
    names = _label_names(train_set, labels)
    _seed_everything(config.seed)
    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    model = AutoModelForSequenceClassification.from_pretrained(
        str(model_dir),
        num_labels=len(names),
        id2label=dict(enumerate(names)),
        label2id={n: i for i, n in enumerate(names)},
        # A checkpoint fine-tuned for another label set gets a fresh head instead of an error.
        ignore_mismatched_sizes=True,
    )
    picks = np.random.default_rng(config.seed).permutation(len(train_set))[: config.samples]
    texts = [train_set.texts[i] for i in picks]
    targets = torch.as_tensor(train_set.labels[picks])

    losses = train_classifier(model, tokenizer, texts, targets, config, progress=progress)

    output = Path(output)
    model.save_pretrained(str(output))
    tokenizer.save_pretrained(str(output))
    tail = max(1, len(losses) // 10)
    result = FinetuneResult(
        output=str(output),
        config=asdict(config),
        labels=list(names),
        train_samples=len(texts),
        steps=len(losses),
        final_loss=float(np.mean(losses[-tail:])),
        seconds=0.0,
    )
    if eval_data is not None:
        dev = _labelled(eval_data, names, "evaluation")
        if eval_samples is not None:
            keep = np.arange(min(eval_samples, len(dev)))  # the first rows: a fixed, stated subset
            dev = TextDataset(tuple(dev.texts[i] for i in keep), dev.labels[keep], dev.classes)
        metrics = classifier_metrics(
            model, tokenizer, dev, max_length=config.max_length, progress=progress
        )
        result.eval = {"samples": len(dev), **metrics}
    result.seconds = time.perf_counter() - start
    (output / RESULT_FILE).write_text(json.dumps(result.to_dict(), indent=2) + "\n")
    return result


def train_classifier(
    model: torch.nn.Module,
    tokenizer: Any,
    texts: Sequence[str],
    targets: torch.Tensor,
    config: FinetuneConfig,
    *,
    progress: bool = True,
) -> list[float]:
    """The training loop: AdamW, linear warm-up then decay, clipped gradients, cross-entropy on
    shuffled batches padded to their longest text. Returns the loss of every step."""
    steps_per_epoch = math.ceil(len(texts) / config.batch_size)
    total = steps_per_epoch * config.epochs
    optimizer, schedule = adamw_warmup_decay(
        model, config.learning_rate, config.weight_decay, warmup=config.warmup, total=total
    )
    order = torch.Generator().manual_seed(config.seed)
    log = LossLog(total, "fine-tune", progress=progress)
    model.train()
    for _ in range(config.epochs):
        for batch in torch.randperm(len(texts), generator=order).split(config.batch_size):
            feeds = tokenizer(
                [texts[i] for i in batch],
                padding="longest",  # short SST-2 phrases: padding to max_length would waste ~5x
                truncation=True,
                max_length=config.max_length,
                return_tensors="pt",
            )
            loss = model(**feeds, labels=targets[batch]).loss
            optimizer_step(loss, optimizer, schedule, model.parameters(), config.clip_norm)
            log.add(loss.item())
    log.close()
    model.eval()
    return log.losses


@torch.no_grad()
def classifier_metrics(
    model: torch.nn.Module,
    tokenizer: Any,
    data: TextDataset,
    *,
    max_length: int = 128,
    batch_size: int = 64,
    progress: bool = True,
) -> dict[str, float]:
    """Accuracy, macro-F1, precision and recall (percent) of a PyTorch classifier on labelled
    texts: the fp32 reference that exported and quantized packs are compared with."""
    if data.labels is None:
        raise InputError("the evaluation data has no labels; expected a label column")
    model.eval()
    # Sorted by length so each batch pads to similar lengths; predictions go back in place.
    order = sorted(range(len(data)), key=lambda i: len(data.texts[i]))
    predictions = np.empty(len(data), np.int64)
    for start in tqdm(range(0, len(order), batch_size), desc="evaluate", disable=not progress):
        index = order[start : start + batch_size]
        feeds = tokenizer(
            [data.texts[i] for i in index],
            padding="longest",
            truncation=True,
            max_length=max_length,
            return_tensors="pt",
        )
        predictions[index] = model(**feeds).logits.argmax(-1).numpy()
    return classification_metrics(data.labels, predictions)


def _labelled(data: PathLike | TextDataset, labels: Sequence[str] | None, role: str) -> TextDataset:
    if not isinstance(data, TextDataset) and not Path(data).is_file():
        raise InputError(f"the {role} data {data} does not exist; expected a .tsv/.csv/.jsonl file")
    dataset = data if isinstance(data, TextDataset) else load_text(data, classes=labels)
    if dataset.labels is None:
        raise InputError(f"the {role} data has no label column; expected e.g. 'label'")
    return dataset


def _label_names(data: TextDataset, labels: Sequence[str] | None) -> tuple[str, ...]:
    if labels:
        return tuple(labels)
    if data.classes:
        return data.classes
    return tuple(str(i) for i in range(int(data.labels.max()) + 1))


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
