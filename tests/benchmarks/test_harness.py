"""The benchmark harness on tiny packs with real onnxruntime sessions: both minimums, consistent
results, JSON/CSV round trips, interleaved comparison, offline batches, a bounded server run,
profile emulation by affinity, and bad input. No assertion depends on how fast the machine is."""

from __future__ import annotations

import csv
import io
import itertools
import json
import os
import sys
import time

import numpy as np
import pytest

from edgepack.benchmarks import scenarios
from edgepack.benchmarks.errors import BenchmarkError
from edgepack.benchmarks.harness import BenchResult, BenchSettings, benchmark, compare
from edgepack.benchmarks.report import (
    CSV_COLUMNS,
    csv_row,
    format_table,
    require_matplotlib,
    write_csv,
    write_report,
)
from edgepack.device_profiles import BUNDLED_DIR
from edgepack.device_profiles.errors import ProfileError
from edgepack.packing import assemble_pack, describe_model_file
from edgepack.runtime import BackendUnavailableError
from edgepack.runtime.backends import BACKENDS

FAST = {"warmup": 2, "min_count": 5, "min_duration_s": 0.0, "cold_starts": 0}
affinity = pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="needs CPU affinity")


@pytest.fixture(scope="module")
def packs(tmp_path_factory, classifier):
    """The tiny classifier packed three ways: with a metric, with another, with a fixed batch."""
    root = tmp_path_factory.mktemp("packs")
    tiny = assemble_pack(root / "tiny", [classifier[0]], metrics={"quantize": {"accuracy": 91.5}})
    other = assemble_pack(root / "other", [classifier[0]], metrics={"train": {"f1": 0.8}})
    entry = describe_model_file(classifier[0])
    entry.inputs[0].shape = [1, 4]  # the runtime then accepts batch 1 only, as for a fixed model
    assemble_pack(root / "fixed", [(classifier[0], entry)])
    assert tiny.name == "tiny" and other.name == "other"
    return {name: root / name for name in ("tiny", "other", "fixed")}


def one_core_profile(tmp_path, threads: int = 1):
    """A copy of the rpi5 profile with one core, as a user profile file."""
    text = (BUNDLED_DIR / "rpi5.toml").read_text()
    text = text.replace('name = "rpi5"', 'name = "one-core"')
    text = text.replace("cores = 4", "cores = 1").replace("threads = 4\n", f"threads = {threads}\n")
    path = tmp_path / "one-core.toml"
    path.write_text(text)
    return path


# --- the timing loops -----------------------------------------------------------------------


def sleeper(seconds: float, log: list | None = None, tag: str = ""):
    def call():
        if log is not None:
            log.append(tag)
        time.sleep(seconds)

    return call


def test_min_count_is_honoured_when_it_takes_longer_than_min_duration():
    (latencies,), (spent,) = scenarios.measure(
        [sleeper(0.002)], warmup=1, min_count=40, min_duration_s=0.0
    )
    assert latencies.size >= 40
    assert latencies.sum() <= spent


def test_min_duration_is_honoured_when_it_takes_longer_than_min_count():
    (latencies,), (spent,) = scenarios.measure(
        [sleeper(0.002)], warmup=0, min_count=1, min_duration_s=0.25
    )
    assert spent >= 0.25
    assert latencies.sum() <= spent
    assert latencies.size >= 2


def test_several_calls_take_turns_in_blocks():
    log: list[str] = []
    calls = [sleeper(0.001, log, "a"), sleeper(0.001, log, "b")]
    (a, b), _ = scenarios.measure(calls, warmup=0, min_count=1, min_duration_s=0.25)
    switches = sum(1 for x, y in itertools.pairwise(log) if x != y)
    assert switches >= 3  # a, b, then b again (reversed order), a, ...: interleaved, not in turn
    assert a.size + b.size == len(log)


