"""Fine-tune a Hugging Face model folder on labelled text into a classifier that quantize and
compress accept. A base checkpoint (MiniLM, BERT) has no trained task head, so a pack made
from it would answer at chance: fine-tune it here first.

Data: .tsv/.csv with a text column (sentence, text) and a label column (label: a class index
or name), or .jsonl with those keys.
"""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="Hugging Face model folder to start from")
    parser.add_argument("--train", required=True, help="labelled text: .tsv/.csv/.jsonl")
    parser.add_argument("--eval", dest="eval_data", help="labelled text to report accuracy on")
    parser.add_argument("-o", "--output", required=True, help="folder to save the classifier in")
    parser.add_argument("--eval-samples", type=int, help="evaluate on the first N rows only")
    parser.add_argument("--labels", nargs="+", help="class names in index order (its id2label)")
    # Defaults are FinetuneConfig's (compress/finetune.py), which a base install cannot import.
    parser.add_argument(
        "--samples", type=int, help="train on a seeded subset of N (default 4000; 0: all)"
    )
    parser.add_argument("--epochs", type=int, help="default 1")
    parser.add_argument("--max-length", type=int, help="tokens per text (default 64)")
    parser.add_argument("--batch-size", type=int, help="default 32")
    parser.add_argument("--lr", type=float, help="peak learning rate (default 5e-5)")
    parser.add_argument("--seed", type=int, help="default 0")
    parser.add_argument("--threads", type=int, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def main(args: argparse.Namespace) -> int:
    import torch

    from edgepack.compress.finetune import FinetuneConfig, finetune  # workstation only

    if args.threads:
        torch.set_num_threads(args.threads)
    given = {
        "samples": args.samples or None if args.samples is not None else FinetuneConfig.samples,
        "epochs": args.epochs,
        "max_length": args.max_length,
        "batch_size": args.batch_size,
        "learning_rate": args.lr,
        "seed": args.seed,
    }
    config = FinetuneConfig(**{k: v for k, v in given.items() if v is not None or k == "samples"})
    result = finetune(
        args.model,
        args.train,
        args.output,
        config,
        eval_data=args.eval_data,
        labels=args.labels,
        eval_samples=args.eval_samples,
        progress=not args.quiet,
    )
    print(
        f"fine-tuned on {result.train_samples} samples, {result.steps} steps in "
        f"{result.seconds:.0f} s (final loss {result.final_loss:.3f}); saved to {result.output}"
    )
    if result.eval:
        print(
            f"dev accuracy {result.eval['accuracy']:.2f}% (macro-F1 {result.eval['macro_f1']:.2f}) "
            f"on {result.eval['samples']} samples"
        )
    print(
        f"next: edgepack quantize {result.output} --task text-classification "
        f"--calib {args.train} --eval {args.eval_data or args.train} -o "
        f"{result.output.rstrip('/')}.edgepack"
    )
    return 0
