"""`edgepack bench` and `edgepack profiles`: the CLI mirrors benchmark() and compare(), and every
output (table, JSON, CSV, report) and bad input works from the command line."""

from __future__ import annotations

import csv
import json
import sys

import pytest

from edgepack.cli.main import main
from edgepack.packing import assemble_pack

FAST = ["--min-count", "5", "--min-duration", "0", "--warmup", "1", "--cold-starts", "0"]


@pytest.fixture(scope="module")
def pack_paths(tmp_path_factory, classifier):
    root = tmp_path_factory.mktemp("cli-packs")
    for name in ("alpha", "beta"):
        assemble_pack(root / name, [classifier[0]], metrics={"quantize": {"accuracy": 90.0}})
    return str(root / "alpha"), str(root / "beta")


def test_bench_prints_a_table(pack_paths, capsys):
    assert main(["bench", pack_paths[0], *FAST, "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("measured on ")
    assert "headline         p90 latency:" in out and "p99 ms [95% CI]" in out


def test_bench_json_mirrors_the_python_api(pack_paths, capsys):
    assert main(["bench", pack_paths[0], *FAST, "--json", "--dim", "batch=2"]) == 0
    (result,) = json.loads(capsys.readouterr().out)["results"]
    assert result["name"] == "alpha" and result["settings"]["min_count"] == 5
    assert result["settings"]["dims"] == {"batch": 2} and result["input_shapes"] == {"x": [2, 4]}
    assert result["latency"]["count"] >= 5


def test_bench_compare_csv_and_report(pack_paths, tmp_path, capsys):
    pytest.importorskip("matplotlib")
    csv_path, report = tmp_path / "out.csv", tmp_path / "report"
    argv = ["bench", *pack_paths, *FAST, "--compare", "--csv", str(csv_path)]
    assert main([*argv, "--report", str(report)]) == 0
    captured = capsys.readouterr()
    header = next(line for line in captured.out.splitlines() if line.startswith("pack "))
    assert "alpha" in header and "beta" in header
    with csv_path.open(newline="") as fh:
        assert [row["name"] for row in csv.DictReader(fh)] == ["alpha", "beta"]
    assert (report / "report.html").is_file() and (report / "latency.png").is_file()
    assert f"wrote {csv_path}" in captured.err


def test_bench_without_compare_runs_packs_one_by_one(pack_paths, capsys):
    assert main(["bench", *pack_paths, *FAST, "--json"]) == 0
    results = json.loads(capsys.readouterr().out)["results"]
    assert [r["name"] for r in results] == ["alpha", "beta"]
    assert results[0]["created"] <= results[1]["created"]


def test_bench_offline_and_server_scenarios(pack_paths, capsys):
    offline = [*FAST, "--scenario", "offline", "--batch-sizes", "1", "2", "--json"]
    assert main(["bench", pack_paths[0], *offline]) == 0
    result = json.loads(capsys.readouterr().out)["results"][0]
    assert result["details"]["batch_size"] in (1, 2)
    server = [*FAST, "--scenario", "server", "--rate", "100", "--p99-bound-ms", "100"]
    assert main(["bench", pack_paths[0], *server]) == 0
    out = capsys.readouterr().out
    assert "p99 latency at 100/s" in out and "Poisson 100/s (given)" in out


def test_bench_under_a_profile_says_it_is_the_host(pack_paths, capsys):
    assert main(["bench", pack_paths[0], *FAST, "--profile", "rpi4-1.8ghz", "--threads", "9"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("host (") and "under profile rpi4-1.8ghz" in out
    assert "9 threads requested but profile 'rpi4-1.8ghz' has 4 cores; using 4" in out
    assert "add --estimate for an estimated rpi4-1.8ghz latency" in out


def test_bench_estimate_shows_the_estimate_or_why_not(pack_paths, capsys, monkeypatch):
    assert main(["bench", pack_paths[0], *FAST, "--estimate", "--json"]) == 0
    estimate = json.loads(capsys.readouterr().out)["results"][0]["estimate"]
    assert estimate["kind"] == "none" and estimate["error"]  # the pack has no cost summary

    estimator = pytest.importorskip("edgepack.benchmarks.estimate")

    def fake(manifest, profile, *, backend, threads):
        label = f"estimated for {profile.name} (not measured)"
        return {"kind": "estimated", "label": label, "latency_ms": 12.5, "range_ms": [9.0, 17.0]}

    monkeypatch.setattr(estimator, "estimate_manifest", fake)
    assert main(["bench", pack_paths[0], *FAST, "--profile", "rpi5", "--estimate"]) == 0
    captured = capsys.readouterr()
    assert "12.5 ms (likely 9.00-17.0), estimated for rpi5 (not measured)" in captured.out
    assert "add --estimate" not in captured.out and "deprecated" not in captured.err
    # The old flag still works for one release, with a note on stderr.
    assert main(["bench", pack_paths[0], *FAST, "--profile", "rpi5", "--predict"]) == 0
    captured = capsys.readouterr()
    assert "estimated for rpi5 (not measured)" in captured.out
    assert "--predict is deprecated, use --estimate" in captured.err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--profile", "rpi9"], "known profiles: host, jetson-nano"),
        (["--dim", "batch"], "--dim takes NAME=SIZE"),
        (["--min-count", "0"], "min_count must be"),
        (["--backend", "litert"], "no model for backend 'litert'"),
    ],
)
def test_bench_errors_exit_1_with_a_reason(pack_paths, capsys, argv, message):
    assert main(["bench", pack_paths[0], *FAST, *argv]) == 1
    assert message in capsys.readouterr().err


def test_bench_output_that_cannot_be_written_is_one_clear_error(pack_paths, tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert main(["bench", pack_paths[0], *FAST, "--csv", str(blocker / "out.csv")]) == 1
    captured = capsys.readouterr()
    assert f"cannot write {blocker / 'out.csv'}" in captured.err
    assert captured.out.startswith("measured on ")  # the results were printed before
    nested = tmp_path / "new" / "dir" / "out.csv"
    assert main(["bench", pack_paths[0], *FAST, "--csv", str(nested)]) == 0
    assert nested.is_file()


def test_bench_report_without_matplotlib_fails_before_measuring(pack_paths, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    assert main(["bench", pack_paths[0], *FAST, "--report", "out"]) == 1
    captured = capsys.readouterr()
    assert "pip install 'edgepack[report]'" in captured.err and captured.out == ""


def test_profiles_lists_and_shows_with_sources(capsys):
    assert main(["profiles"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].startswith("host ") and "rpi5 " in out
    assert main(["profiles", "show", "rpi5"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("rpi5: Raspberry Pi 5")
    assert "source: Raspberry Pi 5 product brief" in out and "reference: " in out


def test_profiles_json(capsys):
    assert main(["profiles", "--json"]) == 0
    names = [row["name"] for row in json.loads(capsys.readouterr().out)]
    assert "rpi4-1.8ghz" in names and "host" in names
    for argv in (["profiles", "show", "rpi5", "--json"], ["profiles", "--json", "show", "rpi5"]):
        assert main(argv) == 0
        shown = json.loads(capsys.readouterr().out)
        assert shown["name"] == "rpi5" and shown["sources"]["cpu.cores"]["url"].startswith("https")


def test_profiles_show_unknown_lists_the_known_ones(capsys):
    assert main(["profiles", "show", "rpi9"]) == 1
    assert "known profiles: host, jetson-nano" in capsys.readouterr().err
