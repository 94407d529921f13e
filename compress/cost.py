"""The cost of an ONNX or TFLite model per op class and precision (parameters, FLOPs, bytes moved),
written to the manifest's `cost` field at pack time so the device side can estimate latency without
the onnx package."""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import sys
import tempfile
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from google.protobuf.message import DecodeError
from onnx import TensorProto, helper, shape_inference

from edgepack.device_profiles.cores import COMPUTE_CLASSES
from edgepack.runtime.errors import EdgepackError


class CostError(EdgepackError):
    """A cost summary cannot be computed as asked (e.g. a dynamic dim nobody sized)."""


# What a symbolic dim is bound to when the caller does not say: a single request of 128 tokens.
DEFAULT_ASSUMPTIONS = {"batch": 1, "sequence": 128}
# Exporters name dims freely ("batch_size", "sequence_length", "seq_len"); a substring of the
# name picks the default it takes.
DIM_ROLES = (("batch", "batch"), ("seq", "sequence"), ("len", "sequence"), ("token", "sequence"))

# The one table from op type to op class (any other op is "other"). Depthwise convolution is told
# apart from convolution by its group, in _op_class.
_CLASS_OPS = {
    "gemm": """MatMul Gemm MatMulInteger QLinearMatMul DynamicQuantizeMatMul MatMulIntegerToFloat
        QGemm FusedMatMul FusedGemm""",
    "conv": "Conv ConvInteger QLinearConv FusedConv ConvTranspose",
    "elementwise": """Add Sub Mul Div Pow Sqrt Exp Log Abs Neg Reciprocal Relu LeakyRelu PRelu
        Elu Selu Celu Sigmoid HardSigmoid Tanh Erf Gelu FastGelu BiasGelu QuickGelu HardSwish Mish
        Softplus Clip Min Max Sum Mean Where Equal Less LessOrEqual Greater GreaterOrEqual Not And
        Or Xor Cast Floor Ceil Round Sign IsNaN IsInf Mod BiasAdd QLinearAdd QLinearMul
        QLinearSigmoid QLinearLeakyRelu""",
    "normalization": """BatchNormalization LayerNormalization InstanceNormalization
        GroupNormalization SkipLayerNormalization SimplifiedLayerNormalization
        SkipSimplifiedLayerNormalization RMSNormalization LpNormalization""",
    "softmax": "Softmax LogSoftmax",
    "pooling": """MaxPool AveragePool GlobalAveragePool GlobalMaxPool LpPool QLinearAveragePool
        QLinearGlobalAveragePool ReduceMean ReduceSum ReduceMax ReduceMin ReduceProd ReduceL2
        ReduceSumSquare""",
    "gather": """Gather GatherElements GatherND EmbedLayerNormalization ScatterND
        ScatterElements""",
    "layout": """Reshape Transpose Flatten Squeeze Unsqueeze Concat Split Slice Expand Tile Pad
        Identity Shape Size ConstantOfShape Range DepthToSpace SpaceToDepth QLinearConcat""",
    "quantize": "QuantizeLinear DequantizeLinear DynamicQuantizeLinear",
    "nms": "NonMaxSuppression",
}
OP_CLASSES: dict[str, str] = {op: cls for cls, ops in _CLASS_OPS.items() for op in ops.split()}
CLASS_ORDER = (
    "gemm",
    "conv",
    "depthwise_conv",
    "elementwise",
    "normalization",
    "softmax",
    "pooling",
    "gather",
    "layout",
    "quantize",
    "nms",
    "other",
)
# Non-max suppression's work depends on how many boxes pass its score threshold and on its kind
# (one pass over the best class of each box, or one per class), not on tensor shapes: a graph
# with one is counted by the bytes it moves and marked incomplete, so the estimate says so and
# widens its range (experiments/detection_postprocess.py times both kinds).
NMS_NOTE = (
    "{ops}: non-max suppression, whose time depends on how many boxes pass its score threshold "
    "and on its kind, not on tensor shapes; counted by the bytes it moves only"
)
# ONNX Runtime folds Q/DQ pairs around these classes into int8 kernels (QLinearConv, QLinearMatMul,
# QLinearAdd, ...), so in a QDQ graph they run on int8 data and the pairs cost nothing.
QDQ_FUSED_CLASSES = {"gemm", "conv", "depthwise_conv", "elementwise", "pooling", "layout"}
Q_DQ = ("QuantizeLinear", "DequantizeLinear")
# The ops of an ONNX QDQ graph that ONNX Runtime's CPU provider runs on int8 data: those its QDQ
# selector-action transformer (qdq_selector_action_transformer.cc) turns into QLinear kernels
# or whose Q/DQ it drops. Any other op between a DQ and a Q (HardSwish, Tanh, a Relu or Clip the
# Q's range does not make redundant, ...) runs in float, and its DQ and Q run as well. Counted as
# an Arm build runs it: x86 builds fuse a Conv or MatMul with int8 (not uint8) activations less
# (QDQIsInt8Allowed), and edgepack writes uint8 activations for x86.
ORT_QDQ_OPS = frozenset(
    {"Conv", "MatMul", "Gemm", "Add", "Mul", "Sigmoid", "LeakyRelu", "Softmax", "AveragePool",
     "GlobalAveragePool", "Concat", "Where", "MaxPool", "Resize", "Gather", "Reshape",
     "Transpose", "Squeeze", "Unsqueeze", "Split"}
)  # fmt: skip
# Of those, the ones fused without a Q on their output (MatMulIntegerToFloat, QGemm to float).
ORT_QDQ_FLOAT_OUTPUT = frozenset({"MatMul", "Gemm"})
# Clamps that ONNX Runtime removes in front of a Q whose range they do not narrow
# (ReluQuantFusion, ClipQuantFusion): with activations quantized symmetrically (zero point 0)
# a Relu or ReLU6 still clips, so it stays, in float.
CLAMPS = ("Relu", "Clip")
# Ops whose output ONNX Runtime lets alias the input buffer: they cost a dispatch, not a copy.
VIEW_OPS = {"Reshape", "Squeeze", "Unsqueeze", "Flatten", "Identity"}
# ONNX Runtime's CPU fusions that remove whole ops, as (ops, longest chain) per root op type: ops
# that read the root's output (or a folded op's) as its only reader fold into it: FusedConv,
# MatMulIntegerToFloat (cast, scales, bias), Gelu (Erf, Add, Mul, Mul), FusedMatMul (scale).
EPILOGUES: dict[str, tuple[frozenset[str], int]] = {
    "Conv": (frozenset({"Relu", "Clip", "LeakyRelu", "Sigmoid", "Tanh", "HardSigmoid"}), 1),
    "MatMulInteger": (frozenset({"Cast", "Mul", "Add"}), 4),
    "Erf": (frozenset({"Add", "Mul"}), 3),
    "MatMul": (frozenset({"Div", "Mul"}), 1),
}
# Ops that fold into the one op reading their (first) output: DynamicQuantizeMatMul, Gelu's Div.
PROLOGUES: dict[str, frozenset[str]] = {
    "MatMulInteger": frozenset({"DynamicQuantizeLinear"}),
    "Erf": frozenset({"Div"}),
}
# Which input holds the weight of a convolution (QLinearConv puts scale and zero point first).
CONV_WEIGHT_INPUT = {"QLinearConv": 3}
TENSOR = onnx.AttributeProto.TENSOR
QUANTIZED_TYPES = {TensorProto.INT8, TensorProto.UINT8, TensorProto.INT4, TensorProto.UINT4}
PRECISIONS = {TensorProto.FLOAT16: "fp16", TensorProto.BFLOAT16: "bf16"}
# Integer index and shape tensors say nothing about the precision an op computes in.
INDEX_TYPES = {TensorProto.INT32, TensorProto.INT64, TensorProto.BOOL}
WEIGHT_TYPES = QUANTIZED_TYPES | {
    TensorProto.FLOAT,
    TensorProto.FLOAT16,
    TensorProto.BFLOAT16,
    TensorProto.DOUBLE,
}


