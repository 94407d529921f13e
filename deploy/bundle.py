"""`edgepack bundle`: a pack and everything its device needs to run it offline, in one folder
(and the same as a tarball beside it).

    OUT/pack/<pack>          the pack, as given (a directory or a .edgepack archive)
    OUT/wheels/*.whl         the runtime's wheels for the target, edgepack's own among them
    OUT/requirements.txt     every wheel pinned, what install.sh installs
    OUT/install.sh           checks SHA256SUMS, makes a venv, pip install --no-index
    OUT/bench.sh             runs the benchmark harness, writes JSON
    OUT/bundle.json          what was chosen: target, pack, wheel versions
    OUT/SHA256SUMS           over all of the above

>>> build_bundle("digits.edgepack", "out/digits-rpi4", profile="rpi4-1.5ghz")  # doctest: +SKIP
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from edgepack.runtime import EdgepackError, __version__, read_manifest

if sys.version_info >= (3, 11):
    import tomllib
else:
    import tomli as tomllib

from .errors import BundleError
from .scripts import bench_script, install_script
from .sums import bundle_id, sha256_file, verify_sums, write_sums
from .target import Target, host_target, target_for_profile
from .wheelhouse import Progress, build_wheelhouse

BUNDLE_SCHEMA = 1
MANIFEST_NAME = "bundle.json"
# Installed size over wheel size (onnxruntime and numpy unpack to about 2.5x): the free space a
# device needs for a release beyond the bundle itself.
INSTALL_GROWTH = 3
SAFE_NAME_CHARS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-")


def _say(progress: Progress | None, text: str) -> None:
    if progress:
        progress(text)


def source_root() -> Path:
    """The edgepack source tree this code runs from (its pyproject.toml), to build the wheel."""
    import edgepack.runtime

    here = Path(edgepack.runtime.__file__).resolve().parent
    for folder in (here, *here.parents):
        project = folder / "pyproject.toml"
        if project.is_file() and 'name = "edgepack"' in project.read_text():
            return folder
    raise BundleError(
        "edgepack's source tree is not beside this install, so its wheel cannot be built; "
        "pass --edgepack-wheel FILE (a wheel built with `pip wheel --no-deps .`)"
    )


def build_edgepack_wheel(dest: Path) -> Path:
    """edgepack itself as a wheel, built without network from a clean copy of its packages
    (building in the source tree would pack whatever stale files its build/ folder holds)."""
    root = source_root()
    project = tomllib.loads((root / "pyproject.toml").read_text())
    folders = set(project["tool"]["setuptools"]["package-dir"].values())
    with tempfile.TemporaryDirectory(prefix="edgepack-wheel-") as scratch:
        tree = Path(scratch) / "src"
        tree.mkdir()
        for name in ("pyproject.toml", "README.md"):
            shutil.copy2(root / name, tree / name)
        for folder in folders:
            shutil.copytree(
                root / folder, tree / folder, ignore=shutil.ignore_patterns("__pycache__")
            )
        command = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                   "--disable-pip-version-check", "-q", "-w", str(dest), str(tree)]  # fmt: skip
        done = subprocess.run(command, capture_output=True, text=True)
    wheels = sorted(dest.glob("edgepack-*.whl"))
    if done.returncode != 0 or not wheels:
        last = (done.stderr.strip().splitlines() or ["no wheel written"])[-1]
        raise BundleError(f"building edgepack's wheel from {root} failed: {last}")
    return wheels[-1]


def pack_facts(pack: Path) -> dict[str, Any]:
    """Name, file, sha256 (of manifest.json, or of the archive), model formats and
    preprocessing kind ("text", "image" or None) of a pack."""
    try:
        manifest = read_manifest(pack)
    except EdgepackError as exc:
        raise BundleError(f"{pack}: not a pack edgepack can read: {exc}") from None
    if not set(pack.name) <= SAFE_NAME_CHARS:
        raise BundleError(
            f"{pack.name!r}: a bundled pack's name may hold letters, digits, '.', '_' and '-' "
            "only (it is used in shell scripts on the device); rename it"
        )
    digest = sha256_file(pack / "manifest.json" if pack.is_dir() else pack)
    return {
        "name": manifest.name,
        "file": pack.name,
        "sha256": digest,
        "formats": sorted({m.format for m in manifest.models}),
        "preprocessing": (manifest.preprocessing or {}).get("kind"),
    }


def device_extras(facts: dict[str, Any]) -> list[str]:
    """The edgepack extras a pack needs on the device beyond the base install (numpy and
    onnxruntime): LiteRT for a TFLite model, tokenizers for text preprocessing."""
    extras = ["tflite"] if "tflite" in facts["formats"] else []
    return extras + (["text"] if facts["preprocessing"] == "text" else [])


def build_bundle(
    pack: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    profile: str | None = None,
    python: str | None = None,
    target: Target | None = None,
    constraints: str | os.PathLike[str] | None = None,
    pip_args: Sequence[str] = (),
    edgepack_wheel: str | os.PathLike[str] | None = None,
    interpreter: str | None = None,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Write the bundle folder `out` and `out.tar`; return its manifest (bundle.json, plus id).

    The target is `target`, else the profile's board (its OS image's Python unless `python`),
    else this machine. Everything is written beside `out` first and moved into place at the
    end, so a failure leaves neither a half bundle nor temp files.
    """
    pack_path = Path(pack)
    out_path = Path(out)
    if out_path.exists():
        raise BundleError(f"{out_path} already exists; remove it or choose another -o")
    facts = pack_facts(pack_path)
    if target is None:
        target = target_for_profile(profile, python) if profile else host_target(python)
    extras = device_extras(facts)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{out_path.name}.", dir=out_path.parent))
    try:
        folder = work / out_path.name
        wheels_dir = folder / "wheels"
        wheels_dir.mkdir(parents=True)
        _say(progress, f"bundle: edgepack wheel for {target.describe()}")
        if edgepack_wheel:
            own = Path(edgepack_wheel)
            if not own.is_file():
                raise BundleError(f"--edgepack-wheel {own}: no such file")
        else:
            own = build_edgepack_wheel(work / "own")
        root = (
            f"edgepack{'[' + ','.join(extras) + ']' if extras else ''} @ {own.resolve().as_uri()}"
        )
        _say(progress, f"bundle: resolving the runtime's wheels for {target.describe()}")
        wheels = build_wheelhouse(
            [root],
            target,
            wheels_dir,
            constraints=Path(constraints) if constraints else None,
            pip_args=pip_args,
            interpreter=interpreter,
            progress=progress,
        )
        _say(progress, f"bundle: {len(wheels)} wheels; copying the pack and writing scripts")
        (folder / "pack").mkdir()
        if pack_path.is_dir():
            shutil.copytree(pack_path, folder / "pack" / pack_path.name)
        else:
            shutil.copy2(pack_path, folder / "pack" / pack_path.name)
        (folder / "requirements.txt").write_text(
            "".join(f"{w.name}=={w.version}\n" for w in wheels)
        )
        scripts = {
            "install.sh": install_script(
                python=target.python,
                machine=target.machine,
                glibc=target.glibc,
                pack=pack_path.name,
            ),
            "bench.sh": bench_script(pack=pack_path.name),
        }
        for name, text in scripts.items():
            (folder / name).write_text(text)
            (folder / name).chmod(0o755)
        wheel_bytes = sum(p.stat().st_size for p in wheels_dir.iterdir())
        manifest = {
            "bundle_schema": BUNDLE_SCHEMA,
            "pack": facts,
            "target": target.to_dict(),
            "wheels": [w.to_dict() for w in wheels],
            "extras": extras,
            "wheel_bytes": wheel_bytes,
            "install_bytes_estimate": INSTALL_GROWTH * wheel_bytes,
            "edgepack_version": __version__,
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }
        (folder / MANIFEST_NAME).write_text(json.dumps(manifest, indent=1) + "\n")
        write_sums(folder)
        _say(progress, "bundle: writing the tarball")
        tar_tmp = work / f"{out_path.name}.tar"
        with tarfile.open(tar_tmp, "w") as tar:
            tar.add(folder, arcname=out_path.name)
        folder.rename(out_path)
        tar_tmp.replace(out_path.with_name(out_path.name + ".tar"))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return {**manifest, "id": bundle_id(out_path)}


