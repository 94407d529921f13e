"""Checks a pack's `requirements` against this machine: the runtime version and CPU features."""

from __future__ import annotations

import warnings
from functools import cache
from pathlib import Path

from .errors import BackendUnavailableError, CpuFeatureWarning
from .manifest import PackManifest
from .version import __version__

# Linux /proc/cpuinfo flag -> edgepack's ISA feature name (the names device profiles use). Arm:
# asimddp is dot product, asimdhp fp16 arithmetic; x86: either VNNI encoding counts.
FLAG_FEATURES = {
    **{"asimd": "neon", "neon": "neon", "asimddp": "dotprod", "i8mm": "i8mm", "asimdhp": "fp16"},
    **{"avx2": "avx2", "avx512f": "avx512", "avx512_vnni": "vnni", "avx_vnni": "vnni"},
}


def check_requirements(manifest: PackManifest) -> None:
    """Refuse a pack that needs a newer runtime; warn when this CPU lacks a feature it needs."""
    wanted = manifest.requirements.get("min_runtime_version")
    if wanted and _version_tuple(wanted) > _version_tuple(__version__):
        raise BackendUnavailableError(
            f"pack {manifest.name!r} needs edgepack >= {wanted}; this is edgepack {__version__}"
        )
    # A warning: both interpreters pick their kernels at run time, so the pack runs; but speed,
    # and for int8 without VNNI or dotprod the exact results, measured with the feature may not.
    if missing := missing_cpu_features(manifest.requirements.get("cpu_features", [])):
        warnings.warn(
            f"pack {manifest.name!r} needs CPU feature(s) {missing}, which this CPU lacks "
            "(/proc/cpuinfo); it runs, but its measured speed and int8 results may not hold "
            "here: run it on such a CPU, or build the pack for this one",
            CpuFeatureWarning,
            stacklevel=3,
        )


def missing_cpu_features(required: list[str], flags: frozenset[str] | None = None) -> list[str]:
    """The required features (ISA names like "dotprod", or /proc/cpuinfo flags) this CPU, or
    one with `flags`, lacks; none when there are no flags to read.

    >>> missing_cpu_features(["dotprod", "neon"], frozenset({"asimd", "fp"}))
    ['dotprod']
    """
    flags = host_cpu_flags() if flags is None else flags
    if not flags:
        return []
    have = flags | {FLAG_FEATURES[f] for f in flags if f in FLAG_FEATURES}
    return [name for name in required if name not in have]


@cache
def host_cpu_flags(cpuinfo: Path = Path("/proc/cpuinfo")) -> frozenset[str] | None:
    """The flags every processor in /proc/cpuinfo has (big.LITTLE cores can differ), or None."""
    try:
        lines = [line.partition(":") for line in cpuinfo.read_text(errors="replace").splitlines()]
    except OSError:  # not Linux
        return None
    per_cpu = [set(v.split()) for k, _, v in lines if k.strip().lower() in ("flags", "features")]
    return frozenset(set.intersection(*per_cpu)) if per_cpu else None


def _version_tuple(text: str) -> tuple[int, ...]:
    return tuple(int(p) for p in text.split(".")[:3] if p.isdigit())