@dataclass(frozen=True)
class _Tensor:
    elem_type: int
    shape: tuple[int, ...] | None  # None when shape inference could not tell
    value: float | None = None  # a one-element constant's value (a Loop's trip count)

    @property
    def elements(self) -> int | None:
        return None if self.shape is None else math.prod(self.shape)

    @property
    def nbytes(self) -> int | None:
        if self.shape is None or self.elem_type == TensorProto.UNDEFINED:
            return None
        if self.elem_type in (TensorProto.INT4, TensorProto.UINT4):
            return (math.prod(self.shape) + 1) // 2
        if self.elem_type == TensorProto.STRING:
            return 0
        itemsize = helper.tensor_dtype_to_np_dtype(self.elem_type).itemsize
        return math.prod(self.shape) * itemsize


def _attr(node: onnx.NodeProto, name: str, default: Any) -> Any:
    for attribute in node.attribute:
        if attribute.name == name:
            return helper.get_attribute_value(attribute)
    return default


def _gemm_flops(node: onnx.NodeProto, ins: list[_Tensor | None], out: _Tensor | None) -> float:
    """2 * output elements * inner dimension (a multiply and an add per MAC)."""
    a = ins[0] if ins else None
    if a is None or a.shape is None or out is None or out.elements is None:
        return 0.0
    if len(a.shape) == 1:
        inner = a.shape[0]
    elif node.op_type in ("Gemm", "QGemm", "FusedGemm"):
        inner = a.shape[0] if _attr(node, "transA", 0) else a.shape[1]
    else:
        inner = a.shape[-2] if _attr(node, "transA", 0) else a.shape[-1]
    return 2.0 * out.elements * inner


def _conv_flops(node: onnx.NodeProto, ins: list[_Tensor | None], out: _Tensor | None) -> float:
    """2 * output elements * (input channels / group) * kernel size (ConvTranspose: per input)."""
    index = CONV_WEIGHT_INPUT.get(node.op_type, 1)
    weight = ins[index] if index < len(ins) else None
    if weight is None or weight.shape is None:
        return 0.0
    per_point = math.prod(weight.shape[1:])
    spread = ins[0] if node.op_type == "ConvTranspose" else out
    if spread is None or spread.elements is None:
        return 0.0
    return 2.0 * spread.elements * per_point


def _pool_flops(node: onnx.NodeProto, ins: list[_Tensor | None], out: _Tensor | None) -> float:
    kernel = _attr(node, "kernel_shape", None)
    if kernel and out is not None and out.elements is not None:
        return float(out.elements * math.prod(kernel))
    x = ins[0] if ins else None
    return float(x.elements or 0) if x is not None else 0.0


def _per_output_element(flops: float) -> Callable[..., float]:
    def count(node: onnx.NodeProto, ins: list[_Tensor | None], out: _Tensor | None) -> float:
        return flops * (out.elements or 0) if out is not None else 0.0

    return count


# FLOPs per op class; the per-element figures are rough (an exp or a divide counts as one) because
# those classes are bound by memory traffic, not arithmetic.
CLASS_FLOPS: dict[str, Callable[[onnx.NodeProto, list[_Tensor | None], _Tensor | None], float]] = {
    "gemm": _gemm_flops,
    "conv": _conv_flops,
    "depthwise_conv": _conv_flops,
    "elementwise": _per_output_element(1),
    "normalization": _per_output_element(5),
    "softmax": _per_output_element(5),
    "pooling": _pool_flops,
    "gather": _per_output_element(0),
    "layout": _per_output_element(0),
    "quantize": _per_output_element(2),
    "nms": _per_output_element(0),
    "other": _per_output_element(1),
}


PLACEHOLDER_DIMS = re.compile(r"^(\??|unk__\d+)$")  # not names: '?', '' and unk__N tie nothing
CONTROL_FLOW = ("If", "Loop", "Scan")


