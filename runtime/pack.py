"""Reads and writes packs: a directory, or the same content as one `NAME.edgepack` zip archive.

Reading verifies every sha256 the manifest lists and refuses archive entries that could escape
the pack. Writing builds in a temporary path beside the destination and renames it into place,
so a failure never leaves a half-written pack.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
import tempfile
import zipfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath
from typing import BinaryIO

from .errors import EdgepackError, IntegrityError, ManifestError, UnsafeArchiveError
from .manifest import MANIFEST_NAME, SCHEMA_VERSION, PackManifest, parse_manifest
from .version import __version__

ARCHIVE_SUFFIX = ".edgepack"
_CHUNK = 1 << 20


class PackReader:
    """Random access to the files of a pack, directory or archive, checked against its manifest."""

    def __init__(self, path: str | os.PathLike[str]):
        self.path = Path(path)
        if self.path.is_dir():
            self._zip: zipfile.ZipFile | None = None
        elif self.path.is_file():
            self._zip = _open_archive(self.path)
        else:
            raise ManifestError(
                f"no pack at {self.path}: expected a pack directory or a {ARCHIVE_SUFFIX} archive"
            )
        self.manifest = parse_manifest(self._raw(MANIFEST_NAME), f"{self.path}/{MANIFEST_NAME}")

    def listed(self) -> list[tuple[str, str, int]]:
        """(path, sha256, size) of every file the manifest lists."""
        m = self.manifest
        return [(e.path, e.sha256, e.size_bytes) for e in [*m.models, *m.files]]

    def read(self, relpath: str) -> bytes:
        """The bytes of a listed file, after checking its size and sha256."""
        _, sha256, size = self._entry(relpath)
        data = self._raw(relpath)
        _check_digest(relpath, len(data), hashlib.sha256(data).hexdigest(), sha256, size, self)
        return data

    def file_path(self, relpath: str) -> Path | None:
        """For a directory pack, where a listed file lies on disk (not yet checked: see
        check()); None for an archive, whose members must be read."""
        self._entry(relpath)
        return None if self._zip is not None else self.path / relpath

    def check(self, relpath: str) -> None:
        """Check a listed file's size and sha256 by streaming it, without keeping its bytes."""
        _, sha256, size = self._entry(relpath)
        digest, length = hashlib.sha256(), 0
        with self._open(relpath) as handle:
            while chunk := handle.read(_CHUNK):
                digest.update(chunk)
                length += len(chunk)
        _check_digest(relpath, length, digest.hexdigest(), sha256, size, self)

    def verify(self) -> None:
        """Check every listed file; raise IntegrityError naming the first one that is wrong."""
        for relpath, _, _ in self.listed():
            self.check(relpath)

    def close(self) -> None:
        if self._zip is not None:
            self._zip.close()

    def __enter__(self) -> PackReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _entry(self, relpath: str) -> tuple[str, str, int]:
        entry = next((e for e in self.listed() if e[0] == relpath), None)
        if entry is None:
            raise ManifestError(f"{relpath!r} is not listed in {self.path}/{MANIFEST_NAME}")
        return entry

    def _raw(self, relpath: str) -> bytes:
        with self._open(relpath) as handle:
            return handle.read()

    def _open(self, relpath: str) -> BinaryIO:
        try:
            if self._zip is not None:
                return self._zip.open(relpath)
            target = self.path / relpath
            if target.is_symlink():
                raise UnsafeArchiveError(f"{target} is a symbolic link; packs hold regular files")
            return target.open("rb")
        except (KeyError, FileNotFoundError) as exc:
            raise IntegrityError(f"{relpath} is missing from the pack at {self.path}") from exc


def read_manifest(path: str | os.PathLike[str]) -> PackManifest:
    """The parsed, schema-checked manifest of a pack (file hashes are not read)."""
    with PackReader(path) as reader:
        return reader.manifest


