"""Int8 quantization with onnxruntime (dynamic, or static QDQ), kept within an accuracy budget.

`quantize(model, output, StaticOptions(), calib=..., eval_data=..., budget=Budget(1.0))` is what
`edgepack quantize MODEL --method static --calib DATA --eval DATA --budget 1.0` runs.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import difflib
import logging
import os
import shutil
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
import onnx
from onnxruntime.quantization import (
    CalibrationMethod,
    QuantFormat,
    QuantType,
    quant_pre_process,
    quantize_dynamic,
    quantize_static,
)
from onnxruntime.quantization.registry import IntegerOpsRegistry, QDQRegistry, QLinearOpsRegistry

from edgepack.compress.errors import QuantizationError
from edgepack.device_profiles import DeviceProfile, detect_host, quantization_scheme
from edgepack.packing import scratch_dir
from edgepack.runtime.errors import EdgepackError, InputError

from .calibration import CalibrationSource, FeedReader, calibration_feeds
from .data import ArrayDataset, as_dataset, match_inputs
from .evaluate import (
    LABEL_METRICS,
    METRICS,
    Evaluation,
    agreement_metrics,
    check_above_chance,
    evaluate,
    evaluation_conditions,
    measure_latency,
    open_model,
    run_batched,
)
from .sensitivity import (
    FloatNode,
    float_groups,
    keep_float_until_within,
    keep_groups_until_within,
    rank_nodes,
    rank_op_types,
)

log = logging.getLogger(__name__)
PathLike = str | os.PathLike[str]
IntType = Literal["int8", "uint8"]
Calibration = Literal["minmax", "entropy", "percentile"]
SPEED_TIE = 0.10  # candidates this close in speedup are a tie, broken by accuracy
# Without evaluation data every candidate is still compared with fp32 on the calibration data
# (else the example or generated inputs): below the COLLAPSE figures (argmax agreement, cosine,
# in percent) it is refused, below the WARN ones it is kept with a loud note.
COLLAPSE_AGREEMENT, COLLAPSE_COSINE = 50.0, 90.0
WARN_AGREEMENT, WARN_COSINE = 95.0, 99.0
ONE_CLASS_SHARE = 0.95  # int8 predicting one class this often, where fp32 does not, collapsed
GENERATED_CHECK_SAMPLES = 8
# Ops that only exist in a quantized graph: a "quantized" model without any holds nothing int8.
QUANTIZED_OPS = frozenset(
    [
        "QuantizeLinear",
        "DynamicQuantizeLinear",
        "MatMulInteger",
        "ConvInteger",
        "QLinearConv",
        "QLinearMatMul",
        "DynamicQuantizeMatMul",
        "MatMulIntegerToFloat",
        "QAttention",
        "QGemm",
        "DynamicQuantizeLSTM",
    ]
)
CONV_OPS = frozenset({"Conv", "ConvTranspose"})
MATMUL_OPS = frozenset({"MatMul", "Gemm", "Attention", "LSTM", "GRU"})

_QUANT_TYPES = {"int8": QuantType.QInt8, "uint8": QuantType.QUInt8}
_CALIBRATIONS = {
    "minmax": CalibrationMethod.MinMax,
    "entropy": CalibrationMethod.Entropy,
    "percentile": CalibrationMethod.Percentile,
}
# What onnxruntime quantizes when no op types are given, per method (its own defaults).
_DEFAULT_OP_TYPES = {
    "dynamic": frozenset(IntegerOpsRegistry),
    "static": frozenset(QDQRegistry) | frozenset(QLinearOpsRegistry),
}


@dataclass(frozen=True)
class DynamicOptions:
    """Int8 weights ahead of time; activations are quantized at run time, so no calibration.

    op_types: which op types to quantize, () for onnxruntime's default set (MatMul, Gather,
    Conv, ...). nodes_to_exclude: node names kept in float. preprocess: run onnxruntime's
    quant_pre_process (shape inference and basic fusions) first.
    """

    method: ClassVar[str] = "dynamic"
    per_channel: bool = False
    reduce_range: bool = False
    weight_type: IntType = "int8"
    op_types: tuple[str, ...] = ()
    nodes_to_exclude: tuple[str, ...] = ()
    # Off by default: on MiniLM-L6 it made dynamic int8 17% slower (p50 6.45 vs 5.37 ms, one
    # thread), as the inferred shapes let onnxruntime fuse 6 more SkipLayerNormalization nodes,
    # each ~175 us against ~24 us for the LayerNormalization they replace.
    preprocess: bool = False

    def __post_init__(self) -> None:
        _validate(self)

    def to_dict(self) -> dict[str, Any]:
        return _to_dict(self)


@dataclass(frozen=True)
class StaticOptions:
    """Int8 weights and activations as QDQ pairs, activation ranges calibrated on sample data.

    calibration: "minmax", "entropy" or "percentile" (which keeps `percentile` % of values).
    uint8 activations with int8 weights is the fast path on x86; ARM kernels prefer int8 for both
    (options_for_profile picks per target).
    calibration_samples: how many samples of the calibration data to use.
    """

    method: ClassVar[str] = "static"
    calibration: Calibration = "minmax"
    percentile: float = 99.999
    per_channel: bool = False
    reduce_range: bool = False
    activation_type: IntType = "uint8"
    weight_type: IntType = "int8"
    # Zero point 0 for activations. Off by default: ONNX Runtime then keeps each Relu/ReLU6 in
    # float between a dequantize and a quantize (it removes them only when the quantize's range
    # starts at 0), which on this host made MobileNet v2 int8 2.0x slower.
    activation_symmetric: bool = False
    op_types: tuple[str, ...] = ()
    nodes_to_exclude: tuple[str, ...] = ()
    calibration_samples: int = 128
    # Off by default as for dynamic: static MiniLM-L6 (MatMul+Gather) ran 9.08 ms with it and
    # 7.92 ms without, at the same accuracy. Try it when quantization fails on shapes.
    preprocess: bool = False

    def __post_init__(self) -> None:
        _validate(self)

    def to_dict(self) -> dict[str, Any]:
        return _to_dict(self)


QuantizeOptions = DynamicOptions | StaticOptions
OPTION_CLASSES: dict[str, type[DynamicOptions] | type[StaticOptions]] = {
    "dynamic": DynamicOptions,
    "static": StaticOptions,
}


def options_from_dict(data: Mapping[str, Any]) -> QuantizeOptions:
    """Options from a recipe table, e.g. {"method": "static", "calibration": "entropy"}."""
    data = dict(data)
    method = data.pop("method", "dynamic")
    if method not in OPTION_CLASSES:
        raise InputError(f"unknown quantization method {method!r}; expected dynamic or static")
    cls = OPTION_CLASSES[method]
    known = sorted(f.name for f in dataclasses.fields(cls))
    for key in data:
        if key not in known:
            close = difflib.get_close_matches(key, known, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise InputError(
                f"unknown option {key!r} for method {method!r}{hint} (expected some of {known})"
            )
    return cls(**data)


def options_for_profile(
    profile: DeviceProfile, method: str | None = None, **overrides: Any
) -> QuantizeOptions:
    """The quantization options a device profile implies (its defaults.quantization on its CPU),
    with the user's explicit choices on top: method, activation/weight types, per-channel.

    >>> from edgepack.device_profiles import load_profile
    >>> options_for_profile(load_profile("rpi-zero-2w")).activation_type
    'int8'
    """
    scheme = quantization_scheme(profile)
    method = method or scheme.method or "dynamic"
    implied: dict[str, Any] = {"per_channel": scheme.per_channel, "weight_type": scheme.weight_type}
    if method == "static":
        implied["activation_type"] = scheme.activation_type
        implied["activation_symmetric"] = scheme.activation_symmetric
    return options_from_dict({"method": method, **implied, **overrides})


def _validate(opts: QuantizeOptions) -> None:
    """Check every field of an options object; coerce lists from a recipe file to tuples."""
    for name in ("op_types", "nodes_to_exclude"):
        value = getattr(opts, name)
        if isinstance(value, str) or not all(isinstance(v, str) for v in value):
            raise InputError(f"{name} must be a list of strings, got {value!r}")
        object.__setattr__(opts, name, tuple(value))
    flags = ("per_channel", "reduce_range", "preprocess", "activation_symmetric")
    for name in flags:
        if not isinstance(getattr(opts, name, False), bool):
            raise InputError(f"{name} must be true or false, got {getattr(opts, name)!r}")
    types = [opts.weight_type] + ([opts.activation_type] if isinstance(opts, StaticOptions) else [])
    for value in types:
        if value not in _QUANT_TYPES:
            raise InputError(f"unknown int type {value!r}; expected one of {list(_QUANT_TYPES)}")
    known = _DEFAULT_OP_TYPES[opts.method]
    unknown = sorted(set(opts.op_types) - known)
    if unknown:
        raise InputError(
            f"op types {unknown} cannot be quantized by the {opts.method} method; "
            f"expected some of {sorted(known)}"
        )
    if isinstance(opts, StaticOptions):
        if opts.calibration not in _CALIBRATIONS:
            raise InputError(
                f"unknown calibration {opts.calibration!r}; expected one of {list(_CALIBRATIONS)}"
            )
        if not 0 < opts.percentile <= 100:
            raise InputError(f"percentile must be in (0, 100], got {opts.percentile!r}")
        if not isinstance(opts.calibration_samples, int) or opts.calibration_samples < 1:
            raise InputError(
                f"calibration_samples must be a positive integer, got {opts.calibration_samples!r}"
            )
        if opts.activation_type == "int8" and opts.weight_type == "uint8":
            raise InputError(
                "int8 activations with uint8 weights is not a kernel onnxruntime has; "
                "use uint8 activations with int8 weights (x86) or int8 for both (ARM)"
            )


def _to_dict(opts: QuantizeOptions) -> dict[str, Any]:
    data = {"method": opts.method, **dataclasses.asdict(opts)}
    return {k: list(v) if isinstance(v, tuple) else v for k, v in data.items()}


@dataclass(frozen=True)
class Budget:
    """How far the task metric may fall below fp32, and how to judge and search.

    max_drop: points (metrics are percentages). metric: accuracy, macro_f1, precision, recall
    (need labels), agreement or cosine (against fp32 outputs, no labels needed).
    max_float_nodes: how many nodes the search may keep in float. sensitivity_samples: samples
    used to rank nodes. max_probes: single-node quantizations the ranking may try (each one
    rebuilds the model; larger graphs are narrowed down by op type first). min_speedup:
    fp32 p50 / int8 p50 a result needs to be chosen (None: int8 need not be faster).
    """

    max_drop: float = 1.0
    metric: str = "accuracy"
    max_float_nodes: int = 16
    sensitivity_samples: int = 64
    max_probes: int = 64
    min_speedup: float | None = 1.0
    max_group_steps: int = 12  # after single nodes: op types and blocks kept in float, at most

    def __post_init__(self) -> None:
        if not isinstance(self.max_drop, int | float) or self.max_drop < 0:
            raise InputError(f"budget max_drop must be >= 0 points, got {self.max_drop!r}")
        if self.metric not in METRICS:
            raise InputError(f"unknown metric {self.metric!r}; expected one of {list(METRICS)}")
        if self.max_float_nodes < 0 or self.sensitivity_samples < 1 or self.max_probes < 1:
            raise InputError(
                "max_float_nodes must be >= 0, sensitivity_samples and max_probes >= 1; got "
                f"{self.max_float_nodes}, {self.sensitivity_samples}, {self.max_probes}"
            )
        if self.min_speedup is not None and self.min_speedup <= 0:
            raise InputError(f"min_speedup must be > 0 or None, got {self.min_speedup!r}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class Candidate:
    """One quantized model that was tried: how it scored, how big and fast it is, and why."""

    options: dict[str, Any]
    size_bytes: int
    metric: float | None = None
    drop: float | None = None
    within_budget: bool | None = None
    p50_ms: float | None = None
    fp32_p50_ms: float | None = None
    faster: bool | None = None
    speed_kind: str | None = None  # "measured" on this host, or "estimated" for a profile
    speed_on: str | None = None  # where: "this host" or the profile's name
    float_nodes: list[FloatNode] = field(default_factory=list)
    all_int8_metric: float | None = None  # before any node was kept in float
    all_int8_size_bytes: int | None = None
    op_type_errors: dict[str, float] = field(default_factory=dict)  # each type quantized alone
    check: dict[str, Any] | None = None  # agreement with fp32 when there is no evaluation data
    frontier: list[dict[str, Any]] = field(default_factory=list)  # the search's steps
    quantized_ops: int | None = None  # ops of QUANTIZED_OPS in the file, subgraphs included
    notes: list[str] = field(default_factory=list)
    path: Path | None = field(default=None, repr=False)

    @property
    def speedup(self) -> float | None:
        if self.p50_ms is None or self.fp32_p50_ms is None:
            return None
        return self.fp32_p50_ms / self.p50_ms

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data.pop("path")
        data["speedup"] = self.speedup
        data["frontier"] = [{k: v for k, v in p.items() if k != "path"} for p in self.frontier]
        return data


@dataclass
class QuantizeReport:
    """Everything `quantize` measured, for the manifest and for people: fp32 vs each candidate."""

    metric: str | None
    budget: dict[str, Any]
    fp32: dict[str, Any]
    candidates: list[Candidate]
    chosen: int | None = None
    output: str | None = None

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["candidates"] = [c.to_dict() for c in self.candidates]
        return data

    def table(self) -> str:
        """A plain-text side-by-side table, fp32 first; * marks the chosen candidate."""
        rows = [["model", "size MB", self.metric or "metric", "p50 ms", "speedup", "float nodes"]]
        rows.append(["fp32", _mb(self.fp32["size_bytes"]), _fmt(self.fp32.get("metric"))])
        rows[-1] += [_fmt(self.candidates[0].fp32_p50_ms) if self.candidates else None, "", ""]
        for i, c in enumerate(self.candidates):
            name = c.options["method"] + (" *" if i == self.chosen else "")
            speed = None if c.speedup is None else f"{c.speedup:.2f}x"
            rows.append([name, _mb(c.size_bytes), _fmt(c.metric), _fmt(c.p50_ms), speed])
            rows[-1].append(str(len(c.float_nodes)))
        cells = [[str(v) if v is not None else "-" for v in row] for row in rows]
        widths = [max(len(row[i]) for row in cells) for i in range(len(cells[0]))]
        lines = ["  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)) for row in cells]
        timed = next((c for c in self.candidates if c.speed_kind), None)
        if timed is not None:  # say whether p50 was measured here or estimated for a device
            where = "on" if timed.speed_kind == "measured" else "for"
            lines.append(f"p50: {timed.speed_kind} {where} {timed.speed_on}")
        for c in self.candidates:
            lines += _float_node_lines(c, self.metric or "metric")
            lines += _frontier_lines(c, self.metric or "metric")
        return "\n".join(line.rstrip() for line in lines)


def _frontier_lines(candidate: Candidate, metric: str) -> list[str]:
    """The points the accuracy search explored: float nodes vs metric vs size vs p50."""
    if len(candidate.frontier) < 2:
        return []
    lines = [f"{candidate.options['method']} frontier (float nodes, {metric}, size, p50):"]
    for point in candidate.frontier:
        p50 = point.get("p50_ms")
        lines.append(
            f"  {point['float_nodes']:>4}  {point['metric']:7.2f}  {_mb(point['size_bytes'])} MB"
            f"  {'-' if p50 is None else f'{p50:.3f} ms'}  {point['step']}"
        )
    return lines


def _float_node_lines(candidate: Candidate, metric: str) -> list[str]:
    """What each node kept in float bought (metric points) and cost (bytes), in search order."""
    if not candidate.float_nodes or candidate.all_int8_metric is None:
        return []
    method = candidate.options["method"]
    lines = [f"{method}: all int8 {metric} {candidate.all_int8_metric:.2f}; kept in float:"]
    before = (candidate.all_int8_metric, candidate.all_int8_size_bytes or 0)
    for node in candidate.float_nodes:
        gain, cost = node.metric - before[0], node.size_bytes - before[1]
        lines.append(
            f"  {node.name} ({node.op_type}, output error {node.error:.3f}): "
            f"{metric} {node.metric:.2f} ({gain:+.2f}), size {cost / 1e3:+.1f} kB"
        )
        before = (node.metric, node.size_bytes)
    return lines


def quantize(
    model: PathLike,
    output: PathLike,
    options: QuantizeOptions | Sequence[QuantizeOptions] = DynamicOptions(),
    *,
    calib: CalibrationSource | None = None,
    eval_data: ArrayDataset | Mapping[str, np.ndarray] | None = None,
    budget: Budget = Budget(),
    threads: int | None = 1,
    profile: DeviceProfile | None = None,
    progress: bool = True,
    example_inputs: Mapping[str, np.ndarray] | None = None,
) -> QuantizeReport:
    """Quantize an fp32 ONNX model and write the best candidate that meets the budget to output.

    Each candidate (one per options) is evaluated through the runtime against fp32 on eval_data;
    one that drops more than budget.max_drop gets its most sensitive nodes kept in float until it
    fits. Candidates slower than fp32 at batch 1 are reported, not chosen: measured side by side
    on this host (on `threads` threads, or the profile's when this host is the profile's
    device), or, when `profile` names another device, estimated for it with the latency
    estimator at the profile's threads; each candidate says which. The
    fastest remaining candidate is written; candidates within 10% of it are a tie, which the
    better metric breaks. Raises QuantizationError (with .report) when
    none qualifies; nothing is written then.

    Nothing is trusted unchecked: without eval_data each candidate is compared with fp32 on the
    calibration data, else on `example_inputs` (one feed dict), else on generated inputs (each
    note says which), and refused when its outputs collapse (COLLAPSE_AGREEMENT,
    COLLAPSE_COSINE); the speed rule is applied on the same inputs. Constant-node weights are
    folded into initializers first; a candidate in which no op was quantized (every op inside
    If branches, say) is reported as "nothing to quantize" and not chosen.

    >>> report = quantize("model.onnx", "model.int8.onnx", StaticOptions(), calib=data,
    ...                   eval_data=data, budget=Budget(max_drop=1.0))  # doctest: +SKIP
    >>> print(report.table())  # doctest: +SKIP
    """
    model = Path(model)
    candidates = [options] if isinstance(options, DynamicOptions | StaticOptions) else options
    if not candidates:
        raise InputError("no quantization options given; expected at least one")
    fp32 = open_model(model)
    specs = fp32.entry.inputs
    # Every data check happens here, before calibration or a long evaluation starts.
    if eval_data is not None:
        eval_data = match_inputs(as_dataset(eval_data), specs, "evaluation data")
        if budget.metric in LABEL_METRICS and eval_data.labels is None:
            raise InputError(
                f"budget metric {budget.metric!r} needs labels but the evaluation data has none; "
                "use metric='agreement' to compare with the fp32 model instead"
            )
    check_feeds, check_source = _check_feeds(fp32, calib, example_inputs)
    feeds: dict[int, list[dict[str, np.ndarray]]] = {}
    for index, opts in enumerate(candidates):
        if isinstance(opts, StaticOptions):
            if calib is None and example_inputs is None:
                raise InputError(
                    "static quantization needs calibration data (calib=..., --calib FILE); "
                    "without it use dynamic"
                )
            source_data = calib if calib is not None else check_feeds
            feeds[index] = calibration_feeds(
                source_data, specs, max_samples=opts.calibration_samples
            )
    speed_feeds = _one_sample(eval_data, next(iter(feeds.values()), None) or check_feeds)
    check = None
    if eval_data is None:
        reference = [_first_output(fp32, f) for f in check_feeds]
        last = fp32.entry.outputs[0].shape[-1] if fp32.entry.outputs[0].shape else None
        # argmax agreement means something for class scores (a fixed last axis), not for maps
        scores = isinstance(last, int) and last > 1
        check = (check_feeds, np.concatenate(reference), check_source, scores)

    report = QuantizeReport(
        metric=budget.metric if eval_data is not None else None,
        budget=budget.to_dict(),
        fp32={"size_bytes": model.stat().st_size},
        candidates=[],
    )
    baseline = None
    if eval_data is not None:
        if eval_data.labels is not None:
            baseline = evaluate(fp32, eval_data, progress=progress, desc="evaluate fp32")
            check_above_chance(baseline.metrics["accuracy"], eval_data.labels, model.name)
        else:  # fp32 is the reference: it agrees with itself
            outputs = run_batched(fp32, eval_data, progress=progress, desc="evaluate fp32")
            baseline = Evaluation({"agreement": 100.0, "cosine": 100.0}, outputs)
        report.fp32["metric"] = _fp32_metric(baseline, budget.metric)
        report.fp32["metrics"] = baseline.metrics
        report.fp32 |= evaluation_conditions()

    with scratch_dir("edgepack-quantize-") as tmp:
        work = Path(tmp)
        prepared: dict[bool, tuple[Path, list[str]]] = {}
        for index, opts in enumerate(candidates):
            if opts.preprocess not in prepared:
                prepared[opts.preprocess] = _prepare(model, work, opts.preprocess)
            source, notes = prepared[opts.preprocess]
            cand_dir = work / f"candidate{index}"
            cand_dir.mkdir()
            quantize_into = _quantizer(source, opts, feeds.get(index), cand_dir, progress)
            candidate = _try_candidate(
                quantize_into, source, opts, eval_data, baseline, budget, cand_dir, progress
            )
            candidate.notes[:0] = notes
            _check_candidate(candidate, check)
            report.candidates.append(candidate)
        timed = [c for c in report.candidates if c.within_budget is not False]
        if profile is not None and not host_is(profile):
            _estimate_speed(timed, model, profile, budget, speed_feeds)
        elif speed_feeds is not None and timed:
            # this host is the profile's device: time it as that device runs, on its threads
            on = threads if profile is None else profile.defaults.threads
            _measure_speed(timed, model, speed_feeds, on, budget)
        report.chosen = _choose(report.candidates)
        if report.chosen is None:
            nothing = all(c.quantized_ops == 0 for c in report.candidates)
            text = (
                _nothing_message(report, model)
                if nothing
                else _no_choice_message(report, budget, threads, profile)
            )
            error = QuantizationError(text)
            error.report = report  # type: ignore[attr-defined]
            raise error
        chosen = report.candidates[report.chosen]
        Path(output).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(chosen.path, output)  # type: ignore[arg-type]
    report.output = str(output)
    for c in report.candidates:
        c.path = None  # those files are gone with the work directory
        for point in c.frontier:
            point.pop("path", None)
    return report


def quantize_model(
    model: PathLike,
    output: PathLike,
    options: QuantizeOptions,
    *,
    calib: CalibrationSource | None = None,
    progress: bool = True,
) -> Path:
    """Just quantize, no evaluation or search: one onnxruntime run in a scratch directory."""
    with scratch_dir("edgepack-quantize-") as tmp:
        work = Path(tmp)
        feeds = None
        if isinstance(options, StaticOptions):
            if calib is None:
                raise InputError("static quantization needs calibration data (calib=...)")
            specs = open_model(model).entry.inputs
            feeds = calibration_feeds(calib, specs, max_samples=options.calibration_samples)
        source, _ = _prepare(Path(model), work, options.preprocess)
        result = _quantizer(source, options, feeds, work, progress)(work / "int8.onnx")
        Path(output).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(result, output)
    return Path(output)


def _try_candidate(
    quantize_into: Callable[..., Path],
    source: Path,
    opts: QuantizeOptions,
    eval_data: ArrayDataset | None,
    baseline: Evaluation | None,
    budget: Budget,
    work: Path,
    progress: bool,
) -> Candidate:
    """Quantize with opts; if it breaks the budget, keep the most sensitive nodes in float."""
    path = quantize_into(work / "int8.onnx")
    candidate = Candidate(opts.to_dict(), path.stat().st_size, path=path)
    candidate.quantized_ops = sum(op_counts(path)[op] for op in QUANTIZED_OPS)
    if candidate.quantized_ops == 0:
        counts = op_counts(path)
        inside = sum(counts.values()) - sum(op_counts(path, subgraphs=False).values())
        where = f" ({inside} of its ops sit inside If/Loop/Scan subgraphs)" if inside else ""
        candidate.within_budget = False
        candidate.notes.append(
            f"nothing to quantize: {opts.method} quantized no op of this graph{where}; "
            "the fp32 model is kept"
        )
        return candidate
    if eval_data is None or baseline is None:
        return candidate
    fp32_metric = _fp32_metric(baseline, budget.metric)

    def score(model_path: Path) -> float:
        result = evaluate(
            model_path,
            eval_data,
            reference=baseline.outputs,
            progress=progress,
            desc=f"evaluate {opts.method}",
        )
        return result.metrics[budget.metric]

    candidate.metric = score(path)
    candidate.drop = fp32_metric - candidate.metric
    candidate.within_budget = candidate.drop <= budget.max_drop + 1e-9
    if candidate.within_budget or budget.max_float_nodes == 0:
        return candidate

    picks = np.unique(
        np.linspace(0, len(eval_data) - 1, min(budget.sensitivity_samples, len(eval_data)))
    ).astype(int)
    probe_data = eval_data.subset(picks)
    reference = baseline.outputs[picks]
    nodes = _quantizable_nodes(source, opts)
    probed = nodes
    if len(nodes) > budget.max_probes:
        # Each probe rebuilds the model: spend the node probes on the types that hurt most.
        by_type = rank_op_types(
            quantize_into, nodes, probe_data, reference, work, progress=progress
        )
        candidate.op_type_errors = by_type
        probed = sorted((n for n in nodes if by_type[n[1]] > 0), key=lambda n: -by_type[n[1]])
    ranked = rank_nodes(
        quantize_into, probed[: budget.max_probes], probe_data, reference, work, progress=progress
    )
    best_path, best_metric, kept = keep_float_until_within(
        quantize_into,
        ranked,
        score,
        fp32_metric - budget.max_drop,
        work,
        exclude=opts.nodes_to_exclude,
        max_float_nodes=budget.max_float_nodes,
    )
    candidate.all_int8_metric, candidate.all_int8_size_bytes = (
        candidate.metric,
        candidate.size_bytes,
    )
    moved = sum(n.error > 0 for n in ranked)
    candidate.notes.append(
        f"probed {len(ranked)} of {len(nodes)} quantizable nodes alone; {moved} moved the output"
    )
    target = fp32_metric - budget.max_drop
    candidate.frontier = [
        {"step": "all int8", "float_nodes": 0, "metric": candidate.metric,
         "size_bytes": candidate.size_bytes, "path": path}
    ] + [
        {"step": f"+ {k.name}", "float_nodes": i + 1, "metric": k.metric,
         "size_bytes": k.size_bytes, "path": work / f"keep{i}.onnx"}
        for i, k in enumerate(kept)
    ]  # fmt: skip
    if best_metric < target and budget.max_group_steps:
        start = [*opts.nodes_to_exclude, *(k.name for k in kept)]
        group_path, group_metric, group_excluded, steps = keep_groups_until_within(
            quantize_into, float_groups(nodes, candidate.op_type_errors), score, target, work,
            exclude=start, max_steps=budget.max_group_steps, quantizable=_compute_nodes(nodes),
        )  # fmt: skip
        candidate.frontier += steps
        reached = "reached" if group_metric >= target else "did not reach"
        candidate.notes.append(
            f"single nodes stopped at {budget.metric} {max(best_metric, candidate.metric):.2f}; "
            f"kept {len(steps)} group(s) (op types, then blocks from the last) in float and "
            f"{reached} the budget ({target:.2f}) within the cap of {budget.max_group_steps}"
        )
        if group_path is not None and group_metric > best_metric:
            kinds = dict(nodes)
            best_path, best_metric = group_path, group_metric
            kept = [
                FloatNode(name, kinds.get(name, "?"), 0.0, group_metric, group_path.stat().st_size)
                for name in group_excluded
                if name not in opts.nodes_to_exclude
            ]
    if best_path is None or best_metric <= candidate.metric:
        candidate.notes.append("keeping nodes in float did not improve the metric")
        return candidate
    excluded = (*opts.nodes_to_exclude, *(k.name for k in kept))
    candidate.options = dataclasses.replace(opts, nodes_to_exclude=excluded).to_dict()
    candidate.path, candidate.size_bytes = best_path, best_path.stat().st_size
    candidate.metric, candidate.drop = best_metric, fp32_metric - best_metric
    candidate.within_budget = candidate.drop <= budget.max_drop + 1e-9
    candidate.float_nodes = kept
    return candidate


def _compute_nodes(nodes: Sequence[tuple[str, str]]) -> list[str]:
    """The nodes whose int8 kernels make a model int8 (convolutions, matmuls, lookups): with all
    of them in float, what is left (a quantized Relu) is not worth shipping as int8."""
    compute = CONV_OPS | MATMUL_OPS | {"Gather"}
    return [n for n, t in nodes if t in compute] or [n for n, _ in nodes]


def host_is(profile: DeviceProfile) -> bool:
    """Whether this machine is the profile's device (same core and core count), so its speed can
    be measured here rather than estimated."""
    if profile.detected:
        return True
    host = detect_host()
    return host.cpu.core == profile.cpu.core and host.cpu.cores == profile.cpu.cores


def _measure_speed(
    candidates: Sequence[Candidate],
    fp32_path: Path,
    feeds: dict[str, np.ndarray],
    threads: int | None,
    budget: Budget,
) -> None:
    """fp32 and every candidate timed side by side in one interleaved run of the harness."""
    fp32, *int8 = measure_latency(
        [fp32_path, *(c.path for c in candidates)], feeds, threads=threads
    )
    points = [p for c in candidates for p in c.frontier if Path(p.get("path", "")).is_file()]
    if points:  # each frontier point timed briefly, side by side, for the table
        for point, latency in zip(
            points,
            measure_latency([p["path"] for p in points], feeds, threads=threads, min_seconds=0.2),
            strict=True,
        ):
            point["p50_ms"] = latency.p50_ms
    for candidate, latency in zip(candidates, int8, strict=True):
        _judge(candidate, fp32.p50_ms, latency.p50_ms, "measured", "this host", budget)
        if not candidate.faster:
            candidate.notes.append(
                f"slower than fp32 on this machine: p50 {latency.p50_ms:.3f} ms vs "
                f"{fp32.p50_ms:.3f} ms fp32 at batch 1, {threads or 'all'} thread(s)"
            )
        if budget.min_speedup is None:
            candidate.faster = True  # speed is reported but not required


def _estimate_speed(
    candidates: Sequence[Candidate],
    fp32_path: Path,
    profile: DeviceProfile,
    budget: Budget,
    feeds: Mapping[str, np.ndarray] | None = None,
) -> None:
    """fp32 and every candidate estimated for the profile's device from their cost summaries,
    at the shapes of the inputs the speed rule uses."""
    from edgepack.benchmarks.estimate import estimate_latency

    from .cost import cost_summary

    shapes = {k: list(np.shape(v)) for k, v in (feeds or {}).items()}

    def estimate(path: Path) -> float:
        cost = cost_summary(path, input_shapes=shapes or None)
        return float(estimate_latency(cost, profile)["latency_ms"])

    fp32_ms = estimate(fp32_path)
    for candidate in candidates:
        int8_ms = estimate(candidate.path)  # type: ignore[arg-type]
        _judge(candidate, fp32_ms, int8_ms, "estimated", profile.name, budget)
        if not candidate.faster:
            candidate.notes.append(
                f"slower than fp32 on {profile.name} (estimated, not measured): "
                f"{int8_ms:.3f} ms vs {fp32_ms:.3f} ms fp32 at batch 1, "
                f"{profile.defaults.threads} thread(s)"
            )
        if budget.min_speedup is None:
            candidate.faster = True


def _judge(
    candidate: Candidate, fp32_ms: float, int8_ms: float, kind: str, where: str, budget: Budget
) -> None:
    candidate.fp32_p50_ms, candidate.p50_ms = fp32_ms, int8_ms
    candidate.speed_kind, candidate.speed_on = kind, where
    candidate.faster = candidate.speedup is not None and candidate.speedup >= (
        budget.min_speedup or 1.0
    )


def _choose(candidates: Sequence[Candidate]) -> int | None:
    """The fastest candidate within budget (and faster than fp32 when measured); candidates
    within SPEED_TIE of the fastest are a tie, broken by the metric.

    Fastest by speedup over fp32; all candidates come from one interleaved measurement, and
    closer than 10% is within what a busy machine moves between runs, so accuracy decides.
    """
    ok = [
        i
        for i, c in enumerate(candidates)
        if c.within_budget is not False and c.faster is not False
    ]
    if not ok:
        return None
    fastest = max(candidates[i].speedup or 0.0 for i in ok)
    tied = [i for i in ok if (candidates[i].speedup or 0.0) * (1 + SPEED_TIE) >= fastest]
    return max(tied, key=lambda i: (candidates[i].metric or 0.0, candidates[i].speedup or 0.0))


def _no_choice_message(
    report: QuantizeReport, budget: Budget, threads: int | None, profile: DeviceProfile | None
) -> str:
    within = [c for c in report.candidates if c.within_budget is not False]
    if not within and "metric" not in report.fp32:  # refused by the check, not a budget
        why = "; ".join(
            f"{c.options['method']}: {n}"
            for c in report.candidates
            for n in c.notes
            if n.startswith(("REFUSED", "nothing"))
        )
        return f"no int8 model is kept: {why}. The fp32 model is unchanged"
    if not within:
        best = max(report.candidates, key=lambda c: c.metric or 0.0)
        hint = ""
        if best.op_type_errors:
            worst = ", ".join(f"{t} ({e:.3f})" for t, e in list(best.op_type_errors.items())[:3])
            hint = (
                f" Quantized alone, these op types move the output most: {worst}; leaving them "
                "out of op_types may help."
            )
        return (
            f"no int8 model stays within {budget.max_drop} points of fp32 {budget.metric} "
            f"({report.fp32['metric']:.2f}). Best found: {best.options['method']} with "
            f"{len(best.float_nodes)} node(s) in float, {budget.metric} {best.metric:.2f} "
            f"(-{best.drop:.2f}), {_mb(best.size_bytes)} MB. Allow more float nodes "
            f"(max_float_nodes={budget.max_float_nodes}), a larger budget, or another method; "
            f"the fp32 model is unchanged.{hint}"
        )
    best = max(within, key=lambda c: c.speedup or 0.0)
    if best.speed_kind == "estimated":
        return (
            f"every int8 model within budget is estimated slower than fp32 on {best.speed_on} "
            f"(not measured): best {best.p50_ms:.3f} ms vs {best.fp32_p50_ms:.3f} ms fp32. Keep "
            "the fp32 model for that device, or measure on it (edgepack bench)"
        )
    return (
        f"every int8 model within budget is slower than fp32 on this machine at "
        f"{threads or 'all'} thread(s): best p50 {best.p50_ms:.3f} ms vs {best.fp32_p50_ms:.3f} "
        "ms fp32. Keep the fp32 model here, or measure on the target device"
    )


def _prepare(model: Path, work: Path, preprocess: bool) -> tuple[Path, list[str]]:
    """Copy the model into the work dir with every node named, and pre-process it if asked.

    onnxruntime writes "<model>-inferred.onnx" next to its input, so it must never be handed
    the user's own file. Node names are what nodes_to_exclude refers to, so unnamed nodes get
    stable ones.
    """
    proto = onnx.load(str(model))
    folded = 0
    for depth, graph in reversed(list(enumerate(_graphs(proto.graph)))):
        for index, node in enumerate(graph.node):
            if not node.name:
                node.name = f"{node.op_type}_{index}" + (f"_g{depth}" if depth else "")
        folded += _fold_constants(graph)
    source = work / f"{model.stem}.fp32.onnx"
    onnx.save(proto, str(source))
    notes = [f"{folded} Constant-node weights folded into initializers"] if folded else []
    if not preprocess:
        return source, notes
    target = work / f"{model.stem}.pre.onnx"
    try:
        # auto_merge lets symbolic shape inference reconcile dims such as batch vs batch_size.
        quant_pre_process(str(source), str(target), auto_merge=True)
    except Exception as exc:
        note = f"quant_pre_process failed ({type(exc).__name__}: {exc}); quantized as exported"
        log.warning(note)
        return source, [*notes, note]
    return target, [*notes, "pre-processed with quant_pre_process(auto_merge=True)"]


def _quantizer(
    source: Path,
    opts: QuantizeOptions,
    feeds: Sequence[dict[str, np.ndarray]] | None,
    work: Path,
    progress: bool,
) -> Callable[..., Path]:
    """quantize_into(out, only=None, exclude=()) for these options.

    Static quantization calibrates on the first call and caches the ranges in the work dir, so
    the per-node probes of the sensitivity search do not calibrate again.
    """
    cache = work / "calibration.json"

    def quantize_into(
        out: Path, only: Sequence[str] | None = None, exclude: Sequence[str] = ()
    ) -> Path:
        exclude = list(exclude) or list(opts.nodes_to_exclude)
        try:
            with _quiet_preprocess_advice():
                _onnxruntime_quantize(
                    source, out, opts, list(only or []), exclude, feeds, cache, progress
                )
            _drop_inferred_shapes(out)
        except Exception as exc:
            raise QuantizationError(
                f"onnxruntime could not quantize {source.name} ({opts.method}, {opts.to_dict()}): "
                f"{type(exc).__name__}: {exc}"
            ) from exc
        return out

    return quantize_into


def _drop_inferred_shapes(model: Path) -> None:
    """Remove the value_info onnxruntime's quantizer writes (530 shapes on MiniLM, none in the
    export). With them, session optimization fuses Add + LayerNormalization into
    SkipLayerNormalization, whose CPU kernel took 180 us against 31 us at 64x384 on one thread:
    MiniLM int8 at sequence 64 ran 5.06 ms with them and 4.03 ms without, at equal accuracy."""
    proto = onnx.load(str(model))
    if not proto.graph.value_info:
        return
    del proto.graph.value_info[:]
    onnx.save(proto, str(model))


def _onnxruntime_quantize(
    source: Path,
    out: Path,
    opts: QuantizeOptions,
    only: list[str],
    exclude: list[str],
    feeds: Sequence[dict[str, np.ndarray]] | None,
    cache: Path,
    progress: bool,
) -> None:
    """One onnxruntime quantization run; only/exclude name nodes ([] only = every node)."""
    common = {
        "op_types_to_quantize": list(opts.op_types) or None,
        "per_channel": opts.per_channel,
        "reduce_range": opts.reduce_range,
        "weight_type": _QUANT_TYPES[opts.weight_type],
    }
    if isinstance(opts, DynamicOptions):
        quantize_dynamic(
            source,
            out,
            nodes_to_quantize=_with_gemm_aliases(only),
            nodes_to_exclude=_with_gemm_aliases(exclude),
            # Tensors whose type shape inference could not find (optimized graphs) are float;
            # without this onnxruntime stops with "Unable to find data type for weight_name".
            extra_options={
                "DefaultTensorType": onnx.TensorProto.FLOAT,
                # quantize the MatMuls inside If/Loop branches too (a model may be all branches)
                "EnableSubgraph": True,
            },
            **common,
        )
        return
    quantize_static(
        source,
        out,
        None if cache.exists() else FeedReader(feeds or [], progress),
        quant_format=QuantFormat.QDQ,
        activation_type=_QUANT_TYPES[opts.activation_type],
        nodes_to_quantize=only,
        nodes_to_exclude=exclude,
        calibrate_method=_CALIBRATIONS[opts.calibration],
        extra_options=_static_extra_options(opts),
        calibration_cache_path=cache,
        **common,
    )


class _PreprocessAdvice(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "consider to run pre-processing" not in record.getMessage()


@contextlib.contextmanager
def _quiet_preprocess_advice() -> Iterator[None]:
    """Drop onnxruntime's root-logger advice to pre-process, printed on every call otherwise
    (hundreds of times in a sensitivity search); pre-processing is an option here."""
    root, advice = logging.getLogger(), _PreprocessAdvice()
    root.addFilter(advice)
    try:
        yield
    finally:
        root.removeFilter(advice)


def _with_gemm_aliases(names: Sequence[str]) -> list[str]:
    # Dynamic quantization first rewrites each Gemm as MatMul "<name>_MatMul" + Add, and only
    # then looks names up; the alias lets users and the search name the Gemm they see.
    return [*names, *(f"{n}_MatMul" for n in names)]


def _static_extra_options(opts: StaticOptions) -> dict[str, Any]:
    # The one place onnxruntime's string-keyed extra_options are spelled out for static.
    extra: dict[str, Any] = {"DefaultTensorType": onnx.TensorProto.FLOAT}
    if opts.activation_symmetric:
        extra["ActivationSymmetric"] = True
    if opts.calibration == "percentile":
        extra["CalibPercentile"] = opts.percentile
    return extra


def _quantizable_nodes(source: Path, opts: QuantizeOptions) -> list[tuple[str, str]]:
    """(name, op_type) of the nodes these options would quantize, in graph order."""
    types = set(opts.op_types) or set(_DEFAULT_OP_TYPES[opts.method])
    if isinstance(opts, DynamicOptions) and "MatMul" in types:
        types.add("Gemm")  # quantized as the MatMul it is rewritten to, see _with_gemm_aliases
    graph = onnx.load(str(source), load_external_data=False).graph
    skip = set(opts.nodes_to_exclude)
    return [(n.name, n.op_type) for n in graph.node if n.op_type in types and n.name not in skip]


def _one_sample(
    eval_data: ArrayDataset | None, feeds: Sequence[dict[str, np.ndarray]] | None
) -> dict[str, np.ndarray] | None:
    """A batch-1 input for the latency comparison, from the eval data or else calibration."""
    if eval_data is not None:
        return eval_data.subset(slice(0, 1)).inputs
    if feeds:
        try:
            return ArrayDataset(dict(feeds[0])).subset(slice(0, 1)).inputs
        except InputError:  # samples on different axes: time the batch as it is
            return dict(feeds[0])
    return None


def _first_output(model: Any, feeds: Mapping[str, np.ndarray]) -> np.ndarray:
    """One run on one feed dict (batched on whatever axes its inputs use), first output."""
    try:
        return next(iter(model.run(dict(feeds)).values()))
    except EdgepackError:
        raise
    except Exception as exc:  # the interpreter's own error types
        shapes = ", ".join(f"{k} {list(np.shape(v))}" for k, v in feeds.items())
        raise InputError(
            f"the fp32 model fails on the check inputs ({shapes}): {str(exc).splitlines()[0]}; "
            "give calibration data or example inputs it accepts"
        ) from None


def example_feeds(model: PathLike, specs: Sequence[str] | None) -> dict[str, np.ndarray] | None:
    """One feed dict for `model` from input specs as `edgepack bench --input` takes them
    ("sr=16000", "state=2x1x128:zeros"); inputs not named are random at the default sizes."""
    if not specs:
        return None
    from edgepack.benchmarks.inputs import check_names, parse_input_spec, synthetic_inputs

    entry = open_model(model).entry
    parsed = dict(parse_input_spec(text) for text in specs)
    check_names(entry, parsed, "example inputs")
    return synthetic_inputs(entry, specs=parsed)


def _check_feeds(
    fp32: Any, calib: CalibrationSource | None, example: Mapping[str, np.ndarray] | None
) -> tuple[list[dict[str, np.ndarray]], str]:
    """The inputs int8 is compared with fp32 on when there is no evaluation data, and what
    they are: calibration data, the example inputs, or generated ones."""
    specs = fp32.entry.inputs
    if calib is not None:
        feeds = calibration_feeds(calib, specs, max_samples=64)
        return feeds, f"{sum(len(ArrayDataset(dict(f))) for f in feeds)} calibration samples"
    from edgepack.benchmarks.inputs import synthetic_inputs

    if example is not None:
        wanted = {s.name for s in specs}
        if set(example) != wanted:
            raise InputError(
                f"the example inputs name {sorted(example)}; the model takes {sorted(wanted)}"
            )
        return [dict(example)], "the example inputs"
    feeds = [synthetic_inputs(fp32.entry, seed=i) for i in range(GENERATED_CHECK_SAMPLES)]
    shapes = ", ".join(f"{k} {list(v.shape)}" for k, v in feeds[0].items())
    return feeds, f"{len(feeds)} generated random inputs ({shapes}; give --calib for real ones)"


def _check_candidate(candidate: Candidate, check: tuple | None) -> None:
    """Compare a candidate with fp32 on the check inputs; refuse it when its output collapsed,
    note it loudly when it drifted."""
    if check is None or candidate.path is None or candidate.quantized_ops == 0:
        return
    feeds, reference, source, scores = check
    runner = open_model(candidate.path)
    outputs = np.concatenate([_first_output(runner, f) for f in feeds])
    figures = agreement_metrics(outputs, reference)
    agreement = figures["agreement"] if scores else None
    one_class = _one_class_share(outputs) if scores else 0.0
    # A collapsed classifier predicts one class (a CTC model: blank) nearly everywhere
    # while fp32 does not.
    constant = scores and one_class >= ONE_CLASS_SHARE > _one_class_share(reference)
    candidate.check = {"on": source, "agreement": agreement, "cosine": figures["cosine"]}
    shown = (f"argmax agreement {agreement:.1f}%, " if scores else "") + (
        f"cosine {figures['cosine']:.2f}%"
    )
    if constant:
        shown += f", one class on {one_class:.0%} of outputs"
    if (
        constant
        or (scores and agreement < COLLAPSE_AGREEMENT)
        or figures["cosine"] < COLLAPSE_COSINE
    ):
        candidate.within_budget = False
        candidate.notes.append(
            f"REFUSED: int8 output collapsed against fp32 on {source}: {shown}. Give --eval "
            "data to search for nodes to keep in float, or try another method"
        )
    elif (scores and agreement < WARN_AGREEMENT) or figures["cosine"] < WARN_COSINE:
        candidate.notes.append(
            f"WARNING: int8 output drifts from fp32 on {source}: {shown}; check it on real "
            "data (--eval) before shipping"
        )
    else:
        candidate.notes.append(f"checked against fp32 on {source}: {shown}")


def _one_class_share(outputs: np.ndarray) -> float:
    """The share of positions whose argmax is the most common class."""
    predicted = outputs.argmax(-1).ravel()
    return float(np.bincount(predicted).max() / predicted.size) if predicted.size else 0.0


def _graphs(graph: onnx.GraphProto) -> list[onnx.GraphProto]:
    """A graph and all its subgraphs (If branches, Loop and Scan bodies), nested."""
    found = [graph]
    for node in graph.node:
        for attribute in node.attribute:
            if attribute.type == onnx.AttributeProto.GRAPH:
                found += _graphs(attribute.g)
    return found


def op_counts(model: PathLike, subgraphs: bool = True) -> collections.Counter[str]:
    """How many nodes of each op type the model has (in its subgraphs too, by default)."""
    graph = onnx.load(str(model), load_external_data=False).graph
    graphs = _graphs(graph) if subgraphs else [graph]
    return collections.Counter(n.op_type for g in graphs for n in g.node)


def suggest_method(model: PathLike) -> tuple[str, str]:
    """Static or dynamic by the graph's op mix, and why: dynamic int8 quantizes activations at
    run time, which pays on MatMul-heavy transformers and costs more than it saves on
    convolutions (a MobileNet-class CNN ran 84.6 ms dynamic vs 12.3 ms fp32 in issue 13)."""
    counts = op_counts(model)
    convs = sum(counts[op] for op in CONV_OPS)
    matmuls = sum(counts[op] for op in MATMUL_OPS)
    if convs > matmuls:
        return "static", (
            f"static QDQ: the graph is convolution-heavy ({convs} Conv vs {matmuls} MatMul/Gemm "
            "nodes), where dynamic int8 is usually slower than fp32"
        )
    return "dynamic", (
        f"dynamic: the graph is MatMul-heavy ({matmuls} MatMul/Gemm vs {convs} Conv nodes); "
        "weights are int8 ahead of time, activations per call, no calibration needed"
    )


def _fold_constants(graph: onnx.GraphProto) -> int:
    """Turn tensor-valued Constant nodes into initializers of their graph: onnxruntime's
    quantizers only quantize weights that are initializers ("Expected w to be an
    initializer")."""
    constants = [
        node
        for node in graph.node
        if node.op_type == "Constant"
        and len(node.attribute) == 1
        and node.attribute[0].name == "value"
    ]
    for node in constants:
        tensor = onnx.TensorProto()
        tensor.CopyFrom(node.attribute[0].t)
        tensor.name = node.output[0]
        graph.initializer.append(tensor)
        # removed in place: rebuilding the node list would copy the If nodes and detach the
        # subgraphs other callers hold
        graph.node.remove(node)
    return len(constants)


def _nothing_message(report: QuantizeReport, model: Path) -> str:
    notes = "; ".join(n for c in report.candidates for n in c.notes if "nothing" in n)
    return f"nothing to quantize in {model.name}: {notes}"


def _fp32_metric(baseline: Evaluation, metric: str) -> float:
    # fp32 agrees with itself completely; label metrics come from its own evaluation.
    return 100.0 if metric not in LABEL_METRICS else baseline.metrics[metric]


def _mb(size: int) -> str:
    return f"{size / 1e6:.2f}"


def _fmt(value: float | None) -> str | None:
    return None if value is None else f"{value:.2f}"