def _bind_dims(
    model: onnx.ModelProto,
    assumptions: Mapping[str, int],
    input_shapes: Mapping[str, Sequence[int]] | None = None,
) -> dict[str, int]:
    """Give each dynamic dim of the graph's inputs and outputs a size; return the binding.

    An input in `input_shapes` takes that whole shape. Otherwise a named dim takes its entry in
    `assumptions`, or the default of its role ('batch_size' -> batch); a dim without a real
    name ('?', '', unk__N, or dim_value -1) is sized on its own: the batch on axis 0, else it
    is unbound. Unbound input dims raise a CostError listing them.
    """
    bound: dict[str, int] = {}
    unbound: list[str] = []
    graph = model.graph
    shapes = dict(input_shapes or {})
    names = {v.name for v in graph.input}
    unknown = sorted(set(shapes) - names)
    if unknown:
        raise CostError(
            f"--input-shape {unknown}: the model has no such input; it has {sorted(names)}"
        )
    values = [(v, False) for v in graph.input] + [(v, True) for v in graph.output]
    for value, is_output in values:
        dims = value.type.tensor_type.shape.dim
        if value.name in shapes:
            shape = list(shapes[value.name])
            if len(shape) != len(dims):
                raise CostError(
                    f"--input-shape {value.name}={'x'.join(map(str, shape))} has rank "
                    f"{len(shape)}; the input has rank {len(dims)}"
                )
            for axis, (dim, size) in enumerate(zip(dims, shape, strict=True)):
                if dim.HasField("dim_value") and dim.dim_value >= 0 and dim.dim_value != size:
                    raise CostError(
                        f"--input-shape {value.name}: axis {axis} is fixed at {dim.dim_value}, "
                        f"not {size}"
                    )
                if not (dim.HasField("dim_value") and dim.dim_value >= 0):
                    bound[f"{value.name}:{axis}"] = int(size)
                dim.Clear()
                dim.dim_value = int(size)
            continue
        for axis, dim in enumerate(dims):
            if dim.HasField("dim_value") and dim.dim_value >= 0:
                continue
            name = dim.dim_param if dim.HasField("dim_param") else ""
            real = not PLACEHOLDER_DIMS.match(name)
            role = next((r for key, r in DIM_ROLES if key in name.lower()), None) if real else None
            if real and name in assumptions:
                size = assumptions[name]
            elif role is not None:
                size = assumptions.get(role, DEFAULT_ASSUMPTIONS[role])
            elif is_output:
                dim.Clear()  # an output dim shape inference will work out
                continue
            elif axis == 0 and not real:
                size = assumptions.get("batch", DEFAULT_ASSUMPTIONS["batch"])
            else:
                shown = repr(name) if real else "an unnamed dim"
                unbound.append(f"{shown} (input {value.name!r}, axis {axis})")
                continue
            dim.Clear()
            dim.dim_value = int(size)
            bound[name if real else f"{value.name}:{axis}"] = int(size)
    if unbound:
        raise CostError(
            f"cannot size dynamic dim(s) {', '.join(unbound)}: give the input's whole shape "
            "(input_shapes={name: [1, 3, 480, 640]}, edgepack pack --input-shape "
            "x=1x3x480x640) or the dim's size (shape_assumptions={name: size}, --assume "
            f"name=size); names containing 'batch', 'seq', 'len' or 'token' default to "
            f"{DEFAULT_ASSUMPTIONS}"
        )
    return bound


def _tensor_table(
    graph: onnx.GraphProto, outer: Mapping[str, _Tensor] | None = None
) -> dict[str, _Tensor]:
    """Element type and (fully known) shape of every tensor of a graph; a subgraph sees its
    outer scope's tensors too."""
    table: dict[str, _Tensor] = dict(outer or {})
    for value in [*graph.input, *graph.value_info, *graph.output]:
        tensor_type = value.type.tensor_type
        shape = None
        if tensor_type.HasField("shape"):
            dims = [d.dim_value if d.HasField("dim_value") else None for d in tensor_type.shape.dim]
            shape = tuple(dims) if all(d is not None and d >= 0 for d in dims) else None
        known = table.get(value.name)
        if known is None or known.shape is None:
            table[value.name] = _Tensor(tensor_type.elem_type, shape)
    for init in [
        *graph.initializer,
        *(n.attribute[0].t for n in graph.node if _is_tensor_constant(n)),
    ]:
        one = math.prod(init.dims) == 1 and init.data_type in INDEX_TYPES | WEIGHT_TYPES
        value = float(onnx.numpy_helper.to_array(init).item()) if one else None
        table[init.name] = _Tensor(init.data_type, tuple(init.dims), value)
    for node in graph.node:
        if _is_tensor_constant(node):
            t = table.pop(node.attribute[0].t.name, None)
            value = node.attribute[0].t
            table[node.output[0]] = _Tensor(value.data_type, tuple(value.dims), t and t.value)
    return table


def _is_tensor_constant(node: onnx.NodeProto) -> bool:
    return node.op_type == "Constant" and bool(node.attribute) and node.attribute[0].type == TENSOR


def _subgraphs(node: onnx.NodeProto) -> list[tuple[str, onnx.GraphProto]]:
    return [(a.name, a.g) for a in node.attribute if a.type == onnx.AttributeProto.GRAPH]


def _all_graphs(graph: onnx.GraphProto) -> list[onnx.GraphProto]:
    """The graph and every subgraph inside it (If branches, Loop and Scan bodies), nested."""
    found = [graph]
    for node in graph.node:
        for _, sub in _subgraphs(node):
            found += _all_graphs(sub)
    return found


def _parameters(model: onnx.ModelProto) -> int:
    """Weight elements, in subgraphs too; quantization scales and zero points are not
    parameters."""
    graphs = _all_graphs(model.graph)
    nodes = [n for g in graphs for n in g.node]
    quant_params = {name for n in nodes if n.op_type in Q_DQ for name in n.input[1:]}
    tensors = [(t.name, t) for g in graphs for t in g.initializer]
    tensors += [
        (n.output[0], a.t)
        for n in nodes
        if n.op_type == "Constant"
        for a in n.attribute
        if a.type == TENSOR
    ]
    return sum(
        math.prod(t.dims)
        for name, t in tensors
        if t.data_type in WEIGHT_TYPES and name not in quant_params
    )


def _op_class(node: onnx.NodeProto, tensors: Mapping[str, _Tensor | None]) -> str:
    op_class = OP_CLASSES.get(node.op_type, "other")
    if op_class == "conv" and node.op_type != "ConvTranspose":
        group = _attr(node, "group", 1)
        x = tensors.get(node.input[0])
        if group > 1 and x is not None and x.shape is not None and x.shape[1] == group:
            return "depthwise_conv"
    return op_class


