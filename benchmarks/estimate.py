"""Estimated latency of a pack on a device profile, from the manifest's cost summary: a cost model
of the board's core type, caches and memory under one runtime (cost_model), calibrated on the
published measurements the profile cites (calibrate), then corrected by the errors measured on
the device itself (the history). Always labelled "estimated", never mistaken for a measurement.
On the host it is this machine's own microbenchmarks instead. See docs/latency-model.md.

>>> p = estimate_pack("mobilenet_v2.edgepack", "rpi4-1.5ghz", backend="litert")  # doctest: +SKIP
>>> print(format_estimate(p))  # doctest: +SKIP
estimated 13.89 ms on rpi4-1.5ghz (likely 9.79-19.71 ms), litert int8, 4 threads; calibrated for ...
"""

from __future__ import annotations

import json
import math
import os
import warnings
from collections.abc import Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from edgepack.benchmarks.errors import BenchmarkError
from edgepack.device_profiles import DeviceProfile, clamp_threads, detect_host, load_profile
from edgepack.device_profiles.cores import COMPUTE_CLASSES
from edgepack.runtime import PackManifest, read_manifest

from .calibrate import CPU_BACKENDS, SIGMA, calibration
from .cost_model import ASSUMED_CHANNELS_PER_DEPTHWISE_OP, cost_seconds, fixed_seconds, speedup
from .microbench import cache_dir, host_coefficients

PathLike = str | os.PathLike[str]
HISTORY_NAME = "estimate_errors.json"
HISTORY_SCHEMA = 1
HISTORY_MIN_RECORDS = 3  # recorded errors needed before they set the band
SIGMA_STAND_IN_BACKEND = 0.3  # on the host, when ONNX Runtime microbenchmarks stand in for LiteRT
HOST_PARALLEL_EFFICIENCY = 0.9  # the host at a thread count its microbenchmarks did not measure
RAM_SHARE_WARNING = 0.5  # a model file over this share of the board's RAM gets a note
SIGMA_INCOMPLETE_COST = 0.7  # added (in quadrature) when the cost summary says it is incomplete
# An estimate whose uncalibrated part is at least this share says so in its notes.
UNMEASURED_SHARE_NOTED = 0.3
# An estimate with at least this share in channel-by-channel depthwise rows names the releases the
# loop describes (ONNX Runtime before 1.24, which added a NEON depthwise kernel: PR 26688).
CHANNEL_LOOP_NOTED = 0.2


# --- This host: its own microbenchmarks -----------------------------------------------------------


def host_rates(coefficients: Mapping[str, Any], threads: int) -> dict[str, Any]:
    """The host's measured coefficients at `threads` (its 1-thread rates scaled by a fixed
    parallel efficiency where that count was not measured)."""
    measured = coefficients["threads"]
    if str(threads) in measured:
        return dict(measured[str(threads)])
    one = measured["1"]
    scale = speedup(threads, HOST_PARALLEL_EFFICIENCY)
    return {
        **one,
        "flops_per_s": {
            precision: {op: rate * scale for op, rate in rates.items()}
            for precision, rates in one["flops_per_s"].items()
        },
        "bytes_per_s": one["bytes_per_s"] * min(scale, 2.0),
    }


def host_seconds(cost: Mapping[str, Any], rates: Mapping[str, Any]) -> tuple[float, list[dict]]:
    """Seconds for one inference at the host's measured rates, and the time per row: a roofline
    of FLOPs at the class's rate and bytes at the measured bandwidth, plus per-op overheads."""
    total = rates["run_overhead_s"]
    breakdown = []
    for op in cost.get("ops", []):
        op_class, precision = op["op_class"], op["precision"]
        seconds, bound = op["bytes"] / rates["bytes_per_s"], "memory"
        if op_class in COMPUTE_CLASSES:
            table = rates["flops_per_s"].get(precision) or rates["flops_per_s"]["fp32"]
            rate = table.get(op_class) or rates["flops_per_s"]["fp32"][op_class]
            if op["flops"] / rate > seconds:
                seconds, bound = op["flops"] / rate, "compute"
        seconds += op["count"] * rates["op_overhead_s"]
        total += seconds
        breakdown.append(
            {"op_class": op_class, "precision": precision, "count": op["count"],
             "bound": bound, "ms": seconds * 1e3}
        )  # fmt: skip
    return total, breakdown


