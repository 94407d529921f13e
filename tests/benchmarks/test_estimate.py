"""The latency estimator: the board cost model on the bundled profiles and hand-written ones, its
calibration, the measured-error history, the host path, and real packs (ONNX and TFLite)."""

from __future__ import annotations

import dataclasses
import json
import math

import pytest

from edgepack.benchmarks import calibrate
from edgepack.benchmarks.calibrate import (
    INT8_PEAK_RATIO,
    SIGMA,
    SIGMA_OTHER_PRECISION,
    SIGMA_OTHER_THREADS,
    SIGMA_OTHER_THREADS_MEASURED,
    calibration,
    kernel_ratio,
    reference_costs,
)
from edgepack.benchmarks.cost_model import (
    ASSUMED_CHANNELS_PER_DEPTHWISE_OP,
    board,
    board_speedup,
    compute_rate,
    cost_seconds,
    fixed_seconds,
    memory_rate,
)
from edgepack.benchmarks.errors import BenchmarkError
from edgepack.benchmarks.estimate import (
    estimate_latency,
    estimate_pack,
    format_estimate,
    host_seconds,
    record_measurement,
)
from edgepack.device_profiles import as_measured, detect_host, load_profile, read_profile_file
from edgepack.device_profiles.cores import runtime_model
from edgepack.device_profiles.errors import ProfileError
from edgepack.packing import assemble_pack, describe_model_file
from edgepack.runtime import read_manifest
from tests.conftest import require

MOBILENET_V1 = reference_costs()["mobilenet_v1"]


def _cost(flops: float, bytes_moved: float = 4e6, precision: str = "fp32", count: int = 20):
    return {
        "parameters": 1000,
        "flops": flops,
        "shape_assumptions": {},
        "ops": [
            {"op_class": "conv", "precision": precision, "count": count, "flops": flops,
             "bytes": 2e6},
            {"op_class": "elementwise", "precision": precision, "count": 10, "flops": 0.0,
             "bytes": bytes_moved},
        ],
    }  # fmt: skip


def _profile(
    tmp_path, name="testboard", core="Cortex-A72", references="", extra_memory="", extra_cpu=""
):
    text = f"""
schema_version = 1
name = "{name}"
description = "a board made up for tests"
soc = "Test SoC"
[cpu]
core = "{core}"
cores = 4
max_clock_ghz = 1.5
arch = "armv8.0-a"
simd_width_bits = 128
features = ["neon"]
{extra_cpu}
[memory]
ram_gib = 4
bandwidth_gbs = 4.0
bandwidth_kind = "measured"
l2_kib = 1024
l2_shared = true
{extra_memory}
[power]
load_w = 5.0
[os]
image = "Test OS"
python = "3.11"
[defaults]
backend = "litert"
threads = 4
quantization = "int8-static"
{references}
"""
    path = tmp_path / f"{name}.toml"
    path.write_text(text)
    return read_profile_file(path)


def _reference(latency_ms: float, precision: str = "fp32", backend: str = "litert") -> str:
    return f"""
[[references]]
model = "MobileNet v1 1.0 (224x224)"
backend = "{backend}"
threads = 4
precision = "{precision}"
latency_ms = {latency_ms}
url = "https://example.org/bench"
title = "a made-up measurement"
"""


@pytest.fixture
def alone(monkeypatch):
    """No other profile exists, so a profile without references has nothing to borrow."""
    monkeypatch.setattr(calibrate, "list_profiles", lambda: ["host"])


def _factor_for(multiple, cost, profile, backend="litert", threads=4):
    """The calibration factor a reference of `multiple` x the uncalibrated estimate gives: it
    scales the kernel time only, the fixed overheads stay as counted."""
    seconds, rows = cost_seconds(cost, profile, backend, threads)
    raw, fixed = seconds * 1e3, fixed_seconds(rows, profile, backend) * 1e3
    return kernel_ratio(multiple * raw, raw, fixed)


def _estimate(cost, profile, tmp_path, **options):
    return estimate_latency(cost, profile, history=tmp_path / "errors.json", **options)


# --- the cost model ---


def test_boards_are_told_apart_by_their_cores_not_only_their_clocks():
    zero, pi5 = load_profile("rpi-zero-2w"), load_profile("rpi5")
    slow, _ = cost_seconds(MOBILENET_V1["fp32"], zero, "litert", 4)
    fast, _ = cost_seconds(MOBILENET_V1["fp32"], pi5, "litert", 4)
    clocks = pi5.cpu.max_clock_ghz / zero.cpu.max_clock_ghz
    # An in-order A53 that issues one 128-bit FMLA per cycle against an out-of-order A76 that
    # issues two: per clock, twice the FLOPs and a better share of them.
    assert fast * clocks * 1.8 < slow


def test_memory_bound_ops_are_charged_at_the_level_their_data_fits(tmp_path):
    profile = _profile(tmp_path)
    small = {"ops": [{"op_class": "elementwise", "precision": "fp32", "count": 10,
                      "flops": 0.0, "bytes": 10 * 256 * 1024}]}  # fmt: skip
    big = {"ops": [{**small["ops"][0], "bytes": 10 * 64 * 2**20}]}
    _, in_cache = cost_seconds(small, profile, "litert", 1)
    _, in_dram = cost_seconds(big, profile, "litert", 1)
    assert in_cache[0]["bound"] == "L2" and in_dram[0]["bound"] == "DRAM"
    # DRAM is shared: four threads get at most the board's bandwidth, not four times one core's.
    one, _ = cost_seconds(big, profile, "litert", 1)
    four, _ = cost_seconds(big, profile, "litert", 4)
    assert one / four == pytest.approx(2.0, rel=0.05)  # one core gets half of 4 GB/s


