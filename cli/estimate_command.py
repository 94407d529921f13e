"""Estimate a pack's latency on device profiles that are not here (labelled 'estimated'): per
runtime and precision, from the pack's cost summary, the board's core type and memory, and the
published measurements the profile cites."""

from __future__ import annotations

import argparse
import json

from edgepack.benchmarks.estimate import estimate_pack, format_estimate
from edgepack.device_profiles import HOST, list_profiles


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("pack", help="pack directory or .edgepack archive (with a cost summary)")
    parser.add_argument(
        "--profile", action="append", help="device profile (repeatable; default: all of them)"
    )
    parser.add_argument("--threads", type=int, help="threads (default: the profile's)")
    parser.add_argument("--backend", help="backend (default: the profile's)")
    parser.add_argument(
        "--refresh",
        action="store_true",
        help="measure this host's microbenchmarks again (used for the 'host' profile only)",
    )
    parser.add_argument("--json", action="store_true")


def main(args: argparse.Namespace) -> int:
    profiles = args.profile or list_profiles()
    coefficients = None
    if args.refresh and HOST in profiles:
        from edgepack.benchmarks.microbench import host_coefficients

        coefficients = host_coefficients(refresh=True)
    estimates = [
        estimate_pack(
            args.pack, name, threads=args.threads, backend=args.backend, coefficients=coefficients
        )
        for name in profiles
    ]
    if args.json:
        print(json.dumps(estimates, indent=1))
    else:
        for name, estimate in zip(profiles, estimates, strict=True):
            print(f"{name}: {format_estimate(estimate)}")
    return 0
