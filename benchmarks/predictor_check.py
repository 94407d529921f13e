"""Checks the latency predictor: predicted latency per profile beside the published measurements
the profiles cite (error per row), and beside latencies measured here on the host.

Run `python -m edgepack.benchmarks.estimateor_check`; the zoo's packs are built in a subprocess
(`python -m edgepack.compress.zoo`, which needs the compress extra), then read as a device would.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from edgepack.device_profiles import DeviceProfile, detect_host, list_profiles, load_profile
from edgepack.runtime import PackManifest, load, read_manifest

from .estimate import (
    REFERENCE_PRECISIONS,
    calibration,
    estimate_manifest,
    reference_cost,
    transfer_prior,
)
from .inputs import synthetic_inputs
from .microbench import format_coefficients, host_coefficients

DEFAULT_MODELS = (
    "mobilenet_v2",
    "resnet18",
    "resnet50",
    "ssd_mobilenet_v2",
    "ssd_mobilenet_v1_075",
    "bert_base",
)
SEQUENCE = 128  # BERT's sequence length, as the cost summaries assume


def build_zoo(out: Path, models: list[str]) -> list[Path]:
    """Export the zoo's packs out of process (the device side never imports torch)."""
    command = [sys.executable, "-m", "edgepack.compress.zoo", "--out", str(out)]
    command += ["--models", ",".join(models), "--precisions", "fp32,int8"]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"building the zoo failed:\n{done.stderr[-3000:]}")
    return [Path(json.loads(line)["pack"]) for line in done.stdout.splitlines() if line.strip()]


def measure_p50(pack: Path, threads: int, rounds: int = 3, seconds: float = 0.5) -> float:
    """p50 latency in ms on this host: the best of `rounds` medians, each over `seconds`, so a
    burst of other load on a shared machine does not decide the result."""
    model = load(pack, backend="onnxruntime", threads=threads)
    feeds = synthetic_inputs(model.entry, {"sequence": SEQUENCE})
    for _ in range(2):
        model.run(feeds)
    medians = []
    for _ in range(rounds):
        times: list[float] = []
        start = time.perf_counter()
        while len(times) < 3 or time.perf_counter() - start < seconds:
            t0 = time.perf_counter()
            model.run(feeds)
            times.append(time.perf_counter() - t0)
        medians.append(float(np.median(times)))
    return min(medians) * 1e3


def _error(predicted: float, actual: float) -> float:
    return 100 * (predicted / actual - 1)


def _costed_variant(
    manifests: dict[str, PackManifest], zoo: str, variant: str
) -> PackManifest | None:
    for manifest in manifests.values():
        entry = manifest.models[0]
        if manifest.name.startswith(f"{zoo}-") and entry.precision == variant:
            return manifest
    return None


