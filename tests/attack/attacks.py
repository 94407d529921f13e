"""Each attack class as one function per attempt, over a Workbench of untouched packs.

tests/attack draws attempts from these with hypothesis (fixed budget, derandomized) or loops
over small fixed sets; experiments/attack_report.py runs many more and prints the table.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

import edgepack.runtime as ep

from . import craft

REPO = Path(__file__).resolve().parents[2]


@dataclass
class Workbench:
    """Untouched packs and the answers they give, built once; every attempt works on copies."""

    root: Path
    image_model: Path = field(init=False)
    other_model: Path = field(init=False)
    text_model: Path = field(init=False)
    vocab: Path = field(init=False)
    packs: dict[str, Path] = field(default_factory=dict)
    answers: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        from tests.conftest import classifier_onnx, text_classifier_onnx

        models = self.root / "models"
        models.mkdir(parents=True)
        self.image_model = models / "image.onnx"
        self.other_model = models / "other.onnx"
        self.text_model = models / "text.onnx"
        classifier_onnx(self.image_model, input_shape=(1, 4, 4), seed=0)
        classifier_onnx(self.other_model, input_shape=(1, 4, 4), seed=1)
        text_classifier_onnx(self.text_model, vocab_size=64)
        self.vocab = craft.write_vocab(models / "vocab.txt")
        packs = self.root / "packs"
        packs.mkdir()
        self.packs["image"] = craft.image_pack(packs / "image.edgepack", self.image_model)
        self.packs["image-dir"] = craft.image_pack(packs / "image", self.image_model)
        self.packs["text"] = craft.text_pack(packs / "text.edgepack", self.text_model, self.vocab)
        self.packs["image-deflated"] = craft.deflated(
            self.packs["image"], packs / "image-deflated.edgepack"
        )
        self.answers = {name: craft.use_pack(path) for name, path in self.packs.items()}
        self._count = 0

    def scratch(self) -> Path:
        """A fresh empty folder for one attempt."""
        self._count += 1
        path = self.root / "try" / str(self._count)
        path.mkdir(parents=True)
        return path

    def copy(self, name: str) -> tuple[Path, Path]:
        """(folder, copy of pack `name` inside it)."""
        folder = self.scratch()
        source = self.packs[name]
        dest = folder / source.name
        if source.is_dir():
            shutil.copytree(source, dest)
        else:
            shutil.copyfile(source, dest)
        return folder, dest

    def attempt(self, name: str, hostile: Path, folder: Path | None = None) -> tuple[str, str]:
        """Judge using the hostile pack against the answers of untouched pack `name`; the
        attempt's folder must hold nothing new afterwards."""
        before = set(os.listdir(folder)) if folder else set()
        outcome = craft.judge(lambda: craft.use_pack(hostile), self.answers[name])
        if folder is not None and craft.stray_files(folder, before):
            return "stray", str(craft.stray_files(folder, before))
        return outcome


# --- 1. archives -----------------------------------------------------------------------------


def archive_flip(bench: Workbench, name: str, position: int, bit: int) -> tuple[str, str]:
    folder, pack = bench.copy(name)
    data = pack.read_bytes()
    pack.write_bytes(craft.flip(data, position % len(data), bit))
    return bench.attempt(name, pack, folder)


def manifest_span(path: Path) -> range:
    """Where the manifest's bytes lie inside an archive."""
    with zipfile.ZipFile(path) as archive:
        info = archive.getinfo("manifest.json")
    start = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra)
    return range(start, start + info.compress_size)


def directory_manifest_flip(bench: Workbench, position: int, bit: int) -> tuple[str, str]:
    folder, pack = bench.copy("image-dir")
    manifest = pack / "manifest.json"
    data = manifest.read_bytes()
    manifest.write_bytes(craft.flip(data, position % len(data), bit))
    return bench.attempt("image-dir", pack, folder)


def truncated(bench: Workbench, name: str, length: int) -> tuple[str, str]:
    folder, pack = bench.copy(name)
    data = pack.read_bytes()
    pack.write_bytes(data[: length % len(data)])
    return bench.attempt(name, pack, folder)


