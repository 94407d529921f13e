"""A pack's requirements on load: a newer runtime is refused, a missing CPU feature warned of."""

from __future__ import annotations

import platform
import warnings

import numpy as np
import pytest

import edgepack.runtime as ep
from edgepack.device_profiles import load_profile
from edgepack.packing import assemble_pack
from edgepack.runtime.requirements import host_cpu_flags, missing_cpu_features

# 'Features' of /proc/cpuinfo on a Raspberry Pi 5 (Cortex-A76) and a Pi 4 (Cortex-A72), and
# 'flags' of an x86 core with AVX-VNNI and no AVX-512 (Alder Lake), as the kernel prints them.
PI5 = (
    "fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc dcpop "
    "asimddp"
)
PI4 = "fp asimd evtstrm crc32 cpuid"
X86 = "fpu vme sse sse2 ssse3 fma sse4_1 sse4_2 avx f16c avx2 bmi2 avx_vnni"


def test_pack_needing_a_newer_runtime_is_refused(tmp_path, classifier):
    dest = tmp_path / "future"
    assemble_pack(dest, [classifier[0]], requirements={"min_runtime_version": "99.0"})
    with pytest.raises(ep.BackendUnavailableError, match="needs edgepack >= 99.0"):
        ep.load(dest)


def test_features_of_the_device_profiles_against_their_cpus():
    rpi5 = sorted(load_profile("rpi5").cpu.features)  # neon, dotprod, fp16
    assert missing_cpu_features(rpi5, frozenset(PI5.split())) == []
    assert missing_cpu_features(rpi5, frozenset(PI4.split())) == ["dotprod", "fp16"]
    assert missing_cpu_features(["avx2", "vnni", "avx_vnni"], frozenset(X86.split())) == []
    assert missing_cpu_features(["avx512", "avx512_vnni"], frozenset(X86.split())) == [
        "avx512",
        "avx512_vnni",
    ]


def test_a_feature_counts_only_when_every_core_has_it(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    blocks = [f"processor\t: {i}\nFeatures\t: {f}\n" for i, f in enumerate([PI5, PI5, PI4])]
    cpuinfo.write_text("\n".join(blocks) + "\nHardware\t: BCM2712\n")
    assert host_cpu_flags(cpuinfo) == frozenset(PI4.split())
    assert host_cpu_flags(tmp_path / "absent") is None  # not Linux: nothing to check against


@pytest.mark.skipif(host_cpu_flags() is None, reason="needs /proc/cpuinfo")
def test_loading_a_pack_built_for_a_missing_feature_warns_and_runs(tmp_path, classifier):
    # Each architecture's flags lack the other's: x86 never reports dotprod, Arm never AVX2.
    absent = "avx2" if platform.machine().lower() in ("aarch64", "arm64", "armv7l") else "dotprod"
    present = sorted(host_cpu_flags())[0]
    for name, features in (("here", [present]), ("elsewhere", [present, absent])):
        requirements = {"cpu_features": features}
        assemble_pack(tmp_path / name, [classifier[0]], requirements=requirements)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ep.load(tmp_path / "here", threads=1)
    with pytest.warns(ep.CpuFeatureWarning, match=rf"needs CPU feature\(s\) \['{absent}'\]"):
        model = ep.load(tmp_path / "elsewhere", threads=1)
    assert model.run({"x": np.zeros((1, 4), np.float32)})["logits"].shape == (1, 3)