def test_compute_scales_with_threads_and_int8_with_the_isa(tmp_path):
    a72 = _profile(tmp_path)
    times = [cost_seconds(_cost(4e9), a72, "litert", t)[0] for t in (1, 2, 4)]
    assert times[0] > times[1] > times[2] > times[0] / 4
    fp32 = cost_seconds(_cost(4e9), a72, "litert", 1)[0]
    int8 = cost_seconds(_cost(4e9, precision="int8"), a72, "litert", 1)[0]
    a76 = dataclasses.replace(
        load_profile("rpi5"), cpu=dataclasses.replace(load_profile("rpi5").cpu, max_clock_ghz=1.5)
    )
    fp32_dot = cost_seconds(_cost(4e9), a76, "litert", 1)[0]
    int8_dot = cost_seconds(_cost(4e9, precision="int8"), a76, "litert", 1)[0]
    assert 1 < fp32 / int8 < fp32_dot / int8_dot  # SDOT gains more than widening multiplies
    # ...but no runtime has a dot-product int8 depthwise kernel: it gains what it gains on the A72.
    for backend in ("litert", "onnxruntime"):
        runtime = runtime_model(backend)
        for op_class in ("depthwise_conv", "conv"):
            gains = [
                compute_rate(board(p), runtime, op_class, "int8", 1)
                / compute_rate(board(p), runtime, op_class, "fp32", 1)
                for p in (a72, a76)
            ]
            if op_class == "depthwise_conv":
                assert gains[0] == pytest.approx(gains[1]) == runtime.int8_rate["neon"]
            else:
                assert gains[1] == runtime.int8_rate["dotprod"] > gains[0]


def test_a_published_all_core_speed_up_sets_the_boards_thread_scaling(tmp_path):
    """With cpu.all_core_speedup the compute-bound speed-up at all cores is the published one
    (Amdahl's law through it), not the runtime's assumed per-doubling efficiency."""
    measured = _profile(tmp_path, "measured", extra_cpu="all_core_speedup = 2.0")
    assumed = _profile(tmp_path, "assumed")
    compute_bound = {"ops": [{"op_class": "conv", "precision": "fp32", "count": 1,
                              "flops": 8e9, "bytes": 1e5}]}  # fmt: skip

    def ratio(profile, threads):
        one = cost_seconds(compute_bound, profile, "litert", 1)[1][0]
        many = cost_seconds(compute_bound, profile, "litert", threads)[1][0]
        return (one["ms"] - one["unscaled_ms"]) / (many["ms"] - many["unscaled_ms"])

    assert ratio(measured, 4) == pytest.approx(2.0)
    assert 1.0 < ratio(measured, 2) < ratio(measured, 3) < 2.0
    eta = runtime_model("litert").parallel_efficiency
    assert ratio(assumed, 4) == pytest.approx(4 * eta**2)
    # ... and an estimate carried to another thread count widens less where it is published.
    refs = _reference(100.0)
    own = _profile(tmp_path, "own", references=refs, extra_cpu="all_core_speedup = 2.0")
    assert calibration(own, "litert", "fp32", 1)["sigma"] == pytest.approx(
        math.hypot(SIGMA["own"], SIGMA_OTHER_THREADS_MEASURED)
    )


def test_an_all_core_slow_down_is_refused_and_a_speed_up_is_capped_at_the_cores(tmp_path):
    with pytest.raises(ProfileError, match="'cpu.all_core_speedup' is 0.5; .* at least 1"):
        _profile(tmp_path, extra_cpu="all_core_speedup = 0.5")
    # A copy of a 4-core profile edited down to fewer cores keeps a figure above them.
    capped = _profile(tmp_path, "capped", extra_cpu="all_core_speedup = 9.0")
    linear = _profile(tmp_path, "linear", extra_cpu="all_core_speedup = 4.0")
    ort = runtime_model("onnxruntime")
    assert board_speedup(board(capped), 4, ort) == board_speedup(board(linear), 4, ort) == 4.0


