"""The pack manifest as typed Python objects, parsed from and written to manifest.json.

docs/pack-format.md describes each field; runtime/pack_schema.json is the schema both sides check.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from .errors import ManifestError, SchemaVersionError
from .schema import schema_errors
from .version import __version__

SCHEMA_VERSION = "1.0"
SUPPORTED_MAJOR = 1
MANIFEST_NAME = "manifest.json"


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
    schema_version: str = SCHEMA_VERSION
    edgepack_version: str = __version__
    created: str = ""

    def to_dict(self) -> dict[str, Any]:
        values = asdict(self)
        first = ("schema_version", "name", "edgepack_version", "task", "created")
        data = {key: values.pop(key) for key in first} | values
        for tensor in (t for m in data["models"] for t in m["inputs"] + m["outputs"]):
            if tensor["tensor_name"] is None:
                del tensor["tensor_name"]
        return data

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=False) + "\n"

    def model_for(self, backend: str) -> ModelEntry | None:
        """The first model file the given backend can run, in manifest order."""
        return next((m for m in self.models if backend in m.backends), None)

    def validate(self) -> None:
        """Raise ManifestError listing every place this manifest breaks the schema."""
        if errors := schema_errors(self.to_dict()):
            raise ManifestError(_format_errors(self.name, errors))


def parse_manifest(text: str | bytes, source: str = MANIFEST_NAME) -> PackManifest:
    """Parse and validate manifest JSON; reject schema versions this runtime cannot read."""
    try:
        data = json.loads(text)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ManifestError(f"{source} is not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise ManifestError(f"{source} must hold a JSON object, got {type(data).__name__}")
    minor_is_newer = _check_version(data.get("schema_version"), source)
    # A newer minor version may add fields we do not know; the ones we know must still be right.
    if errors := schema_errors(data, allow_unknown_keys=minor_is_newer):
        raise ManifestError(_format_errors(source, errors))
    return _from_dict(data)


def _check_version(version: Any, source: str) -> bool:
    """Whether `version` is a newer minor of the major this runtime reads; raise otherwise."""
    major_text, dot, minor_text = version.partition(".") if isinstance(version, str) else ("",) * 3
    if not (dot and major_text.isdigit() and minor_text.isdigit()):
        raise SchemaVersionError(
            f"{source} has no valid schema_version (got {version!r}); "
            f"expected a MAJOR.MINOR string like {SCHEMA_VERSION!r}"
        )
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


def _format_errors(source: str, errors: list[str]) -> str:
    shown = "\n  ".join(errors[:20])
    more = f"\n  ... and {len(errors) - 20} more" if len(errors) > 20 else ""
    return f"{source} does not match the pack schema {SCHEMA_VERSION}:\n  {shown}{more}"
