"""Microbenchmarks of this machine's ONNX Runtime throughput per op class and precision, the host
coefficients the latency estimator carries to absent devices; cached per CPU model and ORT version.

The tiny ONNX graphs are written as protobuf bytes here, so the device needs no onnx package.
"""

from __future__ import annotations

import json
import os
import platform
import re
import sys
import warnings
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from edgepack.device_profiles import detect_host
from edgepack.runtime.backends.ort_backend import session_options

from .scenarios import measure

SCHEMA_VERSION = 2  # 2: the host's load is recorded with the measurement
CACHE_ENV = "EDGEPACK_CACHE_DIR"
# Load average per core above which a measurement counts as taken on a busy machine: it is
# labelled so, and measured again on a later use when the machine is quieter.
BUSY_LOAD_PER_CORE = 0.5

# ONNX TensorProto data types used below.
FLOAT, UINT8, INT8, INT32 = 1, 2, 3, 6
_NUMPY_TYPES = {FLOAT: np.float32, UINT8: np.uint8, INT8: np.int8, INT32: np.int32}


# --- A minimal ONNX writer: field numbers from onnx/onnx.proto ---------------------------------


def _varint(value: int) -> bytes:
    value &= (1 << 64) - 1  # negative int64 fields are ten-byte two's complement
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _int(field: int, value: int) -> bytes:
    return _varint(field << 3) + _varint(value)


def _bytes(field: int, data: bytes) -> bytes:
    return _varint(field << 3 | 2) + _varint(len(data)) + data


def _str(field: int, text: str) -> bytes:
    return _bytes(field, text.encode())


def _tensor(name: str, array: np.ndarray, elem_type: int) -> bytes:
    """TensorProto {dims = 1, data_type = 2, name = 8, raw_data = 9}; raw data is little-endian."""
    dims = b"".join(_int(1, d) for d in array.shape)
    raw = np.ascontiguousarray(array, dtype=np.dtype(_NUMPY_TYPES[elem_type]).newbyteorder("<"))
    return dims + _int(2, elem_type) + _str(8, name) + _bytes(9, raw.tobytes())


def _attribute(name: str, value: int | list[int]) -> bytes:
    """AttributeProto {name = 1, i = 3, ints = 8, type = 20 (INT = 2, INTS = 7)}."""
    if isinstance(value, int):
        return _str(1, name) + _int(3, value) + _int(20, 2)
    return _str(1, name) + b"".join(_int(8, v) for v in value) + _int(20, 7)


def _node(op: str, inputs: list[str], outputs: list[str], **attrs: int | list[int]) -> bytes:
    """NodeProto {input = 1, output = 2, op_type = 4, attribute = 5}."""
    body = b"".join(_str(1, i) for i in inputs) + b"".join(_str(2, o) for o in outputs)
    body += _str(4, op) + b"".join(_bytes(5, _attribute(k, v)) for k, v in attrs.items())
    return body


def _value_info(name: str, elem_type: int, shape: tuple[int, ...]) -> bytes:
    """ValueInfoProto {name = 1, type = 2: TypeProto {tensor_type = 1: {elem_type = 1,
    shape = 2: {dim = 1: {dim_value = 1}}}}}."""
    dims = b"".join(_bytes(1, _int(1, d)) for d in shape)
    tensor_type = _int(1, elem_type) + _bytes(2, dims)
    return _str(1, name) + _bytes(2, _bytes(1, tensor_type))


def onnx_model(
    nodes: list[bytes],
    inputs: list[tuple[str, int, tuple[int, ...]]],
    outputs: list[tuple[str, int, tuple[int, ...]]],
    initializers: list[tuple[str, np.ndarray, int]],
    opset: int = 17,
) -> bytes:
    """Serialized ModelProto {ir_version = 1, graph = 7, opset_import = 8} of one graph
    {node = 1, name = 2, initializer = 5, input = 11, output = 12}."""
    graph = b"".join(_bytes(1, n) for n in nodes) + _str(2, "microbench")
    graph += b"".join(_bytes(5, _tensor(*init)) for init in initializers)
    graph += b"".join(_bytes(11, _value_info(*i)) for i in inputs)
    graph += b"".join(_bytes(12, _value_info(*o)) for o in outputs)
    opset_id = _str(1, "") + _int(2, opset)
    return _int(1, 8) + _str(2, "edgepack.microbench") + _bytes(7, graph) + _bytes(8, opset_id)


