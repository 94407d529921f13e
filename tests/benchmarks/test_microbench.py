"""Host microbenchmarks: the hand-written ONNX graphs are valid and the coefficients are sane."""

from __future__ import annotations

import json
import math

import numpy as np
import onnxruntime as ort
import pytest

from edgepack.benchmarks import microbench
from edgepack.benchmarks.microbench import (
    FLOAT,
    _conv,
    _node,
    cache_path,
    host_coefficients,
    measure_host,
    onnx_model,
)
from tests.conftest import require


def _positive(value: float) -> bool:
    return math.isfinite(value) and value > 0


def test_quick_measurement_returns_positive_finite_coefficients():
    coefficients = measure_host(threads=[1, 2], quick=True, min_time=0.001, rounds=1)
    assert coefficients["backend"] == "onnxruntime"
    assert coefficients["host"]["onnxruntime"] == ort.__version__
    assert set(coefficients["threads"]) == {"1", "2"}
    for measured in coefficients["threads"].values():
        rates = measured["flops_per_s"]
        assert set(rates) == {"fp32", "int8"}
        for per_class in rates.values():
            assert set(per_class) == {"gemm", "conv", "depthwise_conv"}
            assert all(_positive(v) for v in per_class.values())
        assert _positive(measured["bytes_per_s"])
        assert _positive(measured["op_overhead_s"])
        assert measured["run_overhead_s"] >= 0


def test_hand_written_graphs_are_valid_onnx_and_compute_what_they_say():
    onnx = require("onnx")
    model, feeds, flops = _conv(4, 6, 5, 3, int8=False)
    proto = onnx.load_model_from_string(model)
    onnx.checker.check_model(proto, full_check=True)
    assert flops == 2 * 6 * 25 * 4 * 9
    session = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
    assert session.run(None, feeds)[0].shape == (1, 6, 5, 5)

    add = onnx_model(
        [_node("Add", ["a", "b"], ["y"])],
        [("a", FLOAT, (3,))],
        [("y", FLOAT, (3,))],
        [("b", np.array([1.0, 2.0, 3.0]), FLOAT)],
    )
    onnx.checker.check_model(onnx.load_model_from_string(add), full_check=True)
    out = ort.InferenceSession(add, providers=["CPUExecutionProvider"]).run(
        None, {"a": np.zeros(3, np.float32)}
    )
    np.testing.assert_array_equal(out[0], [1.0, 2.0, 3.0])


def test_coefficients_are_cached_per_cpu_and_onnxruntime_version(tmp_path, monkeypatch):
    monkeypatch.setenv(microbench.CACHE_ENV, str(tmp_path))
    calls = []

    def fake_measure(**_):
        calls.append(1)
        return {
            "schema_version": microbench.SCHEMA_VERSION,
            "sizes": "full",
            "host": microbench.host_descriptor(),
            "load": {"loadavg_1m": 0.1, "per_core": 0.05, "busy": False},
        }

    monkeypatch.setattr(microbench, "measure_host", fake_measure)
    first = host_coefficients()
    assert host_coefficients() == first and len(calls) == 1
    path = cache_path()
    assert path.parent == tmp_path and f"ort{ort.__version__}" in path.name
    assert json.loads(path.read_text())["host"]["cpu"] == first["host"]["cpu"]
    host_coefficients(refresh=True)
    assert len(calls) == 2
    path.write_text("{damaged")
    host_coefficients()
    assert len(calls) == 3


def test_a_measurement_records_the_load_and_a_busy_one_is_redone_when_quieter(
    tmp_path, monkeypatch
):
    measured = measure_host(threads=[1], quick=True, min_time=0.001, rounds=1)
    load = measured["load"]
    assert load["loadavg_1m"] is None or load["loadavg_1m"] >= 0
    assert load["busy"] == (load["per_core"] is not None and load["per_core"] > 0.5)

    monkeypatch.setenv(microbench.CACHE_ENV, str(tmp_path))
    busy = {"loadavg_1m": 8.0, "per_core": 4.0, "busy": True}
    cached = {
        "schema_version": microbench.SCHEMA_VERSION,
        "sizes": "full",
        "host": microbench.host_descriptor(),
        "load": busy,
    }
    cache_path().write_text(json.dumps(cached))
    calls = []
    fresh = {**cached, "load": {"loadavg_1m": 0.2, "per_core": 0.1, "busy": False}}
    monkeypatch.setattr(microbench, "measure_host", lambda **_: calls.append(1) or fresh)
    # As busy now as then: the cached figures are kept, with a warning that says so.
    monkeypatch.setattr(microbench, "host_load", lambda: busy)
    with pytest.warns(UserWarning, match="ran under load 8.0"):
        assert host_coefficients()["load"]["busy"] and not calls
    # Quieter now: measured again, and the quiet figures replace the busy ones.
    monkeypatch.setattr(microbench, "host_load", lambda: fresh["load"])
    assert not host_coefficients()["load"]["busy"] and calls == [1]
    assert not json.loads(cache_path().read_text())["load"]["busy"]


def test_the_microbench_command_refreshes_on_request(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv(microbench.CACHE_ENV, str(tmp_path))
    asked = []
    monkeypatch.setattr(
        microbench, "host_coefficients", lambda refresh=False: asked.append(refresh) or _QUICK
    )
    assert microbench.main(["--refresh"]) == 0 and asked == [True]
    assert "measured" in capsys.readouterr().out


_QUICK = measure_host(threads=[1], quick=True, min_time=0.001, rounds=1)
