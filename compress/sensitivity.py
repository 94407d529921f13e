"""Accuracy-aware fallback: find the nodes whose quantization hurts most and keep them in float.

1. Rank: quantize one node at a time and measure how far the model's output moves from fp32
   (on large graphs, one op type at a time first, to spend the node probes where it matters).
2. Fall back: keep the highest-ranked nodes in float, one more at a time, until the task metric
   is within budget; each step records what that node bought (metric) and cost (bytes).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from .data import ArrayDataset
from .evaluate import run_batched

# quantize_into(out_path, only=[names] or None, exclude=[names]) -> out_path
QuantizeInto = Callable[..., Path]


@dataclass(frozen=True)
class NodeSensitivity:
    """How far the model's output moves from fp32 when only this node is quantized.

    error is the relative L2 distance ||y_q - y_fp32|| / ||y_fp32|| over the probe samples;
    0 means the quantizer left the node alone.
    """

    name: str
    op_type: str
    error: float


@dataclass(frozen=True)
class FloatNode:
    """One node the search kept in float: its sensitivity, and the model after keeping it.

    metric is the task metric with this node and all earlier ones in float, so the difference to
    the previous step is what this node bought; size_bytes likewise shows what it cost.
    """

    name: str
    op_type: str
    error: float
    metric: float
    size_bytes: int


def output_error(
    quantize_into: QuantizeInto,
    names: Sequence[str],
    data: ArrayDataset,
    reference: np.ndarray,
    work_dir: Path,
) -> float:
    """Relative L2 distance from fp32 of the model with only `names` quantized."""
    outputs = run_batched(
        quantize_into(work_dir / "probe.onnx", only=list(names)), data, progress=False
    )
    return float(np.linalg.norm(outputs - reference)) / (float(np.linalg.norm(reference)) or 1.0)


def rank_op_types(
    quantize_into: QuantizeInto,
    nodes: Sequence[tuple[str, str]],
    data: ArrayDataset,
    reference: np.ndarray,
    work_dir: Path,
    *,
    progress: bool = True,
) -> dict[str, float]:
    """Output error with all nodes of one op type quantized, per op type, largest first.

    A cheap first pass for large graphs: one probe per type instead of one per node.
    """
    types = sorted({op_type for _, op_type in nodes})
    errors = {
        t: output_error(quantize_into, [n for n, op in nodes if op == t], data, reference, work_dir)
        for t in tqdm(types, desc="sensitivity (op types)", disable=not progress)
    }
    return dict(sorted(errors.items(), key=lambda item: item[1], reverse=True))


def rank_nodes(
    quantize_into: QuantizeInto,
    nodes: Sequence[tuple[str, str]],
    data: ArrayDataset,
    reference: np.ndarray,
    work_dir: Path,
    *,
    progress: bool = True,
) -> list[NodeSensitivity]:
    """Quantize each (name, op_type) node alone and rank by output error, largest first."""
    ranked = [
        NodeSensitivity(name, op, output_error(quantize_into, [name], data, reference, work_dir))
        for name, op in tqdm(nodes, desc="sensitivity (nodes)", disable=not progress)
    ]
    return sorted(ranked, key=lambda n: n.error, reverse=True)


def keep_float_until_within(
    quantize_into: QuantizeInto,
    ranked: Sequence[NodeSensitivity],
    score: Callable[[Path], float],
    target: float,
    work_dir: Path,
    *,
    exclude: Sequence[str] = (),
    max_float_nodes: int = 16,
) -> tuple[Path | None, float, list[FloatNode]]:
    """Keep ranked nodes in float one at a time until score(model) >= target.

    Stops at max_float_nodes or when the remaining nodes do not move the output at all. Returns
    the best model seen (the last one when the target was reached), its score and the steps;
    (None, -inf, []) when no node was worth trying.
    """
    kept: list[FloatNode] = []
    best: tuple[Path, float] | None = None
    for step, node in enumerate(ranked[:max_float_nodes]):
        if node.error == 0.0:
            break
        path = quantize_into(
            work_dir / f"keep{step}.onnx", exclude=[*exclude, *(k.name for k in kept), node.name]
        )
        value = score(path)
        kept.append(FloatNode(node.name, node.op_type, node.error, value, path.stat().st_size))
        if best is None or value > best[1]:
            best = (path, value)
        if value >= target:
            return path, value, kept
    if best is None:
        return None, float("-inf"), []
    # The best step, with the float nodes that led to it; later steps did not help.
    steps = [k.metric for k in kept]
    return best[0], best[1], kept[: steps.index(best[1]) + 1]