# --- History of measured errors -----------------------------------------------------------------


def history_path() -> Path:
    """Where recorded estimate errors live: the edgepack cache directory."""
    return cache_dir() / HISTORY_NAME


def _read_history(path: Path) -> list[dict[str, Any]]:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return []
    except (OSError, json.JSONDecodeError) as exc:
        warnings.warn(f"ignoring unreadable estimate history {path}: {exc}", stacklevel=3)
        return []
    if not isinstance(data, dict) or data.get("schema_version") != HISTORY_SCHEMA:
        warnings.warn(f"ignoring estimate history {path}: unknown format", stacklevel=3)
        return []
    return list(data.get("records", []))


def _history_fit(
    records: list[dict], profile: str, backend: str, precision: str
) -> tuple[float, float | None, int]:
    """(correction factor, sigma or None, records used) for one board, runtime and precision: the
    mean log error, shrunk toward 0 while there are few records, and the spread once there are
    enough."""
    logs = [
        r["log_error"]
        for r in records
        if (r.get("profile"), r.get("backend"), r.get("precision")) == (profile, backend, precision)
    ]
    if not logs:
        return 1.0, None, 0
    n = len(logs)
    mean = sum(logs) / n
    correction = math.exp(mean * n / (n + 2))
    if n < HISTORY_MIN_RECORDS:
        return correction, None, n
    residual = [x - math.log(correction) for x in logs]
    return correction, max(0.1, math.sqrt(sum(x * x for x in residual) / n)), n


# --- Estimates ----------------------------------------------------------------------------------


def _energy(latency_ms: float, low_ms: float, high_ms: float, load_w: float | None) -> dict:
    """Energy per inference in mJ: latency x the profile's load power, labelled an estimate."""
    if load_w is None:
        return {"mj": None, "load_w": None, "label": "no estimate: the profile gives no load power"}
    return {
        "mj": latency_ms * load_w,
        "range_mj": [low_ms * load_w, high_ms * load_w],
        "load_w": load_w,
        "label": f"estimate: latency x the board's load power ({load_w:g} W, power.load_w), "
        "not a measurement",
    }


def compute_precision(cost: Mapping[str, Any]) -> str:
    """'int8' when most of the model's arithmetic runs in int8 kernels, else 'fp32' (or fp16):
    the precision an estimate and its recorded error are filed under."""
    flops: dict[str, float] = {}
    for op in cost.get("ops", []):
        if op["op_class"] in COMPUTE_CLASSES:
            flops[op["precision"]] = flops.get(op["precision"], 0.0) + op["flops"]
    return max(flops, key=flops.get) if flops else "fp32"