def test_onnxruntime_runs_float_depthwise_convolution_channel_by_channel(tmp_path):
    """MLAS on Arm loops over the channels of an fp32 depthwise convolution (im2col + a one-row
    GEMM each): the groups cost ONNX Runtime time, not LiteRT, and not ONNX Runtime's int8
    depthwise kernel; a group gets one thread per 64 Ki multiply-adds plus one, so small groups
    run on one thread, with no fork/join and no speed-up from the session's threads."""
    profile = _profile(tmp_path)
    row = {"op_class": "depthwise_conv", "precision": "fp32", "count": 10, "flops": 2e7,
           "bytes": 4e6}  # fmt: skip
    ort = runtime_model("onnxruntime")

    def ms(op, backend, threads=4):
        return cost_seconds({"ops": [op]}, profile, backend, threads)[1][0]

    b = board(profile)
    expand = 2e7 * ort.fp32_depthwise_expand_bytes_per_flop  # im2col written and read back
    one_thread_cache = b.clock_hz * b.core.l2_bytes_per_cycle
    # 5000 groups of 2000 multiply-adds: one thread each, so no fork/join per group.
    small = ms({**row, "groups": 5000}, "onnxruntime")
    assert small["threads"] == 1
    per_group = ort.fp32_depthwise_group_cycles / b.clock_hz
    expected = (5000 * per_group + expand / one_thread_cache) * 1e3
    assert small["channel_loop_ms"] == pytest.approx(expected)
    # ...and 4 threads change nothing: no speed-up, and no fork/join for the op either.
    single = ms({**row, "groups": 5000}, "onnxruntime", threads=1)
    assert small["ms"] == pytest.approx(single["ms"])
    # 50 groups of 200 000 multiply-adds: 200000 // 65536 + 1 = 4 threads, each with a fork/join.
    large = ms({**row, "groups": 50}, "onnxruntime")
    assert large["threads"] == 4
    per_large = (ort.fp32_depthwise_group_cycles + ort.sync_cycles) / b.clock_hz
    cache = one_thread_cache * board_speedup(b, 4, ort)
    assert large["channel_loop_ms"] == pytest.approx((50 * per_large + expand / cache) * 1e3)
    assert ms({**row, "groups": 50}, "onnxruntime", threads=2)["threads"] == 2
    # The whole row is unscaled by calibration (no dense reference measures this path); a conv
    # row's unscaled part is its per-op overhead alone.
    assert small["unscaled_ms"] == pytest.approx(small["ms"])
    conv = ms({**row, "op_class": "conv"}, "onnxruntime")
    assert conv["unscaled_ms"] == pytest.approx(10 * (ort.op_overhead_cycles + ort.sync_cycles)
                                                / b.clock_hz * 1e3)  # fmt: skip
    # A summary without a group count (packs: the schema has no field yet) assumes 400 channels
    # per depthwise op, capped by what its bytes allow, and says so.
    plain = ms(row, "onnxruntime")
    assumed = min(ASSUMED_CHANNELS_PER_DEPTHWISE_OP * 10, 4e6 / (8 * 49))
    assert plain["groups_assumed"] and "groups_assumed" not in small
    assert plain["threads"] == 1  # 2e7 / 2 / 4000 = 2500 multiply-adds per group
    assert small["ms"] - plain["ms"] == pytest.approx((5000 - assumed) * per_group * 1e3)
    assert ms({**row, "groups": 5000}, "litert")["ms"] == pytest.approx(ms(row, "litert")["ms"])
    assert ms(row, "litert")["threads"] == 4
    int8 = {**row, "precision": "int8", "groups": 5000}
    assert "channel_loop_ms" not in ms(int8, "onnxruntime")


def test_an_estimate_mostly_in_the_channel_loop_names_the_releases_it_describes(tmp_path):
    """The loop is ONNX Runtime's before 1.24 (which added a NEON 3x3 depthwise kernel): an
    estimate that is mostly loop says so; a dense one, and LiteRT's, do not."""
    profile = _profile(tmp_path)
    looped = {"op_class": "depthwise_conv", "precision": "fp32", "count": 10, "flops": 2e7,
              "bytes": 4e6, "groups": 5000}  # fmt: skip
    dense = {**looped, "op_class": "conv", "flops": 2e9}

    def noted(op, backend="onnxruntime"):
        e = estimate_latency({"ops": [op]}, profile, backend=backend, history=tmp_path / "h")
        return any("before 1.24" in note for note in e["notes"])

    assert noted(looped)
    assert not noted(dense)
    assert not noted(looped, "litert")


def test_the_channel_loop_adds_the_traffic_from_beyond_l2_to_its_compute(tmp_path):
    """The loop copies one channel in and computes it in turn, on one thread: where the row's
    tensors live in DRAM their traffic adds to the compute (timed on this host:
    experiments/mlas_threads.py --memory); in L2 the roofline's max stands, and a row without
    the loop (LiteRT, or a dense conv) keeps the max wherever its data lives."""
    profile = _profile(tmp_path)
    ort = runtime_model("onnxruntime")
    b = board(profile)
    row = {"op_class": "depthwise_conv", "precision": "fp32", "count": 10, "flops": 2e7,
           "groups": 5000}  # fmt: skip
    in_l2 = {**row, "bytes": 10 * 256 * 1024.0}
    in_dram = {**row, "bytes": 10 * 64 * 2**20.0}

    def breakdown(op, backend="onnxruntime"):
        return cost_seconds({"ops": [op]}, profile, backend, 4)[1][0]

    compute_ms = 2e7 / compute_rate(b, ort, "depthwise_conv", "fp32", 1) * 1e3
    dram_ms = in_dram["bytes"] / memory_rate(b, 64 * 2**20.0, 1, ort)[0] * 1e3
    near, far = breakdown(in_l2), breakdown(in_dram)
    assert far["channel_loop_ms"] - near["channel_loop_ms"] == pytest.approx(dram_ms)
    overhead_ms = 10 * ort.op_overhead_cycles / b.clock_hz * 1e3
    assert far["ms"] == pytest.approx(compute_ms + far["channel_loop_ms"] + overhead_ms)
    assert near["ms"] == pytest.approx(compute_ms + near["channel_loop_ms"] + overhead_ms)
    for op, backend in ((in_dram, "litert"), ({**in_dram, "op_class": "conv"}, "onnxruntime")):
        dense = breakdown(op, backend)
        assert "channel_loop_ms" not in dense
        assert dense["bound"] == "DRAM"


