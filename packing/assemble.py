"""Assembles a pack from model files and assets: the one path both the CLI and compress/ use."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from edgepack.runtime.errors import EdgepackError
from edgepack.runtime.manifest import FileEntry, ModelEntry, PackManifest

from .model_info import describe_model_file
from .write import write_pack

PathLike = str | os.PathLike[str]


def assemble_pack(
    dest: PathLike,
    models: Sequence[PathLike | tuple[PathLike, ModelEntry]],
    *,
    name: str | None = None,
    task: str = "other",
    assets: dict[str, tuple[PathLike | bytes, str]] | None = None,
    preprocessing: dict[str, Any] | None = None,
    postprocessing: dict[str, Any] | None = None,
    provenance: dict[str, Any] | None = None,
    metrics: dict[str, dict[str, Any]] | None = None,
    requirements: dict[str, Any] | None = None,
    example_inputs: dict[str, Any] | None = None,
) -> PackManifest:
    """Describe each model file, build the manifest, validate it and write the pack atomically.

    models: paths (described from the file) or (path, entry) pairs when the caller already knows
    more (names, precision, checks, cost). assets: pack path -> (source, role), e.g.
    {"vocab.txt": (vocab_path, "vocab")}.

    >>> assemble_pack("digits.edgepack", ["digits.onnx"], task="other")  # doctest: +SKIP
    """
    dest = Path(dest)
    sources: dict[str, PathLike | bytes] = {}
    entries = []
    for item in models:
        path, entry = item if isinstance(item, tuple) else (item, describe_model_file(item))
        if entry.path in sources:
            raise EdgepackError(f"two model files would both be stored as {entry.path!r}")
        sources[entry.path] = path
        entries.append(entry)
    files = []
    for relpath, (source, role) in (assets or {}).items():
        if relpath in sources:
            raise EdgepackError(f"asset {relpath!r} has the same name as a model file")
        sources[relpath] = source
        files.append(FileEntry(relpath, role))
    stem = dest.name.removesuffix(".edgepack")
    manifest = PackManifest(
        name=name or stem,
        task=task,
        models=entries,
        files=files,
        preprocessing=preprocessing,
        postprocessing=postprocessing,
        provenance=provenance or {},
        metrics=metrics or {},
        requirements=requirements or {},
        example_inputs=example_inputs,
    )
    return write_pack(dest, manifest, sources)
