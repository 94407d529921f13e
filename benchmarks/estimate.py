"""Estimated latency of a pack on a device profile, from the manifest's cost summary and this host's
microbenchmarks carried to the device through the profile's figures. Always labelled "estimated".

>>> p = estimate_pack("mobilenet.edgepack", load_profile("rpi5"))  # doctest: +SKIP
>>> print(format_estimate(p))  # doctest: +SKIP
estimated 31.2 ms on rpi5 (likely 22.0-44.3 ms), onnxruntime, 4 threads, ...
"""

from __future__ import annotations

import json
import math
import os
import re
import warnings
from collections.abc import Mapping
from datetime import datetime, timezone
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

from edgepack.device_profiles import (
    HOST,
    DeviceProfile,
    clamp_threads,
    detect_host,
    list_profiles,
    load_profile,
)
from edgepack.runtime import (
    BenchmarkError,
    PackManifest,
    ProfileError,
    read_manifest,
)

from .microbench import cache_dir, host_coefficients

PathLike = str | os.PathLike[str]
HISTORY_NAME = "estimate_errors.json"
HISTORY_SCHEMA = 1

# Classes limited by arithmetic (a roofline of FLOPs and bytes); every other class streams memory.
COMPUTE_CLASSES = ("gemm", "conv", "depthwise_conv")
# Peak int8 MACs per fp32 FMA of the widest int8 instruction each ISA feature brings (Arm SDOT:
# 4x, SMMLA: 8x; x86 VNNI: 4x; AVX2 vpmaddubsw and NEON widening multiplies: about 2x).
INT8_PEAK_RATIO = (("i8mm", 8.0), ("dotprod", 4.0), ("vnni", 4.0), ("avx2", 2.0), ("neon", 2.0))
# A bus's theoretical peak is not reached by real kernels; STREAM on such SoCs gets roughly this.
THEORETICAL_BANDWIDTH_SHARE = 0.6
# Parallel efficiency per doubling of threads, measured on the host, is kept within these bounds:
# a busy host measures too low, and no kernel scales better than linearly.
EFFICIENCY_BOUNDS = (0.7, 1.0)
# Spread (natural log) of estimate errors: on the host itself (predictor_check on a quiet
# 16-core host: RMS 0.38 at 1 thread, 0.45 at 16), on a board calibrated by its published
# measurements (their leave-one-out errors are within 0.1, but other model families extrapolate),
# and on one with none (the band is latency x exp(+-sigma)).
SIGMA = {"host": 0.4, "calibrated": 0.35, "uncalibrated": 0.7}
SIGMA_STAND_IN_BACKEND = 0.3  # added in quadrature when another backend's coefficients stand in
HISTORY_MIN_RECORDS = 3  # recorded errors needed before they set the band
RAM_SHARE_WARNING = 0.5  # a model file over this share of the board's RAM gets a note
# Published reference measurements name models in prose; these keys (lowercase, no spaces or
# dashes) find the matching architecture of compress.zoo, longest match first.
REFERENCE_MODELS = {
    "ssdmobilenetv2": "ssd_mobilenet_v2",
    "ssdmobilenetv10.75": "ssd_mobilenet_v1_075",
    "mobilenetv2": "mobilenet_v2",
    "resnet18": "resnet18",
    "resnet50": "resnet50",
    "bertbase": "bert_base",
}
# A reference's precision -> the zoo variant costed like it.
REFERENCE_PRECISIONS = {
    "fp32": "fp32",
    "float32": "fp32",
    "int8": "int8-static",
    "uint8": "int8-static",
    "int8-static": "int8-static",
    "int8-full": "int8-static",
    "int8-dynamic": "int8-dynamic",
}
CPU_BACKENDS = ("onnxruntime", "litert")


# --- Carrying host coefficients to a device ----------------------------------------------------


def _int8_ratio(features: Any) -> float:
    return next((ratio for feature, ratio in INT8_PEAK_RATIO if feature in features), 1.0)


