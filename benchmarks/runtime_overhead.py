"""What edgepack.runtime costs on top of bare onnxruntime: run() p50, cold start, peak RSS.

    python benchmarks/runtime_overhead.py PACK [--threads 1] [--rounds 40]

Both sides run the same model bytes, session options and inputs, interleaved in blocks so
that machine noise hits both alike. Run it from a regular install, as a device has: an editable
install's import finder adds 10-50 ms to every `import edgepack`. Targets (issue 2): run
overhead <= 3% or 20 us at p50; import + load + first run <= 1.2x bare onnxruntime.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort

from edgepack.benchmarks.inputs import synthetic_inputs
from edgepack.runtime import load
from edgepack.runtime.pack import PackReader

COLD_SCRIPT = """
import time
start = time.perf_counter()
import sys
import numpy as np
if sys.argv[1] == "edgepack":
    import edgepack.runtime as ep
    model = ep.load(sys.argv[2], backend="onnxruntime", threads=1)
    run = lambda feeds: model.run(feeds)
    specs = {s.name: s for s in model.entry.inputs}
else:
    import onnxruntime as ort
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(sys.argv[3], options, providers=["CPUExecutionProvider"])
    run = lambda feeds: session.run(None, feeds)
feeds = dict(np.load(sys.argv[4]))
run(feeds)
elapsed = time.perf_counter() - start
from edgepack.benchmarks.memory import peak_rss_bytes
print(elapsed, peak_rss_bytes() // 1024)
"""


def measure_run(pack: Path, threads: int, rounds: int, block: int) -> dict[str, float]:
    model = load(pack, backend="onnxruntime", threads=threads)
    with PackReader(pack) as reader:
        model_bytes = reader.read(model.entry.path)
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    session = ort.InferenceSession(model_bytes, options, providers=["CPUExecutionProvider"])
    feeds = synthetic_inputs(model.entry)
    names = [o.name for o in session.get_outputs()]
    np.testing.assert_array_equal(
        model.run(feeds)[model.entry.outputs[0].name], session.run(names, feeds)[0]
    )
    calls = {"edgepack": lambda: model.run(feeds), "onnxruntime": lambda: session.run(names, feeds)}
    times: dict[str, list[int]] = {k: [] for k in calls}
    for _ in range(block):  # warm-up
        for call in calls.values():
            call()
    for round_index in range(rounds):
        order = list(calls) if round_index % 2 == 0 else list(reversed(calls))
        for name in order:
            call, bucket = calls[name], times[name]
            for _ in range(block):
                start = time.perf_counter_ns()
                call()
                bucket.append(time.perf_counter_ns() - start)
    return {name: float(np.median(values)) / 1e3 for name, values in times.items()}


def measure_cold(pack: Path, repeats: int) -> dict[str, dict[str, float]]:
    results: dict[str, list[tuple[float, int]]] = {"edgepack": [], "onnxruntime": []}
    with tempfile.TemporaryDirectory(prefix="edgepack-overhead-") as tmp:
        with PackReader(pack) as reader:
            entry = reader.manifest.model_for("onnxruntime")
            model_file = Path(tmp) / "model.onnx"
            model_file.write_bytes(reader.read(entry.path))
        np.savez(Path(tmp) / "feeds.npz", **synthetic_inputs(entry))
        for index in range(repeats):
            order = list(results) if index % 2 == 0 else list(reversed(results))
            for side in order:
                out = subprocess.run(
                    [
                        sys.executable,
                        "-c",
                        COLD_SCRIPT,
                        side,
                        str(pack),
                        str(model_file),
                        str(Path(tmp) / "feeds.npz"),
                    ],
                    capture_output=True,
                    text=True,
                    check=True,
                )
                seconds, rss_kib = out.stdout.split()
                results[side].append((float(seconds), int(rss_kib)))
    return {
        side: {
            "seconds": float(np.median([s for s, _ in values])),
            "peak_rss_mib": float(np.median([r for _, r in values])) / 1024,
        }
        for side, values in results.items()
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("pack", type=Path)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=40, help="interleaved rounds")
    parser.add_argument("--block", type=int, default=100, help="calls per side per round")
    parser.add_argument("--cold-repeats", type=int, default=7)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)

    run = measure_run(args.pack, args.threads, args.rounds, args.block)
    cold = measure_cold(args.pack, args.cold_repeats)
    overhead_us = run["edgepack"] - run["onnxruntime"]
    overhead_pct = 100 * overhead_us / run["onnxruntime"]
    cold_ratio = cold["edgepack"]["seconds"] / cold["onnxruntime"]["seconds"]
    report = {
        "pack": str(args.pack),
        "threads": args.threads,
        "calls_per_side": args.rounds * args.block,
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
        f"{'import+load+1st run (ms)':28}{cold['edgepack']['seconds'] * 1e3:12.1f}"
        f"{cold['onnxruntime']['seconds'] * 1e3:14.1f}{cold_ratio:11.2f}x"
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