# --- The kernels measured -----------------------------------------------------------------------


def _scalar(name: str, value: float | int, elem_type: int) -> tuple[str, np.ndarray, int]:
    return name, np.array(value, dtype=_NUMPY_TYPES[elem_type]), elem_type


def _gemm(m: int, k: int, n: int, int8: bool) -> tuple[bytes, dict[str, np.ndarray], float]:
    rng = np.random.default_rng(0)
    if int8:
        # MatMulInteger (uint8 activations x int8 weights), the kernel of dynamic quantization.
        model = onnx_model(
            [_node("MatMulInteger", ["a", "b", "az", "bz"], ["y"])],
            [("a", UINT8, (m, k))],
            [("y", INT32, (m, n))],
            [
                ("b", rng.integers(-127, 127, (k, n)), INT8),
                _scalar("az", 128, UINT8),
                _scalar("bz", 0, INT8),
            ],
        )
        feeds = {"a": rng.integers(0, 255, (m, k)).astype(np.uint8)}
    else:
        model = onnx_model(
            [_node("MatMul", ["a", "b"], ["y"])],
            [("a", FLOAT, (m, k))],
            [("y", FLOAT, (m, n))],
            [("b", rng.standard_normal((k, n)), FLOAT)],
        )
        feeds = {"a": rng.standard_normal((m, k)).astype(np.float32)}
    return model, feeds, 2.0 * m * k * n


