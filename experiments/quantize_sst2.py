"""MiniLM-L6 on SST-2, side by side: fp32, Optimum's dynamic int8 and edgepack's chosen int8 -
size, validation accuracy and batch-1 latency, all run through edgepack.runtime (issue 3).

    python -m experiments.quantize_sst2 [--data DIR] [--teacher DIR] [--json results.json]

Fine-tuning, the baselines and edgepack's quantization (a recipe, built as data) run in this
process; every figure is then taken from the packs they wrote, as a device would load them.
Target: edgepack's int8 within 0.3 points of Optimum's accuracy and >= 1.2x faster at batch 1.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import onnxruntime as ort

from edgepack.benchmarks.harness import BenchResult, compare
from edgepack.benchmarks.inputs import synthetic_inputs
from edgepack.benchmarks.report import format_table
from edgepack.compress.data import TextDataset
from edgepack.compress.errors import QuantizationError
from edgepack.compress.finetune import RESULT_FILE, FinetuneConfig, finetune
from edgepack.compress.recipe import Recipe, run_recipe
from edgepack.runtime import load, read_manifest
from edgepack.runtime.backends.ort_backend import session_options
from edgepack.runtime.pack import PackReader

from .baselines import export_fp32, optimum_dynamic
from .sst2 import DEFAULT_DATA, LABELS, add_op_profile_flag, minilm_path, rows, run_sst2, write_tsv

T = TypeVar("T")
SEQUENCES = (64, 128)
THREADS = (1, 2)
TARGET_ACCURACY_GAP = 0.3  # points edgepack's int8 may trail Optimum's
TARGET_SPEEDUP = 1.2  # Optimum p50 / edgepack p50 at batch 1
# edgepack's candidates: the quantizer keeps those within budget and picks the fastest. Not
# dynamic per-channel: it runs the same kernels as per-tensor, so the pick between the two is
# decided by timing noise (seen: 2.37x vs 1.77x over fp32 for one run, reversed in another).
CANDIDATES = (
    {"method": "dynamic"},
    {"method": "static", "per_channel": True, "op_types": ["MatMul"]},
)


@dataclass
class PackRow:
    """One compared pack: what it is and what it scored."""

    key: str
    title: str
    path: Path
    size_bytes: int = 0
    precision: str = ""
    accuracy: float | None = None
    latency: dict[str, dict[str, float]] = field(default_factory=dict)  # "s64 t1" -> p50/p90 ms


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="folder with the TSVs")
    parser.add_argument("--teacher", type=Path, help="fine-tuned HF folder to reuse")
    parser.add_argument("--base-model", type=Path, help="HF folder to fine-tune (default MiniLM)")
    parser.add_argument("--train-samples", type=int, default=4000, help="fine-tuning sentences")
    parser.add_argument("--work", type=Path, help="keep the teacher and packs here")
    parser.add_argument("--budget", type=float, default=1.0, help="accuracy drop allowed (points)")
    parser.add_argument("--budget-samples", type=int, default=1000, help="quantizer's eval rows")
    parser.add_argument(
        "--min-speedup", type=float, default=1.0, help="int8 vs fp32 the quantizer needs (0: none)"
    )
    parser.add_argument("--max-float-nodes", type=int, help="nodes kept in float (0: no search)")
    parser.add_argument("--eval-samples", type=int, help="report accuracy on N rows (default all)")
    parser.add_argument(
        "--sequences", type=int, nargs="+", default=list(SEQUENCES), help="sequence lengths"
    )
    parser.add_argument("--min-duration", type=float, default=5.0, help="seconds per timed pack")
    parser.add_argument("--min-count", type=int, default=200, help="queries per timed pack")
    add_op_profile_flag(parser, "the first sequence's packs (1 thread)")
    parser.add_argument("--json", type=Path, help="write every figure here")
    args = parser.parse_args(argv)

    return run_sst2(args.data, args.work, "edgepack-sst2-", lambda w, t, v: run(args, w, t, v))


def run(args: argparse.Namespace, work: Path, train: TextDataset, validation: TextDataset) -> int:
    started = time.perf_counter()
    # The quantizer's budget is judged on the first validation rows; accuracy is reported on
    # the rest, so the choice is not scored on the rows that made it.
    budget_rows = min(args.budget_samples, len(validation) // 2)
    report = rows(validation, range(budget_rows, len(validation)))
    if args.eval_samples:
        report = rows(report, range(min(args.eval_samples, len(report))))
    calibration = rows(train, np.random.default_rng(1).permutation(len(train))[:128])
    budget_tsv = write_tsv(rows(validation, range(budget_rows)), work / "budget.tsv")
    calib_tsv = write_tsv(calibration, work / "calibration.tsv")

    teacher = args.teacher or fine_tune(args, train, work)
    finetune_log = _read_json(teacher / RESULT_FILE)
    packs = [
        PackRow("fp32", "fp32 ONNX", work / "fp32.edgepack"),
        PackRow("optimum", "Optimum dynamic int8", work / "optimum.edgepack"),
        PackRow("edgepack", "edgepack int8", work / "edgepack.edgepack"),
    ]
    step("fp32 export", lambda: export_fp32(teacher, packs[0].path))
    step("Optimum dynamic int8", lambda: optimum_dynamic(teacher, packs[1].path))
    recipe = quantize_recipe(teacher, packs[2].path, calib_tsv, budget_tsv, args)
    try:
        # progress on: the quantizer prints its candidate table (on the budget rows) to stderr
        step("edgepack int8", lambda: run_recipe(recipe, progress=True))
    except QuantizationError as exc:
        # No int8 model qualified (none within budget, or none faster than fp32 here): the
        # pack is still written, with the fp32 model, and compared as such.
        print(f"[edgepack int8] {str(exc).splitlines()[0]}; continuing with the fp32 model")
    if read_manifest(packs[2].path).models[0].precision == "fp32":
        packs[2].title = "edgepack (no int8 chosen)"

    for pack in packs:
        manifest = read_manifest(pack.path)
        pack.size_bytes = manifest.models[0].size_bytes
        pack.precision = manifest.models[0].precision
        pack.accuracy = accuracy(pack.path, report)
        print(
            f"{pack.title}: validation accuracy {pack.accuracy:.2f}% on {len(report.texts)} rows "
            f"(validation.tsv rows {budget_rows + 1}-{budget_rows + len(report.texts)})"
        )
    results = time_packs(packs, args)
    profile = profile_ops(packs, work, args.sequences[0]) if args.profile else None

    summary = summarize(packs, len(report.texts))
    print()
    print(format_table(next(iter(results.values()))))
    if profile:
        print(profile["table"])
    print(summary["table"])
    print(summary["verdict"])
    if args.json:
        chosen = read_manifest(packs[2].path)
        document = {
            "data": {
                "train": str(args.data / "train.tsv"),
                "validation": str(args.data / "validation.tsv"),
                "budget_rows": f"validation[0:{budget_rows}]",
                "report_rows": len(report.texts),
                "calibration_rows": len(calibration.texts),
            },
            "teacher": {"path": str(teacher), **(finetune_log or {})},
            "edgepack_choice": {
                "stages": chosen.provenance.get("stages"),
                "metrics": chosen.metrics,
                "candidates_tried": list(CANDIDATES),
            },
            "packs": {p.key: _pack_dict(p) for p in packs},
            "targets": summary["targets"],
            "profile_ms_per_run": profile and profile["ops"],
            "harness": {k: [r.to_dict() for r in v] for k, v in results.items()},
            "seconds": time.perf_counter() - started,
        }
        args.json.write_text(json.dumps(document, indent=2, default=str) + "\n")
        print(f"wrote {args.json}")
    return 0


def fine_tune(args: argparse.Namespace, train: TextDataset, work: Path) -> Path:
    """The teacher: MiniLM-L6 (or --base-model) with a 2-class head, one epoch on
    --train-samples rows of the training split."""
    out = work / "teacher"
    config = FinetuneConfig(samples=args.train_samples, epochs=1, max_length=64)
    base = args.base_model or minilm_path()
    result = step("fine-tune", lambda: finetune(base, train, out, config, labels=LABELS))
    print(
        f"fine-tuned on {result.train_samples} samples, {result.steps} steps in "
        f"{result.seconds:.0f} s (final loss {result.final_loss:.3f}); saved to {out}"
    )
    return out


def step(title: str, job: Callable[[], T]) -> T:
    """Run one workstation step, saying when it starts and how long it took."""
    print(f"[{title}]", flush=True)
    begin = time.perf_counter()
    result = job()
    print(f"[{title}] done in {time.perf_counter() - begin:.0f} s", flush=True)
    return result


def quantize_recipe(
    teacher: Path, output: Path, calib: Path, evaluation: Path, args: argparse.Namespace
) -> Recipe:
    """The recipe edgepack's int8 comes from: the teacher quantized within the accuracy budget."""
    stage = {
        "type": "quantize",
        "budget": args.budget,
        "min_speedup": args.min_speedup,
        "metric": "accuracy",
        "candidates": [dict(c) for c in CANDIDATES],
    }
    if args.max_float_nodes is not None:
        stage["max_float_nodes"] = args.max_float_nodes
    return Recipe.from_dict(
        {
            "name": "edgepack",
            "task": "text-classification",
            "output": str(output),
            "source": str(teacher),
            "data": {"calibration": str(calib), "evaluation": str(evaluation), "max_length": 128},
            "postprocessing": {"output_name": "logits", "softmax": True, "labels": list(LABELS)},
            "stages": [stage],
        },
        origin="quantize_sst2",
    )