def test_poisson_arrivals_are_seeded_and_scale_with_the_rate():
    one = scenarios.poisson_arrivals(100.0, min_count=50, min_duration_s=0.0, seed=7)
    two = scenarios.poisson_arrivals(200.0, min_count=50, min_duration_s=0.0, seed=7)
    np.testing.assert_allclose(two, one / 2)
    long = scenarios.poisson_arrivals(100.0, min_count=5, min_duration_s=3.0, seed=7)
    assert long.size >= 5 and long[-1] >= 3.0 and long[-2] < 3.0
    gaps = np.diff(scenarios.poisson_arrivals(1000.0, min_count=5000, min_duration_s=0, seed=1))
    assert gaps.mean() == pytest.approx(1e-3, rel=0.05)  # exponential gaps of mean 1/rate


def test_poisson_arrivals_refuse_a_rate_that_is_not_positive():
    with pytest.raises(BenchmarkError, match="rate must be greater than 0 queries/s, got -5"):
        scenarios.poisson_arrivals(-5.0, min_count=5, min_duration_s=0.0)


def test_an_overloaded_server_run_stops_and_says_so():
    run = scenarios.serve(sleeper(0.005), 2000.0, min_count=100, min_duration_s=0.0)
    assert run["overloaded"]
    assert run["unserved"] > 0
    assert run["served"] + run["unserved"] == 100
    assert run["latencies_s"].size == run["served"]


def test_progress_bar_redraws_in_place_and_ends_the_line():
    out = io.StringIO()
    show = scenarios.progress_bar("tiny: single-stream", out, every_s=0)
    show(0.5, "10 queries")
    show(1.0, "20 queries")
    text = out.getvalue()
    assert text.startswith("\rtiny: single-stream [############") and " 50% 10 queries" in text
    assert text.endswith("100% 20 queries\n")


# --- single-stream on real packs ------------------------------------------------------------


def test_result_fields_are_present_and_consistent(packs):
    r = benchmark(packs["tiny"], min_count=20, min_duration_s=0.05, warmup=3, cold_starts=1)
    lat = r.latency
    assert r.label.startswith("measured on ") and r.profile is None and r.emulation is None
    assert (r.name, r.backend, r.scenario, r.items_per_query) == (
        "tiny",
        "onnxruntime",
        "single-stream",
        1,
    )
    assert lat["count"] >= 20 and r.duration_s >= 0.05
    p = lat["percentiles_s"]
    assert lat["min_s"] <= p["p50"] <= p["p90"] <= p["p99"] <= lat["max_s"]
    assert lat["min_s"] <= lat["mean_s"] <= lat["max_s"]
    for q in ("p50", "p90", "p99"):
        low, high = lat["ci_s"][q]
        assert lat["min_s"] <= low <= high <= lat["max_s"]
    assert r.headline == {"metric": "p90 latency", "value": p["p90"], "unit": "s"}
    assert r.throughput_per_s == pytest.approx(lat["count"] / r.duration_s)
    assert r.input_shapes == {"x": [1, 4]}
    assert r.model_size_bytes == os.path.getsize(packs["tiny"] / "classifier.onnx")
    assert 0 < len(r.samples_s) <= lat["count"]
    cold = r.cold_start
    assert cold["repeats"] == 1 and cold["peak_rss_mib"] > 0
    assert cold["total_s"] == pytest.approx(cold["import_s"] + cold["load_s"] + cold["first_run_s"])
    assert cold["process_wall_s"] >= cold["total_s"]
    assert set(r.conditions) == {"before", "after"} and "governors" in r.conditions["before"]
    assert r.settings["min_count"] == 20 and r.metrics == {"quantize": {"accuracy": 91.5}}
    assert r.threads >= 1 and r.cpus


def test_json_round_trip(packs):
    r = benchmark(packs["tiny"], **FAST)
    again = BenchResult.from_dict(json.loads(json.dumps(r.to_dict())))
    assert again == r


