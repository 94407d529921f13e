"""Turns a classifier's output tensor into labelled predictions, as the manifest describes."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from .errors import InputError


@dataclass
class Prediction:
    """The top label of one item, its score, and the score of every label."""

    label: str
    index: int
    score: float
    scores: dict[str, float]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def postprocess(
    outputs: dict[str, np.ndarray], config: dict | None, output_names: list[str]
) -> list[Prediction]:
    """One Prediction per batch row of the configured output (default: the first output)."""
    config = config or {}
    name = config.get("output_name", output_names[0])
    if name not in outputs:
        raise InputError(f"postprocessing names output {name!r}; the model has {output_names}")
    scores = np.asarray(outputs[name], dtype=np.float32)
    if scores.ndim != 2:
        raise InputError(
            f"output {name!r} has shape {scores.shape}; classification needs (batch, classes)"
        )
    if config.get("softmax", False):  # shifted by the row maximum: large logits cannot overflow
        exp = np.exp(scores - scores.max(axis=1, keepdims=True))
        scores = exp / exp.sum(axis=1, keepdims=True)
    labels = config.get("labels") or [str(i) for i in range(scores.shape[1])]
    if len(labels) != scores.shape[1]:
        raise InputError(
            f"the manifest lists {len(labels)} labels but output {name!r} has {scores.shape[1]} "
            "classes"
        )
    best = scores.argmax(axis=1).tolist()
    return [
        Prediction(labels[i], i, float(row[i]), dict(zip(labels, row.tolist(), strict=True)))
        for i, row in zip(best, scores, strict=True)
    ]
