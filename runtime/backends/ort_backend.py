"""ONNX Runtime backend: one InferenceSession, CPU by default, CUDA/TensorRT when asked for."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort

from ..errors import BackendUnavailableError
from ..manifest import ModelEntry


def session_options(threads: int) -> ort.SessionOptions:
    """edgepack's session settings: `threads` intra-op threads, ops run one after another (edge
    models are chains of ops; a second pool would only compete for the same few cores). Whatever
    times bare onnxruntime against edgepack uses this too, so that both run the same settings.

    >>> ort.InferenceSession("model.onnx", session_options(1))  # doctest: +SKIP
    """
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    return options


class OnnxRuntimeBackend:
    """Runs an ONNX model. InferenceSession.run is thread-safe, so no lock is taken."""

    name = "onnxruntime"

    def __init__(
        self, model: bytes | Path, entry: ModelEntry, threads: int, providers: list[str] | None
    ):
        available = ort.get_available_providers()
        wanted = list(providers or ["CPUExecutionProvider"])
        if absent := [p for p in wanted if p not in available]:
            raise BackendUnavailableError(
                f"execution provider(s) {absent} are not available in this onnxruntime build "
                f"(available: {available}); CUDA/TensorRT need the onnxruntime-gpu package"
            )
        if "CPUExecutionProvider" not in wanted:
            wanted.append("CPUExecutionProvider")  # fallback for ops the accelerator lacks
        source = str(model) if isinstance(model, Path) else model
        self.session = ort.InferenceSession(source, session_options(threads), providers=wanted)
        self.threads = threads
        self.providers: list[str] = self.session.get_providers()
        self._outputs = [spec.file_name for spec in entry.outputs]

    def run(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        return self.session.run(self._outputs, feeds)
