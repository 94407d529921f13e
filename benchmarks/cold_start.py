"""Cold start and peak memory, measured in a fresh Python process: import edgepack.runtime, load
the pack, run the first inference (the OS file cache is left as it is, usually warm). The same
measurement of bare onnxruntime is what the runtime's own cost is judged against."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from edgepack.benchmarks.errors import BenchmarkError

PathLike = str | os.PathLike[str]
STEADY_RUNS = 5  # inferences after the first, so peak RSS includes the settled memory arena
PHASES = ("import_s", "load_s", "first_run_s")  # summed into total_s

# What both kinds of process do once `run` and `feeds` are ready: the first inference, STEADY_RUNS
# more, then one JSON line of the phases' seconds, peak RSS and the CPUs it ran on.
_FIRST_RUN_AND_REPORT = """
run(feeds)
done = time.perf_counter()
for _ in range(steady):
    run(feeds)
from edgepack.benchmarks.memory import peak_rss_bytes
peak_bytes = peak_rss_bytes()
cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
print(json.dumps({
    "import_s": imported - start, "load_s": loaded - imported, "first_run_s": done - ready,
    "peak_rss_bytes": peak_bytes, "cpus": cpus,
}))
"""

# argv: pack, backend, threads, dims (JSON) or a feeds .npz, cpus ("0,1" or ""), steady runs. The
# affinity is set before anything is imported, so every thread the runtime starts inherits it.
CHILD_SCRIPT = (
    """
import json, os, sys, time
if sys.argv[5]:
    os.sched_setaffinity(0, [int(c) for c in sys.argv[5].split(",")])
start = time.perf_counter()
import edgepack.runtime as ep
imported = time.perf_counter()
model = ep.load(sys.argv[1], backend=sys.argv[2], threads=int(sys.argv[3]))
loaded = time.perf_counter()
if sys.argv[4].endswith(".npz"):
    import numpy as np
    feeds = dict(np.load(sys.argv[4]))
else:
    from edgepack.benchmarks.inputs import synthetic_inputs
    feeds = synthetic_inputs(model.entry, json.loads(sys.argv[4]))
run, steady = model.run, int(sys.argv[6])
ready = time.perf_counter()
"""
    + _FIRST_RUN_AND_REPORT
)

# The same with bare onnxruntime. argv: model.onnx, threads, feeds (.npz), steady runs. This
# process may not import edgepack.runtime (its import is part of what is compared), so it
# repeats the session settings of the runtime's ONNX Runtime backend (a test keeps them in step
# with ort_backend.session_options).
BARE_ONNXRUNTIME_SCRIPT = (
    """
import json, os, sys, time
start = time.perf_counter()
import numpy as np
import onnxruntime as ort
imported = time.perf_counter()
options = ort.SessionOptions()
options.intra_op_num_threads = int(sys.argv[2])
options.inter_op_num_threads = 1
options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
session = ort.InferenceSession(sys.argv[1], options, providers=["CPUExecutionProvider"])
loaded = time.perf_counter()
feeds = dict(np.load(sys.argv[3]))
run, steady = (lambda feeds: session.run(None, feeds)), int(sys.argv[4])
ready = time.perf_counter()
"""
    + _FIRST_RUN_AND_REPORT
)


def edgepack_argv(
    pack: PathLike,
    *,
    backend: str,
    threads: int,
    dims: dict[str, int],
    cpus: Sequence[int] | None = None,
    feeds_file: PathLike | None = None,
) -> list[str]:
    """The command of one cold-start process of `pack` through edgepack.runtime, fed the
    arrays of `feeds_file` (an .npz) or random inputs sized by `dims`."""
    return [
        sys.executable,
        "-c",
        CHILD_SCRIPT,
        os.fspath(pack),
        backend,
        str(threads),
        os.fspath(feeds_file) if feeds_file else json.dumps(dims),
        ",".join(str(c) for c in cpus) if cpus else "",
        str(STEADY_RUNS),
    ]


def bare_onnxruntime_argv(model_file: PathLike, feeds_file: PathLike, *, threads: int) -> list[str]:
    """The command of one cold-start process of an .onnx file through onnxruntime alone, fed
    the arrays of an .npz file."""
    return [
        sys.executable,
        "-c",
        BARE_ONNXRUNTIME_SCRIPT,
        os.fspath(model_file),
        str(threads),
        os.fspath(feeds_file),
        str(STEADY_RUNS),
    ]


def cold_process(argv: Sequence[str], what: PathLike) -> dict[str, Any]:
    """Run one cold-start process: its phase seconds, peak RSS and CPUs, plus its whole wall
    time including the interpreter's start (`process_wall_s`)."""
    start = time.perf_counter()
    done = subprocess.run(list(argv), capture_output=True, text=True, check=False)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        tail = done.stderr.strip().splitlines()[-1:] or ["(no output)"]
        raise BenchmarkError(
            f"the cold-start process for {what} failed (exit {done.returncode}): {tail[0]}"
        )
    return {**json.loads(done.stdout.strip().splitlines()[-1]), "process_wall_s": wall}


def summarize_cold_starts(runs: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Medians over the processes: each phase, their sum (`total_s`; input synthesis is not
    counted), the process wall time and peak RSS."""
    if not runs:
        raise BenchmarkError("no cold-start processes to summarize; expected at least one")
    keys = (*PHASES, "process_wall_s")
    result: dict[str, Any] = {k: float(np.median([r[k] for r in runs])) for k in keys}
    totals = [sum(r[k] for k in PHASES) for r in runs]
    result["total_s"] = float(np.median(totals))
    result["totals_s"] = totals
    result["peak_rss_mib"] = float(np.median([r["peak_rss_bytes"] for r in runs])) / 2**20
    result["cpus"] = runs[0]["cpus"]
    result["repeats"] = len(runs)
    result["steady_runs"] = STEADY_RUNS
    return result


def measure_cold_start(
    pack: PathLike,
    *,
    backend: str,
    threads: int,
    dims: dict[str, int],
    cpus: Sequence[int] | None = None,
    repeats: int = 3,
    feeds_file: PathLike | None = None,
) -> dict[str, Any]:
    """Medians over `repeats` new processes: import, load and first-inference seconds and their
    sum (`total_s`), the whole process wall time (`process_wall_s`), and peak RSS after the
    first inference and STEADY_RUNS more. The processes run on `cpus` when given."""
    if repeats < 1:
        raise BenchmarkError(f"cold start repeats must be at least 1, got {repeats}")
    argv = edgepack_argv(
        pack, backend=backend, threads=threads, dims=dims, cpus=cpus, feeds_file=feeds_file
    )
    return summarize_cold_starts([cold_process(argv, pack) for _ in range(repeats)])