def test_the_range_is_as_sure_as_the_calibration_only_where_the_factor_corrects(tmp_path, alone):
    """A calibration measures the part of an estimate its factor scales; the rest (overheads,
    memory-bound and channel-by-channel rows) is known only as well as an uncalibrated
    estimate, so the range's log half-width is the share-weighted mean of the two sigmas."""
    raw = cost_seconds(MOBILENET_V1["fp32"], _profile(tmp_path), "onnxruntime", 4)[0] * 1e3
    profile = _profile(tmp_path, references=_reference(raw, backend="onnxruntime"))
    dense = {"ops": [{"op_class": "conv", "precision": "fp32", "count": 20, "flops": 4e9,
                      "bytes": 20 * 4096.0}]}  # fmt: skip
    looped = {
        "ops": [
            *dense["ops"],
            {
                "op_class": "depthwise_conv",
                "precision": "fp32",
                "count": 10,
                "flops": 4e8,
                "bytes": 4e6,
                "groups": 8000,
            },
        ]
    }
    own = calibration(profile, "onnxruntime", "fp32", 4)["sigma"]
    for cost in (dense, looped):
        p = _estimate(cost, profile, tmp_path, backend="onnxruntime")
        seconds, rows = cost_seconds(cost, profile, "onnxruntime", 4)
        fixed = fixed_seconds(rows, profile, "onnxruntime")
        share = fixed / (fixed + p["calibration"]["factor"] * (seconds - fixed))
        assert p["sigma_log"] == pytest.approx(own + share * (SIGMA["uncalibrated"] - own))
    sure = _estimate(dense, profile, tmp_path, backend="onnxruntime")
    unsure = _estimate(looped, profile, tmp_path, backend="onnxruntime")
    assert own <= sure["sigma_log"] < unsure["sigma_log"] < SIGMA["uncalibrated"]
    # A dense model: almost all of it is calibrated, and nothing is said of it.
    assert sure["sigma_log"] == pytest.approx(own, abs=0.01)
    assert not any("not what its calibration measured" in n for n in sure["notes"])
    share = unsure["unscaled_share"]
    assert share > 0.3
    assert f"{share:.0%} of this estimate" in " ".join(unsure["notes"])


def test_onnxruntime_runs_a_small_float_convolution_on_one_thread(tmp_path):
    """MLAS gives any float GEMM or convolution one thread per 64 Ki multiply-adds plus one: a
    row of small convolutions runs on the calling thread at any session thread count, with no
    fork/join, while LiteRT (XNNPACK) threads every op; int8 rows keep the session's threads."""
    profile = _profile(tmp_path)
    ort = runtime_model("onnxruntime")

    def row(macs_per_op, precision="fp32"):
        op = {"op_class": "conv", "precision": precision, "count": 20,
              "flops": 2 * 20 * macs_per_op, "bytes": 20 * 4096.0}  # fmt: skip
        return {t: cost_seconds({"ops": [op]}, profile, "onnxruntime", t)[1][0] for t in (1, 4)}

    small = row(50_000)
    assert small[4]["threads"] == 1
    assert small[4]["ms"] == pytest.approx(small[1]["ms"])  # no speed-up, no fork/join
    middle = row(150_000)  # 150000 // 65536 + 1 = 3 threads, each op with a fork/join
    assert middle[4]["threads"] == 3
    sync = 20 * ort.sync_cycles / board(profile).clock_hz * 1e3
    assert middle[4]["unscaled_ms"] - middle[1]["unscaled_ms"] == pytest.approx(sync)
    assert row(1e6)[4]["threads"] == 4
    assert row(50_000, "int8")[4]["threads"] == 4
    op = {"op_class": "conv", "precision": "fp32", "count": 20, "flops": 2e6, "bytes": 8e4}
    assert cost_seconds({"ops": [op]}, profile, "litert", 4)[1][0]["threads"] == 4


def test_onnxruntime_splits_an_elementwise_op_by_its_size_and_dequantizes_on_one_thread(tmp_path):
    """ONNX Runtime's thread pool splits an elementwise or quantize op only when Eigen's cost
    model says so: (n x c - 1e5) / 1e5 + 0.9 threads for n elements (under about 80 000 it runs on
    the calling thread), and its DequantizeLinear never splits; LiteRT splits every op."""
    profile = _profile(tmp_path)
    cycles = runtime_model("onnxruntime").elementwise_cycles_per_element

    def threads(elements, op_class="elementwise", precision="fp32", backend="onnxruntime"):
        per_element = 5 if op_class == "quantize" else {"fp32": 8, "int8": 2}[precision]
        op = {"op_class": op_class, "precision": precision, "count": 3, "flops": 0.0,
              "bytes": 3 * elements * per_element}  # fmt: skip
        return cost_seconds({"ops": [op]}, profile, backend, 4)[1][0]["threads"]

    assert threads(47_040) == threads(75_264) == 1
    assert threads(150_528) == int((150_528 * cycles - 1e5) / 1e5 + 0.9) == 3
    assert threads(1_204_224) == threads(1_204_224, "quantize") == 4
    assert threads(1_204_224, "quantize", "int8") == 1  # a dequantize
    assert threads(47_040, "elementwise", "int8", "litert") == 4


