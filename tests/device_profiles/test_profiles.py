"""Device profiles: the bundled files are complete and cited, bad files fail with the field and the
file named, user profiles are found, the host is detected, and thread requests are clamped."""

import os
import platform
import sys
from pathlib import Path

import pytest

from edgepack.device_profiles import (
    BUNDLED_DIR,
    FIGURE_FIELDS,
    PROFILES_DIR_ENV,
    DeviceProfile,
    clamp_threads,
    detect_host,
    list_profiles,
    load_profile,
    missing_sources,
)
from edgepack.device_profiles.errors import ProfileError
from edgepack.device_profiles.profile import ISA_FEATURES
from edgepack.runtime.errors import EdgepackError

BUNDLED = [
    "rpi-zero-2w",
    "rpi3b-plus",
    "rpi4-1.5ghz",
    "rpi4-1.8ghz",
    "rpi5",
    "jetson-nano",
    "jetson-orin-nano",
]
RPI5_TEXT = (BUNDLED_DIR / "rpi5.toml").read_text()


def _value(profile: DeviceProfile, dotted: str):
    table, _, key = dotted.rpartition(".")
    holder = getattr(profile, table) if table else profile
    return None if holder is None else getattr(holder, key)


def test_every_bundled_profile_is_listed_with_host():
    names = list_profiles()
    assert set(BUNDLED) | {"host"} <= set(names)
    assert names == sorted(names)


@pytest.mark.parametrize("name", BUNDLED)
def test_bundled_profile_loads_and_cites_every_figure(name):
    profile = load_profile(name)
    assert profile.name == name and profile.path == BUNDLED_DIR / f"{name}.toml"
    assert not profile.detected
    assert missing_sources(profile) == []
    for field, source in profile.sources.items():
        assert source.url.startswith("https://"), field
        assert source.title.strip(), field
    # A figure left out must say why, in [notes] under the field or its table.
    for field in FIGURE_FIELDS:
        if _value(profile, field) is None:
            table = field.split(".")[0]
            assert field in profile.notes or table in profile.notes, f"{name}: {field}"
    assert "defaults" in profile.notes  # the defaults are our choice, and say so
    assert 1 <= profile.defaults.threads <= profile.cpu.cores
    for backend in {r.backend for r in profile.references}:
        assert sum(r.backend == backend for r in profile.references) <= 2
    # Every board has a memory bandwidth and an L2 size, an estimate being labelled and reasoned.
    assert profile.memory.bandwidth_gbs and profile.memory.l2_kib
    if profile.memory.bandwidth_kind == "estimate":
        assert "ESTIMATE" in profile.notes["memory.bandwidth_gbs"]
    for ref in profile.references:
        assert ref.latency_ms > 0 and ref.source.url.startswith("https://")
    if not profile.references:
        assert "references" in profile.notes


def test_bundled_figures_match_the_hardware():
    rpi5, rpi4, zero, nano, orin = (
        load_profile(n)
        for n in ("rpi5", "rpi4-1.5ghz", "rpi-zero-2w", "jetson-nano", "jetson-orin-nano")
    )
    assert {"dotprod", "fp16"} <= rpi5.cpu.features and "i8mm" not in rpi5.cpu.features
    assert rpi4.cpu.features == {"neon"} and zero.cpu.features == {"neon"}
    assert load_profile("rpi4-1.8ghz").cpu.max_clock_ghz > rpi4.cpu.max_clock_ghz
    assert orin.cpu.cores == 6 and orin.accelerator is not None and orin.accelerator.int8_tops
    assert nano.accelerator is not None and nano.accelerator.int8_tops is None
    assert zero.memory.ram_gib == 0.5 and zero.defaults.backend == "litert"
    assert nano.os.python == "3.6" and "3.10" in nano.notes["os.python"]


def test_to_dict_is_json_ready():
    import json

    data = load_profile("rpi5").to_dict()
    assert data["cpu"]["features"] == ["dotprod", "fp16", "neon"]
    assert data["sources"]["cpu.cores"]["url"].startswith("https://")
    json.dumps(data)


# -- bad files -------------------------------------------------------------------------------


def _bad(tmp_path: Path, old: str, new: str, name: str = "rpi5") -> Path:
    assert old in RPI5_TEXT, old
    path = tmp_path / f"{name}.toml"
    path.write_text(RPI5_TEXT.replace(old, new, 1))
    return path