def _fused_away(
    nodes: list[onnx.NodeProto],
    consumers: Mapping[str, list[onnx.NodeProto]],
    graph_outputs: set[str],
) -> set[int]:
    """ids of the nodes ONNX Runtime fuses into a neighbour (EPILOGUES and PROLOGUES)."""
    fused: set[int] = set()
    chains: dict[str, tuple[str, int]] = {}  # tensor -> (root op type, ops folded so far)
    for node in nodes:
        readers = consumers.get(node.output[0], []) if node.output else []
        sole = readers[0] if len(readers) == 1 else None
        if (
            sole is not None
            and node.op_type in PROLOGUES.get(sole.op_type, ())
            and not graph_outputs.intersection(node.output)
        ):
            fused.add(id(node))
        if node.op_type in EPILOGUES:
            chains[node.output[0]] = (node.op_type, 0)
            continue
        for name in node.input:
            root, length = chains.get(name, ("", 0))
            ops, longest = EPILOGUES.get(root, (frozenset(), 0))
            alone = len(consumers.get(name, [])) == 1 and name not in graph_outputs
            if node.op_type in ops and length < longest and alone:
                fused.add(id(node))
                chains[node.output[0]] = (root, length + 1)
                break
    return fused


# One row of a cost summary per (op class, precision, power-of-two range of the bytes one op
# moves): the estimator judges cache residency by a row's bytes per op, and the ops of one class
# span orders of magnitude (EfficientNet-B0's 123 elementwise ops move 44 bytes to about 12 MB
# each, 1.17 MB on average: a class average put all of them in a 2 MB L2 and none in a 1 MB one).
_Key = tuple[str, str, int]


def _add_op(
    totals: dict[_Key, list[float]], op_class: str, precision: str, flops: float, moved: int
) -> list[float]:
    """Count one op in its row; returns the row's [count, FLOPs, bytes, groups] to add to."""
    entry = totals.setdefault((op_class, precision, max(int(moved), 1).bit_length()), [0, 0, 0, 0])
    entry[0] += 1
    entry[1] += flops
    entry[2] += moved
    return entry


def _rows(totals: Mapping[_Key, list[float]]) -> list[dict[str, Any]]:
    """The summary's `ops` rows in CLASS_ORDER, then by precision and size; a depthwise row
    carries its channel-group count (ONNX Runtime's float path on Arm loops over the groups, and
    the latency estimator charges per group)."""
    order = {name: i for i, name in enumerate(CLASS_ORDER)}
    ranked = sorted(totals.items(), key=lambda kv: (order[kv[0][0]], *kv[0][1:]))
    return [
        {"op_class": c, "precision": p, "count": int(n), "flops": float(f), "bytes": int(b),
         **({"groups": int(g)} if c == "depthwise_conv" else {})}
        for (c, p, _), (n, f, b, g) in ranked
    ]  # fmt: skip


def _constant_values(graph: onnx.GraphProto) -> dict[str, np.ndarray]:
    """The graph's initializers and Constant outputs, as arrays (small ones: scales, bounds)."""
    values = {
        init.name: onnx.numpy_helper.to_array(init)
        for init in graph.initializer
        if math.prod(init.dims) <= 16
    }
    for node in graph.node:
        if node.op_type == "Constant" and node.attribute and node.attribute[0].name == "value":
            values[node.output[0]] = onnx.numpy_helper.to_array(node.attribute[0].t)
    return values


def _redundant_clamp(
    node: onnx.NodeProto,
    consumers: Mapping[str, list[onnx.NodeProto]],
    graph_outputs: set[str],
    values: Mapping[str, np.ndarray],
) -> bool:
    """Whether ONNX Runtime removes this Relu or Clip: its one reader is a Q with a constant
    scalar scale and zero point whose float range [scale (qmin - zp), scale (qmax - zp)] lies
    inside the clamp's bounds (ReluQuantFusion, ClipQuantFusion)."""
    if node.op_type not in CLAMPS or graph_outputs.intersection(node.output):
        return False
    readers = consumers.get(node.output[0], [])
    if len(readers) != 1 or readers[0].op_type != "QuantizeLinear" or len(readers[0].input) < 3:
        return False
    scale, zero = (values.get(name) for name in readers[0].input[1:3])
    if scale is None or zero is None or scale.size != 1 or zero.size != 1:
        return False
    info = np.iinfo(zero.dtype)
    low = float(scale) * (info.min - int(zero))
    high = float(scale) * (info.max - int(zero))
    if node.op_type == "Relu":
        return low >= 0
    if len(node.input) > 1:  # opset 11+: the bounds are inputs; an absent one is unbounded
        bounds: list[float | None] = []
        for name in [*node.input[1:3], ""][:2]:
            if name and name not in values:
                return False  # a bound computed at run time
            bounds.append(float(values[name]) if name else None)
        lo, hi = bounds
    else:
        lo, hi = _attr(node, "min", None), _attr(node, "max", None)
    return (lo is None or lo <= low) and (hi is None or high <= hi)


