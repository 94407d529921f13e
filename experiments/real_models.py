"""Every .onnx file of a folder through pack -> run -> bench -> estimate -> quantize, the plain
flow a user tries on a model from the wild; prints a table model x step with the figure each
step gave or the error it stopped with (issue 13).

    python -m tests.real_models.models work/real      # the issue's patterns, plus inputs.json
    python -m experiments.real_models work/real [--min-duration 1] [--json FILE]

A model's example inputs (as `edgepack pack --input` takes them) come from FOLDER/inputs.json,
{"model stem": ["sr=16000", "state=2x1x64:zeros"]}, or --input STEM:NAME=SPEC.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import sys
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from edgepack.benchmarks.estimate import estimate_pack
from edgepack.benchmarks.harness import benchmark
from edgepack.benchmarks.inputs import manifest_examples, synthetic_inputs
from edgepack.cli.main import main as edgepack
from edgepack.compress.quantize import (
    Budget,
    DynamicOptions,
    StaticOptions,
    example_feeds,
    quantize,
    suggest_method,
)
from edgepack.runtime import EdgepackError, load, read_manifest

STEPS = ("pack", "run", "bench", "estimate", "quantize")


def _step(cells: dict[str, str], name: str, work: Callable[[], str]) -> bool:
    """Run one step; its figure, or its error's first line, goes in the table."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            cells[name] = work()
        return True
    except (EdgepackError, RuntimeError, ValueError) as exc:  # onnxruntime's own errors too
        report = getattr(exc, "report", None)
        if report is not None:  # quantize refused every candidate: say with which figures
            cells[name] = "refused: " + "; ".join(_refusal(c) for c in report.candidates)
        else:
            cells[name] = f"ERROR {type(exc).__name__}: {str(exc).splitlines()[0][:120]}"
        return False


def _refusal(candidate: Any) -> str:
    """Why quantize did not keep a candidate, in figures."""
    method = candidate.options["method"]
    if candidate.quantized_ops == 0:
        return f"{method} found nothing to quantize"
    check = candidate.check or {}
    if candidate.within_budget is False:
        return f"{method} collapsed (cosine {check.get('cosine', float('nan')):.1f}%)"
    if candidate.p50_ms is not None:
        return (
            f"{method} slower than fp32 ({candidate.p50_ms:.3g} vs "
            f"{candidate.fp32_p50_ms:.3g} ms; cosine {check.get('cosine', float('nan')):.1f}%)"
        )
    return f"{method}: {candidate.notes[-1][:80] if candidate.notes else 'not kept'}"


def flow(model: Path, specs: list[str], work: Path, min_duration: float) -> dict[str, str]:
    """The five steps on one model file; a step that fails leaves the later ones '-'."""
    cells = dict.fromkeys(STEPS, "-")
    pack = work / model.stem

    def do_pack() -> str:
        out = io.StringIO()
        argv = ["pack", str(model), "-o", str(pack)]
        for spec in specs:
            argv += ["--input", spec]
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
            code = edgepack(argv)
        if code:
            raise EdgepackError(out.getvalue().strip().splitlines()[-1])
        cost = read_manifest(pack).models[0].cost
        return f"{cost['flops'] / 1e6:.1f} MFLOPs" if cost else "packed, no cost summary"

    def do_run() -> str:
        model_ = load(pack, threads=1)
        feeds = synthetic_inputs(model_.entry, specs=manifest_examples(model_.manifest))
        ours = model_.run(feeds)
        session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
        bare = session.run(None, feeds)
        diff = max(float(np.abs(a - b).max()) for a, b in zip(ours.values(), bare, strict=True))
        shapes = " ".join("x".join(map(str, v.shape)) or "scalar" for v in feeds.values())
        return f"max abs diff vs onnxruntime {diff:g} at {shapes}"

    def do_bench() -> str:
        result = benchmark(pack, threads=1, min_count=50, min_duration_s=min_duration)
        return f"p50 {result.latency['percentiles_s']['p50'] * 1e3:.3g} ms (1 thread)"

    def do_estimate() -> str:
        host = estimate_pack(pack, "host", threads=1)
        pi = estimate_pack(pack, "rpi5")
        return f"host {host['latency_ms']:.3g} ms, rpi5 {pi['latency_ms']:.3g} ms"

    def do_quantize() -> str:
        method, _ = suggest_method(model)
        options = StaticOptions() if method == "static" else DynamicOptions()
        example = example_feeds(model, specs) if specs else None
        report = quantize(
            model, work / f"{model.stem}.int8.onnx", options,
            example_inputs=example, budget=Budget(), progress=False,
        )  # fmt: skip
        chosen = report.candidates[report.chosen]  # type: ignore[index]
        check = chosen.check or {}
        return (
            f"{method}: {chosen.speedup:.2f}x, cosine {check.get('cosine', float('nan')):.1f}%"
            if chosen.speedup
            else f"{method}: kept"
        )

    works = (do_pack, do_run, do_bench, do_estimate, do_quantize)
    for name, work_ in zip(STEPS, works, strict=True):
        if not _step(cells, name, work_) and name in ("pack", "run"):
            break
    return cells


def table(rows: dict[str, dict[str, str]]) -> str:
    """Markdown: one row per model, one column per step."""
    lines = ["| model | " + " | ".join(STEPS) + " |", "|---" * (len(STEPS) + 1) + "|"]
    for name, cells in rows.items():
        lines.append(f"| {name} | " + " | ".join(cells[s] for s in STEPS) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path, help="a folder of .onnx files")
    parser.add_argument("--input", action="append", default=[], metavar="STEM:NAME=SPEC")
    parser.add_argument("--min-duration", type=float, default=1.0, help="bench seconds per pack")
    parser.add_argument("--json", type=Path, help="also write the table as JSON")
    args = parser.parse_args(argv)
    sidecar = args.folder / "inputs.json"
    specs: dict[str, list[str]] = json.loads(sidecar.read_text()) if sidecar.is_file() else {}
    for item in args.input:
        stem, _, spec = item.partition(":")
        specs.setdefault(stem, []).append(spec)
    files = sorted(args.folder.glob("*.onnx"))
    if not files:
        print(f"no .onnx files in {args.folder}", file=sys.stderr)
        return 1
    rows: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="edgepack-real-") as tmp:
        for path in files:
            print(f"{path.name} ...", file=sys.stderr)
            rows[path.stem] = flow(path, specs.get(path.stem, []), Path(tmp), args.min_duration)
    print(table(rows))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
