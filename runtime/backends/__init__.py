"""The interpreters a pack can run on, in one table: backend name -> how to make and find it."""

from __future__ import annotations

import importlib
import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from ..errors import BackendUnavailableError
from ..manifest import ModelEntry


class Backend(Protocol):
    """What `Model` needs of an interpreter; each module in this folder implements it."""

    name: str
    threads: int
    providers: list[str]

    def __init__(
        self, model: bytes | Path, entry: ModelEntry, threads: int, providers: list[str] | None
    ) -> None: ...

    def run(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        """Outputs in the order of `entry.outputs`, for feeds keyed by the file's tensor names."""

    def signature(self) -> dict[str, dict[str, tuple[str, int]]]:
        """{"inputs": ..., "outputs": ...}: the file's tensor name -> (numpy dtype name, rank)."""


@dataclass(frozen=True)
class BackendInfo:
    """Where a backend lives and what to install when it is missing."""

    module: str
    factory: str
    packages: tuple[str, ...]
    install_hint: str


# Table order is the preference order of backend="auto".
BACKENDS: dict[str, BackendInfo] = {
    "onnxruntime": BackendInfo(
        "edgepack.runtime.backends.ort_backend",
        "OnnxRuntimeBackend",
        ("onnxruntime",),
        "pip install edgepack (onnxruntime is in the base install)",
    ),
    "litert": BackendInfo(
        "edgepack.runtime.backends.litert_backend",
        "LiteRTBackend",
        ("ai_edge_litert",),
        "pip install 'edgepack[tflite]' (ai-edge-litert)",
    ),
}
# What users may also call a backend: the format it runs.
ALIASES = {"onnx": "onnxruntime", "tflite": "litert"}


def backend_name(backend: str) -> str:
    """The table name of a backend or of an alias; the one place an unknown name is refused."""
    name = ALIASES.get(backend, backend)
    if name not in BACKENDS:
        raise BackendUnavailableError(
            f"unknown backend {backend!r}; expected one of {', '.join(BACKENDS)} "
            f"(or {', '.join(ALIASES)}) or 'auto'"
        )
    return name


def is_installed(backend: str) -> bool:
    """True when one of the backend's interpreter packages can be imported."""
    return any(importlib.util.find_spec(p) is not None for p in BACKENDS[backend].packages)


def backend_class(backend: str) -> type[Backend]:
    """The class implementing `backend`; raises a clear error for unknown or missing ones."""
    backend = backend_name(backend)
    info = BACKENDS[backend]
    if not is_installed(backend):
        raise BackendUnavailableError(
            f"backend {backend!r} needs {' or '.join(info.packages)}, which is not installed: "
            f"{info.install_hint}"
        )
    return getattr(importlib.import_module(info.module), info.factory)
