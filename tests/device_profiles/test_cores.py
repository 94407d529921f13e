"""The estimator's per-core-type and per-runtime data: complete, cited or labelled, and telling the
cores apart where the hardware differs."""

import shutil

import pytest

from edgepack.device_profiles import cores as cores_module
from edgepack.device_profiles import list_profiles, load_profile
from edgepack.device_profiles.cores import (
    CORES_FILE,
    RUNTIMES_FILE,
    core_type,
    core_types,
    runtime_model,
    runtime_models,
)
from edgepack.device_profiles.errors import ProfileError


def test_every_bundled_board_has_data_for_its_core():
    for name in list_profiles():
        if name != "host":
            assert core_type(load_profile(name).cpu.core).name == load_profile(name).cpu.core


def test_every_figure_is_cited_or_labelled():
    for core in core_types().values():
        labelled = set(core.sources) | set(core.estimates)
        assert {"pipeline", "fp32_flops_per_cycle", "l2_bytes_per_cycle"} <= labelled
        assert all(s.url.startswith("https://") for s in core.sources.values())
    for runtime in runtime_models().values():
        keys = set(runtime.sources) | {k.split(".")[0] for k in runtime.assumptions}
        assert {"efficiency", "int8_rate", "op_overhead_cycles"} <= keys


def test_the_cores_differ_as_their_pipes_do():
    a53, a72, a76 = (core_type(n) for n in ("Cortex-A53", "Cortex-A72", "Cortex-A76"))
    assert a53.pipeline == "in-order" and a72.pipeline == a76.pipeline == "out-of-order"
    # The A53 issues one 128-bit FMLA per cycle as the A72 does (cpufp measured both); its
    # in-order pipeline keeps fewer of them busy. The A76 issues two.
    assert a53.fp32_flops_per_cycle == a72.fp32_flops_per_cycle < a76.fp32_flops_per_cycle
    litert = runtime_model("litert")
    assert litert.efficiency[a53.pipeline] < litert.efficiency[a72.pipeline]
    assert litert.int8_ratio(a76.features)[0] == "dotprod"
    assert litert.int8_ratio(a72.features)[0] == "neon"
    assert litert.int8_ratio(a76.features)[1] > litert.int8_ratio(a72.features)[1]


def test_unknown_core_and_runtime_are_named():
    with pytest.raises(ProfileError, match="no throughput data for core type 'Cortex-X9'"):
        core_type("Cortex-X9")
    with pytest.raises(ProfileError, match="no cost-model data for runtime 'tvm'.*litert"):
        runtime_model("tvm")


def test_an_uncited_figure_is_refused(tmp_path):
    path = tmp_path / "cores.toml"
    shutil.copy(CORES_FILE, path)
    text = path.read_text()
    path.write_text(text.replace("[cores.Cortex-A53.estimates]\n", "[cores.Cortex-A53.other]\n"))
    with pytest.raises(ProfileError, match="unknown field 'other'"):
        cores_module.core_types(path)
    path.write_text(
        text.replace('l2_bytes_per_cycle = "Estimate: the A53', 'l2_notes = "Estimate: the A53')
    )
    with pytest.raises(ProfileError, match="'l2_bytes_per_cycle' cites no source"):
        cores_module.core_types(path)


def test_int8_dot_classes_must_be_compute_classes(tmp_path):
    path = tmp_path / "runtimes.toml"
    text = RUNTIMES_FILE.read_text()
    path.write_text(
        text.replace('int8_dot_classes = ["gemm", "conv"]', 'int8_dot_classes = ["gem"]', 1)
    )
    with pytest.raises(
        ProfileError, match="int8_dot_classes names 'gem'; expected compute classes"
    ):
        cores_module.runtime_models(path)
