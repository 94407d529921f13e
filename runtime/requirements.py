"""Checks a pack's `requirements` against this machine: the runtime version and CPU features."""

from __future__ import annotations

import warnings
from functools import cache
from pathlib import Path

from .errors import BackendUnavailableError, CpuFeatureWarning
from .manifest import PackManifest
from .version import __version__

# Linux /proc/cpuinfo flag -> edgepack's ISA feature name (the names device profiles use). ARM
# 'Features': asimddp is dot product, asimdhp fp16 arithmetic (not just conversion); x86 'flags':
# either VNNI encoding counts, AVX-512 VNNI or the VEX AVX-VNNI.
FLAG_FEATURES = {
    "asimd": "neon",
    "neon": "neon",
    "asimddp": "dotprod",
    "i8mm": "i8mm",
    "asimdhp": "fp16",
    "avx2": "avx2",
    "avx512f": "avx512",
    "avx512_vnni": "vnni",
    "avx_vnni": "vnni",
}


def check_requirements(manifest: PackManifest) -> None:
    """Refuse a pack that needs a newer runtime; warn when this CPU lacks a feature it needs."""
    wanted = manifest.requirements.get("min_runtime_version")
    if wanted and _version_tuple(wanted) > _version_tuple(__version__):
        raise BackendUnavailableError(
            f"pack {manifest.name!r} needs edgepack >= {wanted}; this is edgepack {__version__}"
        )
    # A warning, not an error: both interpreters pick their kernels at run time, so the pack
    # runs; but speed, and for int8 without VNNI or dotprod the exact results, measured on a core
    # with the feature may not hold here.
    missing = missing_cpu_features(manifest.requirements.get("cpu_features", []))
    if missing:
        message = f"pack {manifest.name!r} needs CPU feature(s) {missing}, which this CPU lacks"
        warnings.warn(
            f"{message} (/proc/cpuinfo); it runs, but its measured speed and int8 results may not "
            "hold here: run it on such a CPU, or build the pack for this one",
            CpuFeatureWarning,
            stacklevel=3,
        )


def missing_cpu_features(required: list[str], flags: frozenset[str] | None = None) -> list[str]:
    """The required features this CPU lacks; each is an ISA name ("dotprod", "vnni") or a raw
    /proc/cpuinfo flag ("avx512_vnni"). Empty when the flags cannot be read (not Linux).

    >>> missing_cpu_features(["dotprod", "neon"], frozenset({"asimd", "fp"}))
    ['dotprod']
    """
    flags = host_cpu_flags() if flags is None else flags
    if not required or flags is None:
        return []
    have = flags | {FLAG_FEATURES[f] for f in flags if f in FLAG_FEATURES}
    return [name for name in required if name not in have]


@cache
def host_cpu_flags(cpuinfo: Path = Path("/proc/cpuinfo")) -> frozenset[str] | None:
    """The flags every processor in /proc/cpuinfo has (big.LITTLE cores can differ), or None."""
    try:
        text = cpuinfo.read_text(errors="replace")
    except OSError:
        return None
    per_cpu = [
        set(value.split())
        for key, _, value in (line.partition(":") for line in text.splitlines())
        if key.strip().lower() in ("flags", "features")
    ]
    return frozenset(set.intersection(*per_cpu)) if per_cpu else None


def _version_tuple(text: str) -> tuple[int, ...]:
    return tuple(int(p) for p in text.split(".")[:3] if p.isdigit())