def _graph_totals(
    graph: onnx.GraphProto,
    tensors: Mapping[str, _Tensor],
    outer_constant: set[str],
    unknown: set[str],
    notes: list[str],
) -> dict[_Key, list[float]]:
    """[count, FLOPs, bytes, groups] per row (_Key) of one graph as ONNX Runtime runs it;
    control-flow nodes add the cost of their subgraphs (_add_control_flow)."""
    # A session folds every node whose inputs are all constant (Constant nodes, Identity or
    # DequantizeLinear of a weight) before the first run: those nodes never run.
    constant = set(outer_constant) | {init.name for init in graph.initializer}
    for node in graph.node:
        if node.op_type == "Constant" or (
            node.input and all(not n or n in constant for n in node.input)
        ):
            constant.update(node.output)
    producer = {out: node for node in graph.node for out in node.output}
    nodes = [n for n in graph.node if not all(out in constant for out in n.output)]
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for node in nodes:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    classes = {id(n): _op_class(n, tensors) for n in nodes}
    graph_outputs = {o.name for o in graph.output}
    values = _constant_values(graph)
    removed = {
        id(n) for n in nodes if _redundant_clamp(n, consumers, graph_outputs, values)
    }  # fmt: skip

    def quantized_kernel(node: onnx.NodeProto) -> bool:
        """Whether ORT runs this op on int8 data when its inputs come from DQs."""
        if id(node) in removed or node.op_type in VIEW_OPS:
            return True
        if node.op_type not in ORT_QDQ_OPS:
            return False
        if node.op_type in ORT_QDQ_FLOAT_OUTPUT:
            return True
        readers = consumers.get(node.output[0], []) if node.output else []
        return (
            bool(readers)
            and all(r.op_type == "QuantizeLinear" for r in readers)
            and (node.output[0] not in graph_outputs)
        )

    def fused_dq(name: str) -> onnx.NodeProto | None:
        """The DequantizeLinear making `name`, if ORT folds it into every op that reads it."""
        node = producer.get(name)
        if node is None or node.op_type != "DequantizeLinear" or name in graph_outputs:
            return None
        readers = consumers.get(name, [])
        folded = readers and all(quantized_kernel(r) for r in readers)
        return node if folded else None

    def runs_int8(node: onnx.NodeProto) -> bool:
        return quantized_kernel(node) and any(fused_dq(name) is not None for name in node.input)

    def fused_q(node: onnx.NodeProto) -> bool:
        source = producer.get(node.input[0])
        return node.op_type == "QuantizeLinear" and source is not None and runs_int8(source)

    fused = _fused_away(nodes, consumers, graph_outputs)
    kept = [
        n for n in nodes
        if n.op_type in CLAMPS and id(n) not in removed
        and any((p := producer.get(name)) is not None and p.op_type == "DequantizeLinear"
                for name in n.input[:1])
    ]  # fmt: skip
    if kept:
        notes.append(
            f"{len(kept)} Relu/Clip op(s) between a dequantize and a quantize stay in float, each "
            "with its dequantize and quantize: their quantize's range starts below 0 (activations "
            "quantized with a zero point of 0, e.g. symmetric); asymmetric activations fold them"
        )
    totals: dict[_Key, list[float]] = {}
    for node in nodes:
        if node.op_type in CONTROL_FLOW and _subgraphs(node):
            _add_control_flow(node, tensors, constant, totals, unknown, notes)
            continue
        dq_folded = node.op_type == "DequantizeLinear" and fused_dq(node.output[0])
        if dq_folded or fused_q(node) or id(node) in fused or id(node) in removed:
            continue  # fused into the kernel next to it, or removed
        op_class = classes[id(node)]
        ins = [tensors.get(name) if name else None for name in node.input]
        # What the op reads: a folded DQ's int8 input in place of its float output.
        read = [
            tensors.get(dq.input[0]) if (dq := fused_dq(name)) else tensors.get(name)
            for name in node.input
            if name
        ]
        # A quantizer's uint8 zero point does not make it an int8 op: only its data input counts.
        data = read[:1] if node.op_type in Q_DQ else read
        quantized = any(t.elem_type in QUANTIZED_TYPES for t in data if t is not None)
        int8 = quantized or runs_int8(node)
        written = []
        for name in node.output:
            if not name:
                continue
            readers = consumers.get(name, [])
            if int8 and readers and all(fused_q(r) for r in readers):
                written.append(tensors.get(readers[0].output[0]))
            else:
                written.append(tensors.get(name))
        if node.op_type in VIEW_OPS:
            read, written = [], []  # the output aliases the input's buffer
        elif op_class == "gather":
            read = [written[0], *read[1:]]  # a lookup reads the rows it returns, not the table
        moved = [t.nbytes if t is not None else None for t in (*read, *written)]
        if any(b is None for b in moved) or op_class == "nms":
            unknown.add(node.op_type)
        out = tensors.get(node.output[0]) if node.output else None
        flops = CLASS_FLOPS[op_class](node, ins, out)
        types = [t.elem_type for t in data if t is not None and t.elem_type not in INDEX_TYPES]
        precision = "int8" if int8 else PRECISIONS.get(next(iter(types), 0), "fp32")
        entry = _add_op(totals, op_class, precision, flops, sum(b for b in moved if b is not None))
        if op_class == "depthwise_conv":
            entry[3] += _attr(node, "group", 1)  # ORT's fp32 path loops over them (estimator)
    return totals


def _add_control_flow(
    node: onnx.NodeProto,
    tensors: Mapping[str, _Tensor],
    constant: set[str],
    totals: dict[_Key, list[float]],
    unknown: set[str],
    notes: list[str],
) -> None:
    """An If counts its larger branch (by FLOPs; which one runs depends on the inputs), a Loop
    its body times the trip count when it is a constant, a Scan its body times the scan
    length; each says so in `notes`, and what cannot be known marks the summary incomplete."""
    branches = {}
    for attr, sub in _subgraphs(node):
        inner = _tensor_table(sub, tensors)
        branches[attr] = _graph_totals(sub, inner, constant, unknown, notes)
    label = f"{node.op_type} {node.name or node.output[0]!r}"
    repeat, chosen = 1, next(iter(branches))
    if node.op_type == "If":
        chosen = max(branches, key=lambda k: sum(v[1] for v in branches[k].values()))
        notes.append(
            f"{label}: counted {chosen}, the larger branch (which runs depends on the inputs)"
        )
    elif node.op_type == "Loop":
        trips = tensors.get(node.input[0]) if node.input and node.input[0] else None
        trips = trips.value if trips is not None else None
        if trips is None:
            unknown.add(f"{label} trip count")
            notes.append(f"{label}: its trip count is not a constant; the body is counted once")
        else:
            repeat = int(trips)
            notes.append(f"{label}: body counted {repeat} times")
    else:  # Scan: the scan inputs' first axis (or their scan_input_axes) is the length
        scanned = node.input[len(node.input) - _attr(node, "num_scan_inputs", 1) :]
        x = tensors.get(scanned[0]) if scanned else None
        axes = _attr(node, "scan_input_axes", [0])
        if x is None or x.shape is None:
            unknown.add(f"{label} length")
            notes.append(f"{label}: its length is unknown; the body is counted once")
        else:
            repeat = x.shape[axes[0] if axes else 0]
            notes.append(f"{label}: body counted {repeat} times")
    for key, (count, flops, moved, groups) in branches[chosen].items():
        entry = totals.setdefault(key, [0, 0.0, 0, 0])
        entry[0] += count * repeat
        entry[1] += flops * repeat
        entry[2] += moved * repeat
        entry[3] += groups * repeat