def accuracy(pack: Path, data: TextDataset, batch: int = 64) -> float:
    """Percent of rows whose predicted class is the label: strings in, through the pack's own
    tokenizer and model, as on the device. Rows go by length so batches pad little."""
    model = load(pack, threads=2)
    order = np.argsort([len(t) for t in data.texts], kind="stable")
    predicted = np.empty(len(order), np.int64)
    for start in range(0, len(order), batch):
        index = order[start : start + batch]
        found = model.predict([data.texts[i] for i in index])
        predicted[index] = [p.index for p in found]
    return 100.0 * float(np.mean(predicted == data.labels))


def time_packs(packs: list[PackRow], args: argparse.Namespace) -> dict[str, list[BenchResult]]:
    """p50/p90 at batch 1 of all packs per sequence length and thread count; within one
    setting the packs' queries are interleaved, so load from elsewhere hits them alike."""
    results = {}
    for sequence in args.sequences:
        for threads in THREADS:
            key = f"s{sequence} t{threads}"
            dims = {name: sequence for name in _sequence_dims(packs[0].path)}
            print(f"[latency] sequence {sequence}, {threads} thread(s)", flush=True)
            runs = compare(
                [p.path for p in packs],
                threads=threads,
                dims=dims,
                min_count=args.min_count,
                min_duration_s=args.min_duration,
                cold_starts=0,
            )
            for pack, result in zip(packs, runs, strict=True):
                q = result.latency["percentiles_s"]
                pack.latency[key] = {"p50": q["p50"] * 1e3, "p90": q["p90"] * 1e3}
            results[key] = runs
    return results