def _efficiency(one: float, many: float, threads: int) -> float:
    """Parallel efficiency per doubling, from the host's 1-thread and N-thread rates."""
    if threads < 2 or one <= 0:
        return EFFICIENCY_BOUNDS[1]
    eta = (many / (threads * one)) ** (1 / math.log2(threads))
    return min(max(eta, EFFICIENCY_BOUNDS[0]), EFFICIENCY_BOUNDS[1])


def _scaling(eta: float, threads: int) -> float:
    return threads * eta ** math.log2(threads)


def device_coefficients(
    profile: DeviceProfile, coefficients: Mapping[str, Any], threads: int
) -> dict[str, Any]:
    """The host's coefficients carried to `profile` at `threads` threads.

    Compute rates scale by clock x SIMD width (fp32) and by the int8:fp32 peak ratio of the ISA
    (dot-product, i8mm, VNNI), times the host's own int8 kernel efficiency; memory-bound classes
    scale by clock per core up to the profile's memory bandwidth; per-op overheads by clock. Thread
    counts scale by the host's parallel efficiency per doubling (one for compute, one for memory).
    On the host, its own measurement at that thread count is used as is.
    """
    host = coefficients["host"]
    measured = coefficients["threads"]
    one = measured["1"]
    top = max(measured, key=int)
    many = measured[top]
    notes: list[str] = []
    cpu = profile.cpu
    if profile.detected:
        if str(threads) in measured:
            return {**measured[str(threads)], "notes": ["this host's own microbenchmarks"]}
        clock = fp32_scale = 1.0  # this host at a thread count it did not measure
    else:
        host_clock, host_simd = host.get("max_clock_ghz"), host.get("simd_width_bits")
        if not (cpu.max_clock_ghz and host_clock and cpu.simd_width_bits and host_simd):
            raise BenchmarkError(
                f"cannot carry coefficients to profile {profile.name!r}: clock and SIMD width "
                f"are needed on both sides (profile: {cpu.max_clock_ghz} GHz, "
                f"{cpu.simd_width_bits} bit; host: {host_clock} GHz, {host_simd} bit)"
            )
        clock = cpu.max_clock_ghz / host_clock
        fp32_scale = clock * cpu.simd_width_bits / host_simd
    host_ratio = _int8_ratio(host.get("features", ()))
    # One parallel efficiency for all compute classes, the geometric mean of theirs: each class's
    # own is too noisy on a shared host to tell classes apart.
    etas = [
        _efficiency(rate, many["flops_per_s"]["fp32"][op_class], int(top))
        for op_class, rate in one["flops_per_s"]["fp32"].items()
    ]
    eta = math.exp(sum(math.log(e) for e in etas) / len(etas))
    flops: dict[str, dict[str, float]] = {"fp32": {}, "int8": {}}
    for op_class, rate in one["flops_per_s"]["fp32"].items():
        flops["fp32"][op_class] = rate * fp32_scale * _scaling(eta, threads)
        int8 = one["flops_per_s"].get("int8", {}).get(op_class)
        if not int8:
            continue
        if profile.detected:
            flops["int8"][op_class] = int8 * _scaling(eta, threads)
        else:
            # The host's int8 kernel efficiency against its ISA's peak ratio, never above 1 (a
            # host with AMX measures far beyond what its VNNI ratio promises), times the board's
            # ratio (dot-product, i8mm).
            kernel = min(1.0, int8 / rate / host_ratio)
            flops["int8"][op_class] = flops["fp32"][op_class] * _int8_ratio(cpu.features) * kernel
    eta_bw = _efficiency(one["bytes_per_s"], many["bytes_per_s"], int(top))
    bandwidth = one["bytes_per_s"] * clock * _scaling(eta_bw, threads)
    memory = profile.memory
    if memory.bandwidth_gbs:
        share = 1.0 if memory.bandwidth_kind == "measured" else THEORETICAL_BANDWIDTH_SHARE
        bandwidth = min(bandwidth, memory.bandwidth_gbs * 1e9 * share)
    else:
        notes.append(f"{profile.name} gives no memory bandwidth: memory-bound ops are not capped")
    source = one if threads == 1 else many
    return {
        "flops_per_s": flops,
        "bytes_per_s": bandwidth,
        "op_overhead_s": source["op_overhead_s"] / clock,
        "run_overhead_s": source["run_overhead_s"] / clock,
        "notes": notes,
    }


