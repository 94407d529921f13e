"""ONNX Runtime backend: one InferenceSession, CPU by default, CUDA/TensorRT when asked for."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort

from ..errors import BackendUnavailableError, InputError, IntegrityError
from ..manifest import ModelEntry


def session_options(threads: int) -> ort.SessionOptions:
    """edgepack's session settings, also for bare onnxruntime timed against it: `threads`
    intra-op threads, ops in sequence (edge models are chains; a second pool would only compete).

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
    copies_model = True  # the session holds the model in memory of its own; the file is let go

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
        options = session_options(threads)
        # A table of external-data files given (packs hold none) makes onnxruntime look up any
        # a model references in it alone, never on disk beside the model or in the working dir.
        if hasattr(options, "add_external_initializers_from_files_in_memory"):  # ORT >= 1.20
            options.add_external_initializers_from_files_in_memory(
                ["\0"], [np.zeros(1, np.uint8)], [1]
            )
        source = str(model) if isinstance(model, Path) else model
        try:
            self.session = ort.InferenceSession(source, options, providers=wanted)
        except Exception as exc:  # onnxruntime's errors share no base class but Exception
            text = str(exc).splitlines()[0][:300]
            if "External" in text:
                raise IntegrityError(f"{entry.path} references external data: {text}") from None
            raise BackendUnavailableError(f"onnxruntime cannot load {entry.path}: {text}") from None
        self.threads = threads
        self.providers: list[str] = self.session.get_providers()
        self._outputs = [spec.file_name for spec in entry.outputs]

    def run(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        try:
            return self.session.run(self._outputs, feeds)
        except Exception as exc:  # inputs were checked: what is left is the model's own complaint
            fed = ", ".join(f"{name} {v.dtype}{list(v.shape)}" for name, v in feeds.items())
            text = " ".join(str(exc).split())
            raise InputError(f"onnxruntime could not run the model on {fed}: {text}") from None

    def signature(self) -> dict[str, dict[str, tuple[str, int]]]:
        """The file's own inputs and outputs: name -> (numpy dtype name, rank)."""
        dtype = {"float": "float32", "double": "float64"}
        return {
            kind: {t.name: (dtype.get(t.type[7:-1], t.type[7:-1]), len(t.shape)) for t in tensors}
            for kind, tensors in (
                ("inputs", self.session.get_inputs()),
                ("outputs", self.session.get_outputs()),
            )
        }