DUPLICATES = {
    "second manifest.json with other labels": "manifest",
    "second model.onnx (another model)": "model",
    "second manifest.json identical": "manifest-same",
}


def duplicate_entry(bench: Workbench, kind: str) -> tuple[str, str]:
    folder, pack = bench.copy("image")
    with zipfile.ZipFile(pack) as archive:
        manifest = json.loads(archive.read("manifest.json"))
        original = archive.read("manifest.json")
    if kind == "manifest":
        manifest["postprocessing"]["labels"] = ["two", "zero", "one"]
        extra = [("manifest.json", json.dumps(manifest).encode())]
    elif kind == "model":
        extra = [(manifest["models"][0]["path"], bench.other_model.read_bytes())]
    else:
        extra = [("manifest.json", original)]
    hostile = craft.with_entries(pack, folder / "dup.edgepack", extra)
    pack.unlink()
    return bench.attempt("image", hostile, folder)


def encrypted(bench: Workbench, name: str, entry_index: int) -> tuple[str, str]:
    folder, pack = bench.copy(name)
    with zipfile.ZipFile(pack) as archive:
        names = archive.namelist()
    hostile = craft.encrypted_flag(pack, folder / "enc.edgepack", names[entry_index % len(names)])
    pack.unlink()
    return bench.attempt(name, hostile, folder)


BOMB_CHILD = """
import sys, json
import edgepack.runtime as ep
try:
    ep.load(sys.argv[1], threads=1)
    outcome = "accepted"
except ep.EdgepackError as exc:
    outcome = "clean: " + str(exc).splitlines()[0]
except Exception as exc:
    outcome = "crash: " + type(exc).__name__ + ": " + str(exc)
# VmHWM, not ru_maxrss: Linux carries ru_maxrss across exec, so a child of a large pytest
# process would report the parent's size (806 MiB seen for a 1 MB file)
with open("/proc/self/status") as status:
    hwm = next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))
print(json.dumps([outcome, hwm * 1024]))
"""
BOMB_RSS_LIMIT = 400 << 20  # a tiny pack loads in about 100 MiB; more is reading the bomb


def bomb(bench: Workbench, kind: str, size: int = 1 << 30) -> tuple[str, str]:
    """A small archive whose entry inflates to `size` bytes: the manifest lists the original
    10-byte asset ('asset'), or the manifest itself is the bomb ('manifest')."""
    folder = bench.scratch()
    small = folder / "small.edgepack"
    craft.image_pack(small, bench.image_model, assets={"blob.bin": (b"0123456789", "asset")})
    hostile = folder / "bomb.edgepack"
    if kind == "asset":
        craft.bomb_archive(small, hostile, "blob.bin", size)
    else:
        craft.bomb_archive(small, hostile, "manifest.json", size)
    small.unlink()
    done = subprocess.run(
        [sys.executable, "-c", BOMB_CHILD, str(hostile)],
        capture_output=True,
        text=True,
        env=child_env(),
        check=False,
    )
    if done.returncode != 0:
        return "crash", done.stderr.strip()[-300:]
    outcome, rss = json.loads(done.stdout.strip().splitlines()[-1])
    if rss > BOMB_RSS_LIMIT:
        return "crash", f"peak RSS {rss / 2**20:.0f} MiB for a {hostile.stat().st_size} B file"
    if outcome == "accepted":
        return "wrong", "a pack whose entry is not what the manifest lists was loaded"
    return ("clean", outcome) if outcome.startswith("clean") else ("crash", outcome)


def many_files_pack(bench: Workbench, count: int) -> Path:
    folder = bench.scratch()
    assets = {f"assets/{i:05d}.txt": (str(i).encode(), "asset") for i in range(count)}
    return craft.image_pack(folder / "many", bench.image_model, assets=assets)


def load_calls(pack: Path) -> int:
    """Python function calls (generator steps included) made by load(): a measure of work that,
    unlike time, does not depend on the machine."""
    calls = 0

    def count(frame: Any, event: str, arg: Any) -> None:
        nonlocal calls
        calls += event == "call"

    sys.setprofile(count)
    try:
        ep.load(pack, threads=1)
    finally:
        sys.setprofile(None)
    return calls


