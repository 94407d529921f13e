"""Hostile and broken packs built in code, and the one judge of what a user saw.

Shared by the tests in tests/attack and by experiments/attack_report.py, so the suite and the
table count the same attacks the same way. Every attempt ends in one outcome:

- clean: an EdgepackError (the project's own, one message naming the problem);
- silent: accepted, and every answer equals the untouched pack's (the bytes were not used);
- wrong: accepted, and some answer differs (a label, a score, an output, or a verify that said OK);
- crash: any other exception (a traceback for a CLI user), or unbounded memory.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import resource
import shutil
import stat
import struct
import subprocess
import sys
import warnings
import zipfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager, redirect_stderr, redirect_stdout, suppress
from pathlib import Path
from typing import Any

import numpy as np

import edgepack.runtime as ep
from edgepack.runtime import EdgepackError
from tests import packs

OUTCOMES = ("clean", "silent", "wrong", "crash")
LABELS = ["zero", "one", "two"]
IMAGE = np.arange(16, dtype=np.uint8).reshape(4, 4) * 13  # the fixed image every try predicts
PIXELS = np.linspace(-1, 1, 16, dtype=np.float32).reshape(1, 1, 4, 4)
WORDS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "good", "bad", "film", "plot"]
WORDS += [chr(c) for c in range(ord("a"), ord("z") + 1)]


def image_pack(dest: Path, model: Path, **extra: Any) -> Path:
    """A small image-classification pack: one ONNX model, LABELS, softmax, image preprocessing."""
    return packs.image_pack(dest, model, LABELS, **extra)


def text_pack(dest: Path, model: Path, vocab: Path) -> Path:
    """A small text-classification pack: a bag-of-embeddings ONNX model and a WordPiece vocab."""
    return packs.text_pack(dest, model, vocab, max_length=16)


def write_vocab(path: Path, size: int = 64) -> Path:
    path.write_text("\n".join(WORDS + [f"w{i}" for i in range(size - len(WORDS))]) + "\n")
    return path


def use_pack(path: Path) -> Any:
    """What a user does with a pack: info, verify, load, run and predict; returns every answer."""
    from edgepack.cli.info_command import describe

    manifest = ep.read_manifest(path)
    describe(manifest).encode("utf-8")  # what `edgepack info` prints must be printable
    verified = ep.verify_pack(path)
    model = ep.load(path, threads=1)
    kind = (model.manifest.preprocessing or {}).get("kind")
    if kind == "text":
        outputs, prediction = None, model.predict("a good film")
    else:
        outputs = model.run({model.entry.inputs[0].name: PIXELS})
        if kind is None:
            return (verified.name, outputs)
        prediction = model.predict(IMAGE)
    return (verified.name, outputs, prediction.label, prediction.index, prediction.scores)


def judge(action: Callable[[], Any], reference: Any = None) -> tuple[str, str]:
    """(outcome, detail) of one attempt: see the module docstring."""
    try:
        result = action()
    except EdgepackError as exc:
        return "clean", f"{type(exc).__name__}: {exc}"
    except (Exception, RecursionError, MemoryError) as exc:
        return "crash", f"{type(exc).__name__}: {exc}"
    return ("silent", "") if same(result, reference) else ("wrong", repr(result)[:200])


def same(a: Any, b: Any) -> bool:
    """Exact equality through tuples, lists, dicts and arrays."""
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return isinstance(a, np.ndarray) and isinstance(b, np.ndarray) and np.array_equal(a, b)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    return a == b


@contextmanager
def memory_cap(limit: int = 8 << 30) -> Iterator[None]:
    """Address space capped for the block: an unbounded allocation becomes a MemoryError (a
    crash, in the judge's terms) instead of the end of the machine."""
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    resource.setrlimit(
        resource.RLIMIT_AS, (limit if hard == resource.RLIM_INFINITY else min(limit, hard), hard)
    )
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


def stray_files(folder: Path, expected: set[str]) -> list[str]:
    """Names in `folder` other than the expected ones (staging left behind, files made by us)."""
    return sorted(set(os.listdir(folder)) - expected)


# --- bytes ---------------------------------------------------------------------------------


def flip(data: bytes, position: int, bit: int) -> bytes:
    """`data` with one bit flipped."""
    changed = bytearray(data)
    changed[position] ^= 1 << bit
    return bytes(changed)


def deflated(path: Path, dest: Path) -> Path:
    """The same archive re-written with every entry deflated (the reader must take both)."""
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(dest, "w", zipfile.ZIP_DEFLATED) as out:
        for info in src.infolist():
            data = src.read(info)
            info.compress_type = zipfile.ZIP_DEFLATED
            out.writestr(info, data)
    return dest


def with_entries(path: Path, dest: Path, extra: list[tuple[str, bytes]]) -> Path:
    """The archive with more entries appended (duplicates of existing names included)."""
    shutil.copyfile(path, dest)
    with warnings.catch_warnings(), zipfile.ZipFile(dest, "a") as archive:
        warnings.simplefilter("ignore")  # zipfile warns about the duplicates we mean to add
        for name, data in extra:
            info = zipfile.ZipInfo(name, (2026, 1, 1, 0, 0, 0))
            info.external_attr = (stat.S_IFREG | 0o644) << 16
            archive.writestr(info, data)
    return dest


def bomb_archive(path: Path, dest: Path, name: str, real_size: int) -> Path:
    """The archive with entry `name` replaced by `real_size` deflated zero bytes (about
    real_size / 1000 on disk), while the manifest still lists the original small entry."""
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(dest, "w") as out:
        for info in src.infolist():
            if info.filename != name:
                out.writestr(info, src.read(info.filename))
        info = zipfile.ZipInfo(name, (2026, 1, 1, 0, 0, 0))
        info.external_attr = (stat.S_IFREG | 0o644) << 16
        info.compress_type = zipfile.ZIP_DEFLATED
        with out.open(info, "w", force_zip64=True) as handle:
            block = bytes(1 << 20)
            for _ in range(real_size >> 20):
                handle.write(block)
    return dest


def encrypted_flag(path: Path, dest: Path, name: str) -> Path:
    """The archive with the 'encrypted' bit set on `name` in its local and central headers."""
    data = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as archive:
        info = archive.getinfo(name)
    data[info.header_offset + 6] |= 1  # local file header: general purpose flags at +6
    position = 0
    while (position := data.find(b"PK\x01\x02", position)) >= 0:
        (length,) = struct.unpack_from("<H", data, position + 28)
        if bytes(data[position + 46 : position + 46 + length]) == name.encode():
            data[position + 8] |= 1  # central directory: flags at +8
        position += 4
    dest.write_bytes(bytes(data))
    return dest


# --- manifests -----------------------------------------------------------------------------


def manifest_of(pack: Path) -> dict[str, Any]:
    return json.loads((pack / "manifest.json").read_text("utf-8"))


def rehash(pack: Path, data: dict[str, Any]) -> dict[str, Any]:
    """The manifest with every listed file's size and sha256 (and the manifest's own integrity
    field, where the runtime has one) made consistent, so a change gets past the hashes and
    reaches the parser."""
    for group in ("models", "files"):
        entries = data.get(group)
        if not isinstance(entries, list):
            continue
        for entry in entries:
            path = entry.get("path") if isinstance(entry, dict) else None
            try:
                content = (pack / path).read_bytes()
            except (TypeError, ValueError, OSError):  # not a path, or no file there
                continue
            entry["size_bytes"] = len(content)
            entry["sha256"] = hashlib.sha256(content).hexdigest()
    return reseal(data)


def reseal(data: Any) -> Any:
    """The manifest with its integrity field made to match its content, where the runtime has
    one; content it cannot canonicalise stays without one (the reader must refuse it anyway)."""
    digest = getattr(ep, "manifest_digest", None)
    if digest is not None and isinstance(data, dict):
        data.pop("integrity", None)
        with suppress(EdgepackError, TypeError, ValueError, RecursionError):
            data["integrity"] = digest(data)
    return data


def write_manifest(pack: Path, data: Any) -> None:
    """Write manifest.json as given (lone surrogates escaped, the way json writes them)."""
    (pack / "manifest.json").write_text(json.dumps(data, indent=2), encoding="utf-8")


# --- the CLI -------------------------------------------------------------------------------


def run_cli(argv: list[str]) -> tuple[int, str, str]:
    """(exit code, stdout, stderr) of `edgepack ARGV`, in process; an exception that escapes
    main() is what a user sees as a traceback, so it is reported as exit code -1."""
    from edgepack.cli.main import main

    out, err = io.StringIO(), io.StringIO()
    try:
        with redirect_stdout(out), redirect_stderr(err):
            code = main(argv)
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 2
    except (Exception, RecursionError) as exc:
        err.write(f"Traceback (most recent call last):\n{type(exc).__name__}: {exc}\n")
        code = -1
    return code, out.getvalue(), err.getvalue()


def judge_cli(argv: list[str], want_code: int) -> tuple[str, str]:
    """`edgepack ARGV` in a process of its own, as a user runs it. clean: the wanted exit code
    and one line on stderr, no traceback; wrong: exit 0 (a bad input accepted); crash: a
    traceback, an internal error, another exit code, or still running after two minutes."""
    unlimited = resource.getrlimit(resource.RLIMIT_AS)[1]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    try:
        done = subprocess.run(
            [sys.executable, "-m", "edgepack.cli.main", *argv],
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
            preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_AS, (unlimited, unlimited)),
            check=False,
        )
    except subprocess.TimeoutExpired:
        return "crash", f"still running after 120 s: {argv}"
    lines = done.stderr.strip().splitlines()
    if done.returncode == 0:
        return "wrong", f"accepted: {argv}"
    bad = "Traceback" in done.stderr or "internal error" in done.stderr
    if done.returncode == want_code and len(lines) == 1 and not bad:
        return "clean", lines[0]
    return "crash", f"exit {done.returncode}: {done.stderr.strip()[-300:]}"