def test_csv_round_trip(packs, tmp_path):
    results = compare([packs["tiny"], packs["other"]], **FAST)
    path = write_csv(results, tmp_path / "bench.csv")
    with path.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 2 and tuple(rows[0]) == CSV_COLUMNS
    for row, result in zip(rows, results, strict=True):
        expected = csv_row(result)
        assert row == {k: str(v) for k, v in expected.items()}
        assert float(row["p90_ms"]) == result.latency["percentiles_s"]["p90"] * 1e3
        assert int(row["count"]) == result.latency["count"]


def test_compare_runs_packs_side_by_side_under_one_label(packs):
    results = compare([packs["tiny"], packs["other"]], **{**FAST, "min_duration_s": 0.15})
    assert [r.name for r in results] == ["tiny", "other"]
    assert len({r.label for r in results}) == 1 and len({r.created for r in results}) == 1
    assert all(r.latency["count"] >= 5 and r.duration_s >= 0.15 for r in results)
    table = format_table(results)
    header = next(line for line in table.splitlines() if line.startswith("pack "))
    assert "tiny" in header and "other" in header
    assert "quantize.accuracy = 91.5" in table and "train.f1 = 0.8" in table


# --- offline and server ---------------------------------------------------------------------


def test_offline_picks_the_batch_with_the_best_throughput(packs):
    r = benchmark(packs["tiny"], scenario="offline", batch_sizes=(1, 4, 16), **FAST)
    sweep = r.details["sweep"]
    assert [row["batch_size"] for row in sweep] == [1, 4, 16]
    best = max(sweep, key=lambda row: row["throughput_per_s"])["batch_size"]
    assert r.details["batch_size"] == best == r.items_per_query
    assert r.input_shapes == {"x": [best, 4]}
    assert r.headline["value"] == pytest.approx(best * r.latency["count"] / r.duration_s)
    assert r.throughput_per_s == pytest.approx(r.headline["value"])


def test_offline_runs_a_fixed_batch_model_at_batch_1(packs):
    r = benchmark(packs["fixed"], scenario="offline", batch_sizes=(1, 8), **FAST)
    assert [row["batch_size"] for row in r.details["sweep"]] == [1]
    assert r.items_per_query == 1 and r.input_shapes == {"x": [1, 4]}
    assert any("fixed batch" in w for w in r.warnings)


def test_server_scenario_is_bounded_and_searches_the_rate(packs):
    r = benchmark(
        packs["tiny"],
        scenario="server",
        rate=200.0,
        p99_bound_ms=50.0,
        **{**FAST, "min_count": 20, "min_duration_s": 0.05},
    )
    d = r.details
    assert d["rate_per_s"] == 200.0 and d["rate_source"] == "given"
    assert d["served"] + d["unserved"] >= 20 and r.latency["count"] == d["served"]
    assert d["utilization"] == pytest.approx(200.0 / d["capacity_per_s"])
    assert r.headline["metric"] == "p99 latency at 200/s"
    search = d["search"]
    assert search["p99_bound_s"] == 0.05
    assert 1 <= len(search["probes"]) <= scenarios.SEARCH_STEPS + 1
    assert search["probes"][0]["rate_per_s"] == pytest.approx(search["capacity_per_s"])
    within = [p["rate_per_s"] for p in search["probes"] if p["within_bound"]]
    assert search["max_rate_within_bound_per_s"] == (max(within) if within else None)
    if d["served"] < 1000:  # p99 of so few queries rests on too few beyond it
        assert any("p99" in w and "run at least 1000 queries" in w for w in r.warnings)


def test_server_rate_defaults_to_half_of_capacity(packs):
    r = benchmark(packs["tiny"], scenario="server", **{**FAST, "min_count": 10})
    assert r.details["rate_source"] == "default"
    assert r.details["utilization"] == pytest.approx(0.5)
    assert r.details["search"] is None


# --- profiles -------------------------------------------------------------------------------