@pytest.mark.parametrize(
    ("old", "new", "field", "expect"),
    [
        ("cores = 4\n", "", "cpu.cores", "missing required field"),
        ("cores = 4\n", 'cores = "four"\n', "cpu.cores", "must be an integer, got a string"),
        ("cores = 4\n", "cores = true\n", "cpu.cores", "must be an integer, got a boolean"),
        ("max_clock_ghz = 2.4", 'max_clock_ghz = "fast"', "cpu.max_clock_ghz", "must be a number"),
        ('features = ["neon", "dotprod", "fp16"]', 'features = "neon"', "cpu.features", "list"),
        (
            'features = ["neon", "dotprod", "fp16"]',
            'features = ["neon", "sme"]',
            "cpu.features",
            "unknown feature",
        ),
        ("cores = 4\n", "cores = 4\ncoress = 4\n", "cpu.coress", "unknown field"),
        ("cores = 4\n", "cores = 0\n", "cpu.cores", "greater than 0"),
        (
            '[os]\nimage = "Raspberry Pi OS (Debian 12 bookworm), 64-bit"\n',
            "[os]\n",
            "os.image",
            "missing required field",
        ),
        ('backend = "onnxruntime"', 'backend = "tvm"', "defaults.backend", "expected one of"),
        (
            "threads = 4\nquantization",
            "threads = 8\nquantization",
            "defaults.threads",
            "has 4 cores",
        ),
        (
            "latency_ms = 23.5",
            'latency_ms = "fast"',
            "references[0].latency_ms",
            "must be a number",
        ),
        ('bandwidth_kind = "theoretical"\n', "", "memory.bandwidth_kind", "missing required"),
        (
            'bandwidth_kind = "theoretical"',
            'bandwidth_kind = "guess"',
            "memory.bandwidth_kind",
            "expected one of",
        ),
        ("l3_kib = 2048", "l3_kib = 2.5", "memory.l3_kib", "must be an integer"),
        ('"cpu.cores" = {', '"cpu.coresx" = {', "sources.cpu.coresx", "does not name a figure"),
        ("schema_version = 1", "schema_version = 2", "schema_version", "expected 1"),
    ],
)
def test_a_bad_field_is_named_with_the_file(tmp_path, old, new, field, expect):
    path = _bad(tmp_path, old, new)
    with pytest.raises(ProfileError) as excinfo:
        load_profile(path)
    message = str(excinfo.value)
    assert str(path) in message
    assert field in message
    assert expect in message


def test_an_estimated_bandwidth_must_give_its_reasoning(tmp_path):
    text = RPI5_TEXT.replace('bandwidth_kind = "theoretical"', 'bandwidth_kind = "estimate"')
    start = text.index('"memory.bandwidth_gbs" = "Theoretical')
    text = text[:start] + text[text.index("\n", start) + 1 :]
    path = tmp_path / "rpi5.toml"
    path.write_text(text)
    with pytest.raises(ProfileError, match="estimated 'memory.bandwidth_gbs' needs its reasoning"):
        load_profile(path)


def test_at_most_two_references_per_backend(tmp_path):
    start = RPI5_TEXT.index("[[references]]")
    end = RPI5_TEXT.index("\n[sources]\n") + 1
    one = RPI5_TEXT[start : RPI5_TEXT.index("[[references]]", start + 1)]  # the litert one
    assert 'backend = "litert"' in one
    other = one.replace('backend = "litert"', 'backend = "onnxruntime"')
    path = tmp_path / "rpi5.toml"
    path.write_text(RPI5_TEXT[:start] + one + one + other + RPI5_TEXT[end:])
    assert len(load_profile(path).references) == 3  # two of litert, one of onnxruntime
    path.write_text(RPI5_TEXT[:start] + one * 3 + RPI5_TEXT[end:])
    with pytest.raises(ProfileError, match="3 reference measurements for litert; .* at most 2"):
        load_profile(path)


def test_a_newer_schema_is_reported_before_its_unknown_fields(tmp_path):
    path = _bad(tmp_path, "schema_version = 1", "schema_version = 2\nwidgets = 3")
    with pytest.raises(ProfileError, match="schema_version 2 is not one this edgepack reads"):
        load_profile(path)
    path = _bad(tmp_path, "schema_version = 1\n", "")
    with pytest.raises(ProfileError, match="missing required field 'schema_version'"):
        load_profile(path)


def test_a_name_that_does_not_match_the_file_is_rejected(tmp_path):
    path = _bad(tmp_path, 'name = "rpi5"', 'name = "rpi6"')
    with pytest.raises(ProfileError, match=r"'rpi6' but the file is named 'rpi5\.toml'"):
        load_profile(path)


def test_invalid_toml_and_missing_files_name_the_file(tmp_path):
    path = tmp_path / "broken.toml"
    path.write_text("name = \n")
    with pytest.raises(ProfileError, match=f"{path}: not valid TOML"):
        load_profile(path)
    with pytest.raises(ProfileError, match="not found"):
        load_profile(tmp_path / "absent.toml")


def test_unknown_name_lists_the_known_profiles():
    with pytest.raises(ProfileError) as excinfo:
        load_profile("rpi7")
    message = str(excinfo.value)
    assert "'rpi7'" in message
    for name in [*BUNDLED, "host"]:
        assert name in message
    assert isinstance(excinfo.value, EdgepackError)


# -- user profiles ---------------------------------------------------------------------------


def test_user_profiles_come_from_a_directory_or_the_environment(tmp_path, monkeypatch):
    (tmp_path / "myboard.toml").write_text(RPI5_TEXT.replace('name = "rpi5"', 'name = "myboard"'))
    assert "myboard" in list_profiles(tmp_path)
    assert load_profile("myboard", profiles_dir=tmp_path).cpu.core == "Cortex-A76"
    assert "myboard" not in list_profiles()

    monkeypatch.setenv(PROFILES_DIR_ENV, str(tmp_path))
    assert "myboard" in list_profiles()
    assert load_profile("myboard").name == "myboard"
    assert load_profile("rpi4-1.5ghz").cpu.core == "Cortex-A72"  # bundled ones still there


