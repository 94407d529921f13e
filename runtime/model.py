"""Loads a pack onto one backend and runs it: `load(path).run(inputs)` and `.predict(x)`."""

from __future__ import annotations

import contextlib
import math
import os
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np

from .backends import BACKENDS, Backend, backend_class, backend_name, is_installed
from .errors import BackendUnavailableError, InputError, ManifestError
from .manifest import ModelEntry, PackManifest, TensorSpec
from .pack import KeySource, PackReader
from .postprocess import Prediction, postprocess
from .requirements import check_requirements


def default_threads() -> int:
    """The cores this process may run on (CPU affinity), which is what a benchmark should use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS and Windows have no sched_getaffinity
        return os.cpu_count() or 1


def load(
    path: str | os.PathLike[str],
    backend: str = "auto",
    threads: int | None = None,
    providers: list[str] | None = None,
    model_file: str | None = None,
    trusted_keys: list[KeySource] | None = None,
) -> Model:
    """Load a pack (directory or .edgepack archive), verifying every file hash.

    backend: "onnxruntime" ("onnx"), "litert" ("tflite") or "auto": ONNX Runtime when the pack
    has an ONNX model and onnxruntime is installed, else LiteRT. threads: intra-op threads
    (default: all usable cores). providers: ONNX Runtime execution providers. model_file: the
    model to run when several suit the backend. trusted_keys: Ed25519 public keys (PEM files or
    bytes), one of which must have signed the pack (the `sign` extra).

    >>> model = load("digits.edgepack", threads=1)  # doctest: +SKIP
    >>> model.run({"pixels": np.zeros((1, 1, 8, 8), np.float32)})["logits"].shape  # doctest: +SKIP
    (1, 10)
    """
    most = 4 * (os.cpu_count() or 1)
    if threads is not None and (not isinstance(threads, int) or not 1 <= threads <= most):
        raise InputError(f"threads must be a positive integer, at most {most}, got {threads!r}")
    backend = backend if backend == "auto" else backend_name(backend)
    with PackReader(path, trusted_keys) as reader:
        manifest = reader.manifest
        check_requirements(manifest)
        entry, chosen = _choose_model(manifest, backend, model_file)
        factory = backend_class(chosen)
        threads = threads or default_threads()
        # Every listed file is checked once: assets are kept as bytes, other models only hashed,
        # and the interpreter reads the very bytes of the chosen model that were hashed.
        assets = {f.path: reader.read(f.path) for f in manifest.files}
        for other in manifest.models:
            if other.path != entry.path:
                reader.check(other.path)
        with reader.verified(entry.path, copied=factory.copies_model) as model:
            runner = factory(model, entry, threads, providers)
    _check_against_model(manifest, entry, runner)
    return Model(manifest, entry, runner, assets)


def _check_against_model(manifest: PackManifest, entry: ModelEntry, runner: Backend) -> None:
    """The manifest must describe the model file, and pre/postprocessing name tensors it has:
    refused at load, not as an interpreter's error at run()."""
    where = f"models[{manifest.models.index(entry)}]"
    signature = runner.signature()
    for kind, specs in (("inputs", entry.inputs), ("outputs", entry.outputs)):
        for i, spec in enumerate(specs):
            if signature[kind].get(spec.file_name) != (spec.dtype, len(spec.shape)):
                raise ManifestError(
                    f"{where}.{kind}[{i}] ({spec.file_name!r}, dtype {spec.dtype}, shape "
                    f"{spec.shape}) is not in {entry.path}, whose {kind} are {signature[kind]} "
                    "(name: (dtype, rank)): the manifest does not describe this model"
                )
    pre, post = manifest.preprocessing or {}, manifest.postprocessing or {}
    inputs, outputs = [s.name for s in entry.inputs], [s.name for s in entry.outputs]
    named = [("preprocessing.input_names", n, inputs) for n in pre.get("input_names", {}).values()]
    named += [("preprocessing.input_name", pre.get("input_name"), inputs)]
    named += [("postprocessing.output_name", post.get("output_name"), outputs)]
    for field_name, name, have in named:
        if name is not None and name not in have:
            raise ManifestError(f"{field_name} names {name!r}; {entry.path} has {have}")


