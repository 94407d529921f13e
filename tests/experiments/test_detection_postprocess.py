"""experiments/detection_postprocess.py builds the ops it times, and an estimate of a graph with one
says what it leaves out."""

from __future__ import annotations

import numpy as np
import pytest

from tests.conftest import require

require("ai_edge_litert")
require("onnx")

from edgepack.benchmarks.estimate import estimate_latency  # noqa: E402
from edgepack.compress.cost import tflite_cost_summary  # noqa: E402
from edgepack.device_profiles import load_profile  # noqa: E402
from experiments.detection_postprocess import (  # noqa: E402
    detection_postprocess_tflite,
    main,
    tflite_inputs,
)


@pytest.mark.parametrize("regular", [False, True])
def test_the_tflite_op_runs_in_litert_and_keeps_the_detections_asked_for(tmp_path, regular):
    from ai_edge_litert.interpreter import Interpreter

    path = tmp_path / "nms.tflite"
    path.write_bytes(detection_postprocess_tflite(200, 5, 7, regular))
    interpreter = Interpreter(model_path=str(path), num_threads=1)
    interpreter.allocate_tensors()
    for detail, tensor in zip(interpreter.get_input_details(), tflite_inputs(200, 5), strict=True):
        interpreter.set_tensor(detail["index"], tensor)
    interpreter.invoke()
    out = {d["name"]: interpreter.get_tensor(d["index"]) for d in interpreter.get_output_details()}
    assert out["num_detections"].tolist() == [7.0]
    assert out["detection_scores"].shape == (1, 7)
    assert np.all(np.diff(out["detection_scores"][0]) <= 0)  # best first


def test_an_estimate_of_a_graph_with_nms_says_it_is_incomplete_and_widens_its_range(tmp_path):
    path = tmp_path / "nms.tflite"
    path.write_bytes(detection_postprocess_tflite(1917, 90, 10, True))
    cost = tflite_cost_summary(path)
    assert [r["op_class"] for r in cost["ops"]] == ["nms"]
    assert cost["complete"] is False
    assert cost["notes"][0].startswith("TFLite_Detection_PostProcess: non-max suppression")
    profile = load_profile("rpi4-1.5ghz")
    marked = estimate_latency(cost, profile, backend="litert", threads=4, history=tmp_path / "h")
    plain = {k: v for k, v in cost.items() if k not in ("complete", "notes")}
    unmarked = estimate_latency(plain, profile, backend="litert", threads=4, history=tmp_path / "h")
    assert marked["latency_ms"] == pytest.approx(unmarked["latency_ms"])
    assert marked["sigma_log"] > unmarked["sigma_log"]
    assert any("cost summary: TFLite_Detection_PostProcess" in n for n in marked["notes"])
    assert any("the cost summary is incomplete" in n for n in marked["notes"])


def test_the_table_has_a_row_per_op_kind_and_detection_count(capsys):
    main(["--boxes", "300", "--classes", "4", "--rounds", "2"])
    rows = capsys.readouterr().out.splitlines()[2:]
    names = [" ".join(r.split()[:3]) for r in rows]
    assert names == [
        f"{op} {n}"
        for n in (10, 100)
        for op in ("TFLite_Detection_PostProcess fast", "TFLite_Detection_PostProcess regular",
                   "NonMaxSuppression per-class")
    ]  # fmt: skip
    assert all(r.split()[3].replace(".", "").isdigit() for r in rows)  # a median in ms
    assert all(r.endswith("incomplete") for r in rows)
