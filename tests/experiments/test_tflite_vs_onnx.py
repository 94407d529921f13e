"""Variant packs for the TFLite-vs-ONNX experiment: one model per pack, the index, and the table."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.conftest import require

FAST = {"threads": (1,), "min_count": 20, "min_duration_s": 0.05}


@pytest.fixture(scope="module")
def variants():
    require("torch")
    require("sklearn")
    return require("experiments.variants")


def test_onnx_variants_build_into_one_model_packs_the_benchmark_reads(variants, tmp_path):
    from edgepack.runtime import read_manifest
    from experiments import tflite_vs_onnx

    source = variants.digits_source(epochs=1)
    chosen = ["onnx-fp32", "onnx-int8"]
    index = variants.build_variants(source, tmp_path, "digits", chosen, progress=False)

    assert json.loads((tmp_path / "variants.json").read_text()) == index
    for variant in chosen:
        manifest = read_manifest(tmp_path / index["variants"][variant]["pack"])
        assert [m.path for m in manifest.models] == [index["variants"][variant]["model_file"]]
    result = tflite_vs_onnx.compare_variants(tmp_path, **FAST)
    rows = {row["variant"]: row for row in result["rows"]}
    assert rows["onnx-fp32"]["agreement"] == 100.0
    assert rows["onnx-fp32"]["accuracy"] == pytest.approx(source.pytorch_accuracy, abs=0.3)
    assert rows["onnx-int8"]["agreement"] > 90
    assert rows["onnx-int8"]["precision"] in ("int8-static", "int8-dynamic")  # chosen by speed
    assert rows["onnx-int8"]["size_bytes"] < rows["onnx-fp32"]["size_bytes"] / 2
    assert all(row["p50_ms"]["1"] > 0 for row in rows.values())
    table = tflite_vs_onnx.format_comparison([result], FAST["threads"])
    assert "onnx-int8" in table and "p50 1T ms" in table


def test_synthetic_sentences_hold_out_their_words_and_negation_flips_the_label(variants):
    train, train_labels = variants.sentiment_sentences(200, held_out=False, seed=0)
    test, _ = variants.sentiment_sentences(200, held_out=True, seed=0)
    held_out = set(variants.POSITIVE[-3:] + variants.NEGATIVE[-3:])
    assert not held_out & {w.strip(".,") for text in train for w in text.split()}
    assert held_out & {w.strip(".,") for text in test for w in text.split()}
    assert 0.3 < train_labels.mean() < 0.7
    for text, label in zip(train, train_labels, strict=True):
        if " not " in text:
            word = text.rstrip(".").split()[-1]
            assert label == (word in variants.NEGATIVE)


@pytest.mark.slow
def test_the_experiment_builds_all_five_digits_variants_and_compares_them(tmp_path, capsys):
    require("torch")
    require("litert_torch")
    require("ai_edge_quantizer")
    require("ai_edge_litert")
    from edgepack.runtime import read_manifest
    from experiments import tflite_vs_onnx

    report = tmp_path / "result.json"
    argv = ["--models", "digits", "--out", str(tmp_path), "--threads", "1", "--json", str(report)]
    assert tflite_vs_onnx.main([*argv, "--min-count", "20", "--min-duration-s", "0.05"]) == 0

    rows = {r["variant"]: r for r in json.loads(report.read_text())["models"][0]["rows"]}
    assert list(rows) == list(tflite_vs_onnx.VARIANTS)
    for variant in ("tflite-fp32", "tflite-int8-dynamic", "tflite-int8-full"):
        row = rows[variant]
        manifest = read_manifest(tmp_path / "digits" / row["pack"])
        # The TFLite pack keeps only its model, and says it dropped the ONNX one it was checked
        # against; that check stays in the entry.
        assert [m.format for m in manifest.models] == ["tflite"]
        assert manifest.provenance["stages"][-1]["dropped"] == ["model.onnx"]
        assert [c["reference"] for c in row["checks"]] == ["pytorch", "model.onnx"]
        assert row["agreement"] >= 97.0
    assert np.isclose(rows["tflite-fp32"]["max_abs_diff"], 0, atol=1e-3)
    assert "tflite-int8-full" in capsys.readouterr().out
