"""Accuracy-aware fallback: find the nodes whose quantization hurts most and keep them in float.

1. Rank: quantize one node at a time and measure how far the model's output moves from fp32
   (on large graphs, one op type at a time first, to spend the node probes where it matters).
2. Fall back: keep the highest-ranked nodes in float, one more at a time, until the task metric
   is within budget; each step records what that node bought (metric) and cost (bytes).
3. Continue by groups when single nodes are not enough: whole op types (the most sensitive
   first; attention's Softmax and Add, then normalizations, when unranked), then blocks from
   the last, until the budget holds or the step cap; every step is a point of the frontier.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
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


# Unranked op types go in this order: what attention and normalization are most sensitive to.
GROUP_PRIORITY = ("Softmax", "Add", "LayerNormalization", "Mul", "MatMul", "Gemm", "Conv")
BLOCK_NAME = re.compile(r"(?:layers?|blocks?|stages?)[._/]?(\d+)", re.IGNORECASE)
ANONYMOUS_BLOCKS = 4  # a graph without numbered blocks is cut into this many, in graph order


def float_groups(
    nodes: Sequence[tuple[str, str]], op_type_errors: Mapping[str, float] | None = None
) -> list[tuple[str, list[str]]]:
    """(label, node names) to keep in float after single nodes: each op type (largest error
    first), then each block (a numbered layer in the node names, else a quarter of the graph)
    from the last, where quantization error accumulates most."""
    errors = op_type_errors or {}

    def order(op: str) -> tuple[float, int]:
        rank = GROUP_PRIORITY.index(op) if op in GROUP_PRIORITY else len(GROUP_PRIORITY)
        return (-errors.get(op, 0.0), rank)

    groups = [
        (f"all {op}", [n for n, t in nodes if t == op])
        for op in sorted({t for _, t in nodes}, key=order)
    ]
    blocks: dict[str, list[str]] = {}
    for name, _ in nodes:
        found = BLOCK_NAME.search(name)
        if found:
            blocks.setdefault(f"block {found.group(1)}", []).append(name)
    if not blocks:
        size = max(1, -(-len(nodes) // ANONYMOUS_BLOCKS))
        for start in range(0, len(nodes), size):
            blocks[f"nodes {start}-{start + size - 1}"] = [
                n for n, _ in nodes[start : start + size]
            ]
    return groups + list(reversed(blocks.items()))


def keep_groups_until_within(
    quantize_into: QuantizeInto,
    groups: Sequence[tuple[str, list[str]]],
    score: Callable[[Path], float],
    target: float,
    work_dir: Path,
    *,
    exclude: Sequence[str] = (),
    max_steps: int = 12,
    quantizable: Sequence[str] = (),
) -> tuple[Path | None, float, list[str], list[dict]]:
    """Keep whole groups in float, cumulatively, until score(model) >= target or max_steps, or
    until a group would leave none of `quantizable` in int8.

    Returns the best model seen (the first that reached the target), its score, the nodes in
    float for it, and the frontier: one {step, float_nodes, metric, size_bytes, path} per step.
    """
    excluded, frontier = list(exclude), []
    best: tuple[Path, float, list[str]] | None = None
    for label, names in groups:
        if len(frontier) >= max_steps:
            break
        new = [n for n in names if n not in excluded]
        if not new:
            continue
        if quantizable and set(quantizable) <= {*excluded, *new}:
            break  # a model with every node in float is not an int8 model
        excluded += new
        path = quantize_into(work_dir / f"group{len(frontier)}.onnx", exclude=excluded)
        value = score(path)
        frontier.append(
            {"step": f"+ {label}", "float_nodes": len(excluded), "metric": value,
             "size_bytes": path.stat().st_size, "path": path}
        )  # fmt: skip
        if best is None or value > best[1]:
            best = (path, value, list(excluded))
        if value >= target:
            return path, value, list(excluded), frontier
    if best is None:
        return None, float("-inf"), list(exclude), frontier
    return best[0], best[1], best[2], frontier
