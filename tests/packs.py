"""Small packs built in code, as the runtime and attack tests load them: an image classifier
(4x4 grayscale, NCHW) and a WordPiece text classifier, over models that conftest.py builds."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from edgepack.packing import assemble_pack

IMAGE_PREPROCESSING = {
    "kind": "image",
    "input_name": "x",
    "size": [4, 4],
    "layout": "NCHW",
    "color": "grayscale",
    "scale": 1 / 255,
    "mean": [0.5],
    "std": [0.25],
}


def image_pack(dest: Path, model: Path, labels: Sequence[str], **extra: Any) -> Path:
    """An image-classification pack of one ONNX model: IMAGE_PREPROCESSING, softmax, labels.
    extra goes to assemble_pack (e.g. assets=)."""
    assemble_pack(
        dest,
        [model],
        task="image-classification",
        preprocessing=dict(IMAGE_PREPROCESSING),
        postprocessing={"output_name": "logits", "softmax": True, "labels": list(labels)},
        **extra,
    )
    return dest


def text_pack(
    dest: Path, model: Path, vocab: Path, *, max_length: int, padding: str = "max_length"
) -> Path:
    """A text-classification pack (neg, pos) of one ONNX model reading input_ids,
    attention_mask and token_type_ids, tokenized by lowercase WordPiece over vocab."""
    assemble_pack(
        dest,
        [model],
        task="text-classification",
        assets={"vocab.txt": (vocab, "vocab")},
        preprocessing={
            "kind": "text",
            "tokenizer": "wordpiece",
            "vocab_file": "vocab.txt",
            "lowercase": True,
            "strip_accents": None,
            "max_length": max_length,
            "padding": padding,
            "truncation": True,
            "input_names": {r: r for r in ("input_ids", "attention_mask", "token_type_ids")},
        },
        postprocessing={"output_name": "logits", "softmax": True, "labels": ["neg", "pos"]},
    )
    return dest
