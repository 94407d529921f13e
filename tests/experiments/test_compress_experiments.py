"""compress_sst2's and compress_digits' parts that need no large model: the teacher cache key,
the recipe they run, the snapshot stage and one-model packs on a tiny CNN, the targets verdict."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pytest
import torch

from edgepack.compress.data import TextDataset
from edgepack.compress.finetune import RESULT_FILE, FinetuneConfig
from edgepack.compress.recipe import Recipe, run_recipe
from edgepack.runtime import InputError, load, read_manifest
from experiments.compress_sst2 import cached_teacher, check_targets, compress_recipe, teacher_key
from experiments.stage_packs import Row, SnapshotOptions, format_rows, split_pack

TEXTS = ("a gem", "dull , dull", "it 's fine", "never again")


def _base(tmp_path: Path) -> Path:
    base = tmp_path / "base"
    base.mkdir()
    (base / "config.json").write_text('{"model_type": "bert"}')
    (base / "model.safetensors").write_bytes(b"0" * 10)
    return base


def test_the_teacher_key_changes_with_settings_and_data_and_a_cached_one_is_reused(tmp_path):
    base = _base(tmp_path)
    data = TextDataset(TEXTS, np.array([1, 0, 1, 0]))
    config = FinetuneConfig(samples=4, learning_rate=1e-4)
    key = teacher_key(base, data, config)
    assert key == teacher_key(base, data, FinetuneConfig(samples=4, learning_rate=1e-4))
    assert key != teacher_key(base, data, FinetuneConfig(samples=4, learning_rate=5e-5))
    other = TextDataset(TEXTS, np.array([1, 0, 1, 1]))
    assert key != teacher_key(base, other, config)
    cached = tmp_path / "cache" / key
    cached.mkdir(parents=True)
    (cached / RESULT_FILE).write_text("{}")
    assert cached_teacher(base, data, config, tmp_path / "cache") == (cached, False)


def _args(**changes) -> argparse.Namespace:
    values = {
        "layers": "0,2,4",
        "distill_epochs": 1,
        "distill_lr": 1e-4,
        "ffn_keep": 0.5,
        "heads_keep": 0.5,
        "prune_steps": 10,
        "student": None,
        "budget": 1.0,
    }
    return argparse.Namespace(**{**values, **changes})


def test_the_recipe_distills_prunes_quantizes_and_exports_with_snapshots(tmp_path):
    files = {"train": tmp_path / "t.tsv", "evaluation": tmp_path / "e.tsv"}
    recipe = compress_recipe(_args(), tmp_path / "teacher", files, tmp_path / "s", tmp_path / "o")
    kinds = [s.type for s in recipe.stages]
    assert kinds == ["distill", "snapshot", "prune", "snapshot", "quantize", "export"]
    distill = recipe.stages[0].options
    assert distill.layers == (0, 2, 4) and distill.trim_vocab and distill.max_length == 64
    assert recipe.stages[-1].options.formats == ("onnx", "tflite")
    again = Recipe.from_dict(recipe.to_dict())  # the recipe is data: it round-trips
    assert [s.type for s in again.stages] == kinds
    student = compress_recipe(
        _args(student=tmp_path / "st"), tmp_path / "t", files, tmp_path / "s", tmp_path / "o"
    )
    assert student.stages[0].type == "prune"
    assert student.source == str(tmp_path / "st")


def test_a_snapshot_stage_needs_a_path():
    with pytest.raises(InputError, match="needs path"):
        SnapshotOptions()


def test_snapshots_and_split_packs_give_one_loadable_model_each(tmp_path):
    torch.manual_seed(0)
    module = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 3)).eval()
    example = {"x": torch.zeros(1, 4)}
    recipe = Recipe(
        name="tiny",
        output=str(tmp_path / "tiny.edgepack"),
        stages=[
            {"type": "snapshot", "path": str(tmp_path / "kept.onnx")},
            {"type": "export", "formats": ["onnx"]},
            {"type": "quantize", "method": "dynamic", "min_speedup": 0},
        ],
        keep_fp32=True,
    )
    run_recipe(recipe, module=module, example_inputs=example, progress=False)
    assert (tmp_path / "kept.onnx").is_file()
    split = split_pack(recipe.output, tmp_path / "split")
    assert sorted(split) == ["model.int8.onnx", "model.onnx"]
    feeds = {"x": np.ones((1, 4), np.float32)}
    for path, pack in split.items():
        (entry,) = read_manifest(pack).models
        assert entry.path == path
        (logits,) = load(pack, threads=1).run(feeds).values()
        assert logits.shape == (1, 3)
    assert not list((tmp_path / "split").glob(".*"))  # no scratch left behind


def _row(key: str, accuracy: float, p50: float, fmt: str = "onnx", mb: float = 5.0) -> Row:
    return Row(key, key, Path(key), fmt, "x", 1, int(mb * 1e6), accuracy, p50, p50)


def test_the_verdict_checks_every_target_with_its_figure():
    table = [
        _row("teacher", 86.0, 10.0),
        _row("optimum", 85.5, 4.0, mb=23.0),
        _row("model_int8_onnx", 85.2, 1.2),
        _row("model_int8_tflite", 84.5, 0.9, fmt="tflite", mb=13.0),
    ]
    verdict, targets = check_targets(table, compress_s=30 * 60)
    met = targets["met"]
    assert met["p50_best"] and met["p50_onnx"] and met["compress_time"]  # 0.225, 0.3, 30 min
    assert not met["accuracy"] and not met["file"]  # tflite 1.5 points below; 13 MB
    assert targets["figures"]["p50_best_row"] == "model_int8_tflite"
    assert "NOT met" in verdict
    assert "p50 / optimum" in format_rows(table, reference=table[1])
