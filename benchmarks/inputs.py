"""Benchmark inputs: what a user writes (`x=1x3x480x640`, `sr=16000`, `state=zeros`, an .npz of
real samples), what a pack carries as its example inputs, and random inputs for the rest, so any
pack can be timed on the shapes and values it is really used with.

>>> spec = parse_input_spec("x=1x3x480x640:0..1")
>>> spec
('x', InputSpec(shape=(1, 3, 480, 640), values=(0.0, 1.0)))
"""

from __future__ import annotations

import io
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from edgepack.benchmarks.errors import BenchmarkError
from edgepack.runtime import ModelEntry, PackManifest

DEFAULT_DIMS = {"batch": 1}
DEFAULT_DYNAMIC = 64  # sequence length (or any other named dim) when nothing says otherwise
FILLS = ("random", "zeros", "ones")
_SHAPE = re.compile(r"^(scalar|\d+x|\d+(x\d+)+)$")
_RANGE = re.compile(r"^(-?[\d.e+-]+)\.\.(-?[\d.e+-]+)$")
SPEC_HELP = (
    "NAME=SPEC, SPEC a shape (1x3x480x640; 512x for rank 1; scalar), values (zeros, ones, "
    "random, a number such as 16000, a range LOW..HIGH), or SHAPE:VALUES"
)


@dataclass(frozen=True)
class InputSpec:
    """How one input is made: its shape (None: from the model's spec and the dims) and values:
    "random" (normal floats, integers in [0, 100)), "zeros", "ones", one number everywhere, or
    a (low, high) range drawn uniformly (integers: low to high - 1)."""

    shape: tuple[int, ...] | None = None
    values: str | float | tuple[float, float] = "random"

    def to_dict(self) -> dict[str, Any]:
        """The manifest's form (docs/pack-format.md, example_inputs)."""
        data: dict[str, Any] = {}
        if self.shape is not None:
            data["shape"] = list(self.shape)
        data["values"] = list(self.values) if isinstance(self.values, tuple) else self.values
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> InputSpec:
        values = data.get("values", "random")
        shape = data.get("shape")
        return cls(
            None if shape is None else tuple(int(d) for d in shape),
            tuple(float(v) for v in values) if isinstance(values, list) else values,
        )

    def describe(self) -> str:
        if isinstance(self.values, tuple):
            return f"uniform {self.values[0]:g}..{self.values[1]:g}"
        return self.values if isinstance(self.values, str) else f"= {self.values:g}"


def parse_input_spec(text: str) -> tuple[str, InputSpec]:
    """`NAME=SPEC` as `--input` takes it (SPEC_HELP), or a BenchmarkError saying what is wrong."""
    name, sep, rest = text.partition("=")
    if not sep or not name or not rest:
        raise BenchmarkError(f"--input takes {SPEC_HELP}; got {text!r}")
    shape: tuple[int, ...] | None = None
    values: str | float | tuple[float, float] = "random"
    for part in rest.split(":"):
        if _SHAPE.match(part):
            shape = () if part == "scalar" else tuple(int(d) for d in part.split("x") if d)
        elif part in FILLS:
            values = part
        elif match := _RANGE.match(part):
            low, high = float(match[1]), float(match[2])
            if not low < high:
                raise BenchmarkError(f"--input {name}: range {part} needs LOW < HIGH")
            values = (low, high)
        else:
            try:
                values = float(part)
            except ValueError:
                raise BenchmarkError(
                    f"--input {name}: cannot read {part!r}; expected {SPEC_HELP}"
                ) from None
    return name, InputSpec(shape, values)


def manifest_examples(manifest: PackManifest) -> dict[str, InputSpec]:
    """The example input specs a pack carries (its manifest's example_inputs), by input name."""
    section = getattr(manifest, "example_inputs", None) or {}
    return {name: InputSpec.from_dict(d) for name, d in section.get("inputs", {}).items()}


def read_npz(data: bytes | str, what: str) -> dict[str, np.ndarray]:
    """Arrays of an .npz (a path or its bytes), without pickles."""
    try:
        source = io.BytesIO(data) if isinstance(data, bytes) else data
        with np.load(source, allow_pickle=False) as archive:
            return {k: archive[k] for k in archive.files}
    except (OSError, ValueError) as exc:
        raise BenchmarkError(f"cannot read {what} as .npz arrays: {exc}") from None


def check_names(entry: ModelEntry, names: Any, what: str) -> None:
    """Refuse inputs the model does not have, naming the ones it has."""
    known = [s.name for s in entry.inputs]
    unknown = sorted(set(names) - set(known))
    if unknown:
        raise BenchmarkError(f"{what}: {entry.path} has no input(s) {unknown}; it has {known}")