# --- 2. bytes that are never verified --------------------------------------------------------


def external_data_model(folder: Path, source: Path, location: str) -> bytes:
    """`source` with its weights moved to the file weights.bin in `folder`, referenced from the
    model as `location`; returns the model's bytes."""
    import onnx

    model = onnx.load(str(source))
    path = folder / "model.onnx"
    onnx.save(model, str(path), save_as_external_data=True, location="weights.bin")
    model = onnx.load(str(path), load_external_data=False)
    for tensor in model.graph.initializer:
        for item in tensor.external_data:
            if item.key == "location":
                item.value = location
    return model.SerializeToString()


def _swap_model(pack: Path, model_bytes: bytes, relpath: str = "image.onnx") -> None:
    """Replace a directory pack's model and re-hash the manifest (what a careless writer does)."""
    (pack / relpath).write_bytes(model_bytes)
    craft.write_manifest(pack, craft.rehash(pack, craft.manifest_of(pack)))


EXTERNAL = (
    "directory pack, weights.bin beside the model, changed",
    "archive pack, weights.bin in the working directory",
    "directory pack, location ../outside.bin",
)


def external_data(bench: Workbench, case: int) -> tuple[str, str]:
    """A hashed model whose weights live in a file the manifest does not list."""
    folder, pack = bench.copy("image-dir")
    location = "../outside.bin" if case == 2 else "weights.bin"
    _swap_model(pack, external_data_model(folder, bench.image_model, location))
    zeros = bytes((folder / "weights.bin").stat().st_size)
    (folder / "model.onnx").unlink()
    if case == 0:
        (folder / "weights.bin").unlink()
        (pack / "weights.bin").write_bytes(zeros)  # beside the model, unlisted, all zero
        return bench.attempt("image-dir", pack, None)
    if case == 2:
        (folder / "weights.bin").rename(folder / "outside.bin")
        return bench.attempt("image-dir", pack, None)
    archive = folder / "ext.edgepack"
    with zipfile.ZipFile(archive, "w") as out:
        for item in sorted(pack.iterdir()):
            out.write(item, item.name)
    (folder / "weights.bin").write_bytes(zeros)  # in the working directory
    here = os.getcwd()
    os.chdir(folder)
    try:
        return bench.attempt("image-dir", archive, None)
    finally:
        os.chdir(here)


SYMLINKS = ("model through a linked folder", "asset through a linked folder")


def symlinked_folder(bench: Workbench, case: int) -> tuple[str, str]:
    folder = bench.scratch()
    outside = folder / "outside"
    outside.mkdir()
    if case == 0:
        pack = craft.image_pack(folder / "p", bench.image_model)
        shutil.copyfile(bench.other_model, outside / "image.onnx")
        name, relpath = "image-dir", "image.onnx"
    else:
        pack = craft.text_pack(folder / "p", bench.text_model, bench.vocab)
        (outside / "vocab.txt").write_text("[PAD]\n[UNK]\n[CLS]\n[SEP]\ngood\nfilm\n")
        name, relpath = "text", "vocab.txt"
    (pack / relpath).unlink()
    (pack / "lnk").symlink_to(outside, target_is_directory=True)
    data = craft.manifest_of(pack)
    for entry in data["models"] + data["files"]:
        if entry["path"] == relpath:
            entry["path"] = f"lnk/{relpath}"
    if case == 1:
        data["preprocessing"]["vocab_file"] = "lnk/vocab.txt"
    craft.write_manifest(pack, craft.rehash(pack, data))
    return bench.attempt(name, pack, None)


UPDATER = """
import os, sys, time
target, mode = sys.argv[1], sys.argv[4]
a, b = open(sys.argv[2], "rb").read(), open(sys.argv[3], "rb").read()
end = time.time() + float(sys.argv[5])
i = 0
while time.time() < end:
    data = b if i % 2 == 0 else a
    if mode == "replace":
        with open(target + ".new", "wb") as f:
            f.write(data)
        os.replace(target + ".new", target)
    else:
        with open(target, "r+b") as f:
            f.write(data)
    i += 1
"""


