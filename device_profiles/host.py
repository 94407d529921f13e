"""The 'host' profile: this machine's cores, clock, ISA flags, RAM and OS, read at run time from
/proc and /sys (anything the machine does not expose is None)."""

from __future__ import annotations

import os
import platform
import sys
from pathlib import Path

from edgepack.runtime.requirements import FLAG_FEATURES

from .profile import Cpu, Defaults, DeviceProfile, Memory, OsImage

# ARM "CPU part" ids (implementer 0x41) of the cores edgepack's targets and common hosts use.
ARM_PARTS = {
    0xD03: "Cortex-A53",
    0xD05: "Cortex-A55",
    0xD07: "Cortex-A57",
    0xD08: "Cortex-A72",
    0xD0B: "Cortex-A76",
    0xD0C: "Neoverse-N1",
    0xD40: "Neoverse-V1",
    0xD41: "Cortex-A78",
    0xD42: "Cortex-A78AE",
    0xD49: "Neoverse-N2",
    0xD4F: "Neoverse-V2",
}
# Vector width of the widest SIMD unit each flag implies, widest first.
SIMD_WIDTHS = (
    ("avx512f", 512),
    ("avx2", 256),
    ("avx", 256),
    ("sse2", 128),
    ("asimd", 128),
    ("neon", 128),
)
BASELINE_SIMD_BITS = {"x86_64": 128, "amd64": 128, "aarch64": 128, "arm64": 128}


def _read(path: Path) -> str | None:
    try:
        return path.read_text(errors="replace")
    except OSError:
        return None


def _cpuinfo_blocks(text: str | None) -> list[dict[str, str]]:
    """/proc/cpuinfo as one dict per blank-line-separated block."""
    blocks: list[dict[str, str]] = []
    current: dict[str, str] = {}
    for line in (text or "").splitlines():
        if not line.strip():
            if current:
                blocks.append(current)
            current = {}
            continue
        key, sep, value = line.partition(":")
        if sep:
            current[key.strip().lower()] = value.strip()
    if current:
        blocks.append(current)
    return blocks


def _affinity() -> set[int]:
    try:
        return set(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return set(range(os.cpu_count() or 1))


def _max_clock_ghz(
    root: Path, cpus: set[int], processors: list[dict[str, str]]
) -> tuple[float | None, str]:
    khz = []
    for cpu in cpus:
        text = _read(root / f"sys/devices/system/cpu/cpu{cpu}/cpufreq/cpuinfo_max_freq")
        if text and text.strip().isdigit():
            khz.append(int(text.strip()))
    if khz:
        return max(khz) / 1e6, "from /sys/devices/system/cpu/cpu*/cpufreq/cpuinfo_max_freq"
    mhz = [float(p["cpu mhz"]) for p in processors if "cpu mhz" in p]
    if mhz:
        # Without cpufreq (VMs, containers) only the current clock is visible.
        return max(mhz) / 1e3, "from /proc/cpuinfo 'cpu MHz' (the current clock; no cpufreq here)"
    return None, "the machine exposes no CPU clock (no cpufreq in /sys, no 'cpu MHz')"


def _core_name(processor: dict[str, str]) -> str:
    if processor.get("cpu implementer") == "0x41" and "cpu part" in processor:
        try:
            return ARM_PARTS[int(processor["cpu part"], 16)]
        except (KeyError, ValueError):
            return f"Arm part {processor['cpu part']}"
    return processor.get("model name", "unknown")


def _ram_gib(root: Path) -> float | None:
    for line in (_read(root / "proc/meminfo") or "").splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) / 1024**2
    return None


def _os_image(root: Path) -> str:
    for line in (_read(root / "etc/os-release") or "").splitlines():
        if line.startswith("PRETTY_NAME="):
            return line.split("=", 1)[1].strip().strip('"')
    return platform.platform()


def detect_host(root: Path = Path("/")) -> DeviceProfile:
    """Profile this machine. `root` lets tests point at a fake /proc and /sys tree.

    >>> detect_host().cpu.cores >= 1
    True
    """
    cpus = _affinity()
    blocks = _cpuinfo_blocks(_read(root / "proc/cpuinfo"))
    processors = [b for b in blocks if "processor" in b]
    in_use = [p for p in processors if p["processor"].isdigit() and int(p["processor"]) in cpus]
    in_use = in_use or processors
    # A flag counts only if every CPU we may run on has it (big.LITTLE cores can differ).
    flag_sets = [set((p.get("flags") or p.get("features") or "").split()) for p in in_use]
    flags = set.intersection(*flag_sets) if flag_sets else set()
    features = frozenset(FLAG_FEATURES[f] for f in flags if f in FLAG_FEATURES)
    machine = platform.machine().lower()
    simd_bits = next((bits for flag, bits in SIMD_WIDTHS if flag in flags), None)
    simd_bits = simd_bits or BASELINE_SIMD_BITS.get(machine)
    clock_ghz, clock_note = _max_clock_ghz(root, cpus, processors)
    core_names = sorted({_core_name(p) for p in in_use})
    core = "+".join(core_names) if core_names else platform.processor() or "unknown"
    # ARM kernels append a board block (Hardware, Model) after the per-processor blocks.
    board = next((b for b in reversed(blocks) if "processor" not in b), {})
    model = (_read(root / "proc/device-tree/model") or "").strip("\x00\n ")
    soc = model or board.get("model") or board.get("hardware") or core

    return DeviceProfile(
        name="host",
        description=f"this machine ({soc}), detected at run time",
        soc=soc,
        cpu=Cpu(
            core=core,
            cores=len(cpus),
            max_clock_ghz=clock_ghz,
            arch=machine or "unknown",
            simd_width_bits=simd_bits,
            features=features,
        ),
        memory=Memory(ram_gib=_ram_gib(root)),
        os=OsImage(
            image=_os_image(root),
            python=f"{sys.version_info.major}.{sys.version_info.minor}",
            glibc=platform.libc_ver()[1] or None,
            machine=platform.machine() or None,
        ),
        defaults=Defaults(backend="onnxruntime", threads=len(cpus), quantization="int8-dynamic"),
        notes={
            "cpu.cores": "CPUs this process may run on (os.sched_getaffinity)",
            "cpu.max_clock_ghz": clock_note,
            "memory.bandwidth_gbs": "not measured on the host",
        },
        detected=True,
    )
