"""Cold-start processes: edgepack's and bare onnxruntime's report the same phases, so
benchmarks/runtime_overhead.py can set one against the other."""

from __future__ import annotations

import numpy as np
import pytest

from edgepack.benchmarks.cold_start import (
    PHASES,
    bare_onnxruntime_argv,
    cold_process,
    edgepack_argv,
    summarize_cold_starts,
)
from edgepack.benchmarks.errors import BenchmarkError
from edgepack.benchmarks.inputs import synthetic_inputs
from edgepack.packing import assemble_pack
from edgepack.runtime import read_manifest


def test_bare_onnxruntime_and_edgepack_processes_report_the_same_phases(classifier, tmp_path):
    pack = assemble_pack(tmp_path / "tiny", [classifier[0]])
    feeds = tmp_path / "feeds.npz"
    np.savez(feeds, **synthetic_inputs(read_manifest(tmp_path / "tiny").models[0]))
    bare = cold_process(bare_onnxruntime_argv(classifier[0], feeds, threads=1), classifier[0])
    ours = cold_process(
        edgepack_argv(tmp_path / "tiny", backend="onnxruntime", threads=1, dims={}), pack.name
    )
    assert set(bare) == set(ours)
    for run in (bare, ours):
        assert all(run[k] > 0 for k in PHASES) and run["peak_rss_bytes"] > 0
        assert run["process_wall_s"] > sum(run[k] for k in PHASES)
    summary = summarize_cold_starts([bare, bare])
    assert summary["repeats"] == 2 and summary["total_s"] == pytest.approx(
        sum(bare[k] for k in PHASES)
    )


def test_a_failing_process_names_the_model(tmp_path):
    argv = bare_onnxruntime_argv(tmp_path / "absent.onnx", tmp_path / "f.npz", threads=1)
    with pytest.raises(BenchmarkError, match=r"absent\.onnx failed \(exit 1\)"):
        cold_process(argv, tmp_path / "absent.onnx")
    with pytest.raises(BenchmarkError, match="at least one"):
        summarize_cold_starts([])


def test_the_bare_onnxruntime_child_uses_the_backends_session_settings():
    """The bare child cannot import edgepack, so it repeats the settings; they must agree."""
    import types

    import onnxruntime as ort

    from edgepack.benchmarks.cold_start import BARE_ONNXRUNTIME_SCRIPT
    from edgepack.runtime.backends.ort_backend import session_options

    lines = [line for line in BARE_ONNXRUNTIME_SCRIPT.splitlines() if line.startswith("options.")]
    namespace = {
        "ort": ort,
        "sys": types.SimpleNamespace(argv=["child", "model.onnx", "3"]),
        "options": ort.SessionOptions(),
    }
    exec("\n".join(lines), namespace)
    expected = session_options(3)
    for name in ("intra_op_num_threads", "inter_op_num_threads", "execution_mode"):
        assert getattr(namespace["options"], name) == getattr(expected, name), name
    assert lines, "the bare child sets no session options"