def race(bench: Workbench, loads: int, mode: str = "replace") -> Iterator[tuple[str, str]]:
    """Load a directory pack `loads` times while another process swaps its model between the
    listed one and another of the same size; yields one outcome per load."""
    folder, pack = bench.copy("image-dir")
    model = pack / "image.onnx"
    other = folder / "other.onnx"
    shutil.copyfile(bench.other_model, other)
    assert other.stat().st_size == model.stat().st_size
    listed = folder / "listed.onnx"
    shutil.copyfile(model, listed)
    seconds = max(5.0, loads * 0.05)
    updater = subprocess.Popen(
        [sys.executable, "-c", UPDATER, str(model), str(listed), str(other), mode, str(seconds)]
    )
    reference = bench.answers["image-dir"][1]
    try:
        for _ in range(loads):
            yield craft.judge(lambda: ep.load(pack, threads=1).run({"x": craft.PIXELS}), reference)
    finally:
        updater.kill()
        updater.wait()


def tampered_manifest(bench: Workbench, case: int) -> tuple[str, str]:
    """A manifest changed where no file hash looks: a label, the scale, the mean."""
    folder, pack = bench.copy("image-dir")
    data = craft.manifest_of(pack)
    if case == 0:
        data["postprocessing"]["labels"] = ["zero", "two", "one"]
    elif case == 1:
        data["preprocessing"]["scale"] = 2 / 255
    else:
        data["preprocessing"]["mean"] = [0.25]
    craft.write_manifest(pack, data)
    return bench.attempt("image-dir", pack, folder)


# --- signed packs --------------------------------------------------------------------------


