"""Describes an ONNX or TFLite file for the manifest (I/O, opset, precision) without onnx/TF.

Used by `edgepack pack` on a device-side install and by compress/ when it writes packs.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from edgepack.runtime.backends import backend_class
from edgepack.runtime.errors import EdgepackError
from edgepack.runtime.manifest import ModelEntry, Quantization, TensorSpec

_ORT_DTYPES = {
    "tensor(float)": "float32",
    "tensor(float16)": "float16",
    "tensor(double)": "float64",
    "tensor(int8)": "int8",
    "tensor(uint8)": "uint8",
    "tensor(int16)": "int16",
    "tensor(int32)": "int32",
    "tensor(int64)": "int64",
    "tensor(bool)": "bool",
}
_DYNAMIC_QUANT_OPS = {
    "DynamicQuantizeLinear",
    "MatMulInteger",
    "ConvInteger",
    "DynamicQuantizeMatMul",
}
_STATIC_QUANT_OPS = {"QuantizeLinear", "DequantizeLinear", "QLinearConv", "QLinearMatMul"}
FORMATS = {".onnx": "onnx", ".tflite": "tflite"}
FORMAT_BACKENDS = {"onnx": ["onnxruntime"], "tflite": ["litert"]}


def describe_model_file(
    path: str | os.PathLike[str],
    pack_path: str | None = None,
    precision: str | None = None,
    names: dict[str, str] | None = None,
) -> ModelEntry:
    """A manifest entry for a model file: I/O specs from the interpreter, opset/schema, precision.

    names maps the file's tensor names to the names users should pass (e.g. TFLite's
    'serving_default_args_0' -> 'input_ids'); by default users pass the file's own names.
    precision defaults to what the file's ops and tensor types show.
    """
    path = Path(path)
    fmt = FORMATS.get(path.suffix)
    if fmt is None:
        raise EdgepackError(f"{path} is not a model file: expected a .onnx or .tflite file")
    data = path.read_bytes()
    backend = FORMAT_BACKENDS[fmt][0]
    probe = ModelEntry(path.name, fmt, "fp32", [backend], [], [])
    runner = backend_class(backend)(data, probe, 1, None)
    names = names or {}
    if fmt == "onnx":
        opset, op_types = _onnx_opset_and_ops(data)
        inputs = [_ort_tensor(t, names) for t in runner.session.get_inputs()]
        outputs = [_ort_tensor(t, names) for t in runner.session.get_outputs()]
        guessed = _onnx_precision(op_types)
        extra = {"opset": opset}
    else:
        interp = runner.interpreter
        inputs = [_tflite_tensor(d, names) for d in interp.get_input_details()]
        outputs = [_tflite_tensor(d, names) for d in interp.get_output_details()]
        guessed = _tflite_precision(interp, inputs + outputs)
        extra = {"tflite_schema": tflite_schema_version(data)}
    return ModelEntry(
        path=pack_path or path.name,
        format=fmt,
        precision=precision or guessed,
        backends=list(FORMAT_BACKENDS[fmt]),
        inputs=inputs,
        outputs=outputs,
        **extra,
    )


def _ort_tensor(node, names: dict[str, str]) -> TensorSpec:
    if node.type not in _ORT_DTYPES:
        raise EdgepackError(f"tensor {node.name!r} has type {node.type}, which packs do not carry")
    shape = [
        d if isinstance(d, int) else (d or f"{node.name}:{i}") for i, d in enumerate(node.shape)
    ]
    name = names.get(node.name, node.name)
    return TensorSpec(name, _ORT_DTYPES[node.type], shape, node.name if name != node.name else None)


def _tflite_tensor(detail: dict, names: dict[str, str]) -> TensorSpec:
    file_name = detail["name"]
    name = names.get(file_name, file_name)
    signature = detail.get("shape_signature", detail["shape"])
    shape = [int(d) if d >= 0 else f"{name}:{i}" for i, d in enumerate(signature)]
    scale, zero_point = detail["quantization"]
    dtype = np.dtype(detail["dtype"]).name
    quant = Quantization(float(scale), int(zero_point)) if scale else None
    return TensorSpec(name, dtype, shape, file_name if name != file_name else None, quant)


def _onnx_precision(op_types: set[str]) -> str:
    # Dynamic first: dynamic quantization of Gather adds DequantizeLinear nodes too.
    if op_types & _DYNAMIC_QUANT_OPS:
        return "int8-dynamic"
    if op_types & _STATIC_QUANT_OPS:
        return "int8-static"
    return "fp32"


def _tflite_precision(interp, tensors: list[TensorSpec]) -> str:
    # Full int8 quantizes float I/O; integer inputs such as token ids stay int32 even then.
    if any(t.quantization is not None for t in tensors):
        return "int8-full"
    kinds = {str(d["dtype"]) for d in interp.get_tensor_details()}
    return "int8-dynamic" if any("int8" in k for k in kinds) else "fp32"


def tflite_schema_version(data: bytes) -> int | None:
    """The `version` field of a TFLite flatbuffer's Model table (3 for current files)."""
    if len(data) < 8 or data[4:8] != b"TFL3":
        raise EdgepackError("not a TFLite flatbuffer: the file identifier 'TFL3' is missing")
    table = int.from_bytes(data[0:4], "little")
    vtable = table - int.from_bytes(data[table : table + 4], "little", signed=True)
    vtable_size = int.from_bytes(data[vtable : vtable + 2], "little")
    if vtable_size <= 4:
        return 0
    offset = int.from_bytes(data[vtable + 4 : vtable + 6], "little")
    return int.from_bytes(data[table + offset : table + offset + 4], "little") if offset else 0


def _onnx_opset_and_ops(data: bytes) -> tuple[int | None, set[str]]:
    """Default-domain opset and op types of an ONNX ModelProto, read from the protobuf directly."""
    opset = None
    op_types: set[str] = set()
    for field, value in _fields(data):
        if field == 8:  # opset_import: OperatorSetIdProto {domain = 1, version = 2}
            sub = dict(_fields(value))
            if bytes(sub.get(1, b"")) in (b"", b"ai.onnx"):
                opset = sub.get(2)
        elif field == 7:  # graph: GraphProto {node = 1}, NodeProto {op_type = 4}
            for graph_field, node in _fields(value):
                if graph_field == 1:
                    op_types.update(bytes(v).decode() for f, v in _fields(node) if f == 4)
    return opset, op_types


def _fields(data: bytes | memoryview):
    """(field number, value) pairs of a protobuf message: ints for varints, views otherwise."""
    view = memoryview(data)
    pos = 0
    while pos < len(view):
        key, pos = _varint(view, pos)
        field, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(view, pos)
        elif wire == 2:
            length, pos = _varint(view, pos)
            value, pos = view[pos : pos + length], pos + length  # no copy: weights are large
        elif wire in (1, 5):
            size = 8 if wire == 1 else 4
            value, pos = view[pos : pos + size].tobytes(), pos + size
        else:
            raise EdgepackError(f"not an ONNX protobuf: unexpected wire type {wire}")
        yield field, value


def _varint(view: memoryview, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(view):
            raise EdgepackError("not an ONNX protobuf: truncated varint")
        byte = view[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7
