"""The per-core-type and per-runtime data of the latency estimator (cores.toml, runtimes.toml):
what a Cortex-A72 can do per cycle, and how much of it LiteRT or ONNX Runtime gets. Every figure
cites a public source or is labelled an estimate or assumption, and the loaders check that."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:
    import tomli as tomllib

from edgepack.device_profiles.errors import ProfileError

from .profile import ISA_FEATURES, Source

DATA_DIR = Path(__file__).resolve().parent / "estimator"  # not *.toml beside the profiles
CORES_FILE = DATA_DIR / "cores.toml"
RUNTIMES_FILE = DATA_DIR / "runtimes.toml"
PIPELINES = ("in-order", "out-of-order")
COMPUTE_CLASSES = ("gemm", "conv", "depthwise_conv")
INT8_FEATURES = ("i8mm", "dotprod", "neon")  # best first
DOT_FEATURES = frozenset({"i8mm", "dotprod"})


@dataclass(frozen=True)
class CoreType:
    """One core type's throughput figures (per core, per cycle)."""

    name: str
    pipeline: str
    decode_width: int
    simd_pipes: int
    simd_pipe_bits: int
    fp32_flops_per_cycle: float
    features: frozenset[str]
    l1d_kib: int
    l2_bytes_per_cycle: float
    l3_bytes_per_cycle: float
    sources: dict[str, Source]
    estimates: dict[str, str]


@dataclass(frozen=True)
class RuntimeModel:
    """How well one runtime's CPU kernels use a core."""

    name: str
    efficiency: dict[str, float]  # pipeline kind -> fraction of fp32 peak (dense conv/GEMM)
    class_efficiency: dict[str, float]  # compute class -> rate relative to dense conv
    int8_rate: dict[str, float]  # best int8 ISA feature -> int8 MAC rate over fp32 FMA rate
    op_overhead_cycles: float
    sync_cycles: float
    run_overhead_cycles: float
    parallel_efficiency: float
    # fp32 depthwise convolution run channel by channel (ONNX Runtime's MLAS on Arm): cycles per
    # channel group, and bytes its im2col buffer moves per FLOP; 0 where one kernel does it all.
    fp32_depthwise_group_cycles: float
    fp32_depthwise_expand_bytes_per_flop: float
    # Multiply-adds per thread the runtime gives one float GEMM or convolution call (one channel
    # group of a channel-by-channel depthwise convolution): MLAS's MLAS_SGEMM_THREAD_COMPLEXITY;
    # 0 where every call is threaded over all of the session's threads.
    fp32_thread_macs: float
    # Cycles per element the runtime's thread pool charges a memory-bound op (elementwise,
    # quantize) when it decides how many threads to split it over; 0 where every op is split
    # over all threads. dequantize_on_one_thread: its DequantizeLinear runs on the calling thread.
    elementwise_cycles_per_element: float
    dequantize_on_one_thread: bool
    # Whether a published figure of a uint8 (asymmetric) model ran the kernels this runtime's int8
    # and fp32 packs run, so that it may calibrate them.
    uint8_references_calibrate: bool
    # The compute classes whose int8 kernels use the dot-product (and matrix) instructions where
    # the core has them; the others (depthwise convolution) use widening multiplies everywhere.
    int8_dot_classes: list[str]
    sources: dict[str, Source]
    assumptions: dict[str, str]

    def int8_ratio(
        self, features: frozenset[str], op_class: str | None = None
    ) -> tuple[str, float]:
        """(feature, ratio) of the best int8 instructions the core has for this runtime, or, for
        a compute class whose int8 kernels use no dot-product instructions (int8_dot_classes),
        the best of the others."""
        if op_class is not None and op_class not in self.int8_dot_classes:
            features = features - DOT_FEATURES
        for feature in INT8_FEATURES:
            if feature in features:
                return feature, self.int8_rate[feature]
        return "scalar", 1.0