def _conv(cin: int, cout: int, size: int, kernel: int, int8: bool, group: int = 1):
    rng = np.random.default_rng(0)
    weight_shape = (cout, cin // group, kernel, kernel)
    x_shape, y_shape = (1, cin, size, size), (1, cout, size, size)
    pad = kernel // 2
    attrs = {"pads": [pad] * 4, "group": group}
    flops = 2.0 * cout * size * size * (cin // group) * kernel * kernel
    if int8:
        inputs = ["x", "xs", "xz", "w", "ws", "wz", "ys", "yz", "b"]
        model = onnx_model(
            [_node("QLinearConv", inputs, ["y"], **attrs)],
            [("x", UINT8, x_shape)],
            [("y", UINT8, y_shape)],
            [
                _scalar("xs", 0.02, FLOAT),
                _scalar("xz", 128, UINT8),
                ("w", rng.integers(-127, 127, weight_shape), INT8),
                _scalar("ws", 0.01, FLOAT),
                _scalar("wz", 0, INT8),
                _scalar("ys", 0.05, FLOAT),
                _scalar("yz", 128, UINT8),
                ("b", rng.integers(-1000, 1000, cout), INT32),
            ],
        )
        feeds = {"x": rng.integers(0, 255, x_shape).astype(np.uint8)}
    else:
        model = onnx_model(
            [_node("Conv", ["x", "w", "b"], ["y"], **attrs)],
            [("x", FLOAT, x_shape)],
            [("y", FLOAT, y_shape)],
            [("w", rng.standard_normal(weight_shape), FLOAT), ("b", np.zeros(cout), FLOAT)],
        )
        feeds = {"x": rng.standard_normal(x_shape).astype(np.float32)}
    return model, feeds, flops


def _add(elements: int):
    rng = np.random.default_rng(0)
    model = onnx_model(
        [_node("Add", ["a", "b"], ["y"])],
        [("a", FLOAT, (elements,)), ("b", FLOAT, (elements,))],
        [("y", FLOAT, (elements,))],
        [],
    )
    feeds = {k: rng.standard_normal(elements).astype(np.float32) for k in ("a", "b")}
    return model, feeds, 3.0 * 4 * elements  # bytes: two reads and a write


def _chain(length: int):
    """`length` dependent Adds on a 16-float tensor: the time is nearly all per-op overhead."""
    names = ["x"] + [f"t{i}" for i in range(length)]
    nodes = [_node("Add", [names[i], "c"], [names[i + 1]]) for i in range(length)]
    model = onnx_model(
        nodes,
        [("x", FLOAT, (16,))],
        [(names[-1], FLOAT, (16,))],
        [("c", np.ones(16), FLOAT)],
    )
    return model, {"x": np.zeros(16, np.float32)}, float(length)


# Shapes per class, from the layers of the zoo's models, so a class's rate is that of the layers
# real models have (3x3 convs at 56/28/14 pixels, MobileNet's 1x1 expansions, BERT's matmuls),
# not of one lucky shape: gemm (M, K, N); conv (in, out, size, kernel); depthwise (channels, size).
SIZES: dict[str, dict[str, Any]] = {
    "full": {
        "gemm": [(128, 768, 768), (128, 768, 3072), (128, 3072, 768)],
        "conv": [(64, 64, 56, 3), (128, 128, 28, 3), (256, 256, 14, 3), (96, 576, 19, 1)],
        "depthwise": [(144, 56), (576, 14)],
        "add": 1 << 20,
    },
    "quick": {
        "gemm": [(16, 32, 32)],
        "conv": [(8, 8, 8, 3)],
        "depthwise": [(16, 8)],
        "add": 1 << 12,
    },
}
# (precision, op class) -> builder of (model bytes, feeds, FLOPs) for one shape of SIZES
COMPUTE_KERNELS: dict[tuple[str, str], tuple[str, Callable[..., tuple]]] = {
    ("fp32", "gemm"): ("gemm", lambda m, k, n: _gemm(m, k, n, int8=False)),
    ("int8", "gemm"): ("gemm", lambda m, k, n: _gemm(m, k, n, int8=True)),
    ("fp32", "conv"): ("conv", lambda *shape: _conv(*shape, int8=False)),
    ("int8", "conv"): ("conv", lambda *shape: _conv(*shape, int8=True)),
    ("fp32", "depthwise_conv"): ("depthwise", lambda c, s: _conv(c, c, s, 3, False, group=c)),
    ("int8", "depthwise_conv"): ("depthwise", lambda c, s: _conv(c, c, s, 3, True, group=c)),
}
CHAIN_LENGTH = {"full": 64, "quick": 8}


def _session(model: bytes, threads: int) -> ort.InferenceSession:
    options = session_options(threads)  # the runtime backend's settings
    options.log_severity_level = 3
    return ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])


def time_run(session: ort.InferenceSession, feeds: dict[str, np.ndarray], min_time: float) -> float:
    """Seconds of the fastest run after two warm-up runs, over at least min_time and 5 runs, timed
    by the harness's loop (scenarios.measure).

    The fastest, not the median: these kernels do the same work every run, so a slower run was
    slowed by something else (another process on a shared machine), and the estimator wants what
    the hardware can do."""
    latencies, _ = measure(
        [lambda: session.run(None, feeds)], warmup=2, min_count=5, min_duration_s=min_time
    )
    return float(latencies[0].min())


def host_load() -> dict[str, Any]:
    """The 1-minute load average, per core too, and whether that counts as busy."""
    cores = os.cpu_count() or 1
    try:
        one_minute = os.getloadavg()[0]
    except (AttributeError, OSError):  # not available on this platform
        return {"loadavg_1m": None, "per_core": None, "busy": False}
    per_core = one_minute / cores
    return {"loadavg_1m": one_minute, "per_core": per_core, "busy": per_core > BUSY_LOAD_PER_CORE}