def _infer_shapes(proto: onnx.ModelProto, bound: Mapping[str, int]) -> onnx.ModelProto:
    """The graph with every tensor's shape at the bound dims, as far as ONNX's inference and then
    ONNX Runtime's symbolic inference can tell; a CostError when the dims do not fit the graph."""
    inferred = shape_inference.infer_shapes(proto, strict_mode=False, data_prop=True)
    tensors = _tensor_table(inferred.graph)
    if all(
        name in tensors and tensors[name].shape is not None
        for n in inferred.graph.node
        for name in n.output
        if name
    ):
        return inferred
    # ONNX's inference cannot use a Slice bound computed from Shape (BERT's position ids, for
    # one); ONNX Runtime's symbolic inference, written for transformer exports, can.
    from onnxruntime.tools.symbolic_shape_infer import SymbolicShapeInference

    # On large models it saves 'sym_shape_infer_temp.onnx' and its weights into the current
    # folder and leaves them there: run it inside a temporary folder instead.
    previous = os.getcwd()
    with tempfile.TemporaryDirectory(prefix="edgepack-shapes-") as tmp:
        os.chdir(tmp)
        try:
            return SymbolicShapeInference.infer_shapes(proto, auto_merge=True)
        except Exception:  # it raises many kinds of error on graphs it cannot follow
            pass
        finally:
            os.chdir(previous)
    # It also fails (an AssertionError on an output it could not type) where the bound dims
    # make the graph invalid: a sequence longer than a BERT's position table slices that table
    # short, and the position embeddings no longer add to the token embeddings. Counting such
    # a graph would cost an input the model refuses, so ask ONNX Runtime whether it runs.
    refusal = _refusal(proto)
    if refusal:
        raise CostError(
            f"the model does not run at the sizes assumed for its dynamic dims {dict(bound)}: "
            f"ONNX Runtime refuses them ({refusal}); give sizes it accepts "
            "(shape_assumptions={'sequence': N}, --assume sequence=N, or the input's whole "
            "shape, --input-shape)"
        )
    return inferred


_RUN_FAILURE = "[ONNXRuntimeError] : 1 : FAIL : Non-zero status code returned while running"


def _refusal(proto: onnx.ModelProto) -> str | None:
    """Why ONNX Runtime cannot run the (dim-bound) graph on zero inputs, or None when it can
    (or when the check itself cannot be made, e.g. a model over protobuf's 2 GiB)."""
    import onnxruntime as ort

    initializers = {init.name for init in proto.graph.initializer}
    feeds = {}
    for value in proto.graph.input:
        if value.name in initializers:
            continue
        tensor_type = value.type.tensor_type
        shape = [d.dim_value for d in tensor_type.shape.dim]
        feeds[value.name] = np.zeros(shape, helper.tensor_dtype_to_np_dtype(tensor_type.elem_type))
    options = ort.SessionOptions()
    options.log_severity_level = 4  # the refusal is reported in the CostError, not logged
    options.intra_op_num_threads = 1
    try:
        session = ort.InferenceSession(
            proto.SerializeToString(), options, providers=["CPUExecutionProvider"]
        )
        session.run(None, feeds)
    except Exception as exc:  # ORT raises its own untyped errors
        first = str(exc).strip().splitlines()[0]
        # A graph it cannot load for another reason (an op it lacks) says nothing of the dims.
        if "ShapeInferenceError" not in first and not str(exc).startswith(_RUN_FAILURE):
            return None
        # ORT names the node, then (at run time) its source file, function and assertion:
        # keep the node and the sentence that says what is wrong.
        first = first.removeprefix("[ONNXRuntimeError] : 1 : FAIL : ")
        return re.sub(r"\S+\.(?:h|cc):\d+ .*? was false\. ", "", first)
    return None


def _load(model: str | os.PathLike[str] | onnx.ModelProto) -> onnx.ModelProto:
    if isinstance(model, onnx.ModelProto):
        copy = onnx.ModelProto()
        copy.CopyFrom(model)
        return copy
    return onnx.load(os.fspath(model))


def cost_summary(
    model: str | os.PathLike[str] | onnx.ModelProto,
    shape_assumptions: Mapping[str, int] | None = None,
    input_shapes: Mapping[str, Sequence[int]] | None = None,
) -> dict[str, Any]:
    """The manifest's `cost` object for an ONNX model: parameters, FLOPs and, per row (op class,
    precision, size range: _Key), op count, FLOPs and bytes read and written (weights and
    activations).

    Dynamic dims are bound by input_shapes (an input's whole shape), then by name from
    shape_assumptions (a dim named like 'batch_size' or 'seq_len' takes the 'batch' or
    'sequence' entry, default batch=1, sequence=128), and the binding is recorded; a dim
    nobody sized raises CostError. Ops inside If/Loop/Scan subgraphs are counted
    (_add_control_flow); `notes` says how, and `complete` is false when some tensor or trip
    count could not be sized or the graph has a non-max suppression (NMS_NOTE), so the estimate
    widens its range. The graph is costed as ONNX Runtime's CPU provider runs it, not as the
    file lists it: constant subgraphs are folded; in a QDQ graph the Q/DQ pairs around
    convolutions, matmuls and elementwise ops fold into int8 kernels (those ops count as int8
    and move int8); the fusions in EPILOGUES and PROLOGUES remove ops; views (Reshape, ...) copy
    nothing; a lookup reads only the rows it returns.
    Depthwise rows carry their channel-group count (`groups`, pack schema 1.3 on).

    >>> cost_summary("mobilenet_v2.onnx")["flops"]  # doctest: +SKIP
    600000000.0
    """
    proto = _load(model)
    if proto.functions:
        proto = onnx.inliner.inline_local_functions(proto)
    assumptions = {**DEFAULT_ASSUMPTIONS, **(shape_assumptions or {})}
    bound = _bind_dims(proto, assumptions, input_shapes)
    del proto.graph.value_info[:]  # exporters record symbolic shapes there; infer them afresh
    proto = _infer_shapes(proto, bound)
    tensors = _tensor_table(proto.graph)
    notes: list[str] = []
    unknown: set[str] = set()
    totals = _graph_totals(proto.graph, tensors, set(), unknown, notes)
    nms = sorted(op for op in unknown if OP_CLASSES.get(op) == "nms")
    if nms:
        notes.append(NMS_NOTE.format(ops=", ".join(nms)))
    if unsized := sorted(unknown - set(nms)):
        message = (
            f"some ops could not be sized ({', '.join(unsized)}); their FLOPs and bytes are "
            "undercounted"
        )
        notes.append(message)
        warnings.warn(message, UserWarning, stacklevel=2)
    ops = _rows(totals)
    return {
        "parameters": _parameters(proto),
        "flops": float(sum(op["flops"] for op in ops)),
        "shape_assumptions": bound,
        "ops": ops,
        # only when there is something to say, so summaries of plain graphs stay as they were
        **({"complete": False} if unknown else {}),
        **({"notes": notes} if notes else {}),
    }


