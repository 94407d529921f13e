"""The latency cost model of a board: seconds for one inference of a cost summary on a profile's
core type, caches and memory, under one runtime, at a thread count. The equations are those of
docs/latency-model.md; every constant comes from the profile, cores.toml or runtimes.toml.

>>> from edgepack.device_profiles import load_profile
>>> cost = {"ops": [{"op_class": "conv", "precision": "fp32", "count": 1, "flops": 1e9,
...                  "bytes": 1e6}]}
>>> seconds, rows = cost_seconds(cost, load_profile("rpi4-1.5ghz"), "litert", threads=1)
>>> rows[0]["bound"]
'compute'
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from edgepack.benchmarks.errors import BenchmarkError
from edgepack.device_profiles import DeviceProfile
from edgepack.device_profiles.cores import (
    COMPUTE_CLASSES,
    CoreType,
    RuntimeModel,
    core_type,
    runtime_model,
)

# A bus's theoretical peak is not reached by real code; STREAM on such SoCs gets about this share.
THEORETICAL_BANDWIDTH_SHARE = 0.6
# One core cannot saturate the DRAM controller of these SoCs: it gets about this share of the
# board's bandwidth, and each added thread another such share until the controller is full.
ONE_CORE_DRAM_SHARE = 0.5
INT8_PRECISIONS = ("int8",)
# A cost summary made without depthwise group counts (a pack written before schema 1.3): the mean
# channel count of the depthwise convolutions of MobileNet v2, MobileNet v3-Large and
# EfficientNet-B0 (7136 / 17 = 420, 5016 / 15 = 334, about 500) stands in per op, capped so that
# no channel reads and writes fewer than 7 x 7 floats (the smallest map of those networks).
ASSUMED_CHANNELS_PER_DEPTHWISE_OP = 400
MIN_DEPTHWISE_MAP = 7 * 7


@dataclass(frozen=True)
class Board:
    """What the cost model reads from a profile."""

    name: str
    clock_hz: float
    cores: int
    core: CoreType
    l2_bytes: float
    l2_shared: bool
    l3_bytes: float
    dram_bytes_per_s: float
    # Speed-up of all cores over one, published for this board (cpu.all_core_speedup), or None:
    # then the runtime's per-doubling efficiency stands in (docs/latency-model.md).
    all_core_speedup: float | None = None


def board(profile: DeviceProfile) -> Board:
    """The profile's figures the model needs, or an error naming the missing one."""
    cpu, memory = profile.cpu, profile.memory
    missing = [
        name
        for name, value in (
            ("cpu.max_clock_ghz", cpu.max_clock_ghz),
            ("memory.bandwidth_gbs", memory.bandwidth_gbs),
            ("memory.l2_kib", memory.l2_kib),
        )
        if not value
    ]
    if missing:
        raise BenchmarkError(
            f"profile {profile.name!r} lacks {', '.join(missing)}, which the latency estimate "
            "needs; add them to the profile (with a source, or bandwidth_kind = 'estimate')"
        )
    achievable = memory.bandwidth_kind in ("measured", "estimate")
    share = 1.0 if achievable else THEORETICAL_BANDWIDTH_SHARE
    return Board(
        name=profile.name,
        clock_hz=cpu.max_clock_ghz * 1e9,
        cores=cpu.cores,
        core=core_type(cpu.core),
        l2_bytes=memory.l2_kib * 1024.0,
        l2_shared=bool(memory.l2_shared),
        l3_bytes=(memory.l3_kib or 0) * 1024.0,
        dram_bytes_per_s=memory.bandwidth_gbs * 1e9 * share,
        all_core_speedup=cpu.all_core_speedup,
    )


def speedup(threads: int, efficiency: float) -> float:
    """Compute speed-up at `threads`: each doubling multiplies by 2 x efficiency."""
    return threads * efficiency ** math.log2(threads) if threads > 1 else 1.0


def board_speedup(b: Board, threads: int, runtime: RuntimeModel) -> float:
    """Speed-up of `threads` over one thread on this board. With a published all-core speed-up
    S on N cores it is Amdahl's law through that point, t / (1 + a (t - 1)) with
    a = (N / S - 1) / (N - 1): the cores share an L2, a DRAM controller and a power budget, so
    the part that does not scale is the board's, not the runtime's. Without one, the runtime's
    per-doubling efficiency (an assumption) stands in."""
    if threads <= 1:
        return 1.0
    if b.all_core_speedup is None or b.cores <= 1:
        return speedup(threads, runtime.parallel_efficiency)
    # A copy of a profile with fewer cores keeps its figure; a speed-up never exceeds the cores.
    serial = (b.cores / min(b.all_core_speedup, b.cores) - 1) / (b.cores - 1)
    return threads / (1 + serial * (threads - 1))