def keypair(folder: Path, name: str) -> tuple[Path, Path]:
    """An Ed25519 key pair as PEM files (what `openssl genpkey -algorithm ed25519` writes)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    key = Ed25519PrivateKey.generate()
    private = folder / f"{name}.pem"
    public = folder / f"{name}.pub.pem"
    private.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    public.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return private, public


SIGNATURES = (
    "unsigned pack, trusted key given",
    "signed by another key",
    "signed, then a label changed and the manifest re-hashed",
    "signed, then the model swapped and the manifest re-hashed",
    "signed by the trusted key (must load)",
)


def signature(bench: Workbench, case: int) -> tuple[str, str]:
    folder, pack = bench.copy("image-dir")
    mine, trusted = keypair(folder, "mine")
    theirs, _ = keypair(folder, "theirs")
    sign = getattr(_packing(), "sign_pack", None)
    if sign is None:
        return "crash", "no sign_pack in edgepack.packing"
    if case == 1:
        sign(pack, theirs)
    elif case != 0:
        sign(pack, mine)
    if case == 2:
        data = craft.manifest_of(pack)
        data["postprocessing"]["labels"] = ["zero", "two", "one"]
        craft.write_manifest(pack, craft.rehash(pack, data))
    elif case == 3:
        _swap_model(pack, bench.other_model.read_bytes())
    reference = bench.answers["image-dir"][1]
    return craft.judge(
        lambda: ep.load(pack, threads=1, trusted_keys=[trusted]).run({"x": craft.PIXELS}),
        reference,
    )


def _packing() -> Any:
    try:
        import edgepack.packing as packing
    except ImportError:
        import edgepack.runtime.pack as packing
    return packing


# --- 4. malformed manifests ----------------------------------------------------------------


_M0, _IN, _OUT, _PRE = (
    ["models", 0],
    ["models", 0, "inputs", 0],
    ["models", 0, "outputs", 0],
    ["preprocessing"],
)
# case -> (where in the manifest, the value put there, the field the error must name)
MALFORMED: dict[str, tuple[list[Any], Any, str]] = {
    "JSON nested 100,000 deep": (["metrics"], {"deep": "DEEP"}, "nest"),
    "schema_version '1.²' (Unicode digit)": (["schema_version"], "1.²", "schema_version"),
    "schema_version '١.0' (Arabic-Indic digit)": (["schema_version"], "١.0", "schema_version"),
    "5,000-digit size_bytes": ([*_M0, "size_bytes"], "BIG", "size_bytes"),
    "5,000-digit image size": ([*_PRE, "size"], ["BIG", 4], "size"),
    "listed path '.'": ([*_M0, "path"], ".", "path"),
    "listed path of a folder": ([*_M0, "path"], "sub", "sub"),
    "listed path './image.onnx'": (["files", "+"], "./image.onnx", "path"),
    "listed path 'a//b'": (["files", "+"], "sub//x", "path"),
    "input renamed (manifest vs model)": ([*_IN, "name"], "pixels", "pixels"),
    "input dtype int64 (manifest vs model)": ([*_IN, "dtype"], "int64", "dtype"),
    "input rank 2 (manifest vs model)": ([*_IN, "shape"], ["batch", 16], "shape"),
    "output renamed (manifest vs model)": ([*_OUT, "name"], "scores", "scores"),
    "image size [2**31, 2]": ([*_PRE, "size"], [2**31, 2], "size"),
    "image size [0, 4]": ([*_PRE, "size"], [0, 4], "size"),
    "lone surrogate in a label": (["postprocessing", "labels", 1], "\ud800", "labels"),
    "lone surrogate in the name": (["name"], "x\udfff", "name"),
    "NaN scale": ([*_PRE, "scale"], float("nan"), "scale"),
    "infinite std": ([*_PRE, "std"], [float("inf")], "std"),
    "zero std": ([*_PRE, "std"], [0.0], "std"),
    "labels fewer than the classes": (["postprocessing", "labels"], ["a"], "labels"),
    "output_name not an output": (["postprocessing", "output_name"], "nope", "output_name"),
}


def _put(data: Any, path: list[Any], value: Any) -> None:
    for key in path[:-1]:
        data = data[key]
    if path[-1] == "+":
        data.append({"path": value, "role": "asset", "size_bytes": 0, "sha256": "0" * 64})
    else:
        data[path[-1]] = value


def malformed(bench: Workbench, case: str) -> tuple[str, str]:
    _folder, pack = bench.copy("image-dir")
    (pack / "sub").mkdir()
    data = craft.manifest_of(pack)
    where, value, _ = MALFORMED[case]
    _put(data, craft.rehash(pack, data) and where, value)  # after re-hashing: sizes stay as put
    data = craft.reseal(data)
    text = json.dumps(data, indent=2)
    # json cannot write these: placed in the text (the size is re-hashed above, before)
    text = text.replace('"DEEP"', "[" * 100_000 + "]" * 100_000).replace('"BIG"', "1" + "0" * 5000)
    (pack / "manifest.json").write_text(text, encoding="utf-8")
    outcome, detail = bench.attempt("image-dir", pack, None)
    return ("wrong", "accepted") if outcome == "silent" else (outcome, detail)


HOSTILE_VALUES: list[Any] = [
    None,
    True,
    -1,
    0,
    2**31,
    2**63,
    10**400,
    1e308,
    -0.0,
    float("nan"),
    "",
    ".",
    "..",
    "/etc/passwd",
    "a\0b",
    "\ud800",
    "1.²",
    "x" * 10_000,
    [],
    [[[[[]]]]],
    {},
    {"": None},
    ["sub"],
    [2**31, 2],
]


def mutate(data: Any, path: list[Any], value: Any, delete: bool) -> Any:
    """`data` with the node at `path` replaced by `value` (or deleted); paths index dicts and
    lists, taken modulo their length, so any path is valid on any manifest."""
    if not path or not isinstance(data, (dict, list)) or not data:
        return value
    keys = sorted(data) if isinstance(data, dict) else list(range(len(data)))
    key = keys[path[0] % len(keys)] if isinstance(path[0], int) else path[0]
    if isinstance(data, dict) and key not in data:
        key = keys[0]
    if len(path) == 1 and delete:
        copy = dict(data) if isinstance(data, dict) else list(data)
        del copy[key]
        return copy
    copy = dict(data) if isinstance(data, dict) else list(data)
    copy[key] = mutate(data[key], path[1:], value, delete)
    return copy


def fuzzed_manifest(bench: Workbench, path: list[int], value: Any, delete: bool) -> tuple:
    """A manifest with one node replaced and its hashes made consistent: any answer is
    acceptable (the manifest may still be valid) except a crash."""
    _folder, pack = bench.copy("image-dir")
    (pack / "sub").mkdir()
    data = craft.rehash(pack, mutate(craft.manifest_of(pack), path, value, delete))
    (pack / "manifest.json").write_text(json.dumps(data), encoding="utf-8")
    outcome, detail = craft.judge(lambda: craft.use_pack(pack), bench.answers["image-dir"])
    return ("silent", detail) if outcome == "wrong" else (outcome, detail)


# --- 5. writes -----------------------------------------------------------------------------


def child_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (env.get("PYTHONPATH", ""), str(REPO)) if p)
    env.update(extra)
    return env


KILL_CHILD = """
import os, signal, sys
import edgepack.runtime.pack
roots = [edgepack.runtime.pack.__file__]
try:
    import edgepack.packing
    roots.append(os.path.dirname(edgepack.packing.__file__))
