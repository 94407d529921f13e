"""run() from many threads gives the serial answers; the device runtime never loads torch."""

from __future__ import annotations

import json
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

import edgepack.runtime as ep
from edgepack.packing import assemble_pack, describe_model_file

THREADS, CALLS = 8, 200


def _inputs(count: int, batch: int) -> list[np.ndarray]:
    rng = np.random.default_rng(11)
    return [rng.normal(size=(batch, 4)).astype(np.float32) for _ in range(count)]


@pytest.mark.parametrize("backend", ["onnxruntime", "litert"])
def test_concurrent_runs_equal_serial_runs(tmp_path, classifier, classifier_tflite, backend):
    names = {"serving_default_args_0": "x", "serving_default_output_0_output": "logits"}
    tflite = (classifier_tflite[0], describe_model_file(classifier_tflite[0], names=names))
    assemble_pack(tmp_path / "p", [classifier[0], tflite])
    model = ep.load(tmp_path / "p", backend=backend, threads=1)
    batch = 1 if backend == "litert" else 2
    inputs = _inputs(THREADS * CALLS, batch)
    serial = [model.run({"x": x})["logits"] for x in inputs]
    with ThreadPoolExecutor(THREADS) as pool:
        concurrent = list(pool.map(lambda x: model.run({"x": x})["logits"], inputs))
    assert len(concurrent) == THREADS * CALLS
    for got, want in zip(concurrent, serial, strict=True):
        np.testing.assert_array_equal(got, want)


def test_runtime_never_imports_torch(tmp_path, classifier):
    dest = tmp_path / "p.edgepack"
    assemble_pack(dest, [classifier[0]])
    script = f"""
import json, sys
import numpy as np
import edgepack.runtime as ep
model = ep.load({str(dest)!r}, threads=1)
model.run({{"x": np.zeros((1, 4), np.float32)}})
heavy = ["torch", "transformers", "optimum", "onnx", "tensorflow", "litert_torch",
         "edgepack.compress"]
print(json.dumps([m for m in heavy if m in sys.modules]))
"""
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    )
    assert json.loads(result.stdout.strip().splitlines()[-1]) == []
