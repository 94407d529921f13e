"""A wheelhouse for another machine: `pip download` of binary wheels for the target's Python and
platform tags, then a check, with the target's environment markers, that every wheel the target
needs is there (pip evaluates markers for the Python it runs on, not for --python-version).

>>> pi4 = Target("3.11", "aarch64", "2.36")
>>> wheels = build_wheelhouse(["numpy"], pi4, Path("wheels"))  # doctest: +SKIP
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import zipfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from email.parser import HeaderParser
from pathlib import Path

from packaging.requirements import InvalidRequirement, Requirement
from packaging.tags import Tag, compatible_tags, cpython_tags
from packaging.utils import canonicalize_name, parse_wheel_filename

from .errors import BundleError
from .sums import sha256_file
from .target import Target

MAX_ROUNDS = 5  # pip rounds to fill gaps left by host-evaluated markers (one is usual)
# What to use instead when a runtime package has no wheel for the target.
ALTERNATIVES = {
    "tflite-runtime": "ai-edge-litert (edgepack's tflite backend uses it)",
    "ai-edge-litert": "a pack without its TFLite model (ONNX Runtime only)",
    "onnxruntime": "the pack's TFLite model on ai-edge-litert",
}

Progress = Callable[[str], None]


@dataclass(frozen=True)
class Wheel:
    """One wheel file of the wheelhouse, with the requirements its metadata declares."""

    name: str  # canonical (PEP 503)
    version: str
    file: str
    sha256: str
    requires: tuple[str, ...]

    def to_dict(self) -> dict[str, str]:
        return {
            "name": self.name,
            "version": self.version,
            "file": self.file,
            "sha256": self.sha256,
        }


def find_python(version: str) -> str | None:
    """An interpreter of that X.Y version: this one, or a pyenv build ($PYENV_ROOT or ~/.pyenv).
    Resolving with the target's own Python gets its markers right without the fix-up rounds."""
    if f"{sys.version_info.major}.{sys.version_info.minor}" == version:
        return sys.executable
    root = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv")) / "versions"
    candidates = sorted(root.glob(f"{version}.*/bin/python{version}"), reverse=True)
    return str(candidates[0]) if candidates else None


def target_tags(target: Target) -> frozenset[Tag]:
    """Every wheel tag an install on the target accepts (CPython, the manylinux tags, pure)."""
    version = target.version_tuple
    platforms = target.platform_tags()
    tags = set(cpython_tags(version, abis=[target.abi], platforms=platforms))
    tags |= set(compatible_tags(version, interpreter=target.abi, platforms=platforms))
    return frozenset(tags)


def read_wheel(path: Path) -> Wheel:
    """Name, version and Requires-Dist of a wheel, from its file name and METADATA."""
    name, version, _, _ = parse_wheel_filename(path.name)
    with zipfile.ZipFile(path) as archive:
        meta = next(
            (
                n
                for n in archive.namelist()
                if n.count("/") == 1 and n.endswith(".dist-info/METADATA")
            ),
            None,
        )
        if meta is None:
            raise BundleError(f"{path.name}: not a wheel (no .dist-info/METADATA inside)")
        headers = HeaderParser().parsestr(archive.read(meta).decode("utf-8", "replace"))
    return Wheel(
        name=canonicalize_name(name),
        version=str(version),
        file=path.name,
        sha256=sha256_file(path),
        requires=tuple(headers.get_all("Requires-Dist") or ()),
    )


def closure(
    roots: Sequence[Requirement], wheels: dict[str, Wheel], target: Target
) -> tuple[list[Wheel], list[Requirement]]:
    """(wheels the target needs, requirements with no wheel here), walking Requires-Dist with
    the markers evaluated for the target. A wheel whose version does not satisfy a requirement
    on it is an error: the set would not install."""
    env = target.marker_environment()
    needed: dict[str, Wheel] = {}
    missing: list[Requirement] = []
    queue: list[tuple[Requirement, str]] = [(r, "the bundle") for r in roots]
    seen: set[tuple[str, frozenset[str]]] = set()
    while queue:
        req, parent = queue.pop()
        name = canonicalize_name(req.name)
        wheel = wheels.get(name)
        if wheel is None:
            if all(canonicalize_name(m.name) != name for m in missing):
                missing.append(req)
            continue
        if req.specifier and not req.specifier.contains(wheel.version, prereleases=True):
            raise BundleError(
                f"{parent} needs {req} but the wheelhouse has {wheel.name} {wheel.version}; "
                "loosen the constraint or pin a version that satisfies both"
            )
        needed[name] = wheel
        key = (name, frozenset(req.extras))
        if key in seen:
            continue
        seen.add(key)
        for text in wheel.requires:
            dep = Requirement(text)
            extras = ["", *sorted(req.extras)]
            if dep.marker is None or any(dep.marker.evaluate({**env, "extra": e}) for e in extras):
                queue.append((dep, f"{wheel.name} {wheel.version}"))
    return sorted(needed.values(), key=lambda w: w.name), missing


