"""The latency predictor on hand-written profiles and coefficients, and on a tiny pack."""

from __future__ import annotations

import dataclasses
import json
import math

import pytest

from edgepack.benchmarks import predict
from edgepack.benchmarks.predict import (
    SIGMA,
    calibration,
    cost_seconds,
    device_coefficients,
    format_prediction,
    predict_latency,
    predict_pack,
    record_measurement,
    reference_cost,
)
from edgepack.device_profiles import detect_host, read_profile_file
from edgepack.packing import assemble_pack, describe_model_file
from edgepack.runtime import BenchmarkError
from tests.conftest import require

# A made-up host: 2 GHz, 256-bit SIMD with AVX2 (int8 peak 2x fp32), 2 cores.
HOST = {
    "cpu": "Test CPU",
    "soc": "Test CPU",
    "cores": 2,
    "max_clock_ghz": 2.0,
    "simd_width_bits": 256,
    "features": ["avx2"],
    "onnxruntime": "1.0",
}


def _rates(scale: float) -> dict:
    return {
        "flops_per_s": {
            "fp32": {"gemm": 40e9 * scale, "conv": 30e9 * scale, "depthwise_conv": 5e9 * scale},
            "int8": {"gemm": 60e9 * scale, "conv": 45e9 * scale, "depthwise_conv": 6e9 * scale},
        },
        "bytes_per_s": 10e9 * scale,
        "op_overhead_s": 2e-6,
        "run_overhead_s": 10e-6,
    }


COEFFICIENTS = {
    "schema_version": 1,
    "backend": "onnxruntime",
    "host": HOST,
    "measured": "2026-01-01T00:00:00+00:00",
    "threads": {"1": _rates(1.0), "2": _rates(1.8)},
}


def _cost(flops: float, bytes_moved: float = 4e6) -> dict:
    return {
        "parameters": 1000,
        "flops": flops,
        "shape_assumptions": {},
        "ops": [
            {"op_class": "conv", "precision": "fp32", "count": 20, "flops": flops, "bytes": 2e6},
            {"op_class": "elementwise", "precision": "fp32", "count": 10, "flops": 0.0,
             "bytes": bytes_moved},
        ],
    }  # fmt: skip


def _profile(tmp_path, name="testboard", cores=4, references="", load_w=5.0, bandwidth=4.0):
    text = f"""
schema_version = 1
name = "{name}"
description = "a board made up for tests"
soc = "Test SoC"
[cpu]
core = "Cortex-A72"
cores = {cores}
max_clock_ghz = 1.5
arch = "armv8.0-a"
simd_width_bits = 128
features = ["neon"]
[memory]
ram_gib = 4
bandwidth_gbs = {bandwidth}
bandwidth_kind = "measured"
[power]
load_w = {load_w}
[os]
image = "Test OS"
python = "3.11"
[defaults]
backend = "onnxruntime"
threads = {cores}
quantization = "int8-dynamic"
{references}
"""
    path = tmp_path / f"{name}.toml"
    path.write_text(text)
    return read_profile_file(path)


def _reference(model: str, latency_ms: float, threads: int = 4, precision: str = "fp32") -> str:
    return f"""
[[references]]
model = "{model}"
backend = "litert"
threads = {threads}
precision = "{precision}"
latency_ms = {latency_ms}
url = "https://example.org/bench"
title = "a made-up measurement"
"""


@pytest.fixture
def no_prior(monkeypatch):
    """No other profile cites measurements, so an uncalibrated profile keeps factor 1."""
    monkeypatch.setattr(predict, "list_profiles", lambda: ["host"])


def _predict(cost, profile, tmp_path, **options):
    return predict_latency(
        cost, profile, coefficients=COEFFICIENTS, history=tmp_path / "errors.json", **options
    )


