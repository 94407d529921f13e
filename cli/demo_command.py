"""The main job on the bundled default: a digits CNN teacher, the CNN recipe (distill, prune, int8,
ONNX and TFLite), packs benchmarked here and estimated on every device profile, and a report
(report.md, report.html with plots, report.json) in the output folder. Third-party output goes
to OUTPUT/logs/; -v shows it."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-o", "--output", default="edgepack-demo", help="folder for packs, data, logs and report"
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="show third-party output")
    parser.add_argument(
        "--profile",
        action="append",
        help="estimate only this device profile (repeat; default: every bundled profile)",
    )
    parser.add_argument("--epochs", type=int, default=12, help="teacher epochs (default 12)")
    parser.add_argument(
        "--distill-epochs", type=int, default=4, help="student epochs when distilling (default 4)"
    )
    parser.add_argument(
        "--finetune-steps", type=int, default=200, help="fine-tuning steps after pruning"
    )
    parser.add_argument(
        "--bench-seconds", type=float, default=2.0, help="timed seconds per model here"
    )
    parser.add_argument(
        "--quick", action="store_true", help="short everything (a smoke run, about a minute)"
    )


def main(args: argparse.Namespace) -> int:
    from edgepack.compress.demo import DemoOptions, run_demo  # workstation only

    if args.quick:
        options = DemoOptions(
            epochs=4, distill_epochs=1, finetune_steps=120, bench_seconds=0.3, cold_starts=0
        )
    else:
        options = DemoOptions(
            epochs=args.epochs,
            distill_epochs=args.distill_epochs,
            finetune_steps=args.finetune_steps,
            bench_seconds=args.bench_seconds,
        )
    outcome = run_demo(args.output, options, verbose=args.verbose, profiles=args.profile)
    return 0 if outcome.met else 1