def test_a_calibration_factor_leaves_memory_bound_time_alone(tmp_path):
    """The factor is fitted on compute-bound references (dense CNNs): a row that the board's
    cache or DRAM bandwidth bounds is unscaled, as the per-op overheads are."""
    profile = _profile(tmp_path)
    add = {"op_class": "elementwise", "precision": "fp32", "count": 3, "flops": 1e6, "bytes": 3e7}
    (r,) = cost_seconds({"ops": [add]}, profile, "onnxruntime", 4)[1]
    assert r["bound"] != "compute"
    assert r["unscaled_ms"] == pytest.approx(r["ms"])
    dense = {"op_class": "conv", "precision": "fp32", "count": 3, "flops": 3e9, "bytes": 3e6}
    (c,) = cost_seconds({"ops": [dense]}, profile, "onnxruntime", 4)[1]
    assert c["bound"] == "compute" and c["unscaled_ms"] < 0.01 * c["ms"]


def test_the_cost_summary_counts_depthwise_groups_and_a_pack_carries_them(tmp_path):
    require("onnx")
    import onnx
    from onnx import TensorProto, helper

    from edgepack.compress.cost import cost_summary

    weight = helper.make_tensor("w", TensorProto.FLOAT, [8, 1, 3, 3], [0.1] * 72)
    node = helper.make_node("Conv", ["x", "w"], ["y"], group=8, pads=[1, 1, 1, 1])
    graph = helper.make_graph(
        [node], "dw", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8, 6, 6])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8, 6, 6])], [weight],
    )  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    path = tmp_path / "dw.onnx"
    onnx.save(model, path)
    cost = cost_summary(path)
    assert {r["op_class"]: r for r in cost["ops"]}["depthwise_conv"]["groups"] == 8
    # The pack schema (1.3 on) admits the field: a pack written with it reads back with it, and
    # its estimate charges the counted groups, not the assumed 400 channels per op.
    entry = describe_model_file(path, pack_path="model.onnx")
    entry.cost = cost
    pack = tmp_path / "dw.edgepack"
    assemble_pack(pack, [(path, entry)])
    (model,) = read_manifest(pack).models
    assert model.cost == cost
    estimate = estimate_pack(pack, "rpi5", backend="onnxruntime", history=tmp_path / "h.json")
    assert not any("assumed" in note for note in estimate["notes"])
    # A summary without the count (a pack written before 1.3) is estimated on an assumed one.
    entry.cost = {**cost, "ops": [{k: v for k, v in r.items() if k != "groups"}
                                  for r in cost["ops"]]}  # fmt: skip
    old = tmp_path / "old.edgepack"
    assemble_pack(old, [(path, entry)])
    estimate = estimate_pack(old, "rpi5", backend="onnxruntime", history=tmp_path / "h.json")
    assert any("400 per depthwise op assumed" in note for note in estimate["notes"])


def test_a_precision_carried_on_an_assumed_int8_rate_widens_more():
    """The Pi 5 calibrates ONNX Runtime on an fp32 figure only; carried to int8 it rests on MLAS's
    SDOT rate, an assumption, so it widens by log(4) / 2. The Pi 4's LiteRT NEON rate is cited."""
    pi5 = calibration(load_profile("rpi5"), "onnxruntime", "int8", 4)
    same = calibration(load_profile("rpi5"), "onnxruntime", "fp32", 4)
    assert pi5["factor"] == same["factor"]
    assert pi5["sigma"] == pytest.approx(
        math.hypot(same["sigma"], math.log(INT8_PEAK_RATIO["dotprod"]) / 2)
    )
    assert math.log(INT8_PEAK_RATIO["dotprod"]) / 2 > SIGMA_OTHER_PRECISION


def test_a_uint8_figure_calibrates_onnx_runtime_but_not_litert(tmp_path, alone):
    """LiteRT runs a uint8 model with XNNPACK's QU8 kernels or its own, depending on the build,
    never with the kernels of edgepack's fp32 and signed int8 packs; ONNX Runtime's MLAS has
    kernels of the same kind for uint8 and int8 activations."""
    cost, bare = MOBILENET_V1["int8-static"], _profile(tmp_path)
    raw = {b: cost_seconds(cost, bare, b, 4)[0] * 1e3 for b in ("litert", "onnxruntime")}
    refs = _reference(3 * raw["litert"], "uint8") + _reference(
        3 * raw["onnxruntime"], "uint8", backend="onnxruntime"
    )
    profile = _profile(tmp_path, references=refs)
    lite = calibration(profile, "litert", "int8", 4)
    assert lite["kind"] == "uncalibrated" and lite["factor"] == 1.0
    assert [s["model"] for s in lite["skipped"]] == ["MobileNet v1 1.0 (224x224)"]
    assert "uint8" in lite["skipped"][0]["reason"] and "litert" in lite["skipped"][0]["reason"]
    assert lite["skipped"][0]["reason"] in lite["status"]  # the user is told why
    ort = calibration(profile, "onnxruntime", "int8", 4)
    assert ort["kind"] == "own" and not ort["skipped"]
    assert ort["factor"] == pytest.approx(_factor_for(3, cost, profile, "onnxruntime"))