def test_prediction_is_labelled_and_adds_up(tmp_path, no_prior):
    profile = _profile(tmp_path)
    p = _predict(_cost(1e9), profile, tmp_path, threads=1)
    assert p["kind"] == "predicted" and "predicted" in p["label"] and "not measured" in p["label"]
    rates = device_coefficients(profile, COEFFICIENTS, 1)
    # Carried by clock x SIMD width: 1.5/2.0 x 128/256 of the host's 1-thread conv rate.
    assert rates["flops_per_s"]["fp32"]["conv"] == pytest.approx(30e9 * 0.75 * 0.5)
    # Bandwidth scales by clock, capped by the board's measured 4 GB/s.
    assert rates["bytes_per_s"] == pytest.approx(min(10e9 * 0.75, 4e9))
    conv_s = 1e9 / rates["flops_per_s"]["fp32"]["conv"]
    expected = (
        rates["run_overhead_s"]
        + max(conv_s, 2e6 / rates["bytes_per_s"])
        + 4e6 / rates["bytes_per_s"]
        + 30 * rates["op_overhead_s"]
    )
    assert p["uncalibrated_ms"] == pytest.approx(expected * 1e3)
    assert p["latency_ms"] == pytest.approx(p["uncalibrated_ms"])  # no references, no history
    assert p["calibration"]["status"].startswith("uncalibrated")
    low, high = p["range_ms"]
    assert low < p["latency_ms"] < high
    assert p["sigma_log"] == SIGMA["uncalibrated"]
    assert sum(row["ms"] for row in p["breakdown"]) < p["latency_ms"]  # run overhead is extra
    assert p["energy"]["mj"] == pytest.approx(p["latency_ms"] * 5.0)
    assert "estimate" in p["energy"]["label"]
    assert format_prediction(p).startswith("predicted ")


def test_monotonic_in_flops_and_more_cores_never_slower(tmp_path):
    profile = _profile(tmp_path, cores=4)
    latencies = [
        _predict(_cost(f), profile, tmp_path, threads=1)["latency_ms"]
        for f in (1e8, 1e9, 4e9, 1.6e10)
    ]
    assert latencies == sorted(latencies) and len(set(latencies)) == 4
    by_threads = [
        _predict(_cost(4e9), profile, tmp_path, threads=t)["latency_ms"] for t in (1, 2, 3, 4)
    ]
    assert by_threads == sorted(by_threads, reverse=True)
    with pytest.warns(UserWarning, match="4 cores"):
        assert _predict(_cost(4e9), profile, tmp_path, threads=8)["threads"] == 4
    bigger = _profile(tmp_path, name="eightcore", cores=8)
    eight = _predict(_cost(4e9), bigger, tmp_path)["latency_ms"]
    assert eight <= _predict(_cost(4e9), profile, tmp_path)["latency_ms"]  # fmt: skip


def test_int8_uses_the_isa_ratio_and_the_hosts_kernel_efficiency(tmp_path):
    neon = _profile(tmp_path)
    rates = device_coefficients(neon, COEFFICIENTS, 1)
    # Host int8/fp32 conv = 1.5 against an AVX2 peak ratio of 2 (efficiency 0.75); NEON's ratio is
    # 2 too, so the board's int8 conv runs 1.5x its fp32 conv.
    assert rates["flops_per_s"]["int8"]["conv"] == pytest.approx(
        1.5 * rates["flops_per_s"]["fp32"]["conv"]
    )


def test_published_references_calibrate_the_profile(tmp_path, no_prior):
    plain = _profile(tmp_path)
    cost = reference_cost("MobileNet V2 1.0 224", "fp32")[1]
    uncalibrated = _predict(cost, plain, tmp_path, threads=4)["latency_ms"]
    profile = _profile(
        tmp_path,
        name="calibrated",
        references=_reference("MobileNetV2 (ImageNet, 224x224)", 2 * uncalibrated)
        + _reference("YOLOv8n", 5.0),
    )
    cal = calibration(profile, COEFFICIENTS)
    assert cal["factor"] == pytest.approx(2.0)
    assert [r["as"] for r in cal["references"]] == ["mobilenet_v2"]
    assert "YOLOv8n" in cal["skipped"][0]["model"]
    p = _predict(cost, profile, tmp_path, threads=4)
    assert p["latency_ms"] == pytest.approx(2 * uncalibrated)
    assert p["sigma_log"] < SIGMA["uncalibrated"]
    # The same factor applies to any model: no per-model constants.
    other = _cost(2e9)
    assert _predict(other, profile, tmp_path)["latency_ms"] == pytest.approx(
        2 * _predict(other, plain, tmp_path)["latency_ms"]
    )


