"""Predict a pack's latency on device profiles that are not here (labelled 'predicted')."""

from __future__ import annotations

import argparse
import json

from edgepack.benchmarks.predict import format_prediction, predict_pack
from edgepack.device_profiles import list_profiles


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("pack", help="pack directory or .edgepack archive (with a cost summary)")
    parser.add_argument(
        "--profile", action="append", help="device profile (repeatable; default: all of them)"
    )
    parser.add_argument("--threads", type=int, help="threads (default: the profile's)")
    parser.add_argument("--backend", help="backend (default: the profile's)")
    parser.add_argument("--json", action="store_true")


def main(args: argparse.Namespace) -> int:
    profiles = args.profile or list_profiles()
    predictions = [
        predict_pack(args.pack, name, threads=args.threads, backend=args.backend)
        for name in profiles
    ]
    if args.json:
        print(json.dumps(predictions, indent=1))
    else:
        for name, prediction in zip(profiles, predictions, strict=True):
            print(f"{name}: {format_prediction(prediction)}")
    return 0