def test_a_profile_without_the_figures_the_model_needs_is_named(tmp_path):
    profile = _profile(tmp_path)
    bare = dataclasses.replace(profile, memory=dataclasses.replace(profile.memory, l2_kib=None))
    with pytest.raises(BenchmarkError, match="lacks memory.l2_kib"):
        board(bare)


# --- calibration and labels ---


def test_an_estimate_is_labelled_for_its_runtime_and_adds_up(tmp_path, alone):
    profile = _profile(tmp_path)
    p = _estimate(_cost(1e9), profile, tmp_path, threads=1)
    assert p["kind"] == "estimated" and "not measured" in p["label"]
    assert (p["backend"], p["precision"], p["threads"]) == ("litert", "fp32", 1)
    assert (
        p["calibration"]["kind"] == "uncalibrated" and "uncalibrated" in p["calibration"]["status"]
    )
    assert p["sigma_log"] == SIGMA["uncalibrated"]
    assert sum(r["ms"] for r in p["breakdown"]) <= p["latency_ms"]
    low, high = p["range_ms"]
    assert low < p["latency_ms"] < high
    assert p["energy"]["mj"] == pytest.approx(p["latency_ms"] * 5.0)
    assert format_estimate(p).startswith("estimated ") and "litert fp32" in format_estimate(p)


def test_own_calibration_is_per_runtime_and_precision_and_fits_the_references(tmp_path, alone):
    plain = _profile(tmp_path)
    raw_fp32 = cost_seconds(MOBILENET_V1["fp32"], plain, "litert", 4)[0] * 1e3
    raw_int8 = cost_seconds(MOBILENET_V1["int8-static"], plain, "litert", 4)[0] * 1e3
    refs = _reference(2 * raw_fp32) + _reference(8 * raw_int8, "int8")
    profile = _profile(tmp_path, references=refs)
    fp32 = calibration(profile, "litert", "fp32", 4)
    int8 = calibration(profile, "litert", "int8", 4)
    # Each precision is fitted on its own reference: an int8 rate that is off does not leak.
    assert fp32["kind"] == int8["kind"] == "own"
    assert fp32["factor"] == pytest.approx(_factor_for(2, MOBILENET_V1["fp32"], plain))
    assert int8["factor"] == pytest.approx(_factor_for(8, MOBILENET_V1["int8-static"], plain))
    assert fp32["factor"] > 2.0  # the fixed overheads are not scaled, so the kernels are more
    assert [r["precision"] for r in int8["references"]] == ["int8"]
    assert fp32["sigma"] == pytest.approx(SIGMA["own"])
    # LiteRT measurements say nothing about ONNX Runtime.
    assert calibration(profile, "onnxruntime")["kind"] == "uncalibrated"
    p = _estimate(MOBILENET_V1["fp32"], profile, tmp_path)
    assert p["latency_ms"] == pytest.approx(2 * raw_fp32, rel=1e-6)
    q = _estimate(MOBILENET_V1["int8-static"], profile, tmp_path)
    assert q["latency_ms"] == pytest.approx(8 * raw_int8, rel=1e-6)


def test_a_reference_measured_in_another_mode_is_estimated_as_the_board_then_was(tmp_path, alone):
    """A figure taken at 1.2 GHz and 2 GB/s (another power mode, or before a clock update) is
    estimated at those: the factor it gives a 1.5 GHz board is the one it gives a 1.2 GHz,
    2 GB/s profile, not one that also absorbs the clock difference."""
    base = _profile(tmp_path, "low")
    low = dataclasses.replace(
        base,
        cpu=dataclasses.replace(base.cpu, max_clock_ghz=1.2),
        memory=dataclasses.replace(base.memory, bandwidth_gbs=2.0),
    )
    assert as_measured(base, 1.2, 2.0) == low and as_measured(base) == base
    raw_low = cost_seconds(MOBILENET_V1["fp32"], low, "litert", 4)[0] * 1e3
    stated = _reference(1.5 * raw_low) + "board_clock_ghz = 1.2\nboard_bandwidth_gbs = 2.0\n"
    profile = _profile(tmp_path, references=stated)
    assert profile.references[0].board_clock_ghz == 1.2
    fit = calibration(profile, "litert", "fp32", 4)
    assert fit["factor"] == pytest.approx(_factor_for(1.5, MOBILENET_V1["fp32"], low))
    unstated = calibration(_profile(tmp_path, references=_reference(1.5 * raw_low)), "litert")
    assert fit["factor"] < unstated["factor"]  # read at 1.5 GHz the same figure looks slower
    with pytest.raises(ProfileError, match="board_clock_ghz' must be greater than 0"):
        _profile(tmp_path, references=_reference(10.0) + "board_clock_ghz = 0.0\n")


