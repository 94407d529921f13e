"""Scratch folders that a dead process cannot strand, and a replacement that never leaves the
destination empty: the one way edgepack stages packs and temporary work.

A scratch folder's name carries its process id; whoever makes the next one with the same prefix
removes those whose process is gone (killed with SIGKILL, or the machine lost power). SIGTERM
cleans up on the way out like Ctrl-C does (the `edgepack` command raises on it).
"""

from __future__ import annotations

import ctypes
import os
import re
import secrets
import shutil
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from edgepack.runtime.errors import EdgepackError

_RENAME_EXCHANGE = 2  # linux/fs.h
_AT_FDCWD = -100


@contextmanager
def scratch_dir(
    prefix: str, parent: str | os.PathLike[str] | None = None, restore: Path | None = None
) -> Iterator[Path]:
    """A new folder `PREFIX<pid>-<random>` in `parent` (default: the temp dir), removed on exit;
    stale ones of dead processes with the same prefix are removed first (see remove_stale for
    `restore`).

    >>> with scratch_dir("edgepack-quantize-") as work:  # doctest: +SKIP
    ...     (work / "model.onnx").write_bytes(data)
    """
    parent = Path(parent if parent is not None else tempfile.gettempdir())
    remove_stale(prefix, parent, restore)
    work = parent / f"{prefix}{os.getpid()}-{secrets.token_hex(6)}"
    try:  # made inside the try: a signal that lands just after mkdir still removes it
        try:
            os.mkdir(work, 0o700)
        except OSError as exc:
            raise EdgepackError(f"cannot make a folder in {parent}: {exc.strerror}") from exc
        yield work
    finally:
        shutil.rmtree(work, ignore_errors=True)


def remove_stale(prefix: str, parent: Path, restore: Path | None = None) -> None:
    """Remove `parent/PREFIX<pid>-*` folders whose process no longer runs. If one holds the
    `previous` pack of replace()'s fallback and nothing is at `restore`, it goes back there."""
    pattern = re.compile(re.escape(prefix) + r"(\d+)-")
    try:
        names = os.listdir(parent)
    except OSError:
        return
    for name in names:
        match = pattern.match(name)
        if match and not _alive(int(match.group(1))):
            stale = parent / name
            if restore and (stale / "previous").exists() and not os.path.lexists(restore):
                os.rename(stale / "previous", restore)
            shutil.rmtree(stale, ignore_errors=True)


def replace(staging: Path, dest: Path) -> None:
    """Move the finished `staging` to `dest`; an existing `dest` is exchanged with it in one step
    (Linux renameat2), so `dest` holds the old or the new content at every instant; the old one
    is left at `staging` for the caller to remove."""
    if not os.path.lexists(dest):
        os.rename(staging, dest)
    elif staging.is_file() and not dest.is_dir():
        os.replace(staging, dest)  # one rename replaces a file atomically everywhere
    elif not _exchange(staging, dest):
        # No renameat2 (not Linux, or a file system without it): a moment without `dest`;
        # remove_stale() puts `previous` back if we are killed in it.
        old = staging.with_name("previous")
        os.rename(dest, old)
        os.rename(staging, dest)
        os.rename(old, staging)


def _exchange(a: Path, b: Path) -> bool:
    if not sys.platform.startswith("linux"):
        return False
    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except AttributeError:  # a C library older than glibc 2.28
        return False
    if renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    errno = ctypes.get_errno()
    if errno in (22, 38, 95):  # EINVAL, ENOSYS, EOPNOTSUPP: this file system cannot exchange
        return False
    raise OSError(errno, os.strerror(errno), str(b))


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: alive
        return True
    return True