def cost_seconds(cost: Mapping[str, Any], rates: Mapping[str, Any]) -> tuple[float, list[dict]]:
    """Seconds for one inference of a cost summary at the given rates, and the time per op class.

    time = per-run overhead + sum over (op class, precision) of work / throughput + count x per-op
    overhead, where work is FLOPs for compute classes (bounded below by their bytes at memory
    bandwidth, a roofline) and bytes for every other class.
    """
    total = rates["run_overhead_s"]
    breakdown = []
    for op in cost.get("ops", []):
        op_class, precision = op["op_class"], op["precision"]
        seconds = op["bytes"] / rates["bytes_per_s"]
        if op_class in COMPUTE_CLASSES:
            table = rates["flops_per_s"].get(precision) or rates["flops_per_s"]["fp32"]
            rate = table.get(op_class) or rates["flops_per_s"]["fp32"][op_class]
            seconds = max(op["flops"] / rate, seconds)
        seconds += op["count"] * rates["op_overhead_s"]
        total += seconds
        breakdown.append(
            {
                "op_class": op_class,
                "precision": precision,
                "count": op["count"],
                "ms": seconds * 1e3,
            }
        )
    return total, breakdown


# --- Calibration from published measurements ---------------------------------------------------


@cache
def reference_costs() -> dict[str, dict[str, Any]]:
    """Cost summaries of the zoo's architectures ({model: {precision: cost}}), shipped with the
    package so a device can calibrate against published measurements without exporting."""
    text = resources.files("edgepack.benchmarks").joinpath("reference_costs.json").read_text()
    return json.loads(text)


def _normalize(text: str) -> str:
    return re.sub(r"[\s_\-]+", "", text.lower())


def reference_cost(model: str, precision: str) -> tuple[str, dict[str, Any]] | None:
    """(zoo model, cost) of the architecture and precision a published reference names."""
    name = _normalize(model)
    keys = sorted((k for k in REFERENCE_MODELS if k in name), key=len, reverse=True)
    variant = REFERENCE_PRECISIONS.get(precision.lower())
    if not keys or variant is None:
        return None
    zoo = REFERENCE_MODELS[keys[0]]
    cost = reference_costs().get(zoo, {}).get(variant)
    return (zoo, cost) if cost else None


def _references_used(
    profile: DeviceProfile, coefficients: Mapping[str, Any]
) -> tuple[list[dict[str, Any]], list[dict[str, str]]]:
    """The profile's published CPU references with their uncalibrated estimates, and the
    references that cannot be used, with the reason."""
    used, skipped = [], []
    for ref in profile.references:
        why = None
        match = reference_cost(ref.model, ref.precision)
        if ref.threads is None or ref.backend not in CPU_BACKENDS:
            why = f"ran on an accelerator ({ref.backend}); the estimator models CPU backends"
        elif match is None:
            why = f"no costed architecture matches {ref.model!r} at {ref.precision}"
        if why:
            skipped.append({"model": ref.model, "reason": why})
            continue
        zoo, cost = match
        threads = min(ref.threads, profile.cpu.cores)
        seconds, _ = cost_seconds(cost, device_coefficients(profile, coefficients, threads))
        used.append(
            {
                "model": ref.model,
                "as": zoo,
                "backend": ref.backend,
                "precision": ref.precision,
                "threads": ref.threads,
                "published_ms": ref.latency_ms,
                "uncalibrated_ms": seconds * 1e3,
                "source": ref.source.url,
            }
        )
    return used, skipped


def _geomean_log(values: list[float]) -> tuple[float, float]:
    """(mean, standard deviation) of the logs of positive values."""
    logs = [math.log(v) for v in values]
    mean = sum(logs) / len(logs)
    return mean, math.sqrt(sum((x - mean) ** 2 for x in logs) / len(logs))


