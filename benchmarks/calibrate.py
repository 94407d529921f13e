"""Calibration of the board cost model on the published measurements profiles cite: one factor per
(profile, runtime, precision), from at most two measurements of that runtime on that board. A
factor fitted at one precision (or thread count) is carried to another only with a wider range; a
profile with none of its own borrows the factor of a profile with the same core type (and says
so, with a wider range); with none of those it stays uncalibrated and says that.
"""

from __future__ import annotations

import json
import math
import re
from functools import cache
from importlib import resources
from typing import Any

from edgepack.device_profiles import DeviceProfile, as_measured, list_profiles, load_profile
from edgepack.device_profiles.cores import core_type, runtime_model
from edgepack.device_profiles.errors import ProfileError

from .cost_model import cost_seconds, fixed_seconds

CPU_BACKENDS = ("onnxruntime", "litert")
# Spread (natural log) of the errors of an estimate, by where its calibration came from: the
# band is estimate x exp(+-sigma). Chosen before looking at held-out rows (docs/latency-model.md).
SIGMA = {"own": 0.35, "same-core": 0.5, "uncalibrated": 0.8, "host": 0.4}
# Added (in quadrature) when the factor was fitted at the other precision: the int8 rate is the
# model's least certain constant. On the bundled calibration rows the fp32 and int8 factors of one
# board differ by up to log 0.24 (rpi4-1.5ghz; 0.005 on rpi3b-plus): tests check it stays covered.
SIGMA_OTHER_PRECISION = 0.25
# The int8 MAC rate of a core's best int8 instruction over fp32 FMLA, per 128-bit instruction:
# SMLAL/UMLAL widen 8 products against FMLA's 4 fp32 (x2), SDOT does 16 (x4), SMMLA 32 (x8).
INT8_PEAK_RATIO = {"neon": 2.0, "dotprod": 4.0, "i8mm": 8.0}
# Added when the factor was fitted at the other precision (or the estimate is int8 and
# uncalibrated) and the runtime's int8 rate on this core is an assumption, not a cited figure:
# the true rate lies between 1 (requantization-bound, no gain) and the ISA peak above, and the
# mean of log(rate / 1) and log(peak / rate) is log(peak) / 2 whatever the assumed rate.
# Where the rate is cited, SIGMA_OTHER_PRECISION applies instead.
# Added when the estimate's thread count is not one its references ran at, on a board whose
# profile gives no measured all-core speed-up: the runtime's assumed S(4) = 3.24 lies between the
# DRAM-bound 2 (ONE_CORE_DRAM_SHARE x 4) and the linear 4, log(3.24 / 2) = 0.48 and
# log(4 / 3.24) = 0.21, whose mean is this (docs/latency-model.md).
SIGMA_OTHER_THREADS = 0.35
# The same, where the profile cites a measured all-core speed-up (cpu.all_core_speedup): the
# per-model log spread of the cited 1-thread / all-core ratios is 0.09-0.14 on the bundled boards,
# and carrying another runtime's ratio to ours adds an assumed 0.2; hypot(0.13, 0.2) = 0.24.
SIGMA_OTHER_THREADS_MEASURED = 0.25
# Published reference measurements name models in prose; these keys (lowercase, no spaces or
# dashes) find the matching architecture in reference_costs.json, longest match first.
REFERENCE_MODELS = {
    "ssdmobilenetv2": "ssd_mobilenet_v2",
    "ssdmobilenetv10.75": "ssd_mobilenet_v1_075",
    "mobilenetv1": "mobilenet_v1",
    "mobilenetv2": "mobilenet_v2",
    "mobilenetv3large": "mobilenet_v3_large",
    "mobilenetv3small": "mobilenet_v3_small",
    "resnet18": "resnet18",
    "resnet50": "resnet50",
    "bertbase": "bert_base",
}
# A reference's precision -> the costed variant like it.
REFERENCE_PRECISIONS = {
    "fp32": "fp32",
    "float32": "fp32",
    "int8": "int8-static",
    "uint8": "int8-static",
    "int8-static": "int8-static",
    "int8-full": "int8-static",
    "int8-dynamic": "int8-dynamic",
}


def precision_group(precision: str) -> str:
    """'int8' for any integer scheme (int8, uint8, static or dynamic), else 'fp32': the precision
    a calibration factor is fitted for and an estimate is filed under."""
    return "int8" if REFERENCE_PRECISIONS.get(precision.lower(), "").startswith("int8") else "fp32"


@cache
def reference_costs() -> dict[str, dict[str, Any]]:
    """Cost summaries of the architectures the profiles' references name ({model: {variant:
    cost}}), shipped with the package so a device calibrates without exporting anything.
    `python -m experiments.latency_check --write-reference-costs` adds to the file."""
    text = resources.files("edgepack.benchmarks").joinpath("reference_costs.json").read_text()
    return json.loads(text)


def _normalize(text: str) -> str:
    return re.sub(r"[\s_\-]+", "", text.lower())


