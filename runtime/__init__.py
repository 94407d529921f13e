"""edgepack's device runtime: load a pack and run it with numpy and one interpreter (packs are
written by `edgepack.packing`, which builds on this package).

>>> edgepack.runtime.load("digits.edgepack", threads=1).predict(image)  # doctest: +SKIP
"""

from .errors import (
    BackendUnavailableError,
    CpuFeatureWarning,
    EdgepackError,
    InputError,
    IntegrityError,
    ManifestError,
    PreprocessingError,
    SchemaVersionError,
    SignatureError,
    UnsafeArchiveError,
)
from .manifest import (
    SCHEMA_VERSION,
    FileEntry,
    ModelEntry,
    PackManifest,
    Quantization,
    TensorSpec,
    manifest_digest,
    parse_manifest,
)
from .model import Model, default_threads, load
from .pack import read_manifest, verify_pack
from .postprocess import Prediction
from .version import __version__

__all__ = [
    "SCHEMA_VERSION",
    "BackendUnavailableError",
    "CpuFeatureWarning",
    "EdgepackError",
    "FileEntry",
    "InputError",
    "IntegrityError",
    "ManifestError",
    "Model",
    "ModelEntry",
    "PackManifest",
    "Prediction",
    "PreprocessingError",
    "Quantization",
    "SchemaVersionError",
    "SignatureError",
    "TensorSpec",
    "UnsafeArchiveError",
    "__version__",
    "default_threads",
    "load",
    "manifest_digest",
    "parse_manifest",
    "read_manifest",
    "verify_pack",
]
