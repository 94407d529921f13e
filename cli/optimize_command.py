"""From your trained model to the pack to flash on each device: edgepack picks the recipe for the
model's family (the text recipe for BERT-family folders, the CNN recipe for convolutional
modules, quantize-only for an ONNX file) and says which, runs it within --budget, benchmarks the
packs here, estimates them on each --profile and writes a report (report.md, report.html,
report.json) to OUTPUT. Exit 1 when nothing meets the budget on some profile (the report shows
the closest)."""

from __future__ import annotations

import argparse

from .arguments import add_budget, add_output, add_profile


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "model", help="a Hugging Face model folder, an .onnx file, or module:function (nn.Module)"
    )
    parser.add_argument(
        "--data",
        required=True,
        help="labelled training/calibration data: sklearn:NAME, .csv/.tsv/.jsonl, .npz, images",
    )
    parser.add_argument("--eval", dest="eval_data", help="evaluation data (default: --data)")
    add_profile(
        parser, "device profile to target (repeat; default: every bundled profile)", repeat=True
    )
    add_budget(parser, "accuracy points below the source (default 1.0)", default=1.0)
    parser.add_argument(
        "--input-shape",
        type=int,
        nargs="+",
        help="one sample's shape, for module:function models (e.g. 1 8 8)",
    )
    parser.add_argument(
        "--finetune-steps", type=int, default=200, help="fine-tuning steps after pruning"
    )
    parser.add_argument(
        "--bench-seconds", type=float, default=2.0, help="timed seconds per model here"
    )
    add_output(parser, "folder for packs, logs and report", required=True)
    parser.add_argument("-v", "--verbose", action="store_true", help="show third-party output")


def main(args: argparse.Namespace) -> int:
    from edgepack.compress.optimize import optimize  # workstation only
    from edgepack.compress.quiet import console

    term = console()
    outcome = optimize(
        args.model,
        args.data,
        args.output,
        eval_data=args.eval_data,
        profiles=args.profile,
        budget=args.budget,
        input_shape=args.input_shape,
        finetune_steps=args.finetune_steps,
        bench_seconds=args.bench_seconds,
        verbose=args.verbose,
        term=term,
    )
    term.say(f"[done] in {outcome.seconds:.0f} s; report: {args.output}/report.html")
    term.say("flash to each device (pack, format, latency, accuracy):")
    for line in outcome.lines:
        term.say(f"  {line}")
    if not outcome.met:
        term.say(
            f"edgepack optimize: nothing meets the {args.budget:g}-point budget on some "
            "device; the report shows the closest"
        )
        return 1
    return 0
