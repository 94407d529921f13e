"""Baseline packs: the fp32 export and Optimum's dynamic int8 of a tiny BERT, run through the
runtime like any other pack."""

from __future__ import annotations

import numpy as np
import pytest

import edgepack.runtime as ep
from tests.conftest import require, save_tiny_bert

TEXTS = ["good film", "bad plot", "a good plot", "the film is bad"]


@pytest.fixture(scope="module")
def packs(tmp_path_factory):
    require("optimum.onnxruntime")
    from experiments.baselines import export_fp32, optimum_dynamic

    tmp = tmp_path_factory.mktemp("baselines")
    model = save_tiny_bert(tmp / "hf", labels=["negative", "positive"])
    optimum_dynamic(model, tmp / "optimum.edgepack", max_length=32)
    export_fp32(model, tmp / "fp32.edgepack", max_length=32)
    return tmp / "fp32.edgepack", tmp / "optimum.edgepack"


def test_optimum_pack_runs_text_like_the_fp32_pack(packs):
    fp32_path, optimum_path = packs
    manifest = ep.verify_pack(optimum_path)
    fp32 = ep.read_manifest(fp32_path)
    entry = manifest.models[0]
    assert [m.path for m in manifest.models] == ["model.int8.onnx"]
    assert entry.precision == "int8-dynamic"
    assert entry.size_bytes < fp32.models[0].size_bytes
    assert entry.cost["flops"] > 0
    # Only the model differs: same tokenizer files, preprocessing and labels as edgepack's pack.
    assert manifest.preprocessing == fp32.preprocessing
    assert manifest.preprocessing["max_length"] == 32
    assert manifest.postprocessing["labels"] == ["negative", "positive"]
    assert {f.path for f in manifest.files} == {f.path for f in fp32.files} >= {"vocab.txt"}
    stage = manifest.provenance["stages"][-1]
    assert stage["name"] == "optimum-dynamic"
    assert stage["options"]["per_channel"] is True and stage["options"]["is_static"] is False

    int8, reference = ep.load(optimum_path, threads=1), ep.load(fp32_path, threads=1)
    predictions = int8.predict(TEXTS)
    assert {p.label for p in predictions} <= {"negative", "positive"}
    got = np.array([list(p.scores.values()) for p in predictions])
    want = np.array([list(p.scores.values()) for p in reference.predict(TEXTS)])
    assert np.abs(got - want).max() < 0.05  # int8 weights: close to fp32, not equal