def _load(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ProfileError(f"{path}: cannot read the estimator's data file: {exc}") from None


def _sources(raw: dict[str, Any], where: str) -> dict[str, Source]:
    try:
        return {k: Source(url=v["url"], title=v["title"]) for k, v in raw.items()}
    except (KeyError, TypeError):
        raise ProfileError(f"{where}: every source must be a table {{url, title}}") from None


def _check_cited(values: dict[str, Any], cited: set[str], where: str) -> None:
    """Each figure is cited or labelled (a dotted key such as 'int8_rate.dotprod' covers one
    entry of a table; the table's own key covers all of its entries)."""
    for key, value in values.items():
        entries = value if isinstance(value, dict) else {None: value}
        for sub in entries:
            if key not in cited and f"{key}.{sub}" not in cited:
                raise ProfileError(f"{where}: figure {key!r} cites no source and is not labelled")


CORE_FIGURES = {
    "pipeline": str,
    "decode_width": int,
    "simd_pipes": int,
    "simd_pipe_bits": int,
    "fp32_flops_per_cycle": (int, float),
    "features": list,
    "l1d_kib": int,
    "l2_bytes_per_cycle": (int, float),
    "l3_bytes_per_cycle": (int, float),
}
RUNTIME_FIGURES = {
    "efficiency": dict,
    "class_efficiency": dict,
    "int8_rate": dict,
    "op_overhead_cycles": (int, float),
    "sync_cycles": (int, float),
    "run_overhead_cycles": (int, float),
    "parallel_efficiency": (int, float),
    "fp32_depthwise_group_cycles": (int, float),
    "fp32_depthwise_expand_bytes_per_flop": (int, float),
    "fp32_thread_macs": (int, float),
    "elementwise_cycles_per_element": (int, float),
    "dequantize_on_one_thread": bool,
    "uint8_references_calibrate": bool,
    "int8_dot_classes": list,
}


def _figures(raw: dict[str, Any], spec: dict[str, Any], where: str) -> dict[str, Any]:
    figures = {k: v for k, v in raw.items() if k not in ("sources", "estimates", "assumptions")}
    for key in figures:
        if key not in spec:
            raise ProfileError(f"{where}: unknown field {key!r} (known: {', '.join(spec)})")
    for key, kind in spec.items():
        if key not in figures:
            raise ProfileError(f"{where}: missing field {key!r}")
        value = figures[key]
        if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
            raise ProfileError(f"{where}: field {key!r} has the wrong type ({figures[key]!r})")
    return figures


@cache
def core_types(path: Path = CORES_FILE) -> dict[str, CoreType]:
    """All core types of the data file, by name ('Cortex-A72')."""
    data = _load(path)
    cores = {}
    for name, raw in data.get("cores", {}).items():
        where = f"{path}: cores.{name}"
        figures = _figures(raw, CORE_FIGURES, where)
        sources = _sources(raw.get("sources", {}), where)
        estimates = dict(raw.get("estimates", {}))
        _check_cited(figures, set(sources) | set(estimates), where)
        if figures["pipeline"] not in PIPELINES:
            raise ProfileError(f"{where}: pipeline must be one of {', '.join(PIPELINES)}")
        unknown = set(figures["features"]) - set(ISA_FEATURES)
        if unknown:
            raise ProfileError(f"{where}: unknown feature(s) {', '.join(sorted(unknown))}")
        figures["features"] = frozenset(figures["features"])
        cores[name] = CoreType(name=name, sources=sources, estimates=estimates, **figures)
    return cores


@cache
def runtime_models(path: Path = RUNTIMES_FILE) -> dict[str, RuntimeModel]:
    """The cost-model constants of each runtime ('litert', 'onnxruntime')."""
    data = _load(path)
    runtimes = {}
    for name, raw in data.items():
        if name == "schema_version":
            continue
        where = f"{path}: {name}"
        figures = _figures(raw, RUNTIME_FIGURES, where)
        sources = _sources(raw.get("sources", {}), where)
        assumptions = dict(raw.get("assumptions", {}))
        _check_cited(figures, set(sources) | set(assumptions), where)
        needed = {"efficiency": PIPELINES, "class_efficiency": COMPUTE_CLASSES}
        needed["int8_rate"] = INT8_FEATURES
        missing = [f"{t}.{k}" for t, keys in needed.items() for k in keys if k not in figures[t]]
        if missing:
            raise ProfileError(f"{where}: missing {', '.join(missing)}")
        if unknown := [c for c in figures["int8_dot_classes"] if c not in COMPUTE_CLASSES]:
            raise ProfileError(
                f"{where}: int8_dot_classes names {', '.join(map(repr, unknown))}; expected "
                f"compute classes ({', '.join(COMPUTE_CLASSES)})"
            )
        runtimes[name] = RuntimeModel(
            name=name, sources=sources, assumptions=assumptions, **figures
        )
    return runtimes


def core_type(name: str) -> CoreType:
    """The data of one core type, or a clear error naming the known ones."""
    cores = core_types()
    if name not in cores:
        raise ProfileError(
            f"no throughput data for core type {name!r} in {CORES_FILE.name} "
            f"(known: {', '.join(sorted(cores))}); add it with cited figures"
        )
    return cores[name]


def runtime_model(name: str) -> RuntimeModel:
    """The cost-model constants of one runtime, or a clear error naming the known ones."""
    runtimes = runtime_models()
    if name not in runtimes:
        raise ProfileError(
            f"no cost-model data for runtime {name!r} in {RUNTIMES_FILE.name} "
            f"(known: {', '.join(sorted(runtimes))})"
        )
    return runtimes[name]