except ImportError:
    pass
roots = tuple(roots)
sig, point = int(sys.argv[1]), int(sys.argv[2])
count = 0
def hook(frame, event, arg):
    # a point before every call the writer makes, to its own functions, pathlib's or C's
    global count
    caller = frame.f_back if event == "call" else frame
    if event in ("call", "c_call") and caller and caller.f_code.co_filename.startswith(roots):
        count += 1
        if count == point:
            os.kill(os.getpid(), sig)
            if sig == signal.SIGKILL:
                signal.pause()
from edgepack.cli.main import main
sys.setprofile(hook)
code = main(sys.argv[3:])
sys.setprofile(None)
print("points", count)
sys.exit(code)
"""


def pack_argv(model: Path, dest: Path, labels: str) -> list[str]:
    return ["pack", str(model), "-o", str(dest), "--labels", labels]


def write_points(bench: Workbench, dest_name: str) -> int:
    """How many injection points (calls in the pack writer) one write of a pack has."""
    folder = bench.scratch()
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            KILL_CHILD,
            "0",
            "0",
            *pack_argv(bench.image_model, folder / dest_name, "a,b,c"),
        ],
        capture_output=True,
        text=True,
        env=child_env(),
        check=True,
    )
    return int(done.stdout.split("points")[-1])


def killed_write(bench: Workbench, dest_name: str, sig: int, point: int) -> tuple[str, str]:
    """Write pack B over pack A and deliver `sig` at call `point` of the writer. The
    destination must hold A or B; a SIGTERM must leave no staging behind at once, a SIGKILL's
    staging must be gone after the next write."""
    folder, model = bench.scratch(), bench.image_model
    dest = folder / dest_name
    assert craft.run_cli(pack_argv(model, dest, "old,old,old"))[0] == 0
    subprocess.run(
        [
            sys.executable,
            "-c",
            KILL_CHILD,
            str(int(sig)),
            str(point),
            *pack_argv(bench.image_model, dest, "new,new,new"),
        ],
        capture_output=True,
        env=child_env(),
        check=False,
    )
    try:
        labels = ep.verify_pack(dest).postprocessing["labels"]
    except ep.EdgepackError as exc:
        return "wrong", f"destination broken after kill at {point}: {exc}"
    except Exception as exc:  # nothing at the destination: FileNotFoundError and the like
        return "crash", f"{type(exc).__name__}: {exc}"
    if labels[0] not in ("old", "new"):
        return "wrong", f"destination holds {labels}"
    if sig == signal.SIGTERM and craft.stray_files(folder, {dest_name}):
        return "stray", f"after SIGTERM at {point}: {craft.stray_files(folder, {dest_name})}"
    assert craft.run_cli(pack_argv(bench.image_model, dest, "next,next,next"))[0] == 0
    if craft.stray_files(folder, {dest_name}):
        return "stray", f"after the next write: {craft.stray_files(folder, {dest_name})}"
    return "clean", labels[0]


QUANTIZE_CHILD = """
import os, signal, sys
sig, nth = int(sys.argv[1]), int(sys.argv[2])
made = 0
real = os.mkdir
def mkdir(path, *args, **kwargs):
    global made
    real(path, *args, **kwargs)
    made += os.path.basename(path).startswith(("edgepack-quantize-", "edgepack-recipe-",
                                               "edgepack-eval-"))
    if made == nth:
        os.kill(os.getpid(), sig)
        if sig == signal.SIGKILL:
            signal.pause()