def verify_pack(path: str | os.PathLike[str]) -> PackManifest:
    """Check the manifest and every file hash; return the manifest or raise an EdgepackError."""
    with PackReader(path) as reader:
        reader.verify()
        return reader.manifest


def write_pack(
    dest: str | os.PathLike[str],
    manifest: PackManifest,
    sources: Mapping[str, str | os.PathLike[str] | bytes],
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
    manifest.validate()

    dest.parent.mkdir(parents=True, exist_ok=True)
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
        for relpath, _, _ in reader.listed():
            target = staging / relpath
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(reader.read(relpath))
        (staging / MANIFEST_NAME).write_bytes(reader._raw(MANIFEST_NAME))
        return reader.manifest


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Hex sha256 of a file, read in chunks."""
    return _digest_source(Path(path))[1]


def _digest_source(source: str | os.PathLike[str] | bytes) -> tuple[int, str]:
    if isinstance(source, bytes):
        return len(source), hashlib.sha256(source).hexdigest()
    path = Path(source)
    if not path.is_file():
        raise EdgepackError(f"cannot add {path} to a pack: it is not a file")
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return path.stat().st_size, digest.hexdigest()


def _check_digest(
    relpath: str, length: int, digest: str, sha256: str, size: int, reader: PackReader
) -> None:
    if length != size or digest != sha256:
        raise IntegrityError(
            f"{relpath} in {reader.path} does not match its manifest entry (expected {size} "
            f"bytes with sha256 {sha256[:12]}..., got {length} bytes with sha256 "
            f"{digest[:12]}...): the file was changed or damaged"
        )


def _open_archive(path: Path) -> zipfile.ZipFile:
    try:
        archive = zipfile.ZipFile(path)
    except zipfile.BadZipFile as exc:
        raise ManifestError(
            f"{path} is neither a pack directory nor a {ARCHIVE_SUFFIX} archive (not a zip file)"
        ) from exc
    for info in archive.infolist():
        _check_entry(info, path)
    return archive


def _check_entry(info: zipfile.ZipInfo, archive: Path) -> None:
    """Refuse entries that could write outside the pack or are not plain files."""
    name = info.filename
    parts = PurePosixPath(name).parts
    mode = info.external_attr >> 16
    if name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":"):
        raise UnsafeArchiveError(f"{archive}: entry {name!r} has an absolute path")
    if ".." in parts or "\\" in name:
        raise UnsafeArchiveError(f"{archive}: entry {name!r} points outside the pack ('..')")
    if stat.S_ISLNK(mode):
        raise UnsafeArchiveError(f"{archive}: entry {name!r} is a symbolic link")
    if stat.S_IFMT(mode) not in (0, stat.S_IFREG, stat.S_IFDIR):
        raise UnsafeArchiveError(f"{archive}: entry {name!r} is not a regular file")


@contextmanager
def _staging(dest: Path) -> Iterator[Path]:
    """Yield a temp path beside `dest`; on success move it into place, else remove it."""
    workdir = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", dir=dest.parent))
    staging = workdir / dest.name
    try:
        yield staging
        old = workdir / "previous"
        replaced = dest.exists() or dest.is_symlink()
        if replaced:
            dest.rename(old)
        try:
            staging.rename(dest)
        except OSError:
            if replaced:
                old.rename(dest)
            raise
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _write_directory(staging: Path, manifest: PackManifest, sources: Mapping) -> None:
    staging.mkdir()
    for relpath, source in sources.items():
        target = staging / relpath
        target.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(source, bytes):
            target.write_bytes(source)
        else:
            shutil.copyfile(source, target)
    (staging / MANIFEST_NAME).write_text(manifest.to_json(), encoding="utf-8")


def _write_archive(staging: Path, manifest: PackManifest, sources: Mapping) -> None:
    # Stored, not deflated: weights barely compress, and inflating them would cost every load.
    with zipfile.ZipFile(staging, "w", compression=zipfile.ZIP_STORED) as archive:
        archive.writestr(_regular_file(MANIFEST_NAME), manifest.to_json())
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
