"""Reads packs (a directory, or the same files in one `NAME.edgepack` zip) as hostile input:
entries streamed with their listed size as a cap and their sha256 checked, paths kept inside
the pack, zip failures as IntegrityErrors, signatures checked (docs/pack-format.md, threat model).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import stat
import zipfile
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path, PurePosixPath
from typing import Any, BinaryIO

from .errors import EdgepackError, IntegrityError, ManifestError, SignatureError, UnsafeArchiveError
from .manifest import MANIFEST_NAME, FileEntry, ModelEntry, PackManifest, parse_manifest

ARCHIVE_SUFFIX = ".edgepack"
SIGNATURE_NAME = "manifest.sig"  # the Ed25519 signature of manifest.json's bytes
MANIFEST_CAP = 4 << 20  # manifests are kilobytes; more is an attack, refused before reading
_CHUNK = 1 << 20
KeySource = str | os.PathLike[str] | bytes


class PackReader:
    """Random access to the files of a pack, directory or archive, checked against its manifest."""

    def __init__(
        self, path: str | os.PathLike[str], trusted_keys: Iterable[KeySource] | None = None
    ):
        self.path = Path(path)
        self._zip: zipfile.ZipFile | None = None
        if self.path.is_dir():
            self._root = self.path.resolve()
        elif self.path.is_file():
            self._zip = _open_archive(self.path)
        else:
            raise ManifestError(
                f"no pack at {self.path}: expected a pack directory or a {ARCHIVE_SUFFIX} archive"
            )
        self.manifest_bytes = b"".join(self._chunks(MANIFEST_NAME, MANIFEST_CAP))
        self.manifest = parse_manifest(self.manifest_bytes, f"{self.path}/{MANIFEST_NAME}")
        # Every file the manifest lists, models and assets, by path inside the pack.
        self.entries = {e.path: e for e in [*self.manifest.models, *self.manifest.files]}
        if trusted_keys is not None:
            one = isinstance(trusted_keys, (str, bytes, os.PathLike))
            self._check_signature([trusted_keys] if one else list(trusted_keys))

    def read(self, relpath: str) -> bytes:
        """The bytes of a listed file, after checking its size and sha256."""
        parts: list[bytes] = []
        self._stream(relpath, parts.append)
        return b"".join(parts)

    def check(self, relpath: str) -> None:
        """Check a listed file's size and sha256 by streaming it, without keeping its bytes."""
        self._stream(relpath, lambda chunk: None)

    @contextmanager
    def verified(self, relpath: str, copied: bool = False) -> Iterator[bytes | Path]:
        """A listed file holding exactly the bytes whose sha256 was checked, for an interpreter.

        copied (the interpreter reads it once): a directory pack's file under a read lease, which
        makes opens for writing wait (one that knocked is an IntegrityError after the read). Else
        a sealed in-memory copy, hashed as it is written (LiteRT maps the file while it runs);
        off Linux, the bytes."""
        if not hasattr(os, "memfd_create"):
            yield self.read(relpath)
            return
        import fcntl  # Linux, like memfd_create

        if copied and self._zip is None:
            with self._open(relpath, self._entry(relpath).size_bytes) as handle:
                if _read_lease(handle.fileno()):
                    self._stream(relpath, lambda chunk: None, handle)
                    yield Path(f"/proc/self/fd/{handle.fileno()}")
                    if fcntl.fcntl(handle.fileno(), fcntl.F_GETLEASE) != fcntl.F_RDLCK:
                        raise IntegrityError(
                            f"{relpath} in {self.path} was opened for writing while it was "
                            "loaded: the pack is being changed; load it again once it is written"
                        )
                    return
        fd = os.memfd_create(relpath, os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
        try:
            with open(fd, "wb", closefd=False) as copy:
                self._stream(relpath, copy.write)
            seals = fcntl.F_SEAL_WRITE | fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW
            fcntl.fcntl(fd, fcntl.F_ADD_SEALS, seals)
            yield Path(f"/proc/self/fd/{fd}")
        finally:
            os.close(fd)

    def signature(self) -> bytes | None:
        """The manifest's Ed25519 signature (64 bytes at most are read), or None if unsigned."""
        with contextlib.suppress(IntegrityError):
            return b"".join(self._chunks(SIGNATURE_NAME, 64))
        return None

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

    def _stream(
        self, relpath: str, sink: Callable[[bytes], Any], handle: BinaryIO | None = None
    ) -> None:
        digest, length = hashlib.sha256(), 0
        for chunk in self._chunks(relpath, handle=handle):
            digest.update(chunk)
            length += len(chunk)
            sink(chunk)
        want = self._entry(relpath)
        if length != want.size_bytes or digest.hexdigest() != want.sha256:
            raise IntegrityError(
                f"{relpath} in {self.path} does not match its manifest entry (expected "
                f"{want.size_bytes} bytes with sha256 {want.sha256[:12]}..., got {length} bytes "
                f"with sha256 {digest.hexdigest()[:12]}...): the file was changed or damaged"
            )

    def _chunks(
        self, relpath: str, cap: int | None = None, handle: BinaryIO | None = None
    ) -> Iterator[bytes]:
        """The file (or `handle`, left open) in chunks; never more than `cap` bytes read."""
        cap = self._entry(relpath).size_bytes if cap is None else cap
        with (
            _zip_errors(self.path, relpath),
            contextlib.nullcontext(handle) if handle else self._open(relpath, cap) as handle,
        ):
            while chunk := handle.read(min(_CHUNK, cap + 1)):
                cap -= len(chunk)
                if cap < 0:
                    raise IntegrityError(
                        f"{relpath} in {self.path} does not match: it holds more bytes than its "
                        "manifest entry lists (or than the cap on a manifest): changed or damaged"
                    )
                yield chunk

    def _open(self, relpath: str, cap: int) -> BinaryIO:
        if self._zip is not None:
            try:
                info = self._zip.getinfo(relpath)
            except KeyError:
                raise IntegrityError(f"{relpath} is missing from the pack at {self.path}") from None
            if info.file_size > cap:  # the entry says so itself: refuse before inflating it
                raise IntegrityError(
                    f"{self.path}: entry {relpath} holds {info.file_size} bytes, more than the "
                    f"{cap} its manifest entry allows"
                )
            return self._zip.open(info)
        try:
            real = (self.path / relpath).resolve()
            if real != self._root / relpath:
                raise UnsafeArchiveError(
                    f"{relpath} in {self.path} is reached through a symbolic link (to {real}); "
                    "packs hold regular files, nothing outside the pack"
                )
            handle = open(real, "rb")  # noqa: SIM115 - returned to the caller's `with`
        except OSError as exc:
            missing = isinstance(exc, FileNotFoundError)
            problem = "is missing from" if missing else "cannot be read in"
            raise IntegrityError(f"{relpath} {problem} the pack at {self.path}: {exc}") from None
        if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
            handle.close()
            raise IntegrityError(f"{relpath} in {self.path} is not a regular file")
        return handle

    def _check_signature(self, keys: list[KeySource]) -> None:
        public = [load_key(key) for key in keys]  # first: a clear error without the sign extra
        from cryptography.exceptions import InvalidSignature

        if (signature := self.signature()) is None:
            raise SignatureError(f"{self.path} has no {SIGNATURE_NAME}: it is not signed")
        for key in public:
            with contextlib.suppress(InvalidSignature):
                return key.verify(signature, self.manifest_bytes)
        raise SignatureError(
            f"{self.path} is not signed by any of the {len(keys)} trusted key(s): it was signed "
            "by another key, or changed after it was signed"
        )


def load_key(key: KeySource) -> Any:
    """An Ed25519 public key from a PEM file or PEM bytes (needs the `sign` extra)."""
    try:
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
        from cryptography.hazmat.primitives.serialization import load_pem_public_key
    except ImportError as exc:
        raise EdgepackError("signed packs need: pip install 'edgepack[sign]'") from exc
    try:
        loaded = load_pem_public_key(key if isinstance(key, bytes) else Path(key).read_bytes())
    except (OSError, ValueError, TypeError) as exc:
        raise EdgepackError(f"cannot read the public key {key!r}: {exc}") from exc
    if not isinstance(loaded, Ed25519PublicKey):
        raise EdgepackError(f"{key!r} is not an Ed25519 public key")
    return loaded


def read_manifest(path: str | os.PathLike[str]) -> PackManifest:
    """The parsed, schema-checked manifest of a pack (file hashes are not read)."""
    with PackReader(path) as reader:
        return reader.manifest


def verify_pack(
    path: str | os.PathLike[str], trusted_keys: Iterable[KeySource] | None = None
) -> PackManifest:
    """The manifest, after checking it, every file hash and (given trusted keys) the signature."""
    with PackReader(path, trusted_keys) as reader:
        reader.verify()
        return reader.manifest


def _read_lease(fd: int) -> bool:
    """Take a read lease, which makes opens for writing wait (up to lease-break-time); False for
    a file open for writing, another user's, or on a file system without leases."""
    import fcntl
    import signal

    try:  # a writer's knock is signalled: SIGURG, which a process ignores by default
        fcntl.fcntl(fd, fcntl.F_SETSIG, signal.SIGURG)
        fcntl.fcntl(fd, fcntl.F_SETLEASE, fcntl.F_RDLCK)
    except OSError:
        return False
    return True


@contextmanager
def _zip_errors(archive: Path, entry: str) -> Iterator[None]:
    """Whatever the zip reader raises on damaged bytes (BadZipFile, zlib, EOF, encryption...)
    as one IntegrityError naming the archive and entry."""
    try:
        yield
    except EdgepackError:
        raise
    except Exception as exc:  # the zip module's failures on hostile input have no common base
        raise IntegrityError(
            f"{archive}: entry {entry} cannot be read ({type(exc).__name__}: {exc}): the archive "
            "is damaged"
        ) from exc


def _open_archive(path: Path) -> zipfile.ZipFile:
    with _zip_errors(path, "(central directory)"):
        try:
            archive = zipfile.ZipFile(path)
        except zipfile.BadZipFile as exc:
            raise ManifestError(
                f"{path} is neither a pack directory nor a {ARCHIVE_SUFFIX} archive ({exc})"
            ) from exc
        for info in archive.infolist():
            _check_entry(info, path)
    twice = [name for name, count in Counter(archive.namelist()).items() if count > 1]
    if twice:
        raise UnsafeArchiveError(f"{path}: entries {twice} appear more than once")
    return archive


def _check_entry(info: zipfile.ZipInfo, archive: Path) -> None:
    """Refuse entries that could write outside the pack, are not plain files or are encrypted."""
    name, mode = info.filename, info.external_attr >> 16
    problems = {
        "has an absolute path": name.startswith(("/", "\\")) or name[1:2] == ":",
        "points outside the pack ('..')": ".." in PurePosixPath(name).parts or "\\" in name,
        "is a symbolic link": stat.S_ISLNK(mode),
        "is not a regular file": stat.S_IFMT(mode) not in (0, stat.S_IFREG, stat.S_IFDIR),
        "is encrypted; packs never are": info.flag_bits & 1,
    }
    for problem in (p for p, found in problems.items() if found):
        raise UnsafeArchiveError(f"{archive}: entry {name!r} {problem}")