def reference_cost(model: str, precision: str) -> tuple[str, dict[str, Any]] | None:
    """(architecture, cost) of the model and precision a published reference names."""
    name = _normalize(model)
    keys = sorted((k for k in REFERENCE_MODELS if k in name), key=len, reverse=True)
    variant = REFERENCE_PRECISIONS.get(precision.lower())
    if not keys or variant is None:
        return None
    arch = REFERENCE_MODELS[keys[0]]
    cost = reference_costs().get(arch, {}).get(variant)
    return (arch, cost) if cost else None


def _geomean_log(values: list[float]) -> tuple[float, float]:
    """(mean, standard deviation) of the logs of positive values."""
    logs = [math.log(v) for v in values]
    mean = sum(logs) / len(logs)
    return mean, math.sqrt(sum((x - mean) ** 2 for x in logs) / len(logs))


def own_references(profile: DeviceProfile, backend: str) -> tuple[list[dict], list[dict]]:
    """The profile's usable references of `backend` with their uncalibrated estimates, and the
    ones that cannot be used (with the reason)."""
    used, skipped = [], []
    uint8_ok = runtime_model(backend).uint8_references_calibrate
    for ref in profile.references:
        if ref.backend != backend:
            continue
        if ref.precision.lower() == "uint8" and not uint8_ok:
            reason = (
                f"a uint8 model ({ref.model!r}): {backend} runs it with other kernels than "
                "edgepack's fp32 and int8 packs (uint8_references_calibrate in runtimes.toml)"
            )
            skipped.append({"model": ref.model, "reason": reason})
            continue
        match = reference_cost(ref.model, ref.precision)
        if ref.threads is None or match is None:
            why = "ran on an accelerator" if ref.threads is None else "no costed architecture"
            reason = f"{why} ({ref.model!r}, {ref.precision})"
            skipped.append({"model": ref.model, "reason": reason})
            continue
        arch, cost = match
        threads = min(ref.threads, profile.cpu.cores)
        board = as_measured(profile, ref.board_clock_ghz, ref.board_bandwidth_gbs)
        seconds, rows = cost_seconds(cost, board, backend, threads)
        used.append(
            {
                "model": ref.model,
                "as": arch,
                "precision": ref.precision,
                "threads": ref.threads,
                "published_ms": ref.latency_ms,
                "uncalibrated_ms": seconds * 1e3,
                "fixed_ms": fixed_seconds(rows, board, backend) * 1e3,
                "source": ref.source.url,
            }
        )
    return used, skipped


def kernel_ratio(published_ms: float, uncalibrated_ms: float, fixed_ms: float) -> float:
    """published / estimated for the kernel time alone (the fixed overheads taken out of both);
    the plain ratio where the overheads alone would exceed the published figure."""
    if published_ms > fixed_ms and uncalibrated_ms > fixed_ms:
        return (published_ms - fixed_ms) / (uncalibrated_ms - fixed_ms)
    return published_ms / uncalibrated_ms


def _factor(used: list[dict]) -> tuple[float, float]:
    ratios = [kernel_ratio(r["published_ms"], r["uncalibrated_ms"], r["fixed_ms"]) for r in used]
    mean, spread = _geomean_log(ratios)
    return math.exp(mean), spread


def precision_sigma(profile: DeviceProfile, backend: str) -> float:
    """The widening of an estimate carried from one precision to the other: SIGMA_OTHER_PRECISION
    where the runtime's int8 rate on this core cites a source, else log(ISA peak) / 2."""
    runtime = runtime_model(backend)
    feature, _ = runtime.int8_ratio(core_type(profile.cpu.core).features)
    assumed = f"int8_rate.{feature}" in runtime.assumptions or (
        "int8_rate" in runtime.assumptions and "int8_rate" not in runtime.sources
    )
    if not assumed or feature not in INT8_PEAK_RATIO:
        return SIGMA_OTHER_PRECISION
    return max(SIGMA_OTHER_PRECISION, math.log(INT8_PEAK_RATIO[feature]) / 2)


def threads_sigma(profile: DeviceProfile) -> float:
    """The widening of an estimate carried from its references' thread count to another: smaller
    where the board's own 1-thread / all-core speed-up is published."""
    measured = profile.cpu.all_core_speedup is not None
    return SIGMA_OTHER_THREADS_MEASURED if measured else SIGMA_OTHER_THREADS


def _fit(
    used: list[dict],
    precision: str,
    threads: int | None,
    threads_extra: float,
    precision_extra: float = SIGMA_OTHER_PRECISION,
) -> dict[str, Any]:
    """Factor and extra spread from references, preferring those of the estimate's precision:
    the others stand in only when none match, and widen the range."""
    group = precision_group(precision)
    matching = [r for r in used if precision_group(r["precision"]) == group]
    chosen = matching or used
    factor, spread = _factor(chosen)
    extra = 0.0 if matching else precision_extra
    ran_at = {r["threads"] for r in chosen}
    other_threads = threads is not None and threads not in ran_at
    if other_threads:
        extra = math.hypot(extra, threads_extra)
    caveats = []
    if not matching:
        caveats.append(f"fitted on {chosen[0]['precision']}, not {group}")
    if other_threads:
        caveats.append(f"at {', '.join(map(str, sorted(ran_at)))} thread(s), not {threads}")
    return {"factor": factor, "spread": spread, "extra": extra, "references": chosen,
            "caveats": caveats}  # fmt: skip