def test_a_user_profile_shadows_the_bundled_one(tmp_path):
    (tmp_path / "rpi5.toml").write_text(
        RPI5_TEXT.replace("max_clock_ghz = 2.4", "max_clock_ghz = 3.0")
    )
    assert load_profile("rpi5", profiles_dir=tmp_path).cpu.max_clock_ghz == 3.0
    assert load_profile("rpi5").cpu.max_clock_ghz == 2.4


def test_a_bad_user_profile_directory_is_reported(tmp_path, monkeypatch):
    monkeypatch.setenv(PROFILES_DIR_ENV, str(tmp_path / "nowhere"))
    with pytest.raises(ProfileError, match=f"\\${PROFILES_DIR_ENV}.*not a directory"):
        list_profiles()


# -- host ------------------------------------------------------------------------------------


def test_host_is_detected_with_sane_values():
    host = load_profile("host")
    assert host.detected and host.name == "host" and host.path is None
    assert host.cpu.cores == len(os.sched_getaffinity(0)) >= 1
    assert host.defaults.threads == host.cpu.cores
    assert host.cpu.features <= set(ISA_FEATURES)
    assert host.cpu.max_clock_ghz is None or 0.1 < host.cpu.max_clock_ghz < 10
    if Path("/proc/meminfo").exists():
        assert 0.1 < host.memory.ram_gib < 100_000
    if platform.machine() in ("x86_64", "aarch64"):
        assert host.cpu.simd_width_bits in (128, 256, 512)
    if platform.machine() == "aarch64":
        assert "neon" in host.cpu.features
    assert host.os.python == f"{sys.version_info.major}.{sys.version_info.minor}"
    assert host.memory.bandwidth_gbs is None and host.accelerator is None
    assert missing_sources(host) == []


# /proc/cpuinfo 'Features' of a Raspberry Pi 5 (Cortex-A76).
PI5_FEATURES = (
    "fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc dcpop "
    "asimddp"
)
PI5_CPUINFO = "".join(
    f"processor\t: {i}\nFeatures\t: {PI5_FEATURES}\nCPU implementer\t: 0x41\n"
    "CPU architecture: 8\nCPU variant\t: 0x4\nCPU part\t: 0xd0b\nCPU revision\t: 1\n\n"
    for i in range(4)
)
PI5_CPUINFO += "Revision\t: c04170\nModel\t\t: Raspberry Pi 5 Model B Rev 1.0\n"


def _write(root: Path, relative: str, text: str) -> None:
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_host_detection_reads_an_arm_board(tmp_path):
    _write(tmp_path, "proc/cpuinfo", PI5_CPUINFO)
    _write(tmp_path, "proc/meminfo", "MemTotal:        8241360 kB\nMemFree:  1 kB\n")
    for cpu in range(4):
        _write(tmp_path, f"sys/devices/system/cpu/cpu{cpu}/cpufreq/cpuinfo_max_freq", "2400000\n")
    host = detect_host(tmp_path)
    assert host.cpu.core == "Cortex-A76"
    assert host.cpu.features == {"neon", "dotprod", "fp16"}
    assert host.cpu.max_clock_ghz == 2.4
    assert host.soc == "Raspberry Pi 5 Model B Rev 1.0"
    assert host.memory.ram_gib == pytest.approx(7.86, abs=0.01)


def test_host_detection_reads_x86_flags(tmp_path):
    flags = "fpu sse sse2 avx avx2 fma avx512f avx512bw avx512_vnni"
    _write(
        tmp_path,
        "proc/cpuinfo",
        "".join(
            f"processor\t: {i}\nmodel name\t: Test CPU\ncpu MHz\t: 2100.000\nflags\t: {flags}\n\n"
            for i in range(2)
        ),
    )
    host = detect_host(tmp_path)
    assert host.cpu.features == {"avx2", "avx512", "vnni"}
    assert host.cpu.simd_width_bits == 512
    assert host.cpu.core == host.soc == "Test CPU"
    assert host.cpu.max_clock_ghz == 2.1
    assert "current clock" in host.notes["cpu.max_clock_ghz"]


def test_host_detection_survives_an_empty_tree(tmp_path):
    host = detect_host(tmp_path)
    assert host.cpu.cores >= 1
    assert host.cpu.max_clock_ghz is None and host.memory.ram_gib is None
    assert host.cpu.features == frozenset()


# -- threads ---------------------------------------------------------------------------------


def test_clamp_threads():
    rpi5 = load_profile("rpi5")
    assert clamp_threads(rpi5) == 4
    assert clamp_threads(rpi5, 2) == 2
    with pytest.warns(UserWarning, match="99 threads requested but profile 'rpi5' has 4 cores"):
        assert clamp_threads(rpi5, 99) == 4
    with pytest.raises(ProfileError, match="threads must be 1 or more"):
        clamp_threads(rpi5, 0)