def check_dims(entries: list[ModelEntry], dims: Mapping[str, int]) -> None:
    """Refuse --dim names no input of any pack has (a typo would otherwise time 64)."""
    named = {str(d) for e in entries for s in e.inputs for d in s.shape if isinstance(d, str)}
    unknown = sorted(set(dims) - named - set(DEFAULT_DIMS))
    if unknown:
        raise BenchmarkError(
            f"--dim {', '.join(unknown)}: no input has a dimension of that name; the named "
            f"dimensions are {sorted(named) or 'none'}. Set whole shapes with --input "
            "NAME=1x3x480x640"
        )


def synthetic_inputs(
    entry: ModelEntry,
    dims: dict[str, int] | None = None,
    seed: int = 0,
    specs: Mapping[str, InputSpec] | None = None,
    arrays: Mapping[str, np.ndarray] | None = None,
) -> dict[str, np.ndarray]:
    """Inputs shaped by the model's specs: `arrays` (real samples) first, then `specs`, then
    random values for the rest; named dims come from `dims`, then defaults.

    The first axis and any dim named like '*batch*' default to dims["batch"] (1), any other
    named dim to 64. Random integer inputs get values in [0, 100) (valid token ids for any
    real vocabulary), masks get ones. An array with one more axis than the input is a stack of
    samples: the first is used.
    """
    dims = {**DEFAULT_DIMS, **(dims or {})}
    specs, arrays = dict(specs or {}), dict(arrays or {})
    rng = np.random.default_rng(seed)
    inputs = {}
    for spec in entry.inputs:
        dtype = np.dtype(spec.user_dtype)
        if spec.name in arrays:
            array = np.asarray(arrays[spec.name])
            if array.ndim == len(spec.shape) + 1:
                array = array[0]
            inputs[spec.name] = _fitted(array, spec, dtype)
            continue
        given = specs.get(spec.name, InputSpec())
        if given.shape is not None and len(given.shape) != len(spec.shape):
            raise BenchmarkError(
                f"input {spec.name!r}: shape {list(given.shape)} has rank {len(given.shape)}; "
                f"{entry.path} expects rank {len(spec.shape)}: {spec.shape}"
            )
        shape = given.shape or [_size(d, dims, axis) for axis, d in enumerate(spec.shape)]
        values = given.values
        if values == "random" and spec.name not in specs:
            if "mask" in spec.name or dtype.kind == "b":
                values = "ones"
            elif "type" in spec.name and dtype.kind != "f":
                values = "zeros"
        inputs[spec.name] = _filled(values, tuple(shape), dtype, rng)
    return inputs


def _fitted(array: np.ndarray, spec: Any, dtype: np.dtype) -> np.ndarray:
    if array.ndim != len(spec.shape):
        raise BenchmarkError(
            f"input {spec.name!r}: the given array has shape {array.shape}; expected rank "
            f"{len(spec.shape)} ({spec.shape}), or a stack of such samples"
        )
    if array.dtype.kind != dtype.kind and not (array.dtype.kind in "iu" and dtype.kind in "iu"):
        raise BenchmarkError(
            f"input {spec.name!r}: the given array is {array.dtype}; expected {dtype}"
        )
    return np.asarray(array, dtype=dtype, order="C")  # ascontiguousarray makes 0-d 1-d


def _filled(values: Any, shape: tuple[int, ...], dtype: np.dtype, rng: np.random.Generator):
    if values == "zeros":
        return np.zeros(shape, dtype)
    if values == "ones":
        return np.ones(shape, dtype)
    if isinstance(values, tuple):
        low, high = values
        if dtype.kind == "f":
            return rng.uniform(low, high, shape).astype(dtype)
        return rng.integers(int(low), int(high), shape).astype(dtype)
    if values == "random":
        if dtype.kind == "f":
            return rng.standard_normal(shape).astype(dtype)
        return rng.integers(0, 100, shape).astype(dtype)
    return np.full(shape, values, dtype)


def describe_inputs(
    feeds: Mapping[str, np.ndarray],
    specs: Mapping[str, InputSpec] | None = None,
    arrays: Mapping[str, Any] | None = None,
) -> dict[str, str]:
    """Per input: its shape and where its values came from, for tables ("1x3x480x640 random")."""
    specs, arrays = specs or {}, arrays or {}
    out = {}
    for name, value in feeds.items():
        shape = "x".join(str(d) for d in value.shape) or "scalar"
        if name in arrays:
            source = "given array"
        elif value.ndim == 0:
            source = f"= {value.item():g}"
        else:
            source = specs[name].describe() if name in specs else "random"
        out[name] = f"{shape} {source}"
    return out


def _size(dim: int | str, dims: dict[str, int], axis: int) -> int:
    if isinstance(dim, int) and dim >= 0:
        return dim
    name = str(dim)
    if name in dims:
        return dims[name]
    return dims["batch"] if axis == 0 or "batch" in name.lower() else DEFAULT_DYNAMIC
