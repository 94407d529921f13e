"""TFLite against ONNX on this machine: size, accuracy, agreement and p50 at 1 and 2 threads of five
variants (ONNX fp32/int8, TFLite fp32/dynamic/full int8) of the digits CNN and a small BERT.

    python -m experiments.tflite_vs_onnx --out DIR [--models digits bert] [--data SST2_DIR]

The variants are built here (experiments/variants.py, the compress and convert extras), then
loaded, evaluated and timed as packs, through edgepack.runtime and the benchmark harness.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from edgepack.benchmarks.errors import BenchmarkError
from edgepack.benchmarks.harness import BenchResult, compare
from edgepack.runtime import EdgepackError, PackManifest, load, read_manifest

from .sst2 import DEFAULT_DATA
from .variants import INDEX, SOURCES, VARIANTS, build_variants

PathLike = str | os.PathLike[str]


def read_index(directory: PathLike) -> dict[str, Any]:
    path = Path(directory) / INDEX
    if not path.is_file():
        raise BenchmarkError(
            f"{path} does not exist: build the packs with --out {Path(directory).parent}, "
            "or point --packs at a folder an earlier --out built"
        )
    return json.loads(path.read_text())


def predict_all(pack: PathLike, inputs: dict[str, np.ndarray]) -> np.ndarray:
    """The first output for every sample, run one at a time: TFLite files have a fixed batch."""
    model = load(pack, threads=1)
    count = len(next(iter(inputs.values())))
    rows = []
    for i in range(count):
        outputs = model.run({k: v[i : i + 1] for k, v in inputs.items()})
        rows.append(next(iter(outputs.values()))[0])
    return np.stack(rows).astype(np.float32)


def quality(
    outputs: np.ndarray, reference: np.ndarray, labels: np.ndarray | None
) -> dict[str, float | None]:
    """Accuracy on the labels and argmax agreement with the reference outputs, in percent."""
    predicted = outputs.argmax(-1)
    return {
        "accuracy": None if labels is None else float(100 * np.mean(predicted == labels)),
        "agreement": float(100 * np.mean(predicted == reference.argmax(-1))),
        "max_abs_diff": float(np.abs(outputs - reference).max()),
    }


def compare_variants(
    directory: PathLike,
    threads: Sequence[int] = (1, 2),
    min_count: int = 200,
    min_duration_s: float = 3.0,
) -> dict[str, Any]:
    """Evaluate every variant pack in `directory` on its held-out data, then time them all
    together at each thread count; returns the index with a row per variant added."""
    directory = Path(directory)
    index = read_index(directory)
    data = dict(np.load(directory / index["eval"]))
    labels = data.pop("labels", None)
    built = {v: row for v, row in index["variants"].items() if "pack" in row}
    if index["reference"] not in built:
        raise BenchmarkError(
            f"{directory}: the reference variant {index['reference']} was not built"
        )
    packs = {v: directory / row["pack"] for v, row in built.items()}
    reference = predict_all(packs[index["reference"]], data)
    rows = {}
    for variant, row in index["variants"].items():
        rows[variant] = {"variant": variant, **row}
        if variant in packs:
            rows[variant]["precision"] = precision(read_manifest(packs[variant]))
            rows[variant].update(quality(predict_all(packs[variant], data), reference, labels))
    for count in threads:
        # backend "auto": each pack holds one model, so ONNX packs run on onnxruntime and TFLite
        # packs on LiteRT, all interleaved in one compare() under the same settings.
        results = compare(
            list(packs.values()),
            threads=count,
            min_count=min_count,
            min_duration_s=min_duration_s,
            cold_starts=0,
        )
        for variant, result in zip(packs, results, strict=True):
            _check_format(variant, built[variant], result)
            rows[variant].setdefault("p50_ms", {})[str(count)] = (
                result.latency["percentiles_s"]["p50"] * 1e3
            )
            rows[variant].setdefault("bench", {})[str(count)] = result.to_dict()
    index["rows"] = [rows[v] for v in VARIANTS if v in rows]
    return index


def precision(manifest: PackManifest) -> str:
    """The model's precision, from the quantize stage's chosen method when the pack had one: the
    manifest calls onnxruntime's dynamic int8 "int8-static" when its quantized Gathers (BERT's
    embeddings) bring DequantizeLinear nodes."""
    for stage in manifest.provenance.get("stages", []):
        if stage["name"] == "quantize":
            return f"int8-{stage['options']['method']}"
    return manifest.models[0].precision


def _check_format(variant: str, row: dict[str, Any], result: BenchResult) -> None:
    if result.model_file != row["model_file"]:
        raise BenchmarkError(
            f"{variant}: the harness timed {result.model_file} on {result.backend}, not "
            f"{row['model_file']}; the pack should hold one model (rebuild it)"
        )


def format_comparison(models: Sequence[dict[str, Any]], threads: Sequence[int]) -> str:
    """One block per model: a row per variant, side by side, then the harness's warnings."""
    header = ["variant", "precision", "size", "accuracy", "agree", "max|diff|"]
    header += [f"p50 {t}T ms" for t in threads]
    lines = []
    for model in models:
        rows = model["rows"]
        lines += [
            f"{model['model']}: {model['description']}",
            f"  PyTorch accuracy {model['pytorch_accuracy']:.2f}%; agree, max|diff|: argmax "
            f"agreement and largest output difference against {model['reference']}, on the same "
            "held-out inputs",
            f"  p50: {_timing(rows)}",
        ]
        table = [header] + [_cells(row, threads) for row in rows]
        lines += ["  " + line for line in _aligned(table)]
        lines += [f"  {row['variant']} not built: {row['error']}" for row in rows if "error" in row]
        lines += [f"  note: {w}" for w in _warnings(model)]
        lines.append("")
    return "\n".join(lines)


