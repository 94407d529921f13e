"""`edgepack demo` and `edgepack optimize` as a user runs them: a real process, real packs, real
onnxruntime and LiteRT sessions, and a report on disk. Third-party chatter must stay in logs/."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("sklearn")

from edgepack.device_profiles import HOST, list_profiles

NOISE = (
    "[START]",
    "[ DONE]",
    "absl",
    "Please consider pre-processing",
    "torchao",
    "Failed to load",
    "TracerWarning",
    "_pytree",
    "XNNPACK",
    "WARNING:",
)
BUNDLED = [p for p in list_profiles() if p != HOST]


def edgepack(
    *args: str, cwd: Path | None = None, timeout: int = 900
) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.run(
        [sys.executable, "-m", "edgepack.cli.main", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        cwd=cwd,
    )


def assert_clean(result: subprocess.CompletedProcess) -> None:
    for stream in (result.stdout, result.stderr):
        for word in NOISE:
            assert word not in stream, f"{word!r} reached the terminal:\n{stream[-3000:]}"


def check_report(out: Path, profiles: list[str]) -> dict:
    for name in ("report.md", "report.html", "report.json", "accuracy_latency.png", "stages.png"):
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    report = json.loads((out / "report.json").read_text())
    assert sorted(report["profiles"]) == sorted([*profiles, HOST])
    markdown = (out / "report.md").read_text()
    for name in [*profiles, HOST]:
        assert f"| {name} |" in markdown
    assert any((out / "logs").glob("*.log"))
    return report


def test_demo_quick_end_to_end(tmp_path):
    """The short demo: every bundled profile gets a line, the report holds them all, and the
    terminal shows edgepack's lines and bars only."""
    out = tmp_path / "demo"
    result = edgepack("demo", "--quick", "-o", str(out))
    assert result.returncode == 0, result.stdout + result.stderr
    assert_clean(result)
    report = check_report(out, BUNDLED)
    lines = result.stdout.strip().splitlines()
    tail = lines[-(len(BUNDLED) + 1) :]
    for name, line in zip([*BUNDLED, HOST], tail, strict=True):
        assert line.strip().startswith(name), line
        assert ".edgepack (" in line and " ms, accuracy " in line
    assert "report: " in lines[-(len(BUNDLED) + 3)]
    host = report["profiles"][HOST]["chosen"]
    assert host["kind"] == "measured"
    assert all(report["profiles"][p]["chosen"]["kind"] == "estimated" for p in BUNDLED)
    # what the report says to flash is a real, loadable pack holding that model
    from edgepack.runtime import load

    rpi5 = report["profiles"]["rpi5"]["chosen"]
    model = load(rpi5["pack"], backend=rpi5["backend"], model_file=rpi5["model"])
    assert model.entry.path == rpi5["model"]


@pytest.mark.slow
def test_demo_verbose_shows_third_party_output(tmp_path):
    result = edgepack("demo", "--quick", "-v", "--profile", "rpi5", "-o", str(tmp_path / "demo"))
    assert result.returncode == 0, result.stdout + result.stderr
    assert any(word in result.stdout + result.stderr for word in NOISE)


@pytest.mark.slow
def test_demo_default_end_to_end(tmp_path):
    """The README's demo with its default epochs and benchmark time."""
    out = tmp_path / "demo"
    result = edgepack("demo", "-o", str(out))
    assert result.returncode == 0, result.stdout + result.stderr
    assert_clean(result)
    report = check_report(out, BUNDLED)
    stages = [s["stage"] for s in report["stages"]]
    assert stages[0] == "teacher" and "prune" in stages


# --- optimize ------------------------------------------------------------------------------------


def test_plan_per_family(tmp_path):
    """The recipe follows the model's family: BERT-family folders get the text recipe,
    convolutional modules the CNN one, ONNX files quantize-only."""
    import torch
    from transformers import BertConfig, BertForSequenceClassification

    from edgepack.compress.demo import digits_cnn
    from edgepack.compress.optimize import plan_for

    bert = tmp_path / "bert"
    config = BertConfig(
        vocab_size=64,
        hidden_size=16,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=32,
    )
    BertForSequenceClassification(config).save_pretrained(bert)
    onnx_file = tmp_path / "m.onnx"
    onnx_file.write_bytes(b"")

    text = plan_for(bert)
    assert text.family == "text" and "prune" in [s["type"] for s in text.stages]
    assert next(s for s in text.stages if s["type"] == "prune")["ffn_keep"] < 1
    cnn = plan_for(digits_cnn())
    assert cnn.family == "cnn"
    assert [s["type"] for s in cnn.stages][-3:] == ["prune", "quantize", "export"]
    assert plan_for(onnx_file).family == "onnx"
    assert [s["type"] for s in plan_for(onnx_file).stages] == ["quantize"]
    mlp = torch.nn.Sequential(torch.nn.Linear(4, 2))
    assert plan_for(mlp).family == "module"


