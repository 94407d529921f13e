"""Synthetic inputs built from a pack's input specs, so any pack can be timed without data."""

from __future__ import annotations

import numpy as np

from edgepack.runtime import ModelEntry

DEFAULT_DIMS = {"batch": 1}
DEFAULT_DYNAMIC = 64  # sequence length (or any other named dim) when nothing says otherwise


def synthetic_inputs(
    entry: ModelEntry, dims: dict[str, int] | None = None, seed: int = 0
) -> dict[str, np.ndarray]:
    """Random inputs shaped by the model's specs; named dims come from `dims`, then defaults.

    The first axis and any dim named like '*batch*' default to dims["batch"] (1), any other
    named dim to 64. Integer inputs get values in [0, 100) (valid token ids for any real
    vocabulary), masks get ones.
    """
    dims = {**DEFAULT_DIMS, **(dims or {})}
    rng = np.random.default_rng(seed)
    inputs = {}
    for spec in entry.inputs:
        shape = [_size(d, dims, axis) for axis, d in enumerate(spec.shape)]
        dtype = np.dtype(spec.user_dtype)
        if dtype.kind == "f":
            inputs[spec.name] = rng.standard_normal(shape).astype(dtype)
        elif "mask" in spec.name:
            inputs[spec.name] = np.ones(shape, dtype)
        elif "type" in spec.name:
            inputs[spec.name] = np.zeros(shape, dtype)
        elif dtype.kind == "b":
            inputs[spec.name] = np.ones(shape, dtype)
        else:
            inputs[spec.name] = rng.integers(0, 100, shape).astype(dtype)
    return inputs


def _size(dim: int | str, dims: dict[str, int], axis: int) -> int:
    if isinstance(dim, int) and dim >= 0:
        return dim
    name = str(dim)
    if name in dims:
        return dims[name]
    return dims["batch"] if axis == 0 or "batch" in name.lower() else DEFAULT_DYNAMIC