def _kernels(sizes: dict[str, Any], chain: int) -> dict[tuple[str, int], tuple[bytes, dict, float]]:
    """(name, shape index) -> (model, feeds, work) for every kernel measured."""
    kernels = {}
    for (precision, op_class), (size_key, build) in COMPUTE_KERNELS.items():
        for i, shape in enumerate(sizes[size_key]):
            kernels[(f"{precision}/{op_class}", i)] = build(*shape)
    extras = {"add": _add(sizes["add"]), "chain1": _chain(1), "chain": _chain(chain)}
    return kernels | {(name, 0): kernel for name, kernel in extras.items()}


def _measure(
    threads: int, sizes: dict[str, Any], chain: int, min_time: float, rounds: int
) -> dict[str, Any]:
    kernels = _kernels(sizes, chain)
    # Rounds spread each kernel's runs over the whole measurement, so a burst of other load does
    # not hit all of them. One session lives at a time, so no idle thread pool spins on a core the
    # next one needs.
    best = dict.fromkeys(kernels, float("inf"))
    for _ in range(rounds):
        for key, (model, feeds, _) in kernels.items():
            session = _session(model, threads)
            best[key] = min(best[key], time_run(session, feeds, min_time))
            del session
    # A class's rate over its shapes is total work over total time, as in a model that has them.
    flops: dict[str, dict[str, float]] = {}
    for precision, op_class in COMPUTE_KERNELS:
        name = f"{precision}/{op_class}"
        keys = [k for k in kernels if k[0] == name]
        work = sum(kernels[k][2] for k in keys)
        flops.setdefault(precision, {})[op_class] = work / sum(best[k] for k in keys)
    # Per-op overhead from the slope between a one-op and a long chain, so the fixed cost of a
    # session.run call (also recorded) does not count as per-op cost.
    per_op = max((best[("chain", 0)] - best[("chain1", 0)]) / (chain - 1), 1e-8)
    return {
        "flops_per_s": flops,
        "bytes_per_s": kernels[("add", 0)][2] / best[("add", 0)],
        "op_overhead_s": per_op,
        "run_overhead_s": max(best[("chain1", 0)] - per_op, 0.0),
    }


def host_descriptor() -> dict[str, Any]:
    """The figures of this machine that the estimator scales by: core, cores, clock, SIMD, ISA."""
    host = detect_host()
    cpu = host.cpu
    return {
        "cpu": cpu.core,
        "soc": host.soc,
        "arch": cpu.arch,
        "cores": cpu.cores,
        "max_clock_ghz": cpu.max_clock_ghz,
        "simd_width_bits": cpu.simd_width_bits,
        "features": sorted(cpu.features),
        "onnxruntime": ort.__version__,
        "python": platform.python_version(),
    }


