"""quantize_sst2's parts that need no model: the SST-2 files, the recipe it runs, the verdict."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pytest

from edgepack.compress.data import TextDataset
from edgepack.runtime import InputError
from experiments.quantize_sst2 import CANDIDATES, PackRow, quantize_recipe, summarize
from experiments.sst2 import LABELS, load_sst2, rows, write_tsv

TEXTS = ('a "quoted" gem', "dull , dull , dull", "it 's fine", "never again")


def test_written_rows_read_back_as_sst2_with_its_class_names(tmp_path):
    data = TextDataset(TEXTS, np.array([1, 0, 1, 0]), LABELS)
    write_tsv(rows(data, [3, 0, 1]), tmp_path / "train.tsv")
    write_tsv(data, tmp_path / "validation.tsv")
    train, validation = load_sst2(tmp_path)
    assert train.texts == (TEXTS[3], TEXTS[0], TEXTS[1])  # bare quotes survive: no quoting
    assert train.labels.tolist() == [0, 1, 0] and train.classes == LABELS
    assert validation.texts == TEXTS


def test_a_folder_without_sst2_says_which_file_is_missing(tmp_path):
    write_tsv(TextDataset(TEXTS, np.array([1, 0, 1, 0])), tmp_path / "train.tsv")
    with pytest.raises(InputError, match=r"has no validation\.tsv;.*Pass --data DIR"):
        load_sst2(tmp_path)


def test_the_recipe_is_data_the_recipe_loader_accepts(tmp_path):
    args = argparse.Namespace(budget=0.5, min_speedup=1.0, max_float_nodes=0)
    recipe = quantize_recipe(tmp_path / "teacher", tmp_path / "out", Path("c.tsv"), Path("e"), args)
    (stage,) = recipe.to_dict()["stages"]
    assert stage["type"] == "quantize" and stage["budget"] == 0.5
    assert stage["max_float_nodes"] == 0
    assert stage["candidates"] == [dict(c) for c in CANDIDATES]
    assert recipe.postprocessing["labels"] == list(LABELS)


def _packs(ours_p50: dict[str, float]) -> list[PackRow]:
    def row(key: str, accuracy: float, p50: dict[str, float]) -> PackRow:
        latency = {k: {"p50": v, "p90": 1.1 * v} for k, v in p50.items()}
        return PackRow(key, key, Path(key), 1_000_000, "x", accuracy, latency)

    slower = {k: 20.0 for k in ours_p50}
    optimum = {k: 10.0 for k in ours_p50}
    return [
        row("fp32", 90.0, slower),
        row("optimum", 89.0, optimum),
        row("edgepack", 88.8, ours_p50),
    ]


def test_the_verdict_names_the_settings_that_miss_the_speed_target():
    summary = summarize(_packs({"s64 t1": 5.0, "s64 t2": 9.0}), rows=100)
    assert summary["verdict"].endswith("speed met in 1 of 2 settings (s64 t2 missed)")
    assert summary["targets"]["accuracy_met"]  # 0.2 points behind, within 0.3
    assert summary["targets"]["speedup"]["s64 t1"] == pytest.approx(2.0)
    assert "edgepack vs Optimum" in summary["table"]


def test_the_verdict_names_nothing_when_every_setting_is_met():
    summary = summarize(_packs({"s64 t1": 5.0}), rows=100)
    assert summary["verdict"].endswith("speed met in 1 of 1 settings")