def compute_rate(
    b: Board, runtime: RuntimeModel, op_class: str, precision: str, threads: int
) -> float:
    """FLOPs per second of a compute class: per-core peak x runtime efficiency x class
    efficiency x int8 rate (that of the instructions the class's int8 kernels use), times the
    thread speed-up."""
    peak = b.clock_hz * b.core.fp32_flops_per_cycle
    rate = peak * runtime.efficiency[b.core.pipeline] * runtime.class_efficiency[op_class]
    if precision in INT8_PRECISIONS:
        rate *= runtime.int8_ratio(b.core.features, op_class)[1]
    return rate * board_speedup(b, threads, runtime)


def memory_rate(b: Board, working_set: float, threads: int, runtime: RuntimeModel) -> tuple:
    """(bytes per second, level) for an op whose data is `working_set` bytes: from L2 when it
    fits there, else from L3, else from DRAM, which the threads share."""
    parallel = board_speedup(b, threads, runtime)
    l2 = b.l2_bytes if b.l2_shared else b.l2_bytes * threads
    if working_set <= l2:
        return b.clock_hz * b.core.l2_bytes_per_cycle * parallel, "L2"
    if b.l3_bytes and working_set <= b.l3_bytes:
        return b.clock_hz * b.core.l3_bytes_per_cycle * parallel, "L3"
    return b.dram_bytes_per_s * min(1.0, ONE_CORE_DRAM_SHARE * threads), "DRAM"


def _depthwise_groups(op: Mapping[str, Any]) -> float:
    """The row's channel groups, or ASSUMED_CHANNELS_PER_DEPTHWISE_OP per op where the summary
    has no count (a pack written before schema 1.3), capped by what its bytes allow."""
    if op.get("groups") is not None:
        return float(op["groups"])
    cap = op["bytes"] / (2 * 4 * MIN_DEPTHWISE_MAP)
    return min(ASSUMED_CHANNELS_PER_DEPTHWISE_OP * op["count"], cap)


# Eigen's TensorCostModel (ONNX Runtime's ThreadPool::TryParallelFor): cycles of a call before it
# is split, and per added thread.
THREAD_STARTUP_CYCLES = THREAD_PER_THREAD_CYCLES = 100_000
# Bytes a memory-bound op moves per element it writes: a float op reads and writes 4 bytes
# each, an int8 one 1; a quantize or dequantize reads one kind and writes the other.
BYTES_PER_ELEMENT = {"fp32": 8, "fp16": 4, "int8": 2}
QUANTIZE_BYTES_PER_ELEMENT = 5
ELEMENTWISE_CLASSES = ("elementwise", "quantize")


def elementwise_threads(op: Mapping[str, Any], runtime: RuntimeModel, threads: int) -> int:
    """Threads one elementwise or quantize op of the row gets where the runtime sizes its split by
    its work (runtimes.toml's elementwise_cycles_per_element): the thread pool's cost model on
    the op's element count, at most `threads`; a dequantize on one where the runtime runs it so."""
    dequantize = op["op_class"] == "quantize" and op["precision"] == "int8"
    if dequantize and runtime.dequantize_on_one_thread:
        return 1
    cycles = runtime.elementwise_cycles_per_element
    if not cycles or threads <= 1:
        return threads
    per_element = (
        QUANTIZE_BYTES_PER_ELEMENT
        if op["op_class"] == "quantize"
        else BYTES_PER_ELEMENT.get(op["precision"], 8)
    )
    elements = op["bytes"] / max(float(op["count"]), 1.0) / per_element
    split = (elements * cycles - THREAD_STARTUP_CYCLES) / THREAD_PER_THREAD_CYCLES + 0.9
    return max(1, min(threads, int(split)))