def reference_rows(
    profiles: list[DeviceProfile],
    manifests: dict[str, PackManifest],
    coefficients: dict,
    history: Path,
) -> list[dict[str, Any]]:
    """One row per published reference: uncalibrated and leave-one-out calibrated predictions.

    Three predictions per row: the raw carry of the host's coefficients (uncalibrated), that
    carry times the bias the *other* boards measure (what a board citing nothing gets), and
    leave-one-out: the board's factor from its other reference only, so no row is predicted by
    a factor fitted to that row."""
    rows = []
    for profile in profiles:
        for i, ref in enumerate(profile.references):
            row = {
                "profile": profile.name,
                "model": ref.model,
                "backend": ref.backend,
                "precision": ref.precision,
                "threads": ref.threads,
                "published_ms": ref.latency_ms,
            }
            match = reference_cost(ref.model, ref.precision)
            if ref.threads is None or match is None:
                why = "accelerator run" if ref.threads is None else "no costed architecture"
                rows.append(row | {"note": f"not comparable: {why}"})
                continue
            zoo, _ = match
            variant = REFERENCE_PRECISIONS[ref.precision.lower()]
            manifest = _costed_variant(manifests, zoo, variant)
            if manifest is None:
                rows.append(row | {"note": f"{zoo} ({variant}) was not built"})
                continue
            others = tuple(r for j, r in enumerate(profile.references) if j != i)
            loo = dataclasses.replace(profile, references=others)
            threads = min(ref.threads, profile.cpu.cores)
            options = {"threads": threads, "coefficients": coefficients, "history": history}
            plain = estimate_manifest(
                manifest, dataclasses.replace(profile, references=()), **options
            )
            held_out = estimate_manifest(manifest, loo, **options)
            factor = calibration(loo, coefficients)["factor"]
            # As if the board cited nothing: the bias the other boards measure.
            prior = transfer_prior(coefficients, exclude=profile.name, core=profile.cpu.core)
            other_ms = plain["uncalibrated_ms"] * prior["factor"] if prior else None
            rows.append(
                row
                | {
                    "as": f"{zoo} ({variant}, onnxruntime)",
                    "uncalibrated_ms": plain["uncalibrated_ms"],
                    "uncalibrated_error_pct": _error(plain["uncalibrated_ms"], ref.latency_ms),
                    "other_boards_ms": other_ms,
                    "other_boards_error_pct": _error(other_ms, ref.latency_ms) if prior else None,
                    "loo_ms": held_out["latency_ms"],
                    "loo_range_ms": held_out["range_ms"],
                    "loo_factor": factor,
                    "loo_error_pct": _error(held_out["latency_ms"], ref.latency_ms),
                    "within_range": held_out["range_ms"][0]
                    <= ref.latency_ms
                    <= held_out["range_ms"][1],
                }
            )
    return rows


def host_rows(
    manifests: dict[str, PackManifest], coefficients: dict, history: Path
) -> list[dict[str, Any]]:
    """Predicted for the host beside measured here, at 1 thread and all cores."""
    host = detect_host()
    counts = sorted({1, host.cpu.cores})
    rows = []
    for path, manifest in manifests.items():
        for threads in counts:
            predicted = estimate_manifest(
                manifest, host, threads=threads, coefficients=coefficients, history=history
            )
            measured = measure_p50(Path(path), threads)
            rows.append(
                {
                    "pack": manifest.name,
                    "threads": threads,
                    "predicted_ms": predicted["latency_ms"],
                    "range_ms": predicted["range_ms"],
                    "measured_p50_ms": measured,
                    "error_pct": _error(predicted["latency_ms"], measured),
                }
            )
            print(f"  measured {manifest.name} at {threads} thread(s)", file=sys.stderr)
    return rows


def profile_grid(
    profiles: list[DeviceProfile],
    manifests: dict[str, PackManifest],
    coefficients: dict,
    history: Path,
) -> list[dict[str, Any]]:
    """Predicted latency of every pack on every profile, at the profile's default threads."""
    rows = []
    for manifest in manifests.values():
        for profile in profiles:
            p = estimate_manifest(
                manifest, profile, backend="onnxruntime", coefficients=coefficients,
                history=history,
            )  # fmt: skip
            rows.append(
                {
                    "pack": manifest.name,
                    "profile": profile.name,
                    "threads": p["threads"],
                    "predicted_ms": p["latency_ms"],
                    "range_ms": p["range_ms"],
                    "calibrated": bool(p["calibration"]["references"]),
                    "energy_mj": p["energy"]["mj"],
                }
            )
    return rows