def _choose_model(
    manifest: PackManifest, backend: str, model_file: str | None
) -> tuple[ModelEntry, str]:
    candidates = [m for m in manifest.models if model_file in (None, m.path)]
    if not candidates:
        known = [m.path for m in manifest.models]
        raise InputError(f"pack {manifest.name!r} has no model file {model_file!r}; it has {known}")
    for name in BACKENDS if backend == "auto" else [backend]:  # table order is the preference
        runnable = [m for m in candidates if name in m.backends]
        if runnable and (backend != "auto" or is_installed(name)):
            return runnable[0], name
    have = sorted({b for m in candidates for b in m.backends})
    if backend != "auto":
        raise BackendUnavailableError(
            f"pack {manifest.name!r} has no model for backend {backend!r}; its models run on {have}"
        )
    hints = "; ".join(BACKENDS[b].install_hint for b in have)
    raise BackendUnavailableError(
        f"no installed backend can run pack {manifest.name!r} (it needs one of {have}): {hints}"
    )


_KIND_NAMES = {"f": "floats", "i": "integers", "b": "bools"}


@dataclass(frozen=True)
class _InputCheck:
    """What one input must look like, precomputed so run() stays cheap."""

    spec: TensorSpec
    dtype: np.dtype
    kind: str  # "f" float, "i" integer, "b" bool
    fixed: tuple[tuple[int, int], ...]  # (axis, size) of fixed dims
    named: tuple[tuple[int, str], ...]  # (axis, name) of named dynamic dims
    ids_below: int | None  # token ids: the vocabulary's size

    @classmethod
    def of(cls, spec: TensorSpec, ids_below: int | None) -> _InputCheck:
        dtype, dims = np.dtype(spec.user_dtype), list(enumerate(spec.shape))
        fixed = tuple((a, d) for a, d in dims if isinstance(d, int) and d >= 0)
        real = [(a, d) for a, d in dims if isinstance(d, str) and d not in ("", "?")]
        named = tuple((a, d) for a, d in real if not d.startswith("unk__"))  # placeholders: untied
        kind = "i" if dtype.kind in "iu" else dtype.kind
        return cls(spec, dtype, kind, fixed, named, ids_below)


