"""Reads packs: a directory, or the same content as one `NAME.edgepack` zip archive.

Reading verifies every sha256 the manifest lists and refuses archive entries that could escape
the pack. Writing packs is `edgepack.packing`'s job.
"""

from __future__ import annotations

import hashlib
import os
import stat
import zipfile
from pathlib import Path, PurePosixPath
from typing import BinaryIO

from .errors import IntegrityError, ManifestError, UnsafeArchiveError
from .manifest import MANIFEST_NAME, FileEntry, ModelEntry, PackManifest, parse_manifest

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
        with self._open(MANIFEST_NAME) as handle:
            self.manifest_bytes = handle.read()
        self.manifest = parse_manifest(self.manifest_bytes, f"{self.path}/{MANIFEST_NAME}")
        # Every file the manifest lists, models and assets, by path inside the pack.
        self.entries = {e.path: e for e in [*self.manifest.models, *self.manifest.files]}

    def read(self, relpath: str) -> bytes:
        """The bytes of a listed file, after checking its size and sha256."""
        with self._open(relpath) as handle:
            data = handle.read()
        self._check_digest(relpath, len(data), hashlib.sha256(data).hexdigest())
        return data

    def file_path(self, relpath: str) -> Path | None:
        """For a directory pack, where a listed file lies on disk (not yet checked: see
        check()); None for an archive, whose members must be read."""
        self._entry(relpath)
        return None if self._zip is not None else self.path / relpath

    def check(self, relpath: str) -> None:
        """Check a listed file's size and sha256 by streaming it, without keeping its bytes."""
        with self._open(relpath) as handle:
            self._check_digest(relpath, *digest_stream(handle))

    def verify(self) -> None:
        """Check every listed file; raise IntegrityError naming the first one that is wrong."""
        for relpath in self.entries:
            self.check(relpath)

    def close(self) -> None:
        if self._zip is not None:
            self._zip.close()

    def __enter__(self) -> PackReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _entry(self, relpath: str) -> ModelEntry | FileEntry:
        if relpath not in self.entries:
            raise ManifestError(f"{relpath!r} is not listed in {self.path}/{MANIFEST_NAME}")
        return self.entries[relpath]

    def _check_digest(self, relpath: str, length: int, digest: str) -> None:
        want = self._entry(relpath)
        if length != want.size_bytes or digest != want.sha256:
            raise IntegrityError(
                f"{relpath} in {self.path} does not match its manifest entry (expected "
                f"{want.size_bytes} bytes with sha256 {want.sha256[:12]}..., got {length} bytes "
                f"with sha256 {digest[:12]}...): the file was changed or damaged"
            )

    def _open(self, relpath: str) -> BinaryIO:
        if relpath != MANIFEST_NAME:
            self._entry(relpath)
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


def digest_stream(handle: BinaryIO) -> tuple[int, str]:
    """(length, hex sha256) of what is left in a binary file, read in 1 MiB chunks."""
    digest, length = hashlib.sha256(), 0
    while chunk := handle.read(_CHUNK):
        digest.update(chunk)
        length += len(chunk)
    return length, digest.hexdigest()


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
    mode = info.external_attr >> 16
    if name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":"):
        raise UnsafeArchiveError(f"{archive}: entry {name!r} has an absolute path")
    if ".." in PurePosixPath(name).parts or "\\" in name:
        raise UnsafeArchiveError(f"{archive}: entry {name!r} points outside the pack ('..')")
    if stat.S_ISLNK(mode):
        raise UnsafeArchiveError(f"{archive}: entry {name!r} is a symbolic link")
    if stat.S_IFMT(mode) not in (0, stat.S_IFREG, stat.S_IFDIR):
        raise UnsafeArchiveError(f"{archive}: entry {name!r} is not a regular file")