def _fmt(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _signed(value: float | None) -> str:
    return "-" if value is None else f"{value:+.0f}"


def print_report(report: dict[str, Any]) -> None:
    print(format_coefficients(report["coefficients"]))
    print("\nPublished measurements cited in the profiles vs predicted (onnxruntime, CPU):")
    header = (
        f"{'profile':<17}{'reference':<34}{'thr':>4}{'published':>10}{'raw':>8}{'err%':>6}"
        f"{'others':>8}{'err%':>6}{'LOO':>8}{'err%':>6}  LOO range"
    )
    print(header)
    for r in report["references"]:
        if "note" in r:
            print(
                f"{r['profile']:<17}{r['model'][:33]:<34}{_fmt(r['threads'], 0):>4}"
                f"{r['published_ms']:>10.1f}  {r['note']}"
            )
            continue
        low, high = r["loo_range_ms"]
        others = r["other_boards_ms"]
        print(
            f"{r['profile']:<17}{r['model'][:33]:<34}{r['threads']:>4}{r['published_ms']:>10.1f}"
            f"{r['uncalibrated_ms']:>8.1f}{r['uncalibrated_error_pct']:>+6.0f}"
            f"{_fmt(others):>8}{_signed(r['other_boards_error_pct']):>6}"
            f"{r['loo_ms']:>8.1f}{r['loo_error_pct']:>+6.0f}  {low:.1f}-{high:.1f}"
            f"{'' if r['within_range'] else '  (outside)'}"
        )
    if report["host"]:
        print(f"\nThis host, predicted vs measured p50 (best of 3 rounds; load {report['load']}):")
        print(f"{'pack':<28}{'thr':>4}{'predicted':>11}{'measured':>10}{'err%':>7}")
        for r in report["host"]:
            print(
                f"{r['pack']:<28}{r['threads']:>4}{r['predicted_ms']:>11.2f}"
                f"{r['measured_p50_ms']:>10.2f}{r['error_pct']:>+7.0f}"
            )
    print("\nPredicted latency per profile, ms (likely range), default threads, onnxruntime:")
    profiles = list(dict.fromkeys(r["profile"] for r in report["grid"]))
    print(f"{'pack':<28}" + "".join(f"{p:>20}" for p in profiles))
    for pack in dict.fromkeys(r["pack"] for r in report["grid"]):
        cells = {r["profile"]: r for r in report["grid"] if r["pack"] == pack}
        line = f"{pack:<28}"
        for p in profiles:
            c = cells[p]
            low, high = c["range_ms"]
            cell = f"{c['predicted_ms']:.0f}{'' if c['calibrated'] else '*'} ({low:.0f}-{high:.0f})"
            line += f"{cell:>20}"
        print(line)
    print(
        "* uncalibrated: the profile cites no usable published CPU measurement; it takes the "
        "bias the calibrated profiles measure"
    )
    print(
        "raw: the host's coefficients carried by clock, SIMD width and ISA alone; others: raw x "
        "the bias measured on the other boards; LOO: calibrated on the board's other reference"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m edgepack.benchmarks.estimateor_check", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--models", default=",".join(DEFAULT_MODELS))
    parser.add_argument("--packs", type=Path, help="reuse zoo packs already built in this folder")
    parser.add_argument("--no-host", action="store_true", help="skip measuring on this host")
    parser.add_argument("--json", type=Path, help="also write the report as JSON here")
    args = parser.parse_args(argv)
    warnings.simplefilter("ignore", UserWarning)  # thread clamping is expected here
    models = args.models.split(",")
    with tempfile.TemporaryDirectory(prefix="edgepack-check-") as scratch:
        if args.packs:
            paths = sorted(p for p in args.packs.iterdir() if p.name.split("-")[0] in models)
        else:
            print(f"building {len(models)} models x 2 precisions (a few minutes)", file=sys.stderr)
            paths = build_zoo(Path(scratch), models)
        manifests = {str(p): read_manifest(p) for p in paths}
        coefficients = host_coefficients()
        profiles = [load_profile(n) for n in list_profiles() if n != "host"]
        # Predictions here must not lean on errors recorded from earlier measurements.
        history = Path(scratch) / "no-history.json"
        report = {
            "coefficients": coefficients,
            "references": reference_rows(profiles, manifests, coefficients, history),
            "host": [] if args.no_host else host_rows(manifests, coefficients, history),
            "load": [round(x, 1) for x in os.getloadavg()],
            "grid": profile_grid(profiles, manifests, coefficients, history),
        }
    print_report(report)
    if args.json:
        args.json.write_text(json.dumps(report, indent=1, default=str))
    errors = [
        abs(math.log1p(r["loo_error_pct"] / 100)) for r in report["references"] if "loo_ms" in r
    ]
    if errors:
        print(f"\nreference rows: median |log error| {np.median(errors):.2f} (n={len(errors)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