class Model:
    """A pack loaded on one backend. `run` is safe to call from several threads at once."""

    def __init__(
        self, manifest: PackManifest, entry: ModelEntry, runner: Backend, assets: dict[str, bytes]
    ):
        self.manifest = manifest
        self.entry = entry
        self.backend, self.threads, self.providers = runner.name, runner.threads, runner.providers
        self._runner = runner
        pre = manifest.preprocessing or {}
        vocab = assets.get(pre.get("vocab_file", ""), b"").count(b"\n") or None
        ids = {pre.get("input_names", {}).get("input_ids"): vocab}
        self._checks = [_InputCheck.of(spec, ids.get(spec.name)) for spec in entry.inputs]
        self._names = {c.spec.name for c in self._checks}
        self._output_names = [spec.name for spec in entry.outputs]
        self._assets = assets

    @cached_property
    def _preprocess(self) -> Any:
        """Built on the first predict() (two threads may both build it, the same thing)."""
        config = self.manifest.preprocessing or {}
        if config.get("kind") == "text":
            from .preprocess.text import TextEncoder

            # A model file with a fixed sequence length (TFLite) takes text padded to it.
            fixed = [d for s in self.entry.inputs for d in s.shape[1:2] if isinstance(d, int)]
            if fixed and fixed[0] > 0:
                config = {**config, "padding": "max_length", "max_length": fixed[0]}

            return TextEncoder(config, self._assets.__getitem__).encode
        from .preprocess.image import ImagePreprocessor

        return ImagePreprocessor(config)

    def describe(self) -> dict[str, Any]:
        """What is running: pack, model file, precision, backend, providers and threads."""
        return {
            "pack": self.manifest.name,
            "model_file": self.entry.path,
            "format": self.entry.format,
            "precision": self.entry.precision,
            "backend": self.backend,
            "providers": self.providers,
            "threads": self.threads,
        }

    def run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run the model on named inputs; returns named outputs. Checks names, dtypes, shapes."""
        if not isinstance(inputs, dict):
            raise InputError(f"inputs must be a dict of name -> array, got {type(inputs).__name__}")
        if inputs.keys() != self._names:
            self._raise_name_error(inputs)
        dims: dict[str, int] = {}
        feeds = {c.spec.file_name: _checked(inputs[c.spec.name], c, dims) for c in self._checks}
        outputs = self._runner.run(feeds)
        return dict(zip(self._output_names, outputs, strict=True))

    def predict(self, item: Any) -> Prediction | list[Prediction]:
        """Preprocess a text or image (or a list of them), run, and return labelled scores."""
        if self.manifest.preprocessing is None:
            raise InputError(
                f"pack {self.manifest.name!r} has no preprocessing section; use run() with arrays"
            )
        batch = item if isinstance(item, list) else [item]
        if not batch:
            raise InputError("predict() got an empty list; expected at least one item")
        if len(batch) > 1 and self.entry.inputs[0].shape[:1] == [1]:  # a one-sample graph
            return [self.predict(one) for one in batch]  # type: ignore[misc]
        outputs = self.run(self._preprocess(batch))
        predictions = postprocess(outputs, self.manifest.postprocessing, self._output_names)
        return predictions if isinstance(item, list) else predictions[0]

    def _raise_name_error(self, inputs: dict) -> None:
        wrong = {"missing": self._names - inputs.keys(), "unknown": set(inputs) - self._names}
        problem = " and ".join(f"{k} input(s) {sorted(v, key=repr)}" for k, v in wrong.items() if v)
        expected = ", ".join(f"{s.name} {s.user_dtype}{s.shape}" for s in self.entry.inputs)
        raise InputError(f"{problem}; {self.entry.path} expects: {expected}")


def _checked(value: Any, check: _InputCheck, dims: dict[str, int]) -> np.ndarray:
    """The input as the model's dtype, or an InputError naming what is wrong."""
    spec = check.spec
    if type(value) is not np.ndarray:
        try:
            value = np.asarray(value)
        except (ValueError, TypeError) as exc:  # ragged nested lists
            raise InputError(f"input {spec.name!r} is not a rectangular array ({exc})") from None
    need = 2 * value.size * check.dtype.itemsize  # the input and at least as much for the model
    if need > _CHECK_MEMORY_FROM and need > _available_memory():
        raise InputError(
            f"input {spec.name!r} of shape {value.shape} needs more than {need / 2**30:.1f} GiB, "
            f"more than the {_available_memory() / 2**30:.1f} GiB available; run smaller batches"
        )
    if value.dtype != check.dtype:
        value = _converted(value, check)
    shape = value.shape
    if len(shape) != len(spec.shape):
        raise InputError(
            f"input {spec.name!r} has shape {shape} (rank {len(shape)}); "
            f"expected rank {len(spec.shape)}: {spec.shape}"
        )
    for axis, want in check.fixed:
        if shape[axis] != want:
            raise InputError(
                f"input {spec.name!r} has shape {shape}; expected {spec.shape} "
                f"(axis {axis} must be {want})"
            )
    for axis, name in check.named:
        if dims.setdefault(name, shape[axis]) != shape[axis]:
            raise InputError(
                f"input {spec.name!r} has {name}={shape[axis]} on axis {axis}, but another input "
                f"has {name}={dims[name]}; inputs sharing a named dimension must agree"
            )
    if check.ids_below and value.size and (value.min() < 0 or value.max() >= check.ids_below):
        raise InputError(
            f"input {spec.name!r} has token ids outside the vocabulary [0, {check.ids_below})"
        )
    # NaN/inf anywhere makes x.x non-finite: a dot is far cheaper than a float64 sum (issue 13)
    flat = value.reshape(-1) if check.kind == "f" else None
    if flat is not None and not math.isfinite(flat.dot(flat)) and not np.isfinite(flat).all():
        raise InputError(f"input {spec.name!r} contains NaN or inf; the model needs finite values")
    return value


def _converted(value: np.ndarray, check: _InputCheck) -> np.ndarray:
    """Cast within a kind (int64 ids to int32, float64 to float32); refuse across kinds."""
    spec = check.spec
    kind = "i" if value.dtype.kind in "iu" else value.dtype.kind
    if kind != check.kind:
        raise InputError(
            f"input {spec.name!r} has dtype {value.dtype}; expected {check.dtype} "
            f"(an array of {_KIND_NAMES[check.kind]})"
        )
    # Integers may not wrap, floats may not become inf (float64 1e300 as float32): both ranges.
    if value.size and (kind == "i" or value.dtype.itemsize > check.dtype.itemsize):
        info = (np.iinfo if kind == "i" else np.finfo)(check.dtype)
        low, high = value.min(), value.max()  # NaN and inf are the finite check's to name
        if np.isfinite([low, high]).all() and (low < info.min or high > info.max):
            raise InputError(
                f"input {spec.name!r} has values outside {check.dtype}'s range "
                f"[{info.min:.4g}, {info.max:.4g}]"
            )
    return value.astype(check.dtype)


_CHECK_MEMORY_FROM = 64 << 20  # smaller inputs fit anywhere: /proc/meminfo is not read for them


def _available_memory() -> float:
    """Bytes of memory available now (Linux MemAvailable); elsewhere unknown, so no limit."""
    with contextlib.suppress(OSError, StopIteration), open("/proc/meminfo", "rb") as meminfo:
        return next(int(line.split()[1]) << 10 for line in meminfo if b"MemAvailable" in line)
    return math.inf