def test_choose_fastest_within_budget_or_closest():
    from edgepack.compress.optimize import choose

    rows = [
        {"key": "a", "metric": 99.0},
        {"key": "b", "metric": 97.0},
        {"key": "c", "metric": 98.6},
    ]
    estimates = {
        "a": {"kind": "estimated", "latency_ms": 3.0},
        "b": {"kind": "estimated", "latency_ms": 1.0},
        "c": {"kind": "estimated", "latency_ms": 2.0},
    }
    chosen, closest = choose(rows, estimates, floor=98.5)
    assert chosen["key"] == "c" and closest is None
    chosen, closest = choose(rows, estimates, floor=99.5)
    assert chosen is None and closest["key"] == "a"


@pytest.fixture()
def digits_mlp(tmp_path) -> Path:
    """A small MLP on the flat 64-pixel digits, trained a little, as an ONNX file."""
    import numpy as np
    import torch
    from sklearn.datasets import load_digits

    from edgepack.compress.export_onnx import export_onnx

    digits = load_digits()
    x = torch.from_numpy(digits.data.astype(np.float32))
    y = torch.from_numpy(digits.target.astype(np.int64))
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(64, 64), torch.nn.ReLU(), torch.nn.Linear(64, 10))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(60):
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        optimizer.step()
    path = tmp_path / "mlp.onnx"
    export_onnx(model.eval(), {"input": x[:1]}, path, dynamic_axes={"input": {0: "batch"}})
    return path


def test_optimize_onnx_is_quantize_only(tmp_path, digits_mlp):
    out = tmp_path / "opt"
    result = edgepack(
        "optimize",
        str(digits_mlp),
        "--data",
        "sklearn:digits",
        "--profile",
        "rpi5",
        "--profile",
        "rpi-zero-2w",
        "--budget",
        "2",
        "--bench-seconds",
        "0.2",
        "-o",
        str(out),
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert_clean(result)
    assert "recipe: onnx (an ONNX file: quantize-only" in result.stdout
    report = check_report(out, ["rpi5", "rpi-zero-2w"])
    precisions = {c["precision"] for c in report["candidates"]}
    assert precisions & {"int8-static", "int8-dynamic", "mixed"} and "fp32" in precisions
    chosen = report["profiles"]["rpi5"]["chosen"]
    assert chosen["key"] in {c["key"] for c in report["candidates"]}
    assert chosen["metric"] >= report["reference"] - 2


@pytest.mark.slow
def test_optimize_module_function_takes_the_cnn_recipe(tmp_path):
    import numpy as np

    from edgepack.compress.demo import split_digits

    train_x, train_y, test_x, test_y = split_digits()
    np.savez(tmp_path / "train.npz", pixels=train_x, labels=train_y)
    np.savez(tmp_path / "test.npz", pixels=test_x, labels=test_y)
    out = tmp_path / "opt"
    result = edgepack(
        "optimize",
        "edgepack.compress.demo:trained_digits_cnn",  # a trained model: above chance
        *("--input-shape", "1", "8", "8"),
        *("--data", str(tmp_path / "train.npz"), "--eval", str(tmp_path / "test.npz")),
        *("--profile", "rpi5", "--finetune-steps", "60", "--budget", "100"),
        *("--bench-seconds", "0.2", "-o", str(out)),
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert_clean(result)
    assert "recipe: cnn (a convolutional module" in result.stdout
    report = check_report(out, ["rpi5"])
    assert {c["format"] for c in report["candidates"]} == {"onnx", "tflite"}


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["nope.onnx", "--data", "sklearn:digits"], "no such .onnx file"),
        (["garbage.onnx", "--data", "sklearn:digits"], "is not a readable ONNX file"),
        (["MODEL", "--data", "missing.npz"], "does not exist"),
        (["MODEL", "--data", "sklearn:digits", "--profile", "rpi9"], "known profiles: "),
        (["not_a_module_xyz:make", "--data", "sklearn:digits"], "cannot import make"),
    ],
)
def test_optimize_refuses_bad_input_in_one_line(tmp_path, digits_mlp, args, expected):
    (tmp_path / "garbage.onnx").write_bytes(b"not a model")
    args = [str(digits_mlp) if a == "MODEL" else a for a in args]
    result = edgepack("optimize", *args, "-o", str(tmp_path / "out"), cwd=tmp_path)
    assert result.returncode == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith("edgepack optimize")]
    assert len(errors) == 1 and expected in errors[0], result.stderr
    assert "Traceback" not in result.stderr