def test_uncalibrated_profiles_take_the_bias_the_calibrated_ones_measure(tmp_path, monkeypatch):
    cost = reference_cost("MobileNetV2", "fp32")[1]
    plain = _profile(tmp_path)
    monkeypatch.setattr(predict, "list_profiles", lambda: ["host"])
    base = _predict(cost, plain, tmp_path, threads=4)["latency_ms"]
    boards = {
        name: _profile(tmp_path, name=name, references=_reference("MobileNetV2", factor * base))
        for name, factor in (("board-a", 2.0), ("board-b", 8.0))
    }
    monkeypatch.setattr(predict, "list_profiles", lambda: ["host", *boards, "testboard"])
    monkeypatch.setattr(predict, "load_profile", boards.__getitem__)
    p = _predict(cost, plain, tmp_path, threads=4)
    assert p["calibration"]["factor"] == pytest.approx(4.0)  # geometric mean of 2 and 8
    assert p["latency_ms"] == pytest.approx(4 * base)
    assert "board-a, board-b" in p["calibration"]["status"]
    assert p["sigma_log"] > SIGMA["uncalibrated"]  # the boards disagree: a wider band
    assert predict.calibration(plain, COEFFICIENTS, prior=False)["factor"] == 1.0


def test_measurement_replaces_the_prediction_and_its_error_is_recorded(tmp_path):
    profile = _profile(tmp_path)
    history = tmp_path / "errors.json"
    p = _predict(_cost(1e9), profile, tmp_path)
    measured = record_measurement(p, 2 * p["latency_ms"], measured_on="Cortex-A72", history=history)
    assert measured["kind"] == "measured" and measured["latency_ms"] == 2 * p["latency_ms"]
    assert measured["prediction"]["error_pct"] == pytest.approx(-50)
    assert measured["energy"]["mj"] == pytest.approx(measured["latency_ms"] * 5.0)
    records = json.loads(history.read_text())["records"]
    assert len(records) == 1 and records[0]["log_error"] == pytest.approx(math.log(2))
    # The next prediction leans toward the measurement, shrunk while there is one record.
    again = _predict(_cost(1e9), profile, tmp_path)
    assert again["history"]["records"] == 1
    assert again["latency_ms"] == pytest.approx(p["latency_ms"] * 2 ** (1 / 3))
    # Measuring the same model again replaces its record rather than adding one.
    record_measurement(again, 2 * p["latency_ms"], measured_on="Cortex-A72", history=history)
    assert len(json.loads(history.read_text())["records"]) == 1


def test_a_host_run_under_a_profile_is_not_a_device_measurement(tmp_path):
    p = _predict(_cost(1e9), _profile(tmp_path), tmp_path)
    with pytest.raises(BenchmarkError, match="only a measurement on the device"):
        record_measurement(p, 10.0, measured_on="Intel(R) Xeon(R)", history=tmp_path / "h.json")
    with pytest.raises(BenchmarkError, match="positive"):
        record_measurement(p, -1.0, measured_on="Cortex-A72", history=tmp_path / "h.json")


def test_tiny_pack_is_predicted_from_its_manifest_cost(tmp_path, classifier, no_prior):
    require("onnx")
    from edgepack.compress.cost import cost_summary

    path, _ = classifier
    entry = describe_model_file(path, pack_path="model.onnx")
    entry.cost = cost_summary(path)
    pack = tmp_path / "tiny.edgepack"
    assemble_pack(pack, [(path, entry)])
    profile = _profile(tmp_path)
    p = predict_pack(pack, profile, coefficients=COEFFICIENTS, history=tmp_path / "h.json")
    assert p["model"]["pack"] == "tiny" and p["model"]["sha256"] == entry.sha256
    seconds, _ = cost_seconds(entry.cost, device_coefficients(profile, COEFFICIENTS, 4))
    assert p["latency_ms"] == pytest.approx(seconds * 1e3)

    bare = tmp_path / "bare.edgepack"
    assemble_pack(bare, [path])
    with pytest.raises(BenchmarkError, match="no cost summary"):
        predict_pack(bare, profile, coefficients=COEFFICIENTS)


def test_the_host_uses_its_own_measurements():
    host = detect_host()
    host = dataclasses.replace(host, cpu=dataclasses.replace(host.cpu, cores=4))
    one = device_coefficients(host, COEFFICIENTS, 1)
    assert one["flops_per_s"] == COEFFICIENTS["threads"]["1"]["flops_per_s"]
    # At a thread count it did not measure: its 1-thread rate scaled by the measured efficiency
    # per doubling (1.8 / 2 = 0.9), with no clock or SIMD carry.
    four = device_coefficients(host, COEFFICIENTS, 4)
    assert four["flops_per_s"]["fp32"]["gemm"] == pytest.approx(40e9 * 4 * 0.9**2)
    assert four["flops_per_s"]["int8"]["gemm"] == pytest.approx(60e9 * 4 * 0.9**2)