def _raw_estimate(
    cost: Mapping[str, Any],
    profile: DeviceProfile,
    backend: str,
    threads: int,
    coefficients: Mapping[str, Any] | None,
) -> tuple[float, float, list[dict], dict[str, Any], list[str]]:
    """(seconds, fixed seconds, breakdown, calibration, notes) before the history: the board's
    cost model and calibration, or on the host its own microbenchmarks. The calibration factor
    scales the seconds other than the fixed ones (per-run, per-op and per-group overheads)."""
    notes: list[str] = []
    if profile.detected:
        coefficients = coefficients or host_coefficients()
        seconds, breakdown = host_seconds(cost, host_rates(coefficients, threads))
        sigma = SIGMA["host"]
        measured_backend = coefficients.get("backend", "onnxruntime")
        if backend != measured_backend:
            notes.append(f"no {backend} microbenchmarks: {measured_backend} ones stand in")
            sigma = math.hypot(sigma, SIGMA_STAND_IN_BACKEND)
        cal = {
            "kind": "host",
            "factor": 1.0,
            "sigma": sigma,
            "references": [],
            "status": f"this host: its own microbenchmarks ({coefficients.get('measured')})",
        }
        return seconds, 0.0, breakdown, cal, notes
    if backend not in CPU_BACKENDS:
        raise BenchmarkError(
            f"cannot estimate backend {backend!r}: the cost model covers the CPU backends "
            f"{', '.join(CPU_BACKENDS)}"
        )
    seconds, breakdown = cost_seconds(cost, profile, backend, threads)
    cal = calibration(profile, backend, compute_precision(cost), threads)
    if profile.memory.bandwidth_kind == "estimate":
        notes.append(
            f"{profile.name}'s memory bandwidth is an estimate, not a published figure "
            "(see its [notes])"
        )
    if profile.accelerator is not None:
        notes.append(f"CPU only: the {profile.accelerator.name} is not modelled")
    if any(row.get("groups_assumed") for row in breakdown):
        notes.append(
            f"the cost summary does not count depthwise channels, which {backend} runs one at a "
            f"time in float: {ASSUMED_CHANNELS_PER_DEPTHWISE_OP} per depthwise op assumed"
        )
    return seconds, fixed_seconds(breakdown, profile, backend), breakdown, cal, notes


def _blended_sigma(cal: Mapping[str, Any], unscaled_share: float) -> float:
    """The range's log half-width. The calibration's sigma covers only the part of the estimate
    its factor corrects; the rest (`unscaled_share`: fixed overheads, memory-bound and
    channel-by-channel rows, which no reference measures) is known only as well as an
    uncalibrated estimate. Their share-weighted mean: the two parts' errors are taken to move
    together, not to cancel."""
    unscaled_sigma = max(cal["sigma"], SIGMA["uncalibrated"])
    return (1 - unscaled_share) * cal["sigma"] + unscaled_share * unscaled_sigma


