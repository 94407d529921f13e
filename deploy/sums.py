"""SHA256SUMS over a folder, in the format of coreutils' sha256sum, so the device checks it with
`sha256sum --check` and the workstation with verify_sums()."""

from __future__ import annotations

import hashlib
from pathlib import Path

from .errors import BundleError

SUMS_NAME = "SHA256SUMS"
CHUNK = 1 << 20


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _files(folder: Path) -> list[str]:
    return sorted(
        p.relative_to(folder).as_posix()
        for p in folder.rglob("*")
        if p.is_file() and p.name != SUMS_NAME
    )


def write_sums(folder: Path) -> Path:
    """Write folder/SHA256SUMS over every other file in it; return its path."""
    for link in (p for p in folder.rglob("*") if p.is_symlink()):
        raise BundleError(f"{link}: a bundle holds plain files only, not links")
    lines = [f"{sha256_file(folder / name)}  {name}\n" for name in _files(folder)]
    path = folder / SUMS_NAME
    path.write_text("".join(lines))
    return path


def read_sums(folder: Path) -> dict[str, str]:
    """{relative path: sha256} from folder/SHA256SUMS; rejects paths that leave the folder."""
    path = folder / SUMS_NAME
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise BundleError(f"{path}: missing; this is not a bundle (or it was cut short)") from None
    sums = {}
    for number, line in enumerate(text.splitlines(), 1):
        digest, sep, name = line.partition("  ")
        if not sep or len(digest) != 64 or not name:
            raise BundleError(f"{path}:{number}: expected '<sha256>  <path>', got {line[:80]!r}")
        if name.startswith("/") or ".." in Path(name).parts:
            raise BundleError(f"{path}:{number}: path {name!r} leaves the bundle")
        sums[name] = digest
    return sums


def verify_sums(folder: Path) -> int:
    """Check every listed file and that no file is unlisted; return the number checked.
    Raises BundleError naming the first files that are missing, changed or extra."""
    sums = read_sums(folder)
    missing = [n for n in sums if not (folder / n).is_file()]
    changed = [n for n in sums if n not in missing and sha256_file(folder / n) != sums[n]]
    extra = [n for n in _files(folder) if n not in sums]
    problems = [
        f"{label}: {', '.join(names[:3])}{' ...' if len(names) > 3 else ''}"
        for label, names in (("missing", missing), ("changed", changed), ("not listed", extra))
        if names
    ]
    if problems:
        raise BundleError(
            f"{folder}: does not match its {SUMS_NAME} ({'; '.join(problems)}); "
            "rebuild the bundle or copy it again"
        )
    return len(sums)


def bundle_id(folder: Path) -> str:
    """The bundle's identity: the sha256 of its SHA256SUMS (so of every file in it), shortened.
    Devices install it under releases/<id>/; the same id means the same bytes."""
    return hashlib.sha256((folder / SUMS_NAME).read_bytes()).hexdigest()[:16]
