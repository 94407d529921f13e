"""Recipes: parsing, running stages into a pack, and what the pack records."""

from __future__ import annotations

import json

import numpy as np
import pytest

import edgepack.runtime as ep
from edgepack.cli.main import main
from edgepack.compress.recipe import Recipe, run_recipe
from tests.conftest import require


@pytest.fixture
def data(tmp_path, classifier):
    """Labelled data for the tiny classifier: its own fp32 predictions are the labels."""
    x = np.random.default_rng(5).normal(size=(200, 4)).astype(np.float32)
    np.savez(tmp_path / "data.npz", x=x, labels=classifier[1](x).argmax(1))
    return tmp_path / "data.npz"


def write_recipe(path, **fields) -> None:
    lines = []
    tables = {k: v for k, v in fields.items() if isinstance(v, dict | list)}
    for key, value in fields.items():
        if key not in tables:
            lines.append(f"{key} = {json.dumps(value)}")
    for key, value in tables.items():
        if isinstance(value, dict):
            lines.append(f"[{key}]")
            lines += [f"{k} = {json.dumps(v)}" for k, v in value.items()]
        else:
            for item in value:
                lines.append(f"[[{key}]]")
                lines += [f"{k} = {json.dumps(v)}" for k, v in item.items()]
    path.write_text("\n".join(lines) + "\n")


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"output": "p"}, "'name' is required"),
        ({"name": "p", "output": "p", "colour": 1}, "unknown key 'colour'"),
        ({"name": "p", "output": "p", "stages": [{"type": "distil"}]}, "type 'distil'"),
    ],
)
def test_bad_recipes_are_rejected(tmp_path, fields, message):
    write_recipe(tmp_path / "r.toml", **fields)
    with pytest.raises(ep.InputError, match=message):
        Recipe.load(tmp_path / "r.toml")


def test_unreadable_recipe(tmp_path):
    (tmp_path / "r.toml").write_text("name = [")
    with pytest.raises(ep.InputError, match="cannot read recipe"):
        Recipe.load(tmp_path / "r.toml")


def test_quantize_recipe_writes_a_recorded_int8_pack(tmp_path, classifier, data):
    write_recipe(
        tmp_path / "r.toml",
        name="clf",
        output="out/clf.edgepack",
        source=str(classifier[0]),
        data={"calibration": str(data), "evaluation": str(data)},
        stages=[{"type": "quantize", "method": "dynamic", "budget": 5.0, "min_speedup": 0}],
    )
    manifest = run_recipe(tmp_path / "r.toml", progress=False)
    pack = tmp_path / "out" / "clf.edgepack"
    assert ep.verify_pack(pack) == manifest
    assert [m.path for m in manifest.models] == ["model.int8.onnx"]
    assert manifest.models[0].precision in ("int8-dynamic", "mixed")
    assert manifest.models[0].cost["flops"] > 0
    assert manifest.metrics["quantize"]["drop"] <= 5.0
    assert manifest.provenance["recipe"]["stages"][0]["method"] == "dynamic"
    assert len(manifest.provenance["calibration_fingerprint"]) == 64
    x = np.load(data)["x"][:8]
    out = ep.load(pack, threads=1).run({"x": x})["logits"]
    assert np.mean(out.argmax(1) == classifier[1](x).argmax(1)) >= 0.75


def test_budget_that_cannot_be_met_still_writes_the_fp32_pack(tmp_path, classifier, data):
    recipe = Recipe(
        name="clf",
        output=str(tmp_path / "clf"),
        source=str(classifier[0]),
        data={"calibration": str(data), "evaluation": str(data)},
        # Cosine similarity to fp32 with no drop allowed and nothing kept in float: int8 outputs
        # always differ a little from fp32, so no candidate can qualify.
        stages=[
            {
                "type": "quantize",
                "method": "static",
                "budget": 0.0,
                "metric": "cosine",
                "max_float_nodes": 0,
                "min_speedup": 0,
            }
        ],
    )
    with pytest.raises(ep.QuantizationError, match="written without its models"):
        run_recipe(recipe, progress=False)
    manifest = ep.verify_pack(tmp_path / "clf")
    assert [m.precision for m in manifest.models] == ["fp32"]
    assert "error" in manifest.metrics["quantize"]