def estimate_latency(
    cost: Mapping[str, Any],
    profile: DeviceProfile,
    *,
    backend: str | None = None,
    threads: int | None = None,
    coefficients: Mapping[str, Any] | None = None,
    history: PathLike | None = None,
    model: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Estimate one inference's latency, for one runtime, of a model with this `cost` summary on
    `profile`.

    backend and threads default to the profile's; coefficients (the host only) to this host's
    cached microbenchmarks; history to the recorded errors in the cache. model (pack, sha256,
    precision) identifies the model when its error is recorded later. Returns a JSON-ready dict
    with kind "estimated", latency_ms, range_ms, the runtime and precision it is for, a
    per-row breakdown (what bounds each row: compute, L2, L3 or DRAM), the calibration used
    and an energy estimate.
    """
    backend = backend or profile.defaults.backend
    threads = clamp_threads(profile, threads)
    precision = compute_precision(cost)
    raw = _raw_estimate(cost, profile, backend, threads, coefficients)
    seconds, fixed, breakdown, cal, notes = raw
    base_ms = (fixed + cal["factor"] * (seconds - fixed)) * 1e3
    path = Path(history) if history else history_path()
    records = _read_history(path)
    correction, history_sigma, used = _history_fit(records, profile.name, backend, precision)
    unscaled_share = min(max(fixed * 1e3 / base_ms, 0.0), 1.0) if base_ms > 0 else 0.0
    # Channel-by-channel rows are all unscaled: their ms are the estimate's before the history.
    looped = sum(r["ms"] for r in breakdown if "channel_loop_ms" in r) / base_ms if base_ms else 0
    if looped >= CHANNEL_LOOP_NOTED:
        notes.append(
            f"{looped:.0%} of this estimate is float depthwise convolution run channel by channel, "
            f"as {backend} releases before 1.24 run it; 1.24 and later run 3x3 stride-1 ones with "
            "a dedicated NEON kernel, so there it is likely high"
        )
    sigma = _blended_sigma(cal, unscaled_share)
    if history_sigma is not None:
        sigma = history_sigma
    elif unscaled_share >= UNMEASURED_SHARE_NOTED and cal["kind"] in ("own", "same-core"):
        notes.append(
            f"{unscaled_share:.0%} of this estimate (fixed overheads, memory-bound and "
            "channel-by-channel rows) is not what its calibration measured, so the range is "
            "that of an uncalibrated estimate for that part"
        )
    notes += [f"cost summary: {n}" for n in cost.get("notes", [])]
    if cost.get("complete") is False:
        # Some ops were not sized (a dynamic dim, a Loop's trip count, a non-max suppression):
        # the model may run several times longer than counted, so the range says that rather
        # than looking sure.
        sigma = math.hypot(sigma, SIGMA_INCOMPLETE_COST)
        notes.append(
            "the cost summary is incomplete (its notes say what it could not count): the "
            f"estimate may be low, and its range is widened to x{math.exp(sigma):.1f}"
        )
    latency = base_ms * correction
    low, high = latency * math.exp(-sigma), latency * math.exp(sigma)

    def calibrated(row: Mapping[str, Any]) -> float:
        fixed_ms = row.get("unscaled_ms", 0.0)
        return (fixed_ms + cal["factor"] * (row["ms"] - fixed_ms)) * correction

    return {
        "kind": "estimated",
        "label": f"estimated for {profile.name} (not measured)",
        "profile": profile.name,
        "profile_core": profile.cpu.core,
        "backend": backend,
        "precision": precision,
        "threads": threads,
        "model": dict(model or {}),
        "latency_ms": latency,
        "range_ms": [low, high],
        "sigma_log": sigma,
        "unscaled_share": unscaled_share,
        "base_ms": base_ms,
        "uncalibrated_ms": seconds * 1e3,
        "calibration": cal,
        "history": {"records": used, "correction": correction, "file": str(path)},
        "breakdown": [{**row, "ms": calibrated(row)} for row in breakdown],
        "energy": _energy(latency, low, high, profile.power.load_w),
        "notes": notes,
    }


def estimate_manifest(
    manifest: PackManifest,
    profile: DeviceProfile,
    *,
    backend: str | None = None,
    threads: int | None = None,
    coefficients: Mapping[str, Any] | None = None,
    history: PathLike | None = None,
) -> dict[str, Any]:
    """estimate_latency for the model of a pack that the backend would run (its own cost
    summary: ONNX and TFLite entries each carry one)."""
    backend = backend or profile.defaults.backend
    entry = manifest.model_for(backend) or manifest.models[0]
    if not entry.cost:
        raise BenchmarkError(
            f"pack {manifest.name!r} has no cost summary for {entry.path}, so its latency cannot "
            "be estimated: an estimate needs a pack made on a workstation, where the compress "
            "extra counts the model's cost. There, run `pip install 'edgepack[compress]'` and "
            "`edgepack pack MODEL.onnx -o NAME.edgepack` (or quantize / compress), then copy the "
            "pack here; or measure on this device with `edgepack bench`"
        )
    identity = {
        "pack": manifest.name,
        "path": entry.path,
        "sha256": entry.sha256,
        "precision": entry.precision,
    }
    estimate = estimate_latency(
        entry.cost,
        profile,
        backend=backend,
        threads=threads,
        coefficients=coefficients,
        history=history,
        model=identity,
    )
    ram = profile.memory.ram_gib
    if ram and entry.size_bytes > RAM_SHARE_WARNING * ram * 2**30:
        estimate["notes"].append(
            f"the model file ({entry.size_bytes / 2**20:.0f} MiB) is over "
            f"{RAM_SHARE_WARNING:.0%} of the board's {ram:g} GiB RAM: it may not load there"
        )
    if backend not in entry.backends:
        estimate["notes"].append(
            f"the pack has no {backend} model; estimated from the cost of {entry.path} "
            f"({entry.format})"
        )
    return estimate


def estimate_pack(pack: PathLike, profile: DeviceProfile | str, **options: Any) -> dict[str, Any]:
    """estimate_manifest for a pack on disk and a profile (or its name)."""
    if isinstance(profile, str):
        profile = load_profile(profile)
    return estimate_manifest(read_manifest(pack), profile, **options)


def record_measurement(
    estimate: Mapping[str, Any],
    measured_ms: float,
    *,
    measured_on: str | None = None,
    history: PathLike | None = None,
) -> dict[str, Any]:
    """The measurement replaces the estimate; the estimate's error goes to the history file, where
    it corrects later estimates for the same board, runtime and precision.

    Call it only with a latency measured on the profile's device itself: measured_on (default:
    this machine's core type) must match the profile's core, so a run on a workstation under a
    profile's constraints is refused rather than mistaken for a device measurement.
    """
    if estimate.get("kind") != "estimated":
        raise BenchmarkError("record_measurement needs an estimate (kind 'estimated')")
    if not (measured_ms > 0 and math.isfinite(measured_ms)):
        raise BenchmarkError(f"measured latency must be a positive number of ms, got {measured_ms}")
    core = measured_on or detect_host().cpu.core
    if estimate["profile"] != "host" and core != estimate["profile_core"]:
        raise BenchmarkError(
            f"the measurement ran on {core!r} but profile {estimate['profile']!r} is a "
            f"{estimate['profile_core']}: only a measurement on the device corrects its "
            "estimate (a host run under a profile is not one)"
        )
    record = {
        "profile": estimate["profile"],
        "backend": estimate["backend"],
        "precision": estimate["precision"],
        "threads": estimate["threads"],
        "model": estimate.get("model", {}),
        "estimated_ms": estimate["latency_ms"],
        "base_ms": estimate["base_ms"],
        "measured_ms": measured_ms,
        # The error of the estimate before any history correction, so corrections never feed on
        # themselves.
        "log_error": math.log(measured_ms / estimate["base_ms"]),
        "recorded": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    path = Path(history) if history else Path(estimate["history"]["file"])
    key = _record_key(record)
    records = [r for r in _read_history(path) if _record_key(r) != key] + [record]
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    try:
        tmp.write_text(json.dumps({"schema_version": HISTORY_SCHEMA, "records": records}, indent=1))
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)
    low, high = estimate["range_ms"]
    return {
        "kind": "measured",
        "label": f"measured on {estimate['profile']}",
        "profile": estimate["profile"],
        "backend": estimate["backend"],
        "precision": estimate["precision"],
        "threads": estimate["threads"],
        "model": record["model"],
        "latency_ms": measured_ms,
        "estimate": {
            "latency_ms": estimate["latency_ms"],
            "range_ms": [low, high],
            "error_pct": 100 * (estimate["latency_ms"] / measured_ms - 1),
            "within_range": low <= measured_ms <= high,
        },
        "energy": _energy(measured_ms, measured_ms, measured_ms, estimate["energy"]["load_w"]),
        "history_file": str(path),
    }


def _record_key(record: Mapping[str, Any]) -> tuple:
    """One record per model, profile, backend and threads: the latest measurement wins, so a
    model measured many times does not outweigh the others."""
    model = record.get("model", {})
    return (
        record.get("profile"),
        record.get("backend"),
        record.get("threads"),
        model.get("sha256") or model.get("pack"),
    )


def format_estimate(estimate: Mapping[str, Any]) -> str:
    """One human line (and notes) for an estimate or a measurement that replaced one."""
    p = estimate
    energy = p.get("energy", {})
    if p["kind"] == "measured":
        before = p["estimate"]
        line = (
            f"measured {p['latency_ms']:.2f} ms on {p['profile']} ({p['backend']} "
            f"{p['precision']}, {p['threads']} threads); the estimate was "
            f"{before['latency_ms']:.2f} ms ({before['error_pct']:+.0f}%)"
        )
    else:
        low, high = p["range_ms"]
        line = (
            f"estimated {p['latency_ms']:.2f} ms on {p['profile']} (likely {low:.2f}-{high:.2f} "
            f"ms), {p['backend']} {p['precision']}, {p['threads']} threads; "
            f"{p['calibration']['status']}"
        )
    if energy.get("mj") is not None:
        line += f"; energy about {energy['mj']:.0f} mJ ({energy['label']})"
    return "\n".join([line, *(f"  note: {n}" for n in p.get("notes", []))])