@affinity
def test_host_under_a_profile_is_labelled_so_and_pinned_to_its_cores(packs, tmp_path):
    before = os.sched_getaffinity(0)
    profile = one_core_profile(tmp_path)
    r = benchmark(packs["tiny"], profile=str(profile), **{**FAST, "cold_starts": 1})
    first = min(before)
    assert r.label.startswith("host (") and r.label.endswith(") under profile one-core")
    assert "measured on" not in r.label
    assert r.profile == "one-core" and r.threads == 1
    assert r.cpus == [first]  # read back inside the run
    assert r.cold_start["cpus"] == [first]  # and in the cold-start process
    assert r.emulation == {
        "profile": "one-core",
        "profile_cores": 1,
        "profile_threads": 1,
        "cpus": [first],
        "threads": 1,
        "complete": True,
    }
    assert os.sched_getaffinity(0) == before  # restored afterwards


def test_profile_host_is_measured_on_the_host_with_threads_clamped_to_its_cpus(packs):
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    r = benchmark(packs["tiny"], profile="host", threads=cpus + 1, **FAST)
    assert r.label.startswith("measured on ") and r.emulation is None and r.profile == "host"
    assert r.threads == cpus
    assert any(f"{cpus + 1} threads requested but profile 'host'" in w for w in r.warnings)


def test_threads_beyond_the_profile_are_clamped_with_a_warning(packs, tmp_path):
    r = benchmark(packs["tiny"], profile=str(one_core_profile(tmp_path)), threads=3, **FAST)
    assert r.threads == 1
    assert "3 threads requested but profile 'one-core' has 1 cores; using 1" in r.warnings


def test_more_profile_cores_than_cpus_is_a_partial_emulation(packs):
    available = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1
    if available >= 6:
        pytest.skip("this machine has as many CPUs as the profile")
    r = benchmark(packs["tiny"], profile="jetson-orin-nano", **FAST)
    assert r.emulation["complete"] is False and r.threads == available
    assert any("emulation is partial" in w for w in r.warnings)


def test_unknown_profile_lists_the_known_ones(packs):
    with pytest.raises(ProfileError, match=r"unknown device profile 'rpi9'.*rpi4-1\.8ghz.*rpi5"):
        benchmark(packs["tiny"], profile="rpi9", **FAST)


def test_profile_backend_falls_back_when_the_pack_has_no_model_for_it(packs):
    r = benchmark(packs["tiny"], profile="rpi-zero-2w", **FAST)  # the Zero's default is litert
    assert r.backend == "onnxruntime"
    assert any("runs litert by default" in w for w in r.warnings)


# --- bad input ------------------------------------------------------------------------------


def test_a_missing_backend_names_what_to_install(packs, monkeypatch):
    info = BACKENDS["onnxruntime"]
    monkeypatch.setitem(BACKENDS, "onnxruntime", info._replace(package="no_such_interpreter"))
    with pytest.raises(BackendUnavailableError, match="not installed: pip install edgepack"):
        benchmark(packs["tiny"], backend="onnxruntime", **FAST)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"scenario": "batch"}, "unknown scenario 'batch'"),
        ({"min_count": 0}, "min_count must be"),
        ({"min_duration_s": -1}, "min_duration_s must be"),
        ({"rate": 0}, "rate must be greater than 0"),
        ({"batch_sizes": (0, 2)}, "batch_sizes must be positive"),
    ],
)
def test_bad_settings_are_refused(options, message):
    with pytest.raises(BenchmarkError, match=message):
        BenchSettings(**options)


# --- the report -----------------------------------------------------------------------------


def test_report_writes_markdown_html_and_plots(packs, tmp_path):
    pytest.importorskip("matplotlib")
    results = compare([packs["tiny"], packs["other"]], **FAST)
    written = write_report(results, tmp_path / "report")
    names = sorted(p.name for p in written)
    assert names == ["latency.png", "report.html", "report.md", "tradeoff.png"]
    md = (tmp_path / "report" / "report.md").read_text()
    assert "| pack | tiny | other |" in md and "![Latency distribution](latency.png)" in md
    assert "<table" in (tmp_path / "report" / "report.html").read_text()
    assert (tmp_path / "report" / "latency.png").read_bytes().startswith(b"\x89PNG")


def test_report_without_matplotlib_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(BenchmarkError, match=r"edgepack\[report\]"):
        require_matplotlib()