def cache_dir() -> Path:
    """$EDGEPACK_CACHE_DIR, else $XDG_CACHE_HOME/edgepack, else ~/.cache/edgepack."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "edgepack"


def cache_path(host: dict[str, Any] | None = None) -> Path:
    host = host or host_descriptor()
    slug = re.sub(r"[^A-Za-z0-9.]+", "-", f"{host['soc']}-{host['cpu']}").strip("-").lower()
    return cache_dir() / f"microbench-{slug}-ort{host['onnxruntime']}.json"


def measure_host(
    threads: list[int] | None = None,
    quick: bool = False,
    min_time: float | None = None,
    rounds: int | None = None,
) -> dict[str, Any]:
    """Measure this host's ONNX Runtime coefficients at 1 thread and all of its cores.

    Returns {"host": {...}, "backend": "onnxruntime", "threads": {"1": coefficients, "N": ...}}
    where coefficients are flops_per_s[precision][op class] for gemm, conv and depthwise_conv,
    bytes_per_s (elementwise), op_overhead_s and run_overhead_s.

    >>> measure_host(quick=True)["threads"]["1"]["flops_per_s"]["fp32"]["gemm"] > 0
    True
    """
    host = host_descriptor()
    counts = threads or sorted({1, host["cores"]})
    size_name = "quick" if quick else "full"
    min_time = min_time if min_time is not None else (0.005 if quick else 0.08)
    rounds = rounds or (1 if quick else 3)
    load = host_load()  # before measuring: afterwards the load average counts the run itself
    return {
        "schema_version": SCHEMA_VERSION,
        "backend": "onnxruntime",
        "host": host,
        "sizes": size_name,
        "measured": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "load": load,
        "threads": {
            str(t): _measure(t, SIZES[size_name], CHAIN_LENGTH[size_name], min_time, rounds)
            for t in counts
        },
    }


def _usable(cached: dict[str, Any]) -> bool:
    """A cached measurement is used unless it ran on a busy machine and this one is quieter now
    (measuring again would then give better figures); a busy one is kept, with a warning, while
    the machine stays as busy."""
    if cached.get("schema_version") != SCHEMA_VERSION or cached.get("sizes") != "full":
        return False
    then = cached.get("load") or {}
    if not then.get("busy"):
        return True
    now = host_load()
    if now["per_core"] is not None and now["per_core"] < then["per_core"]:
        return False
    _warn_busy(then)
    return True


def _warn_busy(load: dict[str, Any]) -> None:
    warnings.warn(
        f"the host's microbenchmarks ran under load {load['loadavg_1m']:.1f} "
        f"({load['per_core']:.2f} per core, over {BUSY_LOAD_PER_CORE}): host estimates are "
        "pessimistic; they are measured again when the machine is quieter (or pass --refresh)",
        UserWarning,
        stacklevel=3,
    )


def host_coefficients(refresh: bool = False, path: str | os.PathLike[str] | None = None) -> dict:
    """The cached coefficients of this host (CPU model + ORT version), measuring them when absent,
    stale in format, taken under a load heavier than now, or when refresh is asked for. A full
    measurement takes about ten seconds."""
    target = Path(path) if path else cache_path()
    if not refresh and target.is_file():
        try:
            cached = json.loads(target.read_text())
            if _usable(cached):
                return cached
        except (OSError, json.JSONDecodeError):
            pass  # a damaged cache is remeasured
    coefficients = measure_host()
    if coefficients["load"]["busy"]:
        _warn_busy(coefficients["load"])
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(".tmp")
    try:
        tmp.write_text(json.dumps(coefficients, indent=1) + "\n")
        tmp.replace(target)
    finally:
        tmp.unlink(missing_ok=True)
    return coefficients


def format_coefficients(coefficients: dict[str, Any]) -> str:
    """A human table of measured coefficients."""
    host = coefficients["host"]
    load = coefficients.get("load") or {}
    busy = " (BUSY)" if load.get("busy") else ""
    lines = [
        f"{host['cpu']} ({host['cores']} cores, {host['max_clock_ghz']} GHz, "
        f"{host['simd_width_bits']}-bit SIMD, {', '.join(host['features']) or 'no ISA extras'}), "
        f"onnxruntime {host['onnxruntime']}; measured {coefficients.get('measured')} at load "
        f"{load.get('loadavg_1m')}{busy}",
    ]
    for threads, c in coefficients["threads"].items():
        rates = ", ".join(
            f"{op}/{precision} {rate / 1e9:.1f}"
            for precision, ops in c["flops_per_s"].items()
            for op, rate in ops.items()
        )
        lines.append(
            f"  {threads} thread(s): GFLOP/s {rates}; "
            f"elementwise {c['bytes_per_s'] / 1e9:.1f} GB/s; "
            f"per-op {c['op_overhead_s'] * 1e6:.1f} us, per-run {c['run_overhead_s'] * 1e6:.1f} us"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m edgepack.benchmarks.microbench",
        description="Measure (or show the cached) ONNX Runtime coefficients of this host.",
    )
    parser.add_argument("--refresh", action="store_true", help="measure again, ignoring the cache")
    args = parser.parse_args(argv)
    coefficients = host_coefficients(refresh=args.refresh)
    print(format_coefficients(coefficients))
    print(f"cached in {cache_path(coefficients['host'])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
