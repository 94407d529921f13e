"""What edgepack.runtime costs on top of bare onnxruntime: run() p50, cold start, peak RSS.

    python benchmarks/runtime_overhead.py PACK [--threads 1] [--min-count 4000]

Both sides run the same model bytes, session options and inputs, timed by the harness's loop
(interleaved in blocks, so that machine noise hits both alike); cold starts are the harness's
fresh processes, the two sides alternating. Run it from a regular install, as a device has: an
editable install's import finder adds 10-50 ms to every `import edgepack`. Targets (issue 2): run
overhead <= 3% or 20 us at p50; import + load + first run <= 1.2x bare onnxruntime.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from edgepack.benchmarks.cold_start import (
    bare_onnxruntime_argv,
    cold_process,
    edgepack_argv,
    summarize_cold_starts,
)
from edgepack.benchmarks.inputs import manifest_examples, synthetic_inputs
from edgepack.benchmarks.scenarios import measure, progress_bar
from edgepack.runtime import load
from edgepack.runtime.backends.ort_backend import session_options
from edgepack.runtime.pack import PackReader

SIDES = ("edgepack", "onnxruntime")


def measure_run(
    pack: Path, threads: int, min_count: int, min_duration_s: float
) -> tuple[dict[str, float], int]:
    """p50 of run() in microseconds per side, edgepack against bare onnxruntime on the same
    model bytes and inputs, timed by the harness's loop (interleaved in blocks, the order
    reversed each round); and the fewest calls either side had."""
    model = load(pack, backend="onnxruntime", threads=threads)
    with PackReader(pack) as reader:
        model_bytes = reader.read(model.entry.path)
    session = ort.InferenceSession(
        model_bytes, session_options(threads), providers=["CPUExecutionProvider"]
    )
    feeds = synthetic_inputs(model.entry, specs=manifest_examples(model.manifest))
    names = [o.name for o in session.get_outputs()]
    np.testing.assert_array_equal(
        model.run(feeds)[model.entry.outputs[0].name], session.run(names, feeds)[0]
    )
    latencies, _ = measure(
        [lambda: model.run(feeds), lambda: session.run(names, feeds)],
        warmup=100,
        min_count=min_count,
        min_duration_s=min_duration_s,
        progress=progress_bar("run()"),
    )
    p50 = {side: float(np.median(x)) * 1e6 for side, x in zip(SIDES, latencies, strict=True)}
    return p50, min(len(x) for x in latencies)


def measure_cold(pack: Path, threads: int, repeats: int) -> dict[str, dict[str, Any]]:
    """Import + load + first run and peak RSS in fresh processes, the sides alternating."""
    runs: dict[str, list[dict[str, Any]]] = {side: [] for side in SIDES}
    with tempfile.TemporaryDirectory(prefix="edgepack-overhead-") as tmp:
        with PackReader(pack) as reader:
            entry = reader.manifest.model_for("onnxruntime")
            model_file = Path(tmp) / "model.onnx"
            model_file.write_bytes(reader.read(entry.path))
        feeds_file = Path(tmp) / "feeds.npz"
        examples = manifest_examples(reader.manifest)
        np.savez(feeds_file, **synthetic_inputs(entry, specs=examples))
        argv = {
            "edgepack": edgepack_argv(
                pack, backend="onnxruntime", threads=threads, dims={}, feeds_file=feeds_file
            ),
            "onnxruntime": bare_onnxruntime_argv(model_file, feeds_file, threads=threads),
        }
        for index in range(repeats):
            for side in SIDES if index % 2 == 0 else reversed(SIDES):
                runs[side].append(cold_process(argv[side], pack))
    return {side: summarize_cold_starts(values) for side, values in runs.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("pack", type=Path)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--min-count", type=int, default=4000, help="run() calls per side")
    parser.add_argument("--min-duration", type=float, default=5.0, help="seconds per side")
    parser.add_argument("--cold-repeats", type=int, default=7)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)

    run, calls = measure_run(args.pack, args.threads, args.min_count, args.min_duration)
    cold = measure_cold(args.pack, args.threads, args.cold_repeats)
    overhead_us = run["edgepack"] - run["onnxruntime"]
    overhead_pct = 100 * overhead_us / run["onnxruntime"]
    cold_ratio = cold["edgepack"]["total_s"] / cold["onnxruntime"]["total_s"]
    report = {
        "pack": str(args.pack),
        "threads": args.threads,
        "calls_per_side": calls,
        "run_p50_us": run,
        "run_overhead_us": overhead_us,
        "run_overhead_pct": overhead_pct,
        "run_target_met": overhead_pct <= 3 or overhead_us <= 20,
        "cold": cold,
        "cold_ratio": cold_ratio,
        "cold_target_met": cold_ratio <= 1.2,
    }
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print(f"pack {args.pack}, {args.threads} thread(s), {report['calls_per_side']} calls per side")
    print(f"{'':28}{'edgepack':>12}{'onnxruntime':>14}{'overhead':>12}")
    print(
        f"{'run p50 (us)':28}{run['edgepack']:12.1f}{run['onnxruntime']:14.1f}"
        f"{overhead_us:+9.1f} us ({overhead_pct:+.1f}%)"
    )
    print(
        f"{'import+load+1st run (ms)':28}{cold['edgepack']['total_s'] * 1e3:12.1f}"
        f"{cold['onnxruntime']['total_s'] * 1e3:14.1f}{cold_ratio:11.2f}x"
    )
    print(
        f"{'peak RSS (MiB)':28}{cold['edgepack']['peak_rss_mib']:12.1f}"
        f"{cold['onnxruntime']['peak_rss_mib']:14.1f}"
        f"{cold['edgepack']['peak_rss_mib'] / cold['onnxruntime']['peak_rss_mib']:11.2f}x"
    )
    met = "met" if report["run_target_met"] and report["cold_target_met"] else "NOT met"
    print(f"targets (run <= 3% or 20 us, cold <= 1.2x): {met}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
