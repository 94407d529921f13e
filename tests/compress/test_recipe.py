"""Recipes: parsing, running stages into a pack, and what the pack records."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass

import numpy as np
import pytest

import edgepack.runtime as ep
from edgepack.cli.main import main
from edgepack.compress.errors import QuantizationError
from edgepack.compress.recipe import (
    STAGES,
    BudgetError,
    QuantizeStageOptions,
    Recipe,
    StageOptions,
    StageRecord,
    StageType,
    get_option,
    option_paths,
    run_recipe,
    set_option,
)
from edgepack.device_profiles.errors import ProfileError
from tests.conftest import require, save_tiny_bert


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


def write_quantize_recipe(tmp_path, classifier, data) -> None:
    """r.toml: the tiny classifier, dynamic int8 within 5 points, into out/clf.edgepack."""
    write_recipe(
        tmp_path / "r.toml",
        name="clf",
        output="out/clf.edgepack",
        source=str(classifier[0]),
        data={"calibration": str(data), "evaluation": str(data)},
        stages=[{"type": "quantize", "method": "dynamic", "budget": 5.0, "min_speedup": 0}],
    )


def test_quantize_recipe_writes_a_recorded_int8_pack(tmp_path, classifier, data):
    write_quantize_recipe(tmp_path, classifier, data)
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
    with pytest.raises(QuantizationError, match="written without its models"):
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
        profile="host",  # this machine: the speed rule is measured here
        data={"calibration": str(data), "evaluation": str(data)},
        stages=[{"type": "quantize", "method": "dynamic", "budget": 5.0, "min_speedup": 0}],
    )
    assert main(["compress", str(tmp_path / "r.toml"), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "model model.int8.onnx" in out
    assert "int8 vs fp32 speed: measured on this host" in out
    ep.verify_pack(tmp_path / "clf.edgepack")
    # --profile overrides the recipe's: an Arm board, estimated, with its int8 scheme
    assert main(["compress", str(tmp_path / "r.toml"), "--quiet", "--profile", "rpi5"]) == 0
    assert "int8 vs fp32 speed: estimated for rpi5" in capsys.readouterr().out
    manifest = ep.read_manifest(tmp_path / "clf.edgepack")
    assert manifest.provenance["recipe"]["profile"] == "rpi5"
    assert manifest.provenance["stages"][0]["options"]["per_channel"] is True


# --- Stages as typed rows: validation first, lazy export, the global budget, dotted paths ---


@dataclass(frozen=True)
class ScaleOptions(StageOptions):
    """A test-only stage that changes the weights: multiplies the last layer by `factor`."""

    factor: float = 2.0

    def validate(self):
        if self.factor == 0:
            raise ep.InputError("factor must not be 0")


SEEN: list[dict] = []  # what each run of the test stage saw


def run_scale(work, options: ScaleOptions) -> StageRecord:
    import torch

    SEEN.append({"exported_version": work.exported_version, "version": work.version})
    with torch.no_grad():
        last = [m for m in work.module.modules() if isinstance(m, torch.nn.Linear)][-1]
        last.weight.mul_(options.factor)
        last.bias.mul_(options.factor)
    return StageRecord("scale", figures={"scale": {"factor": options.factor}})


@pytest.fixture
def scale_stage(monkeypatch):
    SEEN.clear()
    monkeypatch.setitem(STAGES, "scale", StageType(ScaleOptions, run_scale, changes_weights=True))


@pytest.fixture
def mlp(tmp_path):
    """A torch MLP and labelled data (its own predictions), for recipes that start from a module."""
    torch = require("torch")
    torch.manual_seed(0)
    module = torch.nn.Sequential(torch.nn.Linear(4, 16), torch.nn.ReLU(), torch.nn.Linear(16, 3))
    x = np.random.default_rng(1).normal(size=(120, 4)).astype(np.float32)
    with torch.no_grad():
        labels = module(torch.from_numpy(x)).argmax(1).numpy()
    np.savez(tmp_path / "d.npz", x=x, labels=labels)
    return module.eval(), {"x": torch.from_numpy(x[:1])}, tmp_path / "d.npz", x


def test_a_typo_in_stage_2_fails_before_stage_1_runs(tmp_path, scale_stage, mlp):
    module, example, data, _ = mlp
    write_recipe(
        tmp_path / "r.toml",
        name="m",
        output="m.edgepack",
        data={"evaluation": str(data)},
        stages=[{"type": "scale"}, {"type": "quantize", "methd": "static"}],
    )
    with pytest.raises(
        ep.InputError, match=r"stage 2 \(quantize\): unknown key 'methd'; did you mean 'method'"
    ):
        run_recipe(tmp_path / "r.toml", module=module, example_inputs=example, progress=False)
    assert SEEN == []  # stage 1 never ran
    assert not (tmp_path / "m.edgepack").exists()
    with pytest.raises(ep.InputError, match="did you mean 'quantize'"):
        Recipe(name="m", output="m", stages=[{"type": "quantise"}])
    with pytest.raises(ep.InputError, match=r"stage 1 \(export\): .*tflite_quantization 'half'"):
        Recipe(name="m", output="m", stages=[{"type": "export", "tflite_quantization": "half"}])
    with pytest.raises(ep.InputError, match="did you mean 'budget'"):
        Recipe.from_dict({"name": "m", "output": "m", "budgt": 1.0})


def test_onnx_is_exported_lazily_and_again_after_weights_change(tmp_path, scale_stage, mlp):
    module, example, data, x = mlp
    reference = module(example["x"]).detach().numpy()  # before the stage changes the weights
    recipe = Recipe(
        name="m",
        output=str(tmp_path / "m.edgepack"),
        data={"calibration": str(data), "evaluation": str(data)},
        stages=[{"type": "export"}, {"type": "scale", "factor": 3.0}, {"type": "export"}],
    )
    manifest = run_recipe(recipe, module=module, example_inputs=example, progress=False)
    # the first export made version 0; the scale stage saw it, and the pack holds version 1
    assert SEEN == [{"exported_version": 0, "version": 0}]
    assert [m.path for m in manifest.models] == ["model.onnx"]
    out = ep.load(tmp_path / "m.edgepack", threads=1).run({"x": x[:1]})["logits"]
    np.testing.assert_allclose(out, 3.0 * reference, rtol=1e-4, atol=1e-5)  # not a stale file
    np.testing.assert_array_equal(module(example["x"]).detach().numpy(), reference)  # caller's
    assert manifest.metrics["scale"] == {"factor": 3.0}
    assert [s["name"] for s in manifest.provenance["stages"]] == ["export", "scale", "export"]


def test_nothing_is_exported_before_a_stage_asks(tmp_path, scale_stage, mlp):
    module, example, data, _ = mlp
    recipe = Recipe(
        name="m",
        output=str(tmp_path / "m.edgepack"),
        data={"evaluation": str(data)},
        stages=[{"type": "scale", "factor": 1.0}],
    )
    run_recipe(recipe, module=module, example_inputs=example, progress=False)
    assert SEEN == [{"exported_version": None, "version": 0}]


def test_a_stage_that_breaks_the_global_budget_stops_and_keeps_the_last_good_pack(
    tmp_path, scale_stage, mlp
):
    module, example, data, x = mlp
    good = module(example["x"]).detach().numpy() * 2.0
    recipe = Recipe(
        name="m",
        output=str(tmp_path / "m.edgepack"),
        budget=1.0,  # points of accuracy below the source model
        data={"calibration": str(data), "evaluation": str(data)},
        # x2 keeps every argmax; x-1 reverses the ranking of the classes, so accuracy collapses
        stages=[{"type": "scale", "factor": 2.0}, {"type": "scale", "factor": -1.0}],
    )
    with pytest.raises(BudgetError, match=r"stage 2 \(scale\) broke the accuracy budget") as info:
        run_recipe(recipe, module=module, example_inputs=example, progress=False)
    assert "from stage 1 (scale)" in str(info.value)
    manifest = ep.verify_pack(tmp_path / "m.edgepack")
    out = ep.load(tmp_path / "m.edgepack", threads=1).run({"x": x[:1]})["logits"]
    np.testing.assert_allclose(out, good, rtol=1e-4, atol=1e-5)  # stage 1's weights, not 2's
    assert "error" in manifest.metrics["scale"]
    check = manifest.provenance["stages"][0]["budget_check"]
    assert check["metric"] == "accuracy" and check["models"]["model.onnx"]["drop"] == 0.0


def test_the_global_budget_bounds_quantization_against_the_source(tmp_path, classifier, data):
    recipe = Recipe(
        name="clf",
        output=str(tmp_path / "clf"),
        source=str(classifier[0]),
        budget=0.0,
        metric="cosine",  # int8 outputs always differ a little from fp32: nothing qualifies
        data={"calibration": str(data), "evaluation": str(data)},
        stages=[{"type": "quantize", "method": "static", "max_float_nodes": 0, "min_speedup": 0}],
    )
    with pytest.raises(QuantizationError, match="written without its models, from the source"):
        run_recipe(recipe, progress=False)
    manifest = ep.verify_pack(tmp_path / "clf")
    assert [m.precision for m in manifest.models] == ["fp32"]


def test_options_are_set_by_dotted_path_and_validated(tmp_path):
    recipe = Recipe(
        name="m",
        output="m",
        stages=[{"type": "export"}, {"type": "quantize", "method": "static"}],
    )
    dynamic = set_option(recipe, "stages.quantize.method", "dynamic")
    assert get_option(dynamic, "stages.quantize.method") == "dynamic"
    assert get_option(recipe, "stages.quantize.method") == "static"  # the original is untouched
    assert (
        get_option(
            set_option(recipe, "stages.2.max_float_nodes", 4), "stages.quantize.max_float_nodes"
        )
        == 4
    )
    assert set_option(recipe, "budget", 0.5).budget == 0.5
    assert set_option(recipe, "data.max_length", 64).data == {"max_length": 64}
    assert "stages.quantize.calibration" in option_paths(recipe)
    with pytest.raises(ep.InputError, match="did you mean 'method'"):
        set_option(recipe, "stages.quantize.methd", "dynamic")
    with pytest.raises(ep.InputError, match="unknown quantization method 'int4'"):
        set_option(recipe, "stages.quantize.method", "int4")
    with pytest.raises(ep.InputError, match="did you mean 'quantize'"):
        set_option(recipe, "stages.quantise.method", "dynamic")
    with pytest.raises(ep.InputError, match="max_float_nodes must be int, got '8'"):
        set_option(recipe, "stages.quantize.max_float_nodes", "8")
    with pytest.raises(ep.InputError, match="budget must be a number"):
        set_option(recipe, "budget", -1)
    with pytest.raises(ProfileError, match="known profiles"):
        set_option(recipe, "profile", "rpi9")
    # and a recipe written back to TOML reads back equal
    tuned = set_option(
        set_option(recipe, "profile", "rpi5"), "stages.quantize.candidates", [{"method": "dynamic"}]
    )
    (tmp_path / "r.toml").write_text(tuned.to_toml())
    again = Recipe.load(tmp_path / "r.toml")
    assert again.stages == tuned.stages and again.profile == "rpi5"


def test_profile_sets_arm_quantization_and_labels_the_speed_estimated(
    tmp_path, capsys, classifier, data
):
    out = tmp_path / "arm.edgepack"
    # rpi-zero-2w's default is int8-static; it is a Cortex-A53, not this host
    args = f"quantize {classifier[0]} -o {out} --profile rpi-zero-2w --calib {data} --eval {data}"
    code = main([*args.split(), "--budget", "50", "--min-speedup", "0", "--quiet"])
    assert code == 0
    assert "int8 vs fp32 speed: estimated for rpi-zero-2w" in capsys.readouterr().out
    stage = ep.read_manifest(out).provenance["stages"][0]
    assert stage["options"]["method"] == "static"
    assert stage["options"]["activation_type"] == "int8"
    assert stage["options"]["activation_symmetric"] is False
    assert stage["options"]["per_channel"] is True
    assert stage["speed"] == {"kind": "estimated", "on": "rpi-zero-2w"}


def test_a_hugging_face_source_is_exported_only_when_needed_and_after_new_weights(
    tmp_path, scale_stage
):
    folder = save_tiny_bert(tmp_path / "hf", labels=["negative", "positive"])
    rows = ["sentence\tlabel"] + [
        f"{w} {v} film\t{i % 2}" for i, (w, v) in enumerate([("good", "plot"), ("bad", "a")] * 8)
    ]
    (tmp_path / "d.tsv").write_text("\n".join(rows) + "\n")
    recipe = Recipe(
        name="bert",
        output=str(tmp_path / "bert.edgepack"),
        source=str(folder),
        task="text-classification",
        data={"evaluation": str(tmp_path / "d.tsv"), "max_length": 16},
        stages=[{"type": "scale", "factor": 5.0}, {"type": "export"}],
    )
    manifest = run_recipe(recipe, progress=False)
    assert SEEN == [{"exported_version": None, "version": 0}]  # not exported at load time
    assert manifest.preprocessing["kind"] == "text"
    assert {f.path for f in manifest.files} >= {"vocab.txt"}
    # the pack's model has the scaled classifier: its logits are 5x the source's
    transformers = require("transformers")
    torch = require("torch")
    source = transformers.AutoModelForSequenceClassification.from_pretrained(str(folder)).eval()
    tokenizer = transformers.AutoTokenizer.from_pretrained(str(folder))
    feeds = {
        k: v.astype(np.int64) for k, v in tokenizer(["good film"], return_tensors="np").items()
    }
    with torch.no_grad():
        want = 5.0 * source(**{k: torch.from_numpy(v) for k, v in feeds.items()}).logits.numpy()
    got = ep.load(tmp_path / "bert.edgepack", threads=1).run(feeds)["logits"]
    np.testing.assert_allclose(got, want, rtol=1e-3, atol=1e-4)


def test_the_quantize_stage_offers_every_field_of_the_quantizer_options():
    from edgepack.compress.quantize import DynamicOptions, StaticOptions

    fields = {f.name for cls in (DynamicOptions, StaticOptions) for f in dataclasses.fields(cls)}
    assert set(QuantizeStageOptions.QUANTIZER_FIELDS) == fields
    with pytest.raises(ep.InputError, match="budget but no data.evaluation"):
        run_recipe(Recipe(name="m", output="m", source="m.onnx", budget=1.0), progress=False)


def test_stage_options_are_checked_for_the_recipes_profile_before_running():
    stages = [{"type": "quantize", "weight_type": "uint8"}]
    Recipe(name="m", output="m", stages=stages)  # dynamic int8 (no profile): uint8 weights are fine
    # rpi-zero-2w means static with int8 activations: onnxruntime has no kernel for uint8 weights
    with pytest.raises(
        ep.InputError, match=r"stage 1 \(quantize\) for profile rpi-zero-2w: int8 act"
    ):
        Recipe(name="m", output="m", profile="rpi-zero-2w", stages=stages)


def test_a_prune_stage_shrinks_the_model_the_next_stages_export(tmp_path, mlp):
    module, example, data, x = mlp
    recipe = Recipe(
        name="m",
        output=str(tmp_path / "m.edgepack"),
        budget=10.0,
        data={"train": str(data), "calibration": str(data), "evaluation": str(data)},
        stages=[
            {
                "type": "prune",
                "channels_keep": 0.5,
                "finetune_steps": 300,
                "learning_rate": 0.01,
                "importance_samples": 32,
                "measure_seconds": 0.05,
            },
            {"type": "quantize", "method": "dynamic", "min_speedup": 0},
        ],
    )
    manifest = run_recipe(recipe, module=module, example_inputs=example, progress=False)
    figures = manifest.metrics["prune"]
    assert figures["parameters_after"] < figures["parameters_before"] == 4 * 16 + 16 + 16 * 3 + 3
    assert [s["name"] for s in manifest.provenance["stages"]] == ["prune", "quantize"]
    model = ep.load(tmp_path / "m.edgepack", threads=1)
    assert model.run({"x": x[:2]})["logits"].shape == (2, 3)
    # the source module is untouched: the stage pruned a copy
    assert module[0].out_features == 16


def test_a_prune_stage_without_labelled_training_data_is_refused(tmp_path, mlp):
    module, example, _, x = mlp
    np.savez(tmp_path / "unlabelled.npz", x=x)
    recipe = Recipe(
        name="m",
        output=str(tmp_path / "m.edgepack"),
        data={"calibration": str(tmp_path / "unlabelled.npz")},
        stages=[{"type": "prune", "channels_keep": 0.5}],
    )
    with pytest.raises(ep.InputError, match="prune stage fine-tunes on labelled data"):
        run_recipe(recipe, module=module, example_inputs=example, progress=False)
    with pytest.raises(ep.InputError, match=r"stage 1 \(prune\).*did you mean 'ffn_keep'"):
        Recipe(name="m", output="m", stages=[{"type": "prune", "fnn_keep": 0.5}])


def test_distill_then_prune_from_a_hugging_face_folder(tmp_path):
    """The Compress II chain as a recipe: a 1-layer student with a trimmed vocabulary, then FFN
    pruning; the pack's vocab is the student's, and the pack runs text with it. (A random tiny
    BERT is at chance level, which quantize now refuses; the MLP test covers prune -> quantize.)"""
    folder = save_tiny_bert(tmp_path / "hf", labels=["negative", "positive"])
    torch, transformers = require("torch"), require("transformers")
    words = ["good", "bad", "film", "plot", "a", "b", "c", "d", "e", "f"]
    texts = [f"{a} {b} {c}" for a in words for b in words[::3] for c in words[1::4]]
    source = transformers.AutoModelForSequenceClassification.from_pretrained(str(folder)).eval()
    tokens = transformers.AutoTokenizer.from_pretrained(str(folder))(
        texts, padding=True, return_tensors="pt"
    )
    with torch.no_grad():  # a sharper, centred random head: the source answers both classes
        source.classifier.weight *= 1000.0
        logits = source(**tokens).logits
        source.classifier.bias[1] -= (logits[:, 1] - logits[:, 0]).median()
        labels = source(**tokens).logits.argmax(1).tolist()  # learnable: the source's own answers
    source.save_pretrained(str(folder))
    assert 0 < sum(labels) < len(labels)  # both classes, so the source is above chance
    rows = ["sentence\tlabel"] + [f"{t}\t{y}" for t, y in zip(texts, labels, strict=True)]
    (tmp_path / "d.tsv").write_text("\n".join(rows) + "\n")
    recipe = Recipe(
        name="bert",
        output=str(tmp_path / "bert.edgepack"),
        source=str(folder),
        task="text-classification",
        data={
            "train": str(tmp_path / "d.tsv"),
            "calibration": str(tmp_path / "d.tsv"),
            "evaluation": str(tmp_path / "d.tsv"),
            "max_length": 16,
        },
        stages=[
            {"type": "distill", "layers": [0], "epochs": 1, "batch_size": 8, "trim_vocab": True},
            {
                "type": "prune",
                "ffn_keep": 0.5,
                "finetune_steps": 2,
                "importance_samples": 8,
                "measure_seconds": 0.05,
                "sequence_length": 16,
            },
        ],
    )
    manifest = run_recipe(recipe, progress=False)
    assert [s["name"] for s in manifest.provenance["stages"]] == ["distill", "prune"]
    distilled = manifest.metrics["distill"]
    assert distilled["parameters_student"] < distilled["parameters_teacher"]
    vocab = {f.path: f for f in manifest.files}["vocab.txt"]
    assert vocab.size_bytes < (folder / "vocab.txt").stat().st_size  # the trimmed vocab ships
    assert (
        manifest.metrics["prune"]["parameters_after"]
        < manifest.metrics["prune"]["parameters_before"]
    )
    model = ep.load(tmp_path / "bert.edgepack", threads=1)
    assert len(model.predict(["good plot film", "bad a film"])) == 2  # the trimmed vocab encodes


# --- The stage report, the workdir and --nproc ----------------------------------------------


def test_the_stage_report_has_a_row_per_model_each_stage_left(tmp_path, mlp):
    module, example, data, _ = mlp
    recipe = Recipe(
        name="m",
        output=str(tmp_path / "m.edgepack"),
        data={"train": str(data), "calibration": str(data), "evaluation": str(data)},
        stages=[
            {"type": "prune", "channels_keep": 0.5, "finetune_steps": 50, "measure_seconds": 0.05},
            {"type": "quantize", "method": "dynamic", "min_speedup": 0},
        ],
    )
    run_recipe(
        recipe, module=module, example_inputs=example, progress=False, report=tmp_path / "rep"
    )
    report = json.loads((tmp_path / "rep" / "report.json").read_text())
    rows = report["stages"]
    assert [(r["number"], r["stage"], r["precision"]) for r in rows] == [
        (0, "source", "fp32"),
        (1, "prune", "fp32"),
        (2, "quantize", rows[2]["precision"]),
    ]
    assert rows[2]["precision"] != "fp32"
    source, pruned = rows[0], rows[1]
    assert pruned["parameters"] < source["parameters"] == 4 * 16 + 16 + 16 * 3 + 3
    assert pruned["flops"] < source["flops"]
    assert all(r["host_p50_ms"] > 0 and 0 <= r["metric"] <= 100 for r in rows)
    assert all(r["size_bytes"] > 0 for r in rows) and rows[1]["seconds"] > 0
    markdown = (tmp_path / "rep" / "report.md").read_text()
    assert "| prune | model.onnx | onnx fp32 |" in markdown
    assert "Wall time per stage" in markdown
    plots = {"stages.png", "accuracy_latency.png"}
    if require_matplotlib():
        assert plots <= {p.name for p in (tmp_path / "rep").iterdir()}


def require_matplotlib() -> bool:
    import importlib.util

    return importlib.util.find_spec("matplotlib") is not None


def test_cli_compress_writes_the_report_beside_the_pack_unless_told_not_to(
    tmp_path, capsys, classifier, data
):
    write_quantize_recipe(tmp_path, classifier, data)
    assert main(["compress", str(tmp_path / "r.toml"), "--quiet"]) == 0
    assert f"stage report: {tmp_path / 'out' / 'clf-report'}/report.md" in capsys.readouterr().out
    rows = json.loads((tmp_path / "out" / "clf-report" / "report.json").read_text())["stages"]
    assert [r["stage"] for r in rows] == ["source", "quantize"]
    (tmp_path / "elsewhere").mkdir()
    argv = ["compress", str(tmp_path / "r.toml"), "--quiet", "-o", str(tmp_path / "b.edgepack")]
    assert main([*argv, "--no-report"]) == 0
    assert not (tmp_path / "b-report").exists()
    assert main(["compress", str(tmp_path / "r.toml"), "--nproc", "0"]) == 1
    assert "--nproc must be a positive number" in capsys.readouterr().err


def test_cli_compress_nproc_2_distills_on_two_processes_and_rank_0_writes(tmp_path, capfd):
    from tests.compress.test_distill import bert_teacher, sentences, write_tsv

    teacher = bert_teacher(tmp_path / "teacher", dropout=0.0)
    train = write_tsv(tmp_path / "train.tsv", *sentences(40, seed=2))
    write_recipe(
        tmp_path / "r.toml",
        name="student",
        output="student.edgepack",
        source=str(teacher),
        task="text-classification",
        data={"train": str(train), "evaluation": str(train), "max_length": 16},
        stages=[
            {
                "type": "distill",
                "layers": [0],
                "epochs": 2,
                "batch_size": 8,
                "learning_rate": 3e-3,
                "alpha": 1.0,
                "checkpoint_every": 2,
            }
        ],
    )
    work = tmp_path / "work"
    argv = ["compress", str(tmp_path / "r.toml"), "--nproc", "2", "--quiet", "--workdir"]
    assert main([*argv, str(work)]) == 0
    out = capfd.readouterr().out
    assert out.count("wrote ") == 1  # rank 0 alone
    manifest = ep.verify_pack(tmp_path / "student.edgepack")
    assert manifest.metrics["distill"]["world_size"] == 2
    assert (work / "stage1-distill" / "distill" / "checkpoint.pt").is_file()
    rows = json.loads((tmp_path / "student-report" / "report.json").read_text())["stages"]
    assert [r["stage"] for r in rows] == ["source", "distill"]
    assert rows[1]["parameters"] < rows[0]["parameters"]


def test_a_hugging_face_text_model_goes_to_tflite_at_max_length_and_runs_text(tmp_path):
    """Issue 13, item 7: TFLite shapes are fixed, so the text model is exported at the pack's
    max_length; the pack pads text to what each model file needs (ONNX: the longest text;
    TFLite: max_length, one sample at a time) and both backends give the same answers."""
    require("ai_edge_litert")
    folder = save_tiny_bert(tmp_path / "hf", labels=["negative", "positive"])
    words = ["good", "bad", "film", "plot", "a", "b", "c"]
    rng = np.random.default_rng(0)
    texts = [" ".join(rng.choice(words, size=1 + i % 9)) for i in range(40)]
    rows = "".join(f"{t}\t{i % 2}\n" for i, t in enumerate(texts))
    (tmp_path / "t.tsv").write_text("sentence\tlabel\n" + rows)
    data = str(tmp_path / "t.tsv")
    recipe = Recipe(
        name="b",
        output=str(tmp_path / "b.edgepack"),
        source=str(folder),
        task="text-classification",
        data={"calibration": data, "evaluation": data, "max_length": 24},
        stages=[{"type": "export", "formats": ["onnx", "tflite"], "tflite_quantization": "none"}],
    )
    manifest = run_recipe(recipe, progress=False)
    onnx_entry, tflite_entry = manifest.models
    assert onnx_entry.inputs[0].shape == ["batch_size", "sequence_length"]
    assert {tuple(s.shape) for s in tflite_entry.inputs} == {(1, 24)}
    parity = tflite_entry.checks[-1]
    assert parity["argmax_agreement"] == 100.0 and parity["max_abs_diff"] < 1e-4
    batch = ["good film", "a bad plot that is long and bad and bad", "c"]
    answers = {}
    for backend in ("onnxruntime", "litert"):
        model = ep.load(tmp_path / "b.edgepack", backend=backend, threads=1)
        answers[backend] = [p.scores["positive"] for p in model.predict(batch)]
    np.testing.assert_allclose(answers["litert"], answers["onnxruntime"], atol=1e-4)
