"""The pack manifest as typed objects, parsed from manifest.json and checked against the schema
(schema/pack_schema.json, which packing checks too; docs/pack-format.md describes each field)."""

from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import dataclass, field, fields
from typing import Any

from edgepack.schema import format_schema_errors, schema_errors

from .errors import IntegrityError, ManifestError, SchemaVersionError
from .version import __version__

SCHEMA_VERSION = "1.3"  # 1.1: example_inputs, `integrity`; 1.2: image pixel_range; 1.3: cost groups
SUPPORTED_MAJOR = 1
MANIFEST_NAME = "manifest.json"
MAX_DEPTH = 32  # manifests nest about 8 levels; a deeper one is an attack on the parsers
_SURROGATE = re.compile("[\ud800-\udfff]")


@dataclass
class Quantization:
    """Affine int8 parameters of a tensor: real = scale * (q - zero_point)."""

    scale: float
    zero_point: int


@dataclass
class TensorSpec:
    """One model input or output. `name` is what users pass; `tensor_name` is the file's own."""

    name: str
    dtype: str
    shape: list[int | str]
    tensor_name: str | None = None
    quantization: Quantization | None = None

    @property
    def file_name(self) -> str:
        return self.tensor_name or self.name

    @property
    def user_dtype(self) -> str:
        """What callers pass and get back: quantized int8 I/O is float32 on the outside."""
        return "float32" if self.quantization is not None else self.dtype


@dataclass
class ModelEntry:
    """One model file in the pack and what is known about it."""

    path: str
    format: str
    precision: str
    backends: list[str]
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    size_bytes: int = 0
    sha256: str = ""
    opset: int | None = None
    tflite_schema: int | None = None
    checks: list[dict[str, Any]] = field(default_factory=list)
    cost: dict[str, Any] | None = None


@dataclass
class FileEntry:
    """A non-model file in the pack: vocab, tokenizer, labels or another asset."""

    path: str
    role: str
    size_bytes: int = 0
    sha256: str = ""


@dataclass
class PackManifest:
    """Everything the runtime needs to load and check a pack; see docs/pack-format.md."""

    name: str
    task: str
    models: list[ModelEntry]
    files: list[FileEntry] = field(default_factory=list)
    preprocessing: dict[str, Any] | None = None
    postprocessing: dict[str, Any] | None = None
    provenance: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, dict[str, Any]] = field(default_factory=dict)
    requirements: dict[str, Any] = field(default_factory=dict)
    example_inputs: dict[str, Any] | None = None  # what bench feeds by default
    schema_version: str = SCHEMA_VERSION
    edgepack_version: str = __version__
    created: str = ""
    integrity: str = ""  # manifest_digest() of the rest, filled in by the writer

    def model_for(self, backend: str) -> ModelEntry | None:
        """The first model file the given backend can run, in manifest order."""
        return next((m for m in self.models if backend in m.backends), None)


def manifest_digest(data: dict[str, Any]) -> str:
    """The sha256 of a manifest's canonical text (all but `integrity`, keys sorted, no spaces,
    ASCII escapes): the same on every machine."""
    body = {key: value for key, value in data.items() if key != "integrity"}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return "sha256:" + hashlib.sha256(text.encode("ascii")).hexdigest()


def parse_manifest(text: str | bytes, source: str = MANIFEST_NAME) -> PackManifest:
    """Parse and validate manifest JSON; reject schema versions this runtime cannot read, and
    content that does not match its integrity field."""
    try:  # huge integers become inf, refused below with the field's name (int() would raise)
        data = json.loads(text, parse_int=lambda t: int(t) if len(t) < 20 else math.inf)
    except RecursionError:
        raise ManifestError(f"{source} nests deeper than {MAX_DEPTH} levels") from None
    except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise ManifestError(f"{source} is not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise ManifestError(f"{source} must hold a JSON object, got {type(data).__name__}")
    _check_values(data, source)
    minor_is_newer = _check_version(data.get("schema_version"), source)
    if ("integrity" in data or data["schema_version"] != "1.0") and (
        data.get("integrity") != manifest_digest(data)
    ):
        raise IntegrityError(
            f"{source}: the manifest does not match its integrity field (the sha256 of its "
            "content): it was changed or damaged"
        )
    # A newer minor version may add fields we do not know; the ones we know must still be right.
    if errors := schema_errors(data, allow_unknown_keys=minor_is_newer):
        raise ManifestError(format_schema_errors(source, errors))
    return _from_dict(data)


def _check_values(data: Any, source: str) -> None:
    """Refuse, naming the field, what Python's JSON reader accepts but no manifest holds:
    nesting deeper than MAX_DEPTH, numbers that are not finite or beyond 64 bits, and strings
    or keys that are not Unicode text (lone surrogates, from escapes)."""
    stack = [("manifest", data, 0)]
    while stack:
        where, value, depth = stack.pop()
        number = isinstance(value, (int, float)) and not isinstance(value, bool)
        problem = (
            f"nests deeper than {MAX_DEPTH} levels"
            if depth > MAX_DEPTH
            else f"{value} is not a finite number within 64 bits"
            if number and not abs(value) < 2**63
            else "is not Unicode text (a lone surrogate)"
            if _SURROGATE.search(where + (value if isinstance(value, str) else ""))
            else None
        )
        if problem:
            raise ManifestError(f"{source}: {ascii(where)[1:-1][:200]}: {problem}")
        if isinstance(value, dict):
            stack += [(f"{where}.{key}", item, depth + 1) for key, item in value.items()]
        elif isinstance(value, list):
            stack += [(f"{where}[{i}]", item, depth + 1) for i, item in enumerate(value)]


def _check_version(version: Any, source: str) -> bool:
    """Whether `version` is a newer minor of the major this runtime reads; raise otherwise."""
    match = re.fullmatch(r"([0-9]{1,6})\.([0-9]{1,6})", version if isinstance(version, str) else "")
    if not match:
        raise SchemaVersionError(
            f"{source} has no valid schema_version (got {version!r}); "
            f"expected a MAJOR.MINOR string like {SCHEMA_VERSION!r}"
        )
    major_text, minor_text = match.groups()
    if int(major_text) != SUPPORTED_MAJOR:
        raise SchemaVersionError(
            f"{source} uses pack schema version {version}; this runtime (edgepack {__version__}) "
            f"reads schema {SUPPORTED_MAJOR}.x. Install an edgepack that supports it, or re-export."
        )
    return int(minor_text) > int(SCHEMA_VERSION.split(".")[1])


def _known(cls: type, data: dict[str, Any]) -> dict[str, Any]:
    """The fields of `data` that `cls` has: a newer minor version may add others."""
    names = {f.name for f in fields(cls)}
    return {key: value for key, value in data.items() if key in names}


def _tensor(data: dict[str, Any]) -> TensorSpec:
    quant = data.get("quantization")
    quantization = Quantization(**_known(Quantization, quant)) if quant else None
    return TensorSpec(**_known(TensorSpec, data) | {"quantization": quantization})


def _model(data: dict[str, Any]) -> ModelEntry:
    tensors = {key: [_tensor(t) for t in data[key]] for key in ("inputs", "outputs")}
    return ModelEntry(**_known(ModelEntry, data) | tensors)


def _from_dict(data: dict[str, Any]) -> PackManifest:
    """The manifest's objects from schema-checked JSON data."""
    models = [_model(m) for m in data["models"]]
    files = [FileEntry(**_known(FileEntry, f)) for f in data["files"]]
    return PackManifest(**_known(PackManifest, data) | {"models": models, "files": files})
