"""Writes packs, directory or `.edgepack` archive, and unpacks an archive into a directory.

Every write builds in a temporary path beside the destination and renames it into place, so a
failure never leaves a half-written pack.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import stat
import zipfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from edgepack.runtime.errors import EdgepackError, ManifestError
from edgepack.runtime.manifest import MANIFEST_NAME, SCHEMA_VERSION, PackManifest, manifest_digest
from edgepack.runtime.pack import ARCHIVE_SUFFIX, SIGNATURE_NAME, PackReader
from edgepack.runtime.version import __version__
from edgepack.schema import format_schema_errors, schema_errors

from .staging import replace, scratch_dir

Source = str | os.PathLike[str] | bytes


def manifest_dict(manifest: PackManifest) -> dict[str, Any]:
    """The manifest as manifest.json holds it: identity fields first, optional ones left out."""
    values = asdict(manifest)
    first = ("schema_version", "name", "edgepack_version", "task", "created")
    data = {key: values.pop(key) for key in first} | values
    for tensor in (t for m in data["models"] for t in m["inputs"] + m["outputs"]):
        if tensor["tensor_name"] is None:
            del tensor["tensor_name"]
    if not data["integrity"]:  # not yet filled in by the writer
        del data["integrity"]
    return data


def manifest_json(manifest: PackManifest) -> str:
    """The text of manifest.json."""
    return json.dumps(manifest_dict(manifest), indent=2) + "\n"


def write_pack(
    dest: str | os.PathLike[str], manifest: PackManifest, sources: Mapping[str, Source]
) -> PackManifest:
    """Write a pack to `dest` (a directory, or an archive when it ends in .edgepack).

    `sources` maps each path listed in the manifest to a file on disk or to bytes. Sizes, hashes,
    versions and the creation time are filled in here; the manifest is validated before anything
    is written, and an existing pack at `dest` is replaced only once the new one is complete.

    >>> write_pack("out/digits", manifest, {"model.onnx": Path("digits.onnx")})  # doctest: +SKIP
    """
    dest = Path(dest)
    listed = [e.path for e in [*manifest.models, *manifest.files]]
    missing = [p for p in listed if p not in sources]
    unlisted = [p for p in sources if p not in listed]
    if missing or unlisted or len(set(listed)) != len(listed):
        raise ManifestError(
            f"pack files and manifest disagree: listed without a source {missing}, "
            f"given but not listed {unlisted}, listed twice "
            f"{sorted({p for p in listed if listed.count(p) > 1})}"
        )
    if MANIFEST_NAME in sources:
        raise ManifestError(f"{MANIFEST_NAME} is written by edgepack; do not list it as a file")
    manifest.schema_version = SCHEMA_VERSION
    manifest.edgepack_version = __version__
    manifest.created = datetime.now(timezone.utc).isoformat(timespec="seconds")
    for entry in [*manifest.models, *manifest.files]:
        entry.size_bytes, entry.sha256 = _digest_source(sources[entry.path])
    manifest.integrity = ""
    manifest.integrity = manifest_digest(manifest_dict(manifest))
    if errors := schema_errors(manifest_dict(manifest)):
        raise ManifestError(format_schema_errors(manifest.name, errors))

    with _staging(dest) as staging:
        if dest.name.endswith(ARCHIVE_SUFFIX):
            _write_archive(staging, manifest, sources)
        else:
            _write_directory(staging, manifest, sources)
    return manifest


def unpack_pack(archive: str | os.PathLike[str], dest: str | os.PathLike[str]) -> PackManifest:
    """Extract a .edgepack archive into a pack directory, verified before it appears at `dest`."""
    with PackReader(archive) as reader, _staging(Path(dest)) as staging:
        staging.mkdir()
        for relpath in reader.entries:
            target = staging / relpath
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(reader.read(relpath))
        (staging / MANIFEST_NAME).write_bytes(reader.manifest_bytes)
        if (signature := reader.signature()) is not None:  # still signed once unpacked
            (staging / SIGNATURE_NAME).write_bytes(signature)
        return reader.manifest


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Hex sha256 of a file, read in chunks."""
    return _digest_source(Path(path))[1]


def _digest_source(source: Source) -> tuple[int, str]:
    if not isinstance(source, bytes) and not Path(source).is_file():
        raise EdgepackError(f"cannot add {source} to a pack: it is not a file")
    digest, length = hashlib.sha256(), 0
    with io.BytesIO(source) if isinstance(source, bytes) else open(source, "rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
            length += len(chunk)
    return length, digest.hexdigest()


@contextmanager
def _staging(dest: Path) -> Iterator[Path]:
    """Yield a path in a scratch folder beside `dest`; on success swap it into place (the old
    pack goes with the scratch folder), else only the scratch folder is removed."""
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise EdgepackError(f"cannot write {dest}: {dest.parent} is not a folder ({exc})") from None
    with scratch_dir(f".{dest.name}.", dest.parent, restore=dest) as work:
        yield work / dest.name
        replace(work / dest.name, dest)


def _write_directory(staging: Path, manifest: PackManifest, sources: Mapping[str, Source]) -> None:
    staging.mkdir()
    for relpath, source in sources.items():
        target = staging / relpath
        target.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(source, bytes):
            target.write_bytes(source)
        else:
            shutil.copyfile(source, target)
    (staging / MANIFEST_NAME).write_text(manifest_json(manifest), encoding="utf-8")


def _write_archive(staging: Path, manifest: PackManifest, sources: Mapping[str, Source]) -> None:
    # Stored, not deflated: weights barely compress, and inflating them would cost every load.
    with zipfile.ZipFile(staging, "w", compression=zipfile.ZIP_STORED) as archive:
        archive.writestr(_regular_file(MANIFEST_NAME), manifest_json(manifest))
        for relpath, source in sources.items():
            if isinstance(source, bytes):
                archive.writestr(_regular_file(relpath), source)
            else:
                archive.write(source, relpath)


def _regular_file(name: str) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name, date_time=datetime.now().timetuple()[:6])
    info.external_attr = (stat.S_IFREG | 0o644) << 16
    info.compress_type = zipfile.ZIP_STORED
    return info
