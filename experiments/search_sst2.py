"""The search on SST-2: MiniLM-L6 fine-tuned as the teacher, pruned and quantized by a recipe
whose knobs an Optuna study varies within --minutes; prints the Pareto front per profile with
Optimum's dynamic int8 of the teacher as the reference row (issue 11).

    python -m experiments.search_sst2 [--minutes 10] [--teacher DIR] [--profile rpi5 ...]
        [--space student|full|quantize] [--storage URL] [--work DIR]

Every accuracy is measured through edgepack.runtime on the same validation rows (the search's
budget rows) and every latency on a profile the same way (estimated, or measured when this host
is the profile), so the reference row and the trials compare side by side. Rerun with the same
--work (or --storage) to continue the same study.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from edgepack.compress.data import load_dataset
from edgepack.compress.evaluate import evaluate
from edgepack.compress.recipe import Recipe
from edgepack.compress.search import ProfileFigures, pack_latency, run_search
from edgepack.device_profiles import load_profile
from edgepack.runtime import load, read_manifest

from .baselines import optimum_dynamic
from .quantize_sst2 import fine_tune
from .sst2 import DEFAULT_DATA, LABELS, rows, run_sst2, write_tsv

# The knobs, as data. "student": a student distilled from the teacher (which of its layers it
# keeps), its FFN pruned, then int8; "full": structured pruning of the FFN neurons and attention
# heads (fine-tuned with distillation from the unpruned teacher), then int8; "quantize": int8.
SPACES: dict[str, dict[str, Any]] = {
    "student": {
        "stages.distill.layers": [[0, 2, 4], [0, 3, 5], [1, 4], [0, 5]],
        "stages.prune.ffn_keep": {"low": 0.5, "high": 1.0, "step": 0.25},
        "stages.quantize.method": ["dynamic", "static"],
    },
    "full": {
        "stages.prune.ffn_keep": {"low": 0.4, "high": 1.0, "step": 0.1},
        "stages.prune.heads_keep": {"low": 0.5, "high": 1.0, "step": 0.25},
        "stages.quantize.method": ["dynamic", "static"],
    },
    "quantize": {
        "stages.quantize.method": ["dynamic", "static"],
        "stages.quantize.per_channel": [True, False],
        "stages.quantize.calibration": ["minmax", "entropy", "percentile"],
    },
}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="folder with the TSVs")
    parser.add_argument("--teacher", type=Path, help="fine-tuned HF folder to reuse")
    parser.add_argument("--base-model", type=Path, help="HF folder to fine-tune (default MiniLM)")
    parser.add_argument("--train-samples", type=int, default=4000, help="fine-tuning sentences")
    parser.add_argument("--minutes", type=float, default=10.0, help="stop starting trials after")
    parser.add_argument("--profile", action="append", help="device profile (default rpi5)")
    parser.add_argument("--budget", type=float, default=1.0, help="accuracy drop allowed (points)")
    parser.add_argument("--space", choices=sorted(SPACES), default="full", help="knobs to vary")
    parser.add_argument("--eval-samples", type=int, default=400, help="validation rows scored")
    parser.add_argument("--finetune-steps", type=int, default=40, help="after pruning, per trial")
    parser.add_argument("--distill-epochs", type=int, default=1, help="student space, per trial")
    parser.add_argument("--max-length", type=int, default=64, help="tokens per sentence")
    parser.add_argument("--storage", help="Optuna storage URL (default sqlite in --work)")
    parser.add_argument("--work", type=Path, help="keep the teacher, study and packs here")
    args = parser.parse_args(argv)
    return run_sst2(
        args.data, args.work, "edgepack-search-sst2-", lambda w, t, v: run(args, w, t, v)
    )


def run(args: argparse.Namespace, work: Path, train: Any, validation: Any) -> int:
    started = time.perf_counter()
    profiles = args.profile or ["rpi5"]
    shuffled = np.random.default_rng(1).permutation(len(train))
    evaluation = write_tsv(rows(validation, range(args.eval_samples)), work / "evaluation.tsv")
    calibration = write_tsv(rows(train, shuffled[:128]), work / "calibration.tsv")
    tuning = write_tsv(rows(train, shuffled[128:2128]), work / "train.tsv")
    teacher = args.teacher or fine_tune(args, train, work)
    recipe = search_recipe(teacher, work, evaluation, calibration, tuning, args)
    print(f"[search] {args.space} space for {args.minutes:g} min: {list(recipe.search)}")
    result = run_search(
        recipe,
        profiles=profiles,
        budget=args.budget,
        timeout=args.minutes * 60,
        storage=args.storage,
        study=f"sst2-{args.space}",
        output=work / "search",
        heartbeat_s=60,
    )
    print("[reference] Optimum dynamic int8 of the teacher", flush=True)
    optimum = work / "optimum.edgepack"
    if not optimum.is_file():
        optimum_dynamic(teacher, optimum)
    source = _source_accuracy(result)
    reference = reference_figures(optimum, evaluation, teacher, profiles, source, args.max_length)
    print()
    for profile in profiles:
        print(result.table(profile, extra=[("Optimum", reference[profile])]))
        print()
    complete = sum(r.state == "complete" for r in result.rows)
    pruned = sum(r.state == "pruned" for r in result.rows)
    print(
        f"{complete} complete, {pruned} pruned trial(s) in the study; accuracy on validation rows "
        f"1-{args.eval_samples}; teacher {teacher}; report {result.report}; "
        f"{time.perf_counter() - started:.0f} s"
    )
    return 0


def search_recipe(
    teacher: Path,
    work: Path,
    evaluation: Path,
    calibration: Path,
    tuning: Path,
    args: argparse.Namespace,
) -> Recipe:
    """The teacher pruned (full space) and quantized; the space's knobs in [search]."""
    stages: list[dict[str, Any]] = []
    if args.space == "student":
        stages.append(
            {
                "type": "distill",
                "layers": [0, 2, 4],
                "epochs": args.distill_epochs,
                "batch_size": 32,
                "learning_rate": 1e-4,
                "max_length": args.max_length,
                "trim_vocab": True,
            }
        )
    if args.space in ("full", "student"):
        stages.append(
            {
                "type": "prune",
                "ffn_keep": 0.7,
                "heads_keep": 1.0,
                "finetune_steps": args.finetune_steps,
                "max_length": args.max_length,
                "sequence_length": args.max_length,
            }
        )
    stages.append({"type": "quantize", "min_speedup": 0, "metric": "accuracy"})
    return Recipe.from_dict(
        {
            "name": "sst2",
            "task": "text-classification",
            "output": str(work / "sst2.edgepack"),
            "source": str(teacher),
            "metric": "accuracy",
            "data": {
                "train": str(tuning),
                "calibration": str(calibration),
                "evaluation": str(evaluation),
                "max_length": args.max_length,
            },
            "postprocessing": {"output_name": "logits", "softmax": True, "labels": list(LABELS)},
            "stages": stages,
            "search": SPACES[args.space],
        },
        origin="search_sst2",
    )


def _source_accuracy(result: Any) -> float | None:
    for row in result.rows:
        for figures in row.figures.values():
            return figures.accuracy + figures.drop
    return None


def reference_figures(
    pack: Path,
    evaluation: Path,
    teacher: Path,
    profiles: Sequence[str],
    source: float | None,
    max_length: int,
) -> dict[str, ProfileFigures]:
    """The Optimum pack on the trials' terms: accuracy through the runtime on the same
    tokenized rows, latency on each profile the same way, size of its model file."""
    data = load_dataset(str(evaluation)).tokenize(str(teacher), max_length)
    scored = evaluate(load(pack, backend="onnxruntime"), data, progress=False)
    accuracy = scored.metrics["accuracy"]
    manifest = read_manifest(pack)
    entry = manifest.models[0]
    figures = {}
    for name in profiles:
        profile = load_profile(name)
        latency, kind = pack_latency(pack, manifest, profile, "onnxruntime", entry)
        figures[name] = ProfileFigures(
            profile.name,
            entry.path,
            accuracy,
            (source - accuracy) if source is not None else float("nan"),
            latency,
            kind,
            entry.size_bytes,
        )
    return figures


if __name__ == "__main__":
    sys.exit(main())