def kernel_threads(
    op: Mapping[str, Any], groups: float, runtime: RuntimeModel, threads: int
) -> int:
    """Threads one call of a row's float GEMM or convolution gets where the runtime sizes a call's
    thread count by its work: MLAS's MlasConvPrepare and MlasGemmBatch give one thread per
    fp32_thread_macs multiply-adds, plus one, at most `threads`, so a small layer runs on the
    calling thread alone (no fork/join, no speed-up). A call is one op of the row, or one channel
    group where the runtime runs a float depthwise convolution group by group."""
    if op["op_class"] in ELEMENTWISE_CLASSES:
        return elementwise_threads(op, runtime, threads)
    per_thread = runtime.fp32_thread_macs
    if (
        not per_thread
        or threads <= 1
        or op["op_class"] not in COMPUTE_CLASSES
        or op["precision"] in INT8_PRECISIONS
    ):
        return threads
    calls = groups or max(float(op["count"]), 1.0)
    macs = op["flops"] / 2 / calls  # FLOPs are 2 x MACs
    return min(threads, int(macs // per_thread) + 1)


def _channel_by_channel(
    op: Mapping[str, Any], groups: float, b: Board, runtime: RuntimeModel, threads: int
) -> tuple[float, float]:
    """Extra seconds of a float depthwise convolution that the runtime runs one channel at a
    time through im2col + GEMM (ONNX Runtime's MLAS on Arm): each channel group is its own call,
    with a fork/join where the group gets more than one thread (`threads` is kernel_threads'), and
    the im2col buffer, which stays in cache, is written and read back. Returns (fixed seconds of
    the per-group calls, seconds of the im2col traffic)."""
    per_group = runtime.fp32_depthwise_group_cycles
    if threads > 1:
        per_group += runtime.sync_cycles
    expand = op["flops"] * runtime.fp32_depthwise_expand_bytes_per_flop
    cache_rate = b.clock_hz * b.core.l2_bytes_per_cycle * board_speedup(b, threads, runtime)
    return groups * per_group / b.clock_hz, expand / cache_rate


def op_seconds(
    op: Mapping[str, Any], b: Board, runtime: RuntimeModel, threads: int
) -> dict[str, Any]:
    """Seconds of one row of a cost summary (all ops of one class and precision), costed at the
    threads one call gets (kernel_threads). A float depthwise row of a runtime that runs it
    channel by channel adds its per-group calls and, where its tensors live beyond L2, its memory
    time to its compute (the loop's copies and GEMMs take turns)."""
    count = max(int(op["count"]), 1)
    grouped = (
        op["op_class"] == "depthwise_conv"
        and op["precision"] not in INT8_PRECISIONS
        and runtime.fp32_depthwise_group_cycles > 0
    )
    groups = _depthwise_groups(op) if grouped else 0.0
    call_threads = kernel_threads(op, groups, runtime, threads)
    bandwidth, level = memory_rate(b, op["bytes"] / count, call_threads, runtime)
    memory_s = op["bytes"] / bandwidth
    seconds, bound, compute_s = memory_s, level, 0.0
    if op["op_class"] in COMPUTE_CLASSES and op["flops"]:
        rate = compute_rate(b, runtime, op["op_class"], op["precision"], call_threads)
        compute_s = op["flops"] / rate
        if compute_s >= memory_s:
            seconds, bound = compute_s, "compute"
    per_op = runtime.op_overhead_cycles + (runtime.sync_cycles if call_threads > 1 else 0.0)
    overhead = op["count"] * per_op / b.clock_hz
    calls, im2col, serial = 0.0, 0.0, 0.0
    if grouped:
        calls, im2col = _channel_by_channel(op, groups, b, runtime, call_threads)
        if level != "L2" and compute_s:
            # The loop copies a channel in and computes it in turn, on one or two threads, so
            # traffic from beyond L2 adds to the compute instead of hiding under it (on this
            # host a layer's time per group grew with the level its tensor lived in, at the
            # same compute: experiments/mlas_threads.py --memory).
            seconds, serial = compute_s, memory_s
    channel_loop = calls + im2col + serial
    total = seconds + channel_loop + overhead
    return {
        "op_class": op["op_class"],
        "precision": op["precision"],
        "count": op["count"],
        "bound": bound,
        "threads": call_threads,
        "ms": total * 1e3,
        # What a calibration factor does not scale (the rest of "ms" is the compute-bound kernel
        # time it corrects): fixed cycle counts (dispatch, fork/join), memory-bound time (the
        # board's cache and DRAM rates, which a compute-bound reference does not measure), and
        # all of a channel-by-channel depthwise row, whose single-row GEMMs on one or two threads
        # no dense reference measures.
        "unscaled_ms": (total if grouped else overhead + (0.0 if bound == "compute" else seconds))
        * 1e3,
        **({"channel_loop_ms": channel_loop * 1e3} if channel_loop else {}),
        **({"groups_assumed": True} if calls and "groups" not in op else {}),
    }


def cost_seconds(
    cost: Mapping[str, Any], profile: DeviceProfile, backend: str, threads: int
) -> tuple[float, list[dict[str, Any]]]:
    """Uncalibrated seconds for one inference and the per-row breakdown (docs/latency-model.md).

    total = run overhead + sum over rows of max(compute, memory) + count x per-op overhead.
    """
    b = board(profile)
    runtime = runtime_model(backend)
    rows = [op_seconds(op, b, runtime, threads) for op in cost.get("ops", [])]
    total = runtime.run_overhead_cycles / b.clock_hz + sum(r["ms"] for r in rows) / 1e3
    return total, rows


def fixed_seconds(rows: list[dict[str, Any]], profile: DeviceProfile, backend: str) -> float:
    """The part of cost_seconds' total that a calibration factor does not scale (it corrects the
    efficiency of the threaded kernels the references ran): the per-run overhead and each row's
    unscaled_ms (per-op overheads, memory-bound rows, channel-by-channel depthwise rows)."""
    run = runtime_model(backend).run_overhead_cycles / (profile.cpu.max_clock_ghz * 1e9)
    return run + sum(r["unscaled_ms"] for r in rows) / 1e3