def test_a_factor_carried_to_another_precision_or_thread_count_widens_the_range(tmp_path, alone):
    raw_int8 = cost_seconds(MOBILENET_V1["int8-static"], _profile(tmp_path), "litert", 4)[0] * 1e3
    profile = _profile(tmp_path, references=_reference(3 * raw_int8, "int8"))
    same = calibration(profile, "litert", "int8", 4)
    other = calibration(profile, "litert", "fp32", 4)
    expected = _factor_for(3, MOBILENET_V1["int8-static"], _profile(tmp_path))
    assert same["factor"] == other["factor"] == pytest.approx(expected)
    assert other["sigma"] == pytest.approx(math.hypot(same["sigma"], SIGMA_OTHER_PRECISION))
    assert "fitted on int8, not fp32" in other["status"]
    one = calibration(profile, "litert", "int8", 1)
    assert one["sigma"] == pytest.approx(math.hypot(same["sigma"], SIGMA_OTHER_THREADS))
    assert "at 4 thread(s), not 1" in one["status"]
    p = _estimate(MOBILENET_V1["fp32"], profile, tmp_path, threads=1)
    assert p["calibration"]["sigma"] == pytest.approx(
        math.hypot(SIGMA["own"], SIGMA_OTHER_PRECISION, SIGMA_OTHER_THREADS)
    )
    assert p["sigma_log"] >= p["calibration"]["sigma"]


def test_the_cross_precision_spread_covers_the_bundled_boards():
    """SIGMA_OTHER_PRECISION is set from the calibration rows: where a board cites both an fp32
    and an int8 figure, their factors may differ by no more than it."""
    seen = 0
    for name in ("rpi4-1.5ghz", "rpi3b-plus", "rpi5"):
        profile = load_profile(name)
        fp32 = calibration(profile, "litert", "fp32", 4)
        int8 = calibration(profile, "litert", "int8", 4)
        if {r["precision"] for r in fp32["references"]} & {"fp32"} and int8["references"]:
            seen += 1
            assert abs(math.log(fp32["factor"] / int8["factor"])) <= SIGMA_OTHER_PRECISION, name
    assert seen == 2


def test_a_board_without_references_borrows_from_the_same_core_only(tmp_path, monkeypatch):
    raw = cost_seconds(MOBILENET_V1["fp32"], _profile(tmp_path), "litert", 4)[0] * 1e3
    boards = {
        "a72-board": _profile(tmp_path, "a72-board", references=_reference(3 * raw)),
        "a53-board": _profile(tmp_path, "a53-board", core="Cortex-A53",
                              references=_reference(raw / 10)),
    }  # fmt: skip
    monkeypatch.setattr(calibrate, "list_profiles", lambda: ["host", *boards])
    monkeypatch.setattr(calibrate, "load_profile", boards.__getitem__)
    lone = _profile(tmp_path)
    cal = calibration(lone, "litert")
    lent = _factor_for(3, MOBILENET_V1["fp32"], _profile(tmp_path))
    assert cal["kind"] == "same-core" and cal["borrowed_from"] == {"a72-board": pytest.approx(lent)}
    assert "no litert calibration of its own" in cal["status"] and "a72-board" in cal["status"]
    assert cal["sigma"] > SIGMA["own"]
    other = _profile(tmp_path, core="Cortex-A57")
    assert calibration(other, "litert")["kind"] == "uncalibrated"


def test_a_lent_factor_carries_the_boards_per_clock_ratio_from_a_table_of_both(
    tmp_path, monkeypatch
):
    raw = cost_seconds(MOBILENET_V1["fp32"], _profile(tmp_path), "litert", 4)[0] * 1e3
    lender = _profile(tmp_path, "lender", references=_reference(3 * raw),
                      extra_cpu="one_thread_cnn_mcycles = 400")  # fmt: skip
    monkeypatch.setattr(calibrate, "list_profiles", lambda: ["host", "lender"])
    monkeypatch.setattr(calibrate, "load_profile", {"lender": lender}.__getitem__)
    plain = calibration(_profile(tmp_path, "plain"), "litert")
    slower = calibration(_profile(tmp_path, "slower", extra_cpu="one_thread_cnn_mcycles = 600"),
                         "litert")  # fmt: skip
    assert slower["factor"] == pytest.approx(1.5 * plain["factor"])  # 600 / 400 megacycles
    assert "x1.50" in slower["status"] and "x1." not in plain["status"]
    with pytest.raises(ProfileError, match="'cpu.one_thread_cnn_mcycles' must be greater than 0"):
        _profile(tmp_path, "bad", extra_cpu="one_thread_cnn_mcycles = 0")


def test_the_bundled_calibrated_boards_reproduce_their_references(tmp_path):
    for name in ("rpi4-1.5ghz", "rpi3b-plus"):
        profile = load_profile(name)
        for precision in ("fp32", "int8"):
            cal = calibration(profile, "litert", precision, 4)
            assert cal["kind"] == "own", name
            for ref in cal["references"]:
                error = ref["uncalibrated_ms"] * cal["factor"] / ref["published_ms"]
                assert 0.7 < error < 1.4, (name, ref)
    zero = calibration(load_profile("rpi-zero-2w"), "litert", "fp32", 4)
    assert zero["kind"] == "same-core" and "rpi3b-plus" in zero["borrowed_from"]
    # ncnn's table: one Zero 2 W core took 842 megacycles where a Pi 3 B+ one took 626
    b_plus = calibration(load_profile("rpi3b-plus"), "litert", "fp32", 4)
    assert zero["factor"] == pytest.approx(b_plus["factor"] * 842 / 626)
    assert calibration(load_profile("jetson-nano"), "litert")["kind"] == "uncalibrated"
    pi5 = calibration(load_profile("rpi5"), "litert", "int8", 4)  # its one LiteRT figure is uint8
    assert pi5["kind"] == "uncalibrated" and pi5["skipped"]


