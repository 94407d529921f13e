"""Calibration of the board cost model on the published measurements profiles cite: one factor per
(profile, runtime), from at most two measurements of that runtime on that board. A profile with
none of its own borrows the factor of a profile with the same core type (and says so, with a
wider range); with none of those it stays uncalibrated and says that.
"""

from __future__ import annotations

import json
import math
import re
from functools import cache
from importlib import resources
from typing import Any

from edgepack.device_profiles import DeviceProfile, list_profiles, load_profile
from edgepack.runtime import ProfileError

from .cost_model import cost_seconds

CPU_BACKENDS = ("onnxruntime", "litert")
# Spread (natural log) of the errors of an estimate, by where its calibration came from: the
# band is estimate x exp(+-sigma). Chosen before looking at held-out rows (docs/latency-model.md).
SIGMA = {"own": 0.35, "same-core": 0.5, "uncalibrated": 0.8, "host": 0.4}
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
    for ref in profile.references:
        if ref.backend != backend:
            continue
        match = reference_cost(ref.model, ref.precision)
        if ref.threads is None or match is None:
            why = "ran on an accelerator" if ref.threads is None else "no costed architecture"
            reason = f"{why} ({ref.model!r}, {ref.precision})"
            skipped.append({"model": ref.model, "reason": reason})
            continue
        arch, cost = match
        threads = min(ref.threads, profile.cpu.cores)
        seconds, _ = cost_seconds(cost, profile, backend, threads)
        used.append(
            {
                "model": ref.model,
                "as": arch,
                "precision": ref.precision,
                "threads": ref.threads,
                "published_ms": ref.latency_ms,
                "uncalibrated_ms": seconds * 1e3,
                "source": ref.source.url,
            }
        )
    return used, skipped


def _factor(used: list[dict]) -> tuple[float, float]:
    mean, spread = _geomean_log([r["published_ms"] / r["uncalibrated_ms"] for r in used])
    return math.exp(mean), spread


def calibration(profile: DeviceProfile, backend: str, *, borrow: bool = True) -> dict[str, Any]:
    """The factor that multiplies the cost model's estimate for (profile, backend), where it comes
    from, and the log spread of the estimate's errors (the range is estimate x exp(+-sigma)).

    own: geometric mean of published / uncalibrated over the profile's references of that
    backend. same-core: the mean of the factors of the other profiles with the same core type
    (borrow=True). uncalibrated: factor 1, widest range.
    """
    used, skipped = own_references(profile, backend)
    if used:
        factor, spread = _factor(used)
        return {
            "kind": "own",
            "factor": factor,
            "sigma": math.hypot(SIGMA["own"], spread),
            "references": used,
            "skipped": skipped,
            "status": f"calibrated for {backend} on {len(used)} published measurement(s) "
            "cited in the profile",
        }
    lent = _same_core_factors(profile, backend) if borrow else {}
    if lent:
        mean, spread = _geomean_log(list(lent.values()))
        return {
            "kind": "same-core",
            "factor": math.exp(mean),
            "sigma": math.hypot(SIGMA["same-core"], spread),
            "references": [],
            "skipped": skipped,
            "borrowed_from": lent,
            "status": f"no {backend} calibration of its own: borrows that of "
            f"{', '.join(lent)} (same {profile.cpu.core} core), so its range is wider",
        }
    return {
        "kind": "uncalibrated",
        "factor": 1.0,
        "sigma": SIGMA["uncalibrated"],
        "references": [],
        "skipped": skipped,
        "status": f"uncalibrated for {backend}: no published {backend} measurement on this "
        f"board or another {profile.cpu.core} board, so the range is wide",
    }


def _same_core_factors(profile: DeviceProfile, backend: str) -> dict[str, float]:
    factors = {}
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
            factors[name] = _factor(used)[0]
    return factors