def calibration(
    profile: DeviceProfile,
    backend: str,
    precision: str = "fp32",
    threads: int | None = None,
    *,
    borrow: bool = True,
) -> dict[str, Any]:
    """The factor that multiplies the cost model's estimate for (profile, backend, precision) at
    `threads`, where it comes from, and the log spread of the estimate's errors (the range is
    estimate x exp(+-sigma)).

    own: geometric mean of published / uncalibrated over the profile's references of that backend
    and precision (of the other precision when it has none: wider). same-core: the mean of the
    factors of the other profiles with the same core type (borrow=True), each times the boards'
    per-clock ratio on a table that has both (board_ratio). uncalibrated: factor 1,
    widest range. A reference at another thread count than `threads` widens the range too.
    """
    used, skipped = own_references(profile, backend)
    if used:
        fit = _fit(
            used, precision, threads, threads_sigma(profile), precision_sigma(profile, backend)
        )
        caveat = f" ({'; '.join(fit['caveats'])}, so its range is wider)" if fit["caveats"] else ""
        return {
            "kind": "own",
            "factor": fit["factor"],
            "sigma": math.hypot(SIGMA["own"], fit["spread"], fit["extra"]),
            "references": fit["references"],
            "skipped": skipped,
            "status": f"calibrated for {backend} on {len(fit['references'])} published "
            f"measurement(s) cited in the profile{caveat}",
        }
    lent = _same_core_fits(profile, backend, precision, threads) if borrow else {}
    if lent:
        mean, spread = _geomean_log([fit["factor"] for fit in lent.values()])
        extra = max(fit["extra"] for fit in lent.values())
        return {
            "kind": "same-core",
            "factor": math.exp(mean),
            "sigma": math.hypot(SIGMA["same-core"], spread, extra),
            "references": [],
            "skipped": skipped,
            "borrowed_from": {name: fit["factor"] for name, fit in lent.items()},
            "status": f"no {backend} calibration of its own: borrows that of "
            f"{', '.join(lent)} (same {profile.cpu.core} core{_ratios_said(lent)}), so its range "
            "is wider",
        }
    # An uncalibrated int8 estimate also rests on the runtime's int8 rate (when it is assumed).
    int8_extra = precision_sigma(profile, backend) if precision_group(precision) == "int8" else 0.0
    if int8_extra == SIGMA_OTHER_PRECISION:
        int8_extra = 0.0  # a cited rate: the uncalibrated sigma already covers it
    unused = f" (cited but not used: {'; '.join(s['reason'] for s in skipped)})" if skipped else ""
    return {
        "kind": "uncalibrated",
        "factor": 1.0,
        "sigma": math.hypot(SIGMA["uncalibrated"], int8_extra),
        "references": [],
        "skipped": skipped,
        "status": f"uncalibrated for {backend}: no usable published {backend} measurement on "
        f"this board{unused} or another {profile.cpu.core} board, so the range is wide",
    }


def _same_core_fits(
    profile: DeviceProfile, backend: str, precision: str, threads: int | None
) -> dict[str, dict[str, Any]]:
    fits = {}
    for name in list_profiles():
        if name in ("host", profile.name):
            continue
        try:
            other = load_profile(name)
        except ProfileError:
            continue  # a broken user profile is reported when it is used, not here
        if other.cpu.core != profile.cpu.core:
            continue
        used, _ = own_references(other, backend)
        if used:
            fit = _fit(
                used, precision, threads, threads_sigma(profile), precision_sigma(profile, backend)
            )
            fit["board_ratio"] = board_ratio(profile, other)
            fit["factor"] *= fit["board_ratio"]
            fits[name] = fit
    return fits


def _ratios_said(lent: dict[str, dict[str, Any]]) -> str:
    said = [f"{name}'s factor x{fit['board_ratio']:.2f}, the boards' per-clock ratio in a "
            "published table of both" for name, fit in lent.items()
            if abs(fit["board_ratio"] - 1) > 0.005]  # fmt: skip
    return f"; {'; '.join(said)}" if said else ""


def board_ratio(profile: DeviceProfile, lender: DeviceProfile) -> float:
    """How much slower per clock `profile`'s cores ran a compute-bound CNN than `lender`'s (same
    core type) in a published table that has both (cpu.one_thread_cnn_mcycles): what separates
    the boards that the cost model does not see, carried with the lent factor. 1 where either
    profile lacks the figure."""
    mine, theirs = profile.cpu.one_thread_cnn_mcycles, lender.cpu.one_thread_cnn_mcycles
    return mine / theirs if mine and theirs else 1.0