def cost_or_none(
    model: str | os.PathLike[str] | onnx.ModelProto,
    shape_assumptions: Mapping[str, int] | None = None,
    input_shapes: Mapping[str, Sequence[int]] | None = None,
) -> tuple[dict[str, Any] | None, str | None]:
    """cost_summary, or (None, why) when it cannot be computed: packing never fails on it, and
    the estimate says it needs shapes."""
    try:
        return cost_summary(model, shape_assumptions, input_shapes), None
    except CostError as exc:
        return None, (
            f"no cost summary ({exc}); `edgepack estimate` cannot estimate this model until "
            "it is packed with its shapes"
        )


# --- TFLite graphs --------------------------------------------------------------------------
# A .tflite file's cost is counted at pack time, here, from the op list and tensor shapes the LiteRT
# interpreter reports (the file is not converted back to ONNX), so LiteRT entries of a pack carry a
# cost summary of the graph LiteRT runs. The device side reads only the summary.
_TFLITE_CLASS_OPS = {
    "gemm": "FULLY_CONNECTED BATCH_MATMUL",
    "conv": "CONV_2D TRANSPOSE_CONV CONV_3D",
    "depthwise_conv": "DEPTHWISE_CONV_2D",
    "elementwise": """ADD SUB MUL DIV RELU RELU6 RELU_N1_TO_1 RELU_0_TO_1 LEAKY_RELU PRELU LOGISTIC
        TANH HARD_SWISH GELU EXP LOG SQRT RSQRT POW SQUARE SQUARED_DIFFERENCE MAXIMUM MINIMUM ABS
        NEG CAST FLOOR CEIL ROUND SIGN SELECT SELECT_V2 EQUAL NOT_EQUAL LESS LESS_EQUAL GREATER
        GREATER_EQUAL LOGICAL_AND LOGICAL_OR LOGICAL_NOT ADD_N FLOOR_DIV FLOOR_MOD ELU
        RESIZE_BILINEAR RESIZE_NEAREST_NEIGHBOR""",
    "normalization": "L2_NORMALIZATION LOCAL_RESPONSE_NORMALIZATION",
    "softmax": "SOFTMAX LOG_SOFTMAX",
    "pooling": "AVERAGE_POOL_2D MAX_POOL_2D L2_POOL_2D MEAN SUM REDUCE_MAX REDUCE_MIN REDUCE_PROD",
    "gather": "GATHER GATHER_ND EMBEDDING_LOOKUP SCATTER_ND",
    "layout": """RESHAPE TRANSPOSE CONCATENATION SPLIT SPLIT_V SLICE STRIDED_SLICE PAD PADV2
        MIRROR_PAD SQUEEZE EXPAND_DIMS PACK UNPACK TILE BROADCAST_TO SHAPE DEPTH_TO_SPACE
        SPACE_TO_DEPTH""",
    "quantize": "QUANTIZE DEQUANTIZE",
    "nms": "NON_MAX_SUPPRESSION_V4 NON_MAX_SUPPRESSION_V5 TFLite_Detection_PostProcess",
}
TFLITE_OP_CLASSES = {op: cls for cls, ops in _TFLITE_CLASS_OPS.items() for op in ops.split()}
TFLITE_VIEW_OPS = {"RESHAPE", "SQUEEZE", "EXPAND_DIMS"}  # LiteRT aliases their buffers


def _tflite_flops(op: str, op_class: str, shapes: list, out: list | None) -> float:
    """FLOPs of one TFLite op from its tensors' shapes (2 per MAC; weights are OHWI / 1HWC / OI)."""
    out_elements = math.prod(out) if out is not None else 0
    weight = shapes[1] if len(shapes) > 1 else None
    if op in ("CONV_2D", "CONV_3D") and weight is not None:
        return 2.0 * out_elements * math.prod(weight[1:])
    if op == "DEPTHWISE_CONV_2D" and weight is not None:
        return 2.0 * out_elements * math.prod(weight[1:-1])
    if op == "TRANSPOSE_CONV" and len(shapes) > 2 and shapes[2] is not None:
        weight = shapes[1]  # inputs: output shape, weights, data
        return 2.0 * math.prod(shapes[2]) * math.prod(weight[:-1])
    if op == "FULLY_CONNECTED" and weight is not None:
        return 2.0 * out_elements * weight[-1]
    if op == "BATCH_MATMUL" and shapes and shapes[0] is not None:
        return 2.0 * out_elements * shapes[0][-1]
    if op_class == "pooling" and shapes and shapes[0] is not None:
        return float(math.prod(shapes[0]))
    return float(out_elements * {"softmax": 5, "normalization": 5, "quantize": 2}.get(op_class, 1))


