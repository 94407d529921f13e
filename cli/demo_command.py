"""The main job on the bundled default: train a digits CNN, compress, pack, run, benchmark."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-o", "--output", default="edgepack-demo", help="folder for the pack and data"
    )
    parser.add_argument("--quick", action="store_true", help="fewer epochs and shorter benchmarks")


def main(args: argparse.Namespace) -> int:
    from edgepack.compress.demo import run_demo  # workstation only

    run_demo(args.output, quick=args.quick)
    return 0