def build_wheelhouse(
    requirements: Sequence[str],
    target: Target,
    dest: Path,
    *,
    constraints: Path | None = None,
    pip_args: Sequence[str] = (),
    interpreter: str | None = None,
    progress: Progress | None = None,
) -> list[Wheel]:
    """Download the wheels `requirements` need on `target` into dest; return those it needs
    (others, pulled in by markers evaluated for the host, are removed).

    interpreter: the Python that runs pip (default: the target's version here or in pyenv,
    else this one, whose marker mistakes the fix-up rounds correct). pip_args: more pip options
    (e.g. --no-index --find-links DIR for an offline workstation).
    """
    try:
        roots = [Requirement(r) for r in requirements]
    except InvalidRequirement as exc:
        raise BundleError(f"invalid requirement: {exc}") from None
    python = interpreter or find_python(target.python) or sys.executable
    dest.mkdir(parents=True, exist_ok=True)
    pending: Iterable[str] = requirements
    for _ in range(MAX_ROUNDS):
        _pip_download(python, list(pending), target, dest, constraints, pip_args, progress)
        wheels = _read_all(dest, target)
        needed, missing = closure(roots, wheels, target)
        if not missing:
            break
        if progress:
            needs = ", ".join(str(m) for m in missing)
            progress(f"markers for {target.describe()} also need {needs}; fetching them")
        pending = [_without_marker(m) for m in missing]
    else:
        raise BundleError(
            f"the wheelhouse for {target.describe()} is still missing "
            f"{', '.join(str(m) for m in missing)} after {MAX_ROUNDS} rounds of pip download"
        )
    keep = {w.file for w in needed}
    for path in dest.glob("*.whl"):
        if path.name not in keep:
            path.unlink()
    return needed


def _without_marker(req: Requirement) -> str:
    """The requirement for pip without its marker: the marker held on the target, and pip would
    evaluate it again for the host."""
    extras = f"[{','.join(sorted(req.extras))}]" if req.extras else ""
    return f"{req.name}{extras} @ {req.url}" if req.url else f"{req.name}{extras}{req.specifier}"


def _read_all(dest: Path, target: Target) -> dict[str, Wheel]:
    accepted = target_tags(target)
    wheels: dict[str, Wheel] = {}
    others = [p.name for p in dest.iterdir() if p.is_file() and p.suffix != ".whl"]
    if others:
        raise BundleError(
            f"pip fetched source distributions {', '.join(others)}: the device cannot build "
            "them offline; pin a version that has a wheel for " + target.describe()
        )
    for path in sorted(dest.glob("*.whl")):
        _, _, _, tags = parse_wheel_filename(path.name)
        if not tags & accepted:
            raise BundleError(
                f"{path.name} does not install on {target.describe()} "
                f"(its tags: {', '.join(sorted(map(str, tags)))})"
            )
        wheel = read_wheel(path)
        wheels[wheel.name] = wheel
    return wheels


def _pip_download(
    python: str,
    requirements: list[str],
    target: Target,
    dest: Path,
    constraints: Path | None,
    pip_args: Sequence[str],
    progress: Progress | None,
) -> None:
    command = [
        python, "-m", "pip", "download", "--disable-pip-version-check", "--no-input",
        "--dest", str(dest), "--only-binary=:all:", "--implementation", "cp",
        "--python-version", target.python, "--abi", target.abi, "--abi", "abi3", "--abi", "none",
    ]  # fmt: skip
    for tag in target.platform_tags():
        command += ["--platform", tag]
    if constraints:
        command += ["--constraint", str(constraints)]
    command += [*pip_args, *requirements]
    # One stream: pip explains a conflict on stdout and the rest on stderr, and reading two
    # pipes one after the other can deadlock on a full one.
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace"
    )
    assert process.stdout is not None
    said = []
    for line in process.stdout:
        said.append(line)
        if progress and line.startswith(("Saved ", "File was already downloaded ")):
            progress(f"  {Path(line.split()[-1]).name}")
    if process.wait() != 0:
        raise BundleError(_explain_pip_failure("".join(said), target))


def _explain_pip_failure(output: str, target: Target) -> str:
    """One line from pip's complaint: the package without a wheel, the versions there are,
    the Python versions they need, and what to use instead."""
    found = re.search(r"No matching distribution found for (\S+)", output)
    conflict = re.search(r"The conflict is caused by:\n((?:[ \t]+\S.*\n?)+)", output)
    if conflict and not found:
        causes = "; ".join(line.strip() for line in conflict.group(1).splitlines())
        return (
            f"pip cannot resolve the wheels for {target.describe()}: {causes}; a pinned version "
            f"may have no wheel for Python {target.python} (constraints made for the workstation "
            "often do not fit an older device Python: bundle without -c, or pin versions that "
            "have wheels for it)"
        )
    if not found:
        lines = [line for line in output.strip().splitlines() if line.strip()]
        last = [line for line in lines if line.startswith("ERROR")][-1:] or lines[-1:] or ["?"]
        return f"pip download for {target.describe()} failed: {last[0].strip()}"
    spec = found.group(1)
    name = canonicalize_name(re.split(r"[<>=!~;\[ ]", spec, maxsplit=1)[0])
    versions = re.search(r"from versions: ([^)]*)\)", output)
    python_only = re.search(r"require a different python version: (.*)", output)
    parts = [
        f"no wheel of {spec} for {target.describe()} "
        f"(manylinux tags up to {target.platform_tags()[0]})"
    ]
    if versions and versions.group(1).strip() not in ("", "none"):
        parts.append(f"versions with wheels for it: {versions.group(1).strip()}")
    if python_only:
        parts.append(f"versions for other Pythons: {python_only.group(1).strip()[:200]}")
    other = ALTERNATIVES.get(name)
    parts.append(
        "alternatives: "
        + (f"{other}, or " if other else "")
        + "--python X.Y for a Python that has its wheels (install that Python on the device)"
    )
    return "; ".join(parts)