def test_torch_module_exports_onnx_and_tflite_with_parity(tmp_path):
    torch = require("torch")
    require("litert_torch")
    torch.manual_seed(0)
    module = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3))
    x = np.random.default_rng(0).normal(size=(40, 4)).astype(np.float32)
    np.savez(tmp_path / "d.npz", x=x)
    recipe = Recipe(
        name="t",
        output=str(tmp_path / "t.edgepack"),
        data={"calibration": str(tmp_path / "d.npz"), "evaluation": str(tmp_path / "d.npz")},
        stages=[{"type": "export", "formats": ["onnx", "tflite"], "tflite_quantization": "none"}],
    )
    manifest = run_recipe(
        recipe, module=module.eval(), example_inputs={"x": torch.ones(1, 4)}, progress=False
    )
    assert [(m.path, m.precision) for m in manifest.models] == [
        ("model.onnx", "fp32"),
        ("model.tflite", "fp32"),
    ]
    tflite = manifest.models[1]
    assert [c["reference"] for c in tflite.checks] == ["pytorch", "model.onnx"]
    assert tflite.checks[1]["argmax_agreement"] == 100.0
    assert tflite.checks[1]["max_abs_diff"] < 1e-4
    onnx_out = ep.load(tmp_path / "t.edgepack", backend="onnx").run({"x": x[:1]})["logits"]
    tflite_out = ep.load(tmp_path / "t.edgepack", backend="tflite").run({"x": x[:1]})["logits"]
    np.testing.assert_allclose(tflite_out, onnx_out, atol=1e-4)


def test_tflite_from_an_onnx_source_is_refused_clearly(tmp_path, classifier, data):
    recipe = Recipe(
        name="c",
        output=str(tmp_path / "c"),
        source=str(classifier[0]),
        data={"calibration": str(data)},
        stages=[{"type": "export", "formats": ["onnx", "tflite"]}],
    )
    with pytest.raises(ep.InputError, match="needs the PyTorch model"):
        run_recipe(recipe, progress=False)
    assert not (tmp_path / "c").exists()


def test_cli_quantize_keeps_a_packs_labels_and_preprocessing(tmp_path, capsys, image_classifier):
    pack = tmp_path / "img.edgepack"
    assert (
        main(
            [
                "pack",
                str(image_classifier[0]),
                "-o",
                str(pack),
                "--labels",
                "a,b,c",
                "--image-size",
                "4",
                "4",
                "--color",
                "grayscale",
            ]
        )
        == 0
    )
    x = np.random.default_rng(2).normal(size=(64, 1, 4, 4)).astype(np.float32)
    np.savez(tmp_path / "d.npz", x=x, labels=image_classifier[1](x).argmax(1))
    out = tmp_path / "int8.edgepack"
    code = main(
        [
            "quantize",
            str(pack),
            "-o",
            str(out),
            "--method",
            "dynamic",
            "--calib",
            str(tmp_path / "d.npz"),
            "--eval",
            str(tmp_path / "d.npz"),
            "--budget",
            "50",
            "--min-speedup",
            "0",
            "--quiet",
        ]
    )
    assert code == 0
    manifest = ep.read_manifest(out)
    assert [m.path for m in manifest.models] == ["model.int8.onnx"]
    assert manifest.preprocessing["size"] == [4, 4]
    assert manifest.postprocessing["labels"] == ["a", "b", "c"]
    assert ep.load(out, threads=1).predict(np.zeros((4, 4), np.uint8)).label in ("a", "b", "c")


def test_cli_compress_runs_a_recipe_file(tmp_path, capsys, classifier, data):
    write_recipe(
        tmp_path / "r.toml",
        name="clf",
        output="clf.edgepack",
        source=str(classifier[0]),
        data={"calibration": str(data), "evaluation": str(data)},
        stages=[{"type": "quantize", "method": "dynamic", "budget": 5.0, "min_speedup": 0}],
    )
    assert main(["compress", str(tmp_path / "r.toml"), "--quiet"]) == 0
    assert "model model.int8.onnx" in capsys.readouterr().out
    ep.verify_pack(tmp_path / "clf.edgepack")
