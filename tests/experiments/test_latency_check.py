"""experiments.latency_check's bookkeeping: rows of kernels edgepack never runs are summarised apart
from the held-out rows the target is judged on, and an older estimator gets profiles without the
fields it does not know."""

import json

from experiments import latency_check
from experiments.latency_check import GROUPS, Row, _strip_for_old, summary


def _row(split: str, published: float, modelled: bool = True) -> Row:
    return Row(split, "rpi5", "litert", "mobilenet_v2", "fp32", 4, published, "https://x", "",
               modelled)  # fmt: skip


def test_other_kernels_are_summarised_apart_from_the_held_out_rows():
    rows = [_row("calibration", 10.0), _row("held-out", 10.0), _row("held-out", 40.0, False)]
    estimates = [{"latency_ms": 10.0, "range_ms": [8.0, 12.0]}] * 3
    s = summary(rows, estimates)
    assert set(s) == set(GROUPS)
    assert s["held-out"]["rows"] == 1 and s["held-out"]["within_30pct"] == 1.0
    everything = s["held-out incl. other kernels"]
    assert everything["rows"] == 2 and everything["within_30pct"] == 0.5
    assert everything["median_abs_error"] == (0.0 + 0.75) / 2


def test_every_row_of_other_kernels_says_so_and_is_held_out():
    others = [r for r in latency_check.ROWS if not r.runtime_modelled]
    assert others and all(r.split == "held-out" and "XNNPACK" in r.note for r in others)


def test_an_older_estimator_gets_profiles_without_fields_its_schema_never_names():
    text = (
        "[cpu]\ncores = 4\nall_core_speedup = 2.0\n[memory]\nl2_kib = 512\n[sources]\n"
        '"cpu.all_core_speedup" = { url = "u", title = "t" }\n[notes]\n'
        '"cpu.all_core_speedup" = "why"\n'
    )
    old = _strip_for_old(text, schema='"memory.l2_kib"')
    assert "all_core_speedup" not in old and "l2_kib = 512" in old and "cores = 4" in old
    assert _strip_for_old(text, schema='"memory.l2_kib" "cpu.all_core_speedup"') == text


def test_costs_another_cost_counter_built_are_counted_again(tmp_path):
    cost = {"ops": [], "flops": 1}
    store = tmp_path / "costs.json"
    store.write_text(json.dumps({"counter": "an older counter", "costs": {"m/fp32": cost}}))
    assert latency_check.build_costs([], tmp_path) == {}
    store.write_text(json.dumps({"m/fp32": cost}))  # the format before the counter was recorded
    assert latency_check.build_costs([], tmp_path) == {}
    current = latency_check._counter_fingerprint()
    store.write_text(json.dumps({"counter": current, "costs": {"m/fp32": cost}}))
    assert latency_check.build_costs([], tmp_path) == {"m/fp32": cost}


def test_every_row_names_a_model_latency_check_can_build():
    buildable = set(latency_check.zoo.ZOO) | set(latency_check.TIMM_ARCHS)
    assert {r.arch for r in latency_check.ROWS} <= buildable


def test_the_second_ispcojp_table_is_held_out_whole():
    rows = [r for r in latency_check.ROWS if r.arch in latency_check.ISPCOJP_MORE]
    assert len(rows) == len(latency_check.ISPCOJP_MORE) * 3
    assert all(r.split == "held-out" and r.backend == "onnxruntime" for r in rows)


def test_shufflenet_v2_is_the_1x_network():
    # torchvision's shufflenet_v2_x1_0, which the source ran, has 2 278 604 parameters.
    model = latency_check._ShuffleNetV2()
    assert sum(p.numel() for p in model.parameters()) == 2_278_604