def read_bundle(folder: str | os.PathLike[str]) -> dict[str, Any]:
    """bundle.json of a bundle folder, plus its id; rejects a schema this edgepack cannot read."""
    path = Path(folder) / MANIFEST_NAME
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise BundleError(
            f"{path}: missing; {folder} is not a bundle (edgepack bundle makes one)"
        ) from None
    except json.JSONDecodeError as exc:
        raise BundleError(f"{path}: not valid JSON: {exc}") from None
    if data.get("bundle_schema") != BUNDLE_SCHEMA:
        raise BundleError(
            f"{path}: bundle_schema {data.get('bundle_schema')!r} is not one this edgepack reads "
            f"(expected {BUNDLE_SCHEMA}); rebuild the bundle with this edgepack"
        )
    return {**data, "id": bundle_id(Path(folder))}


def verify_bundle(folder: str | os.PathLike[str]) -> dict[str, Any]:
    """`edgepack bundle --verify`: every sum, no unlisted file, a readable bundle.json."""
    path = Path(folder)
    if not path.is_dir():
        raise BundleError(f"{path}: not a bundle folder")
    checked = verify_sums(path)
    return {**read_bundle(path), "files_checked": checked}


def open_bundle(path: str | os.PathLike[str], scratch: Path) -> Path:
    """A bundle folder from a folder or a bundle tarball (unpacked into scratch, safely)."""
    given = Path(path)
    if given.is_dir():
        return given
    if not given.is_file() or not tarfile.is_tarfile(given):
        raise BundleError(f"{given}: neither a bundle folder nor a bundle tarball")
    with tarfile.open(given) as tar:
        tar.extractall(scratch, filter="data")
    folders = [p for p in scratch.iterdir() if p.is_dir()]
    if len(folders) != 1:
        raise BundleError(f"{given}: a bundle tarball holds one folder, this one {len(folders)}")
    return folders[0]
