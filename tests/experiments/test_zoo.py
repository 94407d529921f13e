"""The zoo's packs: what benchmarks/reference_costs.json (shipped for the latency estimates) was
made from, so a change to the zoo or to the cost summary shows here."""

from __future__ import annotations

import json
from importlib import resources

import pytest

from edgepack.runtime import EdgepackError, read_manifest
from tests.conftest import require


@pytest.mark.slow
def test_a_zoo_pack_carries_the_cost_the_package_ships(tmp_path):
    require("torch")
    from experiments.zoo import build_packs

    (built,) = build_packs("mobilenet_v2", ["fp32"], tmp_path / "packs", tmp_path)
    shipped = resources.files("edgepack.benchmarks").joinpath("reference_costs.json").read_text()
    assert built["cost"] == json.loads(shipped)["mobilenet_v2"]["fp32"]
    manifest = read_manifest(built["pack"])
    assert manifest.models[0].cost == built["cost"]
    assert manifest.provenance["source_model"] == "experiments.zoo:mobilenet_v2 (random weights)"


def test_unknown_models_and_precisions_are_named(tmp_path):
    require("torch")
    from experiments.zoo import build_packs

    with pytest.raises(
        EdgepackError, match="unknown zoo model 'mobilenet_v9'; known: mobilenet_v2"
    ):
        build_packs("mobilenet_v9", ["fp32"], tmp_path, tmp_path)
    with pytest.raises(EdgepackError, match=r"'fp32' and 'int8', got \['fp16'\]"):
        build_packs("resnet18", ["fp16"], tmp_path, tmp_path)