os.mkdir = mkdir
from edgepack.cli.main import main
sys.exit(main(sys.argv[3:]))
"""


def killed_quantize(bench: Workbench, sig: int, nth: int) -> tuple[str, str]:
    """`edgepack quantize` killed right after it made its nth quantize, recipe or eval scratch
    folder: a SIGTERM must leave the temp dir empty, a SIGKILL's leftovers must go with the next
    run."""
    folder = bench.scratch()
    tmp = folder / "tmp"
    tmp.mkdir()
    argv = ["quantize", str(bench.image_model), "-o", str(folder / "q.edgepack")]
    argv += ["--method", "dynamic", "--min-speedup", "0", "--quiet"]
    env = child_env(TMPDIR=str(tmp))
    subprocess.run(
        [sys.executable, "-c", QUANTIZE_CHILD, str(int(sig)), str(nth), *argv],
        capture_output=True,
        env=env,
        check=False,
    )
    left = sorted(n for n in os.listdir(tmp) if n.startswith("edgepack-"))
    if sig == signal.SIGTERM and left:
        return "stray", f"after SIGTERM: {left}"
    subprocess.run(
        [sys.executable, "-c", QUANTIZE_CHILD, "0", "0", *argv],
        capture_output=True,
        env=env,
        check=False,
    )
    left = sorted(n for n in os.listdir(tmp) if n.startswith("edgepack-"))
    return ("stray", f"after the next run: {left}") if left else ("clean", "")


# --- 6. run() and predict() inputs ---------------------------------------------------------

_BIG = (400_000_000, 1, 4, 4)  # 25.6 GB as float32, a broadcast view that owns 64 bytes

INPUTS: dict[str, tuple[str, Callable[[Any], Any]]] = {
    "mixed int and str keys": ("image", lambda m: m.run({"x": craft.PIXELS, 1: craft.PIXELS})),
    "ragged list": ("image", lambda m: m.run({"x": [[[[1.0, 2.0]]], [[[3.0]]]]})),
    "strings for a float input": ("image", lambda m: m.run({"x": np.full((1, 1, 4, 4), "a")})),
    "token id past the vocabulary": (
        "text",
        lambda m: m.run(
            {
                "input_ids": np.full((1, 16), 1000, np.int64),
                "attention_mask": np.ones((1, 16), np.int64),
                "token_type_ids": np.zeros((1, 16), np.int64),
            }
        ),
    ),
    "negative token id": (
        "text",
        lambda m: m.run(
            {
                "input_ids": np.full((1, 16), -5, np.int64),
                "attention_mask": np.ones((1, 16), np.int64),
                "token_type_ids": np.zeros((1, 16), np.int64),
            }
        ),
    ),
    "batch larger than available memory": (
        "image",
        lambda m: m.run({"x": np.broadcast_to(craft.PIXELS, _BIG)}),
    ),
    "text with a lone surrogate": ("text", lambda m: m.predict("good \ud800 film")),
    "1e300 in a float32 input": (
        "image",
        lambda m: m.run({"x": np.full((1, 1, 4, 4), 1e300)}),
    ),
    "image of shape (2**31, 2) as a view": (
        "image",
        lambda m: m.predict(np.broadcast_to(np.zeros(1, np.uint8), (2**31, 2))),
    ),
    "threads=1000": ("image", None),  # type: ignore[dict-item]
}


def _in_child(statement: str) -> tuple[str, str]:
    """Judge one statement run in a fresh process without our memory cap (60 s at most)."""
    script = (
        "import edgepack.runtime as ep\n"
        f"try:\n    {statement}\n    print('accepted')\n"
        "except ep.EdgepackError as exc:\n    print('clean', exc)\n"
    )
    unlimited = resource.getrlimit(resource.RLIMIT_AS)[1]
    try:
        done = subprocess.run(
            [sys.executable, "-c", script],
            capture_output=True,
            text=True,
            env=child_env(),
            timeout=60,
            preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_AS, (unlimited, unlimited)),
            check=False,
        )
    except subprocess.TimeoutExpired:
        return "crash", "still running after 60 s"
    last = (done.stdout.strip().splitlines() or [""])[-1]
    if done.returncode != 0 or not last:
        return "crash", done.stderr.strip()[-300:]
    return ("clean", last[6:]) if last.startswith("clean") else ("silent", last)


def bad_input(bench: Workbench, case: str) -> tuple[str, str]:
    name, action = INPUTS[case]
    if action is None:  # a process of its own: 1000 threads may not fit the caller's limits
        outcome = _in_child(f"ep.load({str(bench.packs[name])!r}, threads=1000)")
    else:
        model = ep.load(bench.packs[name], threads=1)
        outcome = craft.judge(lambda: action(model))
    if outcome[0] == "clean" and case.startswith("1e300") and "float32" not in outcome[1]:
        return "wrong", f"wrong message: {outcome[1]}"
    return ("wrong", "accepted") if outcome[0] == "silent" else outcome


# --- 7. the CLI ----------------------------------------------------------------------------


def cli_cases(bench: Workbench) -> dict[str, tuple[list[str], int]]:
    """name -> (argv, exit code wanted): 2 for usage, 1 for a refused input."""
    folder = bench.scratch()
    fake = folder / "fake.onnx"
    fake.write_text("not a model")
    blocker = folder / "file.txt"
    blocker.write_text("x")
    text_file = folder / "x.txt"
    text_file.write_text("1 2 3")
    pickled = folder / "obj.npy"
    np.save(pickled, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    corrupt = folder / "corrupt.edgepack"  # a byte of the manifest: even `info` reads it
    data = bytearray(bench.packs["image"].read_bytes())
    data[manifest_span(bench.packs["image"])[40]] ^= 0xFF
    corrupt.write_bytes(bytes(data))
    image, text = str(bench.packs["image"]), str(bench.packs["text"])
    model = str(bench.image_model)
    return {
        "pack a non-ONNX .onnx file": (["pack", str(fake), "-o", str(folder / "o")], 1),
        "pack a missing model": (["pack", str(folder / "nosuch.onnx"), "-o", str(folder / "o")], 1),
        "pack -o under a file": (["pack", model, "-o", str(blocker / "p")], 1),
        "pack --labels naming a missing file": (
            ["pack", model, "-o", str(folder / "o"), "--labels", str(folder / "nosuch_labels.txt")],
            1,
        ),
        "run --npy of a text file": (["run", image, "--npy", f"x={text_file}"], 1),
        "run --npy of a pickled array": (["run", image, "--npy", f"x={pickled}"], 1),
        "run on a corrupted archive": (["run", str(corrupt), "--npy", f"x={text_file}"], 1),
        "info on a corrupted archive": (["info", str(corrupt)], 1),
        "verify a corrupted archive": (["verify", str(corrupt)], 1),
        "run --image on a text pack": (["run", text, "--image", str(text_file)], 1),
        "run --text on an image pack": (["run", image, "--text", "hello"], 1),
        "run --threads 1000": (["run", image, "--text", "x", "--threads", "1000"], 1),
        "run --threads 0": (["run", image, "--image", model, "--threads", "0"], 2),
        "run with no input": (["run", image], 2),
        "unknown command": (["nosuch"], 2),
        "run a missing pack": (["run", str(folder / "nosuch"), "--text", "x"], 1),
    }


def tmp_strays() -> set[str]:
    """edgepack's folders in the temp dir (give each run a temp dir of its own: TMPDIR);
    other libraries' files (a session id file of one of them) are not ours to judge."""
    return {n for n in os.listdir(tempfile.gettempdir()) if n.startswith("edgepack-")}


def seconds(action: Callable[[], Any]) -> float:
    start = time.perf_counter()
    action()
    return time.perf_counter() - start