def tflite_cost_summary(model: str | os.PathLike[str]) -> dict[str, Any]:
    """The manifest's `cost` object for a .tflite file, as cost_summary is for ONNX: parameters,
    FLOPs and, per row (op class, precision, size range), op count, FLOPs and bytes moved.

    Depthwise rows carry their channel counts, as cost_summary's. An op whose data
    input is int8/uint8 counts as int8, and so does a hybrid (dynamic-range) op
    with int8 weights; a DEQUANTIZE of a constant (fp16 or int8 weights) is folded before the
    first run and costs nothing; reshapes copy nothing. A non-max suppression op marks the
    summary incomplete, as cost_summary does (NMS_NOTE).
    """
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError as exc:
        raise EdgepackError(
            f"counting a TFLite graph needs the LiteRT interpreter (pip install "
            f"'edgepack[tflite]'): {exc}"
        ) from None
    try:
        interpreter = Interpreter(model_path=os.fspath(model))
    except (ValueError, RuntimeError) as exc:
        raise EdgepackError(f"{model}: not a TFLite model LiteRT can read: {exc}") from None
    tensors = {t["index"]: t for t in interpreter.get_tensor_details()}
    ops = interpreter._get_ops_details()  # the op list; LiteRT has no public accessor for it
    produced = {int(i) for op in ops for i in op["outputs"]}
    graph_inputs = {d["index"] for d in interpreter.get_input_details()}
    constant = set(tensors) - produced - graph_inputs

    def shape(index: int) -> list[int] | None:
        return [int(d) for d in tensors[index]["shape"]] if index in tensors else None

    def nbytes(index: int) -> int:
        t = tensors[index]
        return int(math.prod(int(d) for d in t["shape"]) * np.dtype(t["dtype"]).itemsize)

    # Parameters: float and 8-bit constants, and the int32 biases of quantized kernels (int32
    # constants elsewhere are shapes and permutations).
    biases = {
        int(op["inputs"][2])
        for op in ops
        if TFLITE_OP_CLASSES.get(op["op_name"]) in COMPUTE_CLASSES and len(op["inputs"]) > 2
    }
    parameters = sum(
        int(math.prod(int(d) for d in tensors[i]["shape"]))
        for i in constant
        if np.dtype(tensors[i]["dtype"]).kind == "f"
        or np.dtype(tensors[i]["dtype"]).itemsize == 1
        or i in biases
    )
    totals: dict[_Key, list[float]] = {}
    for op in ops:
        name = op["op_name"]
        inputs = [int(i) for i in op["inputs"] if int(i) >= 0]
        outputs = [int(i) for i in op["outputs"] if int(i) >= 0]
        if name == "DEQUANTIZE" and inputs and inputs[0] in constant:
            continue  # folded into the weights before the first run
        op_class = TFLITE_OP_CLASSES.get(name, "other")
        kinds = [np.dtype(tensors[i]["dtype"]) for i in inputs]
        data_int8 = bool(kinds) and kinds[0] in (np.dtype(np.int8), np.dtype(np.uint8))
        hybrid = len(kinds) > 1 and kinds[1] == np.dtype(np.int8) and op_class in QDQ_FUSED_CLASSES
        if data_int8 or hybrid:
            precision = "int8"
        elif kinds and kinds[0] == np.dtype(np.float16):
            precision = "fp16"
        else:
            precision = "fp32"
        moved = 0 if name in TFLITE_VIEW_OPS else sum(nbytes(i) for i in inputs + outputs)
        out = shape(outputs[0]) if outputs else None
        flops = _tflite_flops(name, op_class, [shape(i) for i in inputs], out)
        entry = _add_op(totals, op_class, precision, flops, moved)
        if name == "DEPTHWISE_CONV_2D" and len(inputs) > 1 and shape(inputs[1]):
            entry[3] += shape(inputs[1])[-1]  # output channels: one group each
    rows = _rows(totals)
    nms = sorted({op["op_name"] for op in ops if TFLITE_OP_CLASSES.get(op["op_name"]) == "nms"})
    return {
        "parameters": parameters,
        "flops": float(sum(r["flops"] for r in rows)),
        "shape_assumptions": {},
        "ops": rows,
        **({"complete": False, "notes": [NMS_NOTE.format(ops=", ".join(nms))]} if nms else {}),
    }


def format_cost(cost: Mapping[str, Any]) -> str:
    """A human table of a cost summary (a class has a row per size range: see MB per op)."""
    lines = [
        f"parameters {cost['parameters']:,}   FLOPs {cost['flops'] / 1e9:.3f} G   "
        f"assuming {cost.get('shape_assumptions') or 'static shapes'}",
        f"{'op class':<16}{'precision':<10}{'count':>7}{'MFLOPs':>14}{'MB moved':>12}{'MB/op':>10}",
    ]
    for op in cost["ops"]:
        lines.append(
            f"{op['op_class']:<16}{op['precision']:<10}{op['count']:>7}"
            f"{op['flops'] / 1e6:>14.2f}{op['bytes'] / 1e6:>12.2f}"
            f"{op['bytes'] / max(op['count'], 1) / 1e6:>10.3f}"
        )
    return "\n".join(lines)


def _assumption(text: str) -> tuple[str, int]:
    name, sep, value = text.partition("=")
    if not sep or not value.strip().isdigit():
        raise argparse.ArgumentTypeError(f"expected NAME=SIZE (e.g. sequence=256), got {text!r}")
    return name.strip(), int(value)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m edgepack.compress.cost",
        description="Print the per-op-class cost (FLOPs, bytes) of an ONNX or TFLite model.",
    )
    parser.add_argument("model", type=Path, help="an .onnx or .tflite file")
    parser.add_argument(
        "--assume",
        type=_assumption,
        action="append",
        default=[],
        metavar="NAME=SIZE",
        help="size of a symbolic dim (default batch=1, sequence=128)",
    )
    parser.add_argument("--json", action="store_true", help="print the manifest JSON only")
    args = parser.parse_args(argv)
    try:
        if args.model.suffix == ".tflite":
            cost = tflite_cost_summary(args.model)
        else:
            cost = cost_summary(args.model, dict(args.assume))
    except (EdgepackError, OSError, DecodeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(cost, indent=2) if args.json else format_cost(cost))
    return 0


if __name__ == "__main__":
    sys.exit(main())
