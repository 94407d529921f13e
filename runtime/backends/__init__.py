"""The interpreters a pack can run on, in one table: name -> where it lives, what to install."""

from __future__ import annotations

import importlib
import importlib.util
from typing import NamedTuple, Protocol

import numpy as np

from ..errors import BackendUnavailableError


class Backend(Protocol):
    """What `Model` needs of an interpreter; each module in this folder implements it, with
    `__init__(model: bytes | Path, entry: ModelEntry, threads: int, providers: list | None)`."""

    name: str
    copies_model: bool  # reads the model file once, into memory of its own (see verified())
    threads: int
    providers: list[str]

    def run(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        """Outputs in the order of `entry.outputs`, for feeds keyed by the file's tensor names."""

    def signature(self) -> dict[str, dict[str, tuple[str, int]]]:
        """{"inputs": ..., "outputs": ...}: the file's tensor name -> (numpy dtype name, rank)."""


class BackendInfo(NamedTuple):
    module: str  # "package.module:Class" of the implementation
    package: str  # the interpreter package it imports
    install_hint: str


# Table order is the preference order of backend="auto".
BACKENDS = {
    "onnxruntime": BackendInfo(
        "edgepack.runtime.backends.ort_backend:OnnxRuntimeBackend",
        "onnxruntime",
        "pip install edgepack (onnxruntime is in the base install)",
    ),
    "litert": BackendInfo(
        "edgepack.runtime.backends.litert_backend:LiteRTBackend",
        "ai_edge_litert",
        "pip install 'edgepack[tflite]' (ai-edge-litert)",
    ),
}
ALIASES = {"onnx": "onnxruntime", "tflite": "litert"}  # what users may also call a backend


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
    return importlib.util.find_spec(BACKENDS[backend].package) is not None


def backend_class(backend: str) -> type[Backend]:
    """The class implementing `backend`; raises a clear error for unknown or missing ones."""
    info = BACKENDS[backend_name(backend)]
    if not is_installed(backend_name(backend)):
        raise BackendUnavailableError(
            f"backend {backend!r} needs {info.package}, which is not installed: {info.install_hint}"
        )
    module, _, name = info.module.partition(":")
    return getattr(importlib.import_module(module), name)