def profile_ops(
    packs: list[PackRow], work: Path, sequence: int = 64, runs: int = 200, top: int = 12
) -> dict[str, Any]:
    """Milliseconds per run spent in each op type (onnxruntime's profiler, batch 1, 1 thread,
    the session options the runtime uses), packs side by side: where the time goes."""
    spent: dict[str, dict[str, float]] = {}
    counts: dict[str, dict[str, int]] = {}
    for pack in packs:
        with PackReader(pack.path) as reader:
            entry = reader.manifest.models[0]
            model_bytes = reader.read(entry.path)
        options = session_options(1)  # the runtime backend's settings, profiling on
        options.enable_profiling = True
        options.profile_file_prefix = str(work / f"profile-{pack.key}")
        session = ort.InferenceSession(model_bytes, options, providers=["CPUExecutionProvider"])
        dims = dict.fromkeys(_sequence_dims(pack.path), sequence)
        feeds = synthetic_inputs(entry, dims)
        for _ in range(runs):
            session.run(None, feeds)
        trace = Path(session.end_profiling())
        events = json.loads(trace.read_text())
        trace.unlink()
        total: dict[str, float] = {}
        seen: dict[str, int] = {}
        for event in events:
            if event.get("cat") == "Node" and event["name"].endswith("_kernel_time"):
                op = event["args"]["op_name"]
                total[op] = total.get(op, 0.0) + event["dur"] / 1e3 / runs
                seen[op] = seen.get(op, 0) + 1
        spent[pack.key] = total
        counts[pack.key] = {op: n // runs for op, n in seen.items()}
    ops = sorted(
        {op for t in spent.values() for op in t},
        key=lambda op: -max(t.get(op, 0.0) for t in spent.values()),
    )
    lines = [
        f"onnxruntime profiler, sequence {sequence}, 1 thread: ms per run in each op type "
        "(x nodes)",
        f"{'op type':26}" + "".join(f"{p.key:>20}" for p in packs),
    ]
    for op in ops[:top]:
        cells = [f"{spent[p.key].get(op, 0.0):.3f} x{counts[p.key].get(op, 0):<3}" for p in packs]
        lines.append(f"{op:26}" + "".join(f"{c:>20}" for c in cells))
    sums = [f"{sum(spent[p.key].values()):.3f}     " for p in packs]
    lines.append(f"{'all kernels':26}" + "".join(f"{c:>20}" for c in sums))
    return {"table": "\n".join(lines), "ops": spent, "counts": counts}


def summarize(packs: list[PackRow], rows: int) -> dict[str, Any]:
    """The side-by-side table, the speedups over Optimum and whether the targets hold."""
    keys = list(packs[0].latency)
    head = ["model", "precision", "size MB", "val acc %"] + [f"{k} p50/p90 ms" for k in keys]
    table = [head]
    for p in packs:
        cells = [p.title, p.precision, f"{p.size_bytes / 1e6:.1f}", f"{p.accuracy:.2f}"]
        table.append(
            cells + [f"{p.latency[k]['p50']:.2f} / {p.latency[k]['p90']:.2f}" for k in keys]
        )
    fp32, optimum, ours = packs
    speedups = {k: optimum.latency[k]["p50"] / ours.latency[k]["p50"] for k in keys}
    table.append(["edgepack vs Optimum", "", "", f"{ours.accuracy - optimum.accuracy:+.2f}"])
    table[-1] += [f"{speedups[k]:.2f}x" for k in keys]
    table.append(["edgepack vs fp32", "", "", f"{ours.accuracy - fp32.accuracy:+.2f}"])
    table[-1] += [f"{fp32.latency[k]['p50'] / ours.latency[k]['p50']:.2f}x" for k in keys]
    widths = [max(len(row[i]) for row in table) for i in range(len(head))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in table]
    lines.insert(1, "  ".join("-" * w for w in widths))
    accurate = ours.accuracy >= optimum.accuracy - TARGET_ACCURACY_GAP
    fast = {k: s >= TARGET_SPEEDUP for k, s in speedups.items()}
    missed = ", ".join(k for k, ok in fast.items() if not ok)
    verdict = (
        f"targets (accuracy >= Optimum - {TARGET_ACCURACY_GAP} points on {rows} rows, p50 >= "
        f"{TARGET_SPEEDUP}x faster than Optimum at batch 1): accuracy "
        f"{'met' if accurate else 'NOT met'}; speed met in {sum(fast.values())} of {len(fast)} "
        f"settings" + (f" ({missed} missed)" if missed else "")
    )
    targets = {"accuracy_met": accurate, "speedup": speedups, "speedup_met": fast}
    return {
        "table": "\n".join(line.rstrip() for line in lines),
        "verdict": verdict,
        "targets": targets,
    }


def _sequence_dims(pack: Path) -> list[str]:
    """The named non-batch dims of the pack's inputs (e.g. 'sequence_length')."""
    entry = read_manifest(pack).models[0]
    return sorted({d for s in entry.inputs for d in s.shape[1:] if isinstance(d, str)})


def _pack_dict(pack: PackRow) -> dict[str, Any]:
    return {
        "title": pack.title,
        "path": str(pack.path),
        "size_bytes": pack.size_bytes,
        "precision": pack.precision,
        "accuracy": pack.accuracy,
        "latency_ms": pack.latency,
    }


def _read_json(path: Path) -> dict[str, Any] | None:
    return json.loads(path.read_text()) if path.is_file() else None


if __name__ == "__main__":
    sys.exit(main())