# --- the closed loop ---


def test_measurement_replaces_the_estimate_and_corrects_that_precision_only(tmp_path, alone):
    profile = _profile(tmp_path)
    history = tmp_path / "errors.json"
    p = _estimate(_cost(1e9), profile, tmp_path)
    measured = record_measurement(p, 2 * p["latency_ms"], measured_on="Cortex-A72", history=history)
    assert measured["kind"] == "measured" and measured["latency_ms"] == 2 * p["latency_ms"]
    assert measured["estimate"]["error_pct"] == pytest.approx(-50)
    records = json.loads(history.read_text())["records"]
    assert len(records) == 1 and records[0]["log_error"] == pytest.approx(math.log(2))
    assert records[0]["precision"] == "fp32"
    # The next fp32 estimate leans toward the measurement, shrunk while there is one record.
    again = _estimate(_cost(1e9), profile, tmp_path)
    assert again["history"]["records"] == 1
    assert again["latency_ms"] == pytest.approx(p["latency_ms"] * 2 ** (1 / 3))
    # An int8 model on the same board and runtime is not corrected by the fp32 error.
    int8 = _estimate(_cost(1e9, precision="int8"), profile, tmp_path)
    assert int8["history"]["records"] == 0 and int8["history"]["correction"] == 1.0
    # Measuring the same model again replaces its record rather than adding one.
    record_measurement(again, 2 * p["latency_ms"], measured_on="Cortex-A72", history=history)
    assert len(json.loads(history.read_text())["records"]) == 1
    assert not list(tmp_path.glob("*.tmp"))


def test_a_host_run_under_a_profile_is_not_a_device_measurement(tmp_path, alone):
    p = _estimate(_cost(1e9), _profile(tmp_path), tmp_path)
    with pytest.raises(BenchmarkError, match="only a measurement on the device"):
        record_measurement(p, 10.0, measured_on="Intel(R) Xeon(R)", history=tmp_path / "h.json")
    with pytest.raises(BenchmarkError, match="positive"):
        record_measurement(p, -1.0, measured_on="Cortex-A72", history=tmp_path / "h.json")


# --- the host and real packs ---

HOST_RATES = {
    "flops_per_s": {
        "fp32": {"gemm": 40e9, "conv": 30e9, "depthwise_conv": 5e9},
        "int8": {"gemm": 60e9, "conv": 45e9, "depthwise_conv": 6e9},
    },
    "bytes_per_s": 10e9,
    "op_overhead_s": 2e-6,
    "run_overhead_s": 10e-6,
}
COEFFICIENTS = {"backend": "onnxruntime", "measured": "2026-01-01", "threads": {"1": HOST_RATES}}


def test_the_host_uses_its_own_microbenchmarks(tmp_path):
    host = detect_host()
    p = _estimate(_cost(3e9), host, tmp_path, threads=1, coefficients=COEFFICIENTS,
                  backend="onnxruntime")  # fmt: skip
    seconds, _ = host_seconds(_cost(3e9), HOST_RATES)
    assert p["latency_ms"] == pytest.approx(seconds * 1e3)
    assert p["calibration"]["kind"] == "host" and "2026-01-01" in p["calibration"]["status"]
    lite = _estimate(_cost(3e9), host, tmp_path, threads=1, coefficients=COEFFICIENTS,
                     backend="litert")  # fmt: skip
    assert "no litert microbenchmarks" in lite["notes"][0]
    assert lite["sigma_log"] > p["sigma_log"]


def test_a_pack_is_estimated_from_its_manifest_cost(tmp_path, classifier):
    require("onnx")
    from edgepack.compress.cost import cost_summary

    path, _ = classifier
    entry = describe_model_file(path, pack_path="model.onnx")
    entry.cost = cost_summary(path)
    pack = tmp_path / "tiny.edgepack"
    assemble_pack(pack, [(path, entry)])
    p = estimate_pack(pack, "jetson-nano", backend="onnxruntime", history=tmp_path / "h.json")
    assert p["model"]["pack"] == "tiny" and p["model"]["sha256"] == entry.sha256
    seconds, _ = cost_seconds(entry.cost, load_profile("jetson-nano"), "onnxruntime", 4)
    assert p["uncalibrated_ms"] == pytest.approx(seconds * 1e3)
    assert p["calibration"]["kind"] == "uncalibrated"  # no ONNX Runtime CPU figure for the Nano

    bare = tmp_path / "bare.edgepack"
    assemble_pack(bare, [path])
    with pytest.raises(BenchmarkError, match="no cost summary"):
        estimate_pack(bare, "rpi5")


def test_a_tflite_pack_gets_a_litert_estimate(tmp_path, classifier_tflite):
    from edgepack.compress.cost import tflite_cost_summary

    path, _ = classifier_tflite
    entry = describe_model_file(path, pack_path="model.tflite")
    entry.cost = tflite_cost_summary(path)
    pack = tmp_path / "lite.edgepack"
    assemble_pack(pack, [(path, entry)])
    p = estimate_pack(pack, "rpi-zero-2w", history=tmp_path / "h.json")
    assert p["backend"] == "litert" and p["latency_ms"] > 0
    assert p["calibration"]["kind"] == "same-core"
    assert any("bandwidth is an estimate" in n for n in p["notes"])