def _cells(row: dict[str, Any], threads: Sequence[int]) -> list[str]:
    if "error" in row:
        return [row["variant"], "-", "-", "-", "-", "-", *["-" for _ in threads]]
    p50 = row.get("p50_ms", {})
    return [
        row["variant"],
        row["precision"],
        _size(row["size_bytes"]),
        _percent(row["accuracy"]),
        _percent(row["agreement"]),
        f"{row['max_abs_diff']:.3g}",
        *[f"{p50[str(t)]:.3f}" if str(t) in p50 else "-" for t in threads],
    ]


def _aligned(table: list[list[str]]) -> list[str]:
    """Names left-aligned, figures right-aligned, two spaces apart."""
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    lines = []
    for row in table:
        cells = [
            c.ljust(w) if i < 2 else c.rjust(w)
            for i, (c, w) in enumerate(zip(row, widths, strict=True))
        ]
        lines.append("  ".join(cells))
    return lines


def _timing(rows: Sequence[dict[str, Any]]) -> str:
    """How the p50 figures were measured, from the harness results themselves."""
    results = [r for row in rows for r in row.get("bench", {}).values()]
    if not results:
        return "not measured"
    first = results[0]
    settings = first["settings"]
    packs = sum(1 for row in rows if "bench" in row)
    return (
        f"{first['scenario']}, batch 1, >= {settings['min_count']} queries and >= "
        f"{settings['min_duration_s']:g} s per pack after {settings['warmup']} warm-up, the "
        f"{packs} packs interleaved; {first['label']}"
    )


def _warnings(model: dict[str, Any]) -> list[str]:
    """The harness's warnings, each once, less its notes on too few queries for p90/p99: the
    table shows p50 only (they stay in the JSON)."""
    seen = (
        w for row in model["rows"] for r in row.get("bench", {}).values() for w in r["warnings"]
    )
    return [w for w in dict.fromkeys(seen) if not w.startswith("only ")]


def _size(size: int) -> str:
    return f"{size / 1e6:.2f} MB" if size >= 1e6 else f"{size / 1e3:.0f} kB"


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}%"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m experiments.tflite_vs_onnx",
        description="Size, accuracy and p50 of ONNX and TFLite variants of two models.",
    )
    parser.add_argument("--models", nargs="+", choices=list(SOURCES), default=list(SOURCES))
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--out", default="tflite-vs-onnx", help="build the packs here (DIR/MODEL)")
    where.add_argument("--packs", help="reuse packs built before in DIR/MODEL; build nothing")
    text = parser.add_mutually_exclusive_group()
    text.add_argument(
        "--data",
        dest="text_data",
        type=Path,
        default=DEFAULT_DATA,
        help="bert: a folder with SST-2's train.tsv and validation.tsv (default: %(default)s)",
    )
    text.add_argument(
        "--synthetic-text",
        dest="text_data",
        action="store_const",
        const=None,
        help="bert: train and test on synthetic sentiment sentences instead of SST-2",
    )
    parser.add_argument("--samples", type=int, default=1024, help="bert: sentences to train on")
    parser.add_argument("--variants", nargs="+", choices=list(VARIANTS), help="default: all five")
    parser.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    parser.add_argument("--min-count", type=int, default=200)
    parser.add_argument("--min-duration-s", type=float, default=3.0)
    parser.add_argument("--json", help="also write every figure and harness result here")
    args = parser.parse_args(argv)

    started = time.perf_counter()
    models = []
    try:
        for name in args.models:
            if args.packs:
                directory = Path(args.packs) / name
            else:
                directory = Path(args.out) / name
                print(f"building the {name} variants into {directory}", file=sys.stderr)
                # The converters print their progress on stdout: keep it for the table.
                with contextlib.redirect_stdout(sys.stderr):
                    source = SOURCES[name](args.text_data, args.samples)
                    build_variants(source, directory, name, args.variants)
            print(f"evaluating and timing the {name} variants", file=sys.stderr)
            models.append(
                compare_variants(directory, args.threads, args.min_count, args.min_duration_s)
            )
    except EdgepackError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(format_comparison(models, args.threads))
    print(f"done in {time.perf_counter() - started:.0f} s")
    if args.json:
        Path(args.json).write_text(json.dumps({"models": models}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