def transfer_prior(
    coefficients: Mapping[str, Any], exclude: str | None = None, core: str | None = None
) -> dict[str, Any] | None:
    """The bias of carrying this host's coefficients to a board, as measured by the profiles that
    cite published CPU measurements: the geometric mean of their calibration factors, over the
    boards with the same core type when there are any (same microarchitecture), else over all.

    It is a property of the method (this host's ISA and clock against a board's core), not of a
    model, so profiles without references of their own start from it."""
    factors, cores = {}, {}
    for name in list_profiles():
        if name in (HOST, exclude):
            continue
        try:
            profile = load_profile(name)
        except ProfileError:
            continue  # a broken user profile is reported when it is used, not here
        used, _ = _references_used(profile, coefficients)
        if used:
            mean, _ = _geomean_log([r["published_ms"] / r["uncalibrated_ms"] for r in used])
            factors[name], cores[name] = math.exp(mean), profile.cpu.core
    same = {n: f for n, f in factors.items() if cores[n] == core}
    chosen = same or factors
    if not chosen:
        return None
    mean, spread = _geomean_log(list(chosen.values()))
    return {"factor": math.exp(mean), "spread": spread, "profiles": chosen, "same_core": bool(same)}


def calibration(
    profile: DeviceProfile, coefficients: Mapping[str, Any], *, prior: bool = True
) -> dict[str, Any]:
    """The profile's calibration factor from its published CPU reference measurements.

    factor = geometric mean of published / uncalibrated estimate over the usable references.
    A profile with none takes the transfer_prior of the other profiles (when prior is true), or 1.
    One factor per profile, whatever the model: no per-model constants.
    """
    used, skipped = _references_used(profile, coefficients)
    result: dict[str, Any] = {"factor": 1.0, "references": used, "skipped": skipped}
    if profile.detected:
        status, sigma = "this host: its own microbenchmarks, no calibration needed", SIGMA["host"]
    elif used:
        mean, spread = _geomean_log([r["published_ms"] / r["uncalibrated_ms"] for r in used])
        result["factor"] = math.exp(mean)
        status = f"calibrated on {len(used)} published measurement(s) cited in the profile"
        sigma = math.hypot(SIGMA["calibrated"], spread)
    else:
        status = "uncalibrated: no usable published CPU measurement in the profile"
        sigma = SIGMA["uncalibrated"]
        found = None
        if prior:
            found = transfer_prior(coefficients, exclude=profile.name, core=profile.cpu.core)
        if found:
            result["factor"], result["prior"] = found["factor"], found["profiles"]
            kind = f"same-core ({profile.cpu.core}) " if found["same_core"] else ""
            status += (
                f"; carries the host-to-board bias (x{found['factor']:.2f}) that the "
                f"{kind}profiles {', '.join(found['profiles'])} measure"
            )
            sigma = math.hypot(sigma, found["spread"])
    return result | {"status": status, "sigma": sigma}


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
    records: list[dict], profile: str, backend: str
) -> tuple[float, float | None, int]:
    """(correction factor, sigma or None, records used): the mean log error, shrunk toward 0
    while there are few records, and the spread once there are enough."""
    logs = [
        r["log_error"]
        for r in records
        if r.get("profile") == profile and r.get("backend") == backend
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
    """Estimate one inference's latency of a model with this `cost` summary on `profile`.

    backend and threads default to the profile's; coefficients to this host's cached
    microbenchmarks (measured on first use); history to the recorded errors in the cache.
    model (name, sha256, precision) identifies the model when its error is recorded later.
    Returns a JSON-ready dict with kind "estimated", latency_ms, range_ms, a per-class breakdown,
    the calibration used and an energy estimate.
    """
    backend = backend or profile.defaults.backend
    threads = clamp_threads(profile, threads)
    coefficients = coefficients or host_coefficients()
    notes = []
    rates = device_coefficients(profile, coefficients, threads)
    notes += rates.pop("notes")
    uncalibrated, breakdown = cost_seconds(cost, rates)
    cal = calibration(profile, coefficients)
    sigma = cal["sigma"]
    if backend != coefficients.get("backend", "onnxruntime"):
        notes.append(
            f"no {backend} microbenchmarks: {coefficients.get('backend')} coefficients stand in"
        )
        sigma = math.hypot(sigma, SIGMA_STAND_IN_BACKEND)
    if profile.accelerator is not None:
        notes.append(f"CPU only: the {profile.accelerator.name} is not modelled")
    base_ms = uncalibrated * cal["factor"] * 1e3
    path = Path(history) if history else history_path()
    correction, history_sigma, records = _history_fit(_read_history(path), profile.name, backend)
    if history_sigma is not None:
        sigma = history_sigma
    latency = base_ms * correction
    low, high = latency * math.exp(-sigma), latency * math.exp(sigma)
    scale = cal["factor"] * correction
    return {
        "kind": "estimated",
        "label": f"estimated for {profile.name} (not measured)",
        "profile": profile.name,
        "profile_core": profile.cpu.core,
        "backend": backend,
        "threads": threads,
        "model": dict(model or {}),
        "latency_ms": latency,
        "range_ms": [low, high],
        "sigma_log": sigma,
        "base_ms": base_ms,
        "uncalibrated_ms": uncalibrated * 1e3,
        "calibration": cal,
        "history": {"records": records, "correction": correction, "file": str(path)},
        "breakdown": [{**row, "ms": row["ms"] * scale} for row in breakdown],
        "energy": _energy(latency, low, high, profile.power.load_w),
        "coefficients": {
            "host": coefficients["host"]["cpu"],
            "onnxruntime": coefficients["host"].get("onnxruntime"),
            "measured": coefficients.get("measured"),
        },
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
    """estimate_latency for the model of a pack that the backend would run."""
    backend = backend or profile.defaults.backend
    entry = manifest.model_for(backend) or manifest.models[0]
    if not entry.cost:
        raise BenchmarkError(
            f"pack {manifest.name!r} has no cost summary for {entry.path}, so its latency cannot "
            "be estimated; re-pack it with edgepack.compress (which writes the manifest's 'cost') "
            "or run `python -m edgepack.compress.cost` on the model"
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
            f"the pack has no {backend} model; estimated from {entry.path} ({entry.format})"
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
    """The measurement replaces the estimate; the estimate's error goes to the history file.

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
        "threads": estimate["threads"],
        "model": estimate.get("model", {}),
        "estimated_ms": estimate["latency_ms"],
        "base_ms": estimate["base_ms"],
        "measured_ms": measured_ms,
        # The error of the estimate before any history correction, so corrections never
        # feed on themselves.
        "log_error": math.log(measured_ms / estimate["base_ms"]),
        "recorded": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    path = Path(history) if history else Path(estimate["history"]["file"])
    key = _record_key(record)
    records = [r for r in _read_history(path) if _record_key(r) != key] + [record]
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"schema_version": HISTORY_SCHEMA, "records": records}, indent=1))
    tmp.replace(path)
    low, high = estimate["range_ms"]
    return {
        "kind": "measured",
        "label": f"measured on {estimate['profile']}",
        "profile": estimate["profile"],
        "backend": estimate["backend"],
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
        pred = p["estimate"]
        line = (
            f"measured {p['latency_ms']:.2f} ms on {p['profile']} ({p['backend']}, "
            f"{p['threads']} threads); the estimate was {pred['latency_ms']:.2f} ms "
            f"({pred['error_pct']:+.0f}%)"
        )
    else:
        low, high = p["range_ms"]
        line = (
            f"estimated {p['latency_ms']:.2f} ms on {p['profile']} (likely {low:.2f}-{high:.2f} "
            f"ms), {p['backend']}, {p['threads']} threads; {p['calibration']['status']}"
        )
    if energy.get("mj") is not None:
        line += f"; energy about {energy['mj']:.0f} mJ ({energy['label']})"
    return "\n".join([line, *(f"  note: {n}" for n in p.get("notes", []))])
