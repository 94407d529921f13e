"""LiteRT (TFLite) backend: ai-edge-litert's interpreter, inputs bound by tensor name; int8 I/O
(de)quantized with the interpreter's own parameters, so callers see float32. Not tflite-runtime:
its last release (2.14) fails under numpy 2 and on current op versions, and gave wrong int8 results.
"""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
from ai_edge_litert.interpreter import Interpreter

from ..errors import BackendUnavailableError
from ..manifest import ModelEntry


class LiteRTBackend:
    """Runs a .tflite model. The interpreter is not thread-safe, so each run holds a lock."""

    name = "litert"
    copies_model = False  # the interpreter maps the file and reads it while it runs

    def __init__(
        self, model: bytes | Path, entry: ModelEntry, threads: int, providers: list[str] | None
    ):
        if providers:
            raise BackendUnavailableError("the litert backend takes no execution providers")
        source = {"model_path": str(model)} if isinstance(model, Path) else {"model_content": model}
        try:
            self.interpreter = Interpreter(**source, num_threads=threads)
            self.interpreter.allocate_tensors()
        except (RuntimeError, ValueError) as exc:
            raise BackendUnavailableError(
                f"ai-edge-litert cannot load {entry.path}: {exc}"
            ) from exc
        self.threads = threads
        self.providers = ["ai-edge-litert"]
        self._lock = threading.Lock()
        # By tensor name; a name the file lacks is the load-time manifest check's to report.
        details = {d["name"]: d for d in self._details("inputs") + self._details("outputs")}
        self._inputs = {s.file_name: details.get(s.file_name) for s in entry.inputs}
        self._outputs = [details.get(s.file_name) for s in entry.outputs]
        self._shapes = {name: tuple(d["shape"]) for name, d in self._inputs.items() if d}

    def _details(self, kind: str) -> list[dict]:
        return getattr(self.interpreter, f"get_{kind[:-1]}_details")()

    def signature(self) -> dict[str, dict[str, tuple[str, int]]]:
        """The file's own inputs and outputs: name -> (numpy dtype name, rank)."""
        return {
            kind: {
                d["name"]: (np.dtype(d["dtype"]).name, len(d["shape"])) for d in self._details(kind)
            }
            for kind in ("inputs", "outputs")
        }

    def run(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        with self._lock:
            resized = False
            for name, value in feeds.items():
                if value.shape != self._shapes[name]:
                    self.interpreter.resize_tensor_input(self._inputs[name]["index"], value.shape)
                    self._shapes[name] = value.shape
                    resized = True
            if resized:
                self.interpreter.allocate_tensors()
            for name, value in feeds.items():
                detail = self._inputs[name]
                self.interpreter.set_tensor(detail["index"], _quantize(value, detail))
            self.interpreter.invoke()
            return [_dequantize(self.interpreter.get_tensor(d["index"]), d) for d in self._outputs]


def _quantize(value: np.ndarray, detail: dict) -> np.ndarray:
    scale, zero_point = detail["quantization"]
    dtype = np.dtype(detail["dtype"])
    if scale == 0.0 or value.dtype == dtype:
        return value.astype(dtype, copy=False)
    info = np.iinfo(dtype)
    # In place on one temporary: this runs on every call, and for a 20 us model it is the cost.
    scaled = np.multiply(value, np.float32(1.0 / scale), dtype=np.float32)
    np.rint(scaled, out=scaled)
    scaled += zero_point
    np.clip(scaled, info.min, info.max, out=scaled)
    return scaled.astype(dtype)


def _dequantize(value: np.ndarray, detail: dict) -> np.ndarray:
    scale, zero_point = detail["quantization"]
    if scale == 0.0:
        return value
    return ((value.astype(np.float32) - zero_point) * scale).astype(np.float32)
