"""Cold start and peak memory, measured in a fresh Python process: import edgepack.runtime, load
the pack, run the first inference (the OS file cache is left as it is, usually warm)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from edgepack.runtime import BenchmarkError

STEADY_RUNS = 5  # inferences after the first, so peak RSS includes the settled memory arena

# argv: pack, backend, threads, dims (JSON), cpus ("0,1" or ""), steady runs. The affinity is set
# before anything is imported, so every thread the runtime starts inherits it.
CHILD_SCRIPT = """
import json, os, sys, time
if sys.argv[5]:
    os.sched_setaffinity(0, [int(c) for c in sys.argv[5].split(",")])
start = time.perf_counter()
import edgepack.runtime as ep
imported = time.perf_counter()
model = ep.load(sys.argv[1], backend=sys.argv[2], threads=int(sys.argv[3]))
loaded = time.perf_counter()
from edgepack.benchmarks.inputs import synthetic_inputs
feeds = synthetic_inputs(model.entry, json.loads(sys.argv[4]))
ready = time.perf_counter()
model.run(feeds)
done = time.perf_counter()
for _ in range(int(sys.argv[6])):
    model.run(feeds)
from edgepack.benchmarks.memory import peak_rss_bytes
peak_bytes = peak_rss_bytes()
cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
print(json.dumps({
    "import_s": imported - start, "load_s": loaded - imported, "first_run_s": done - ready,
    "peak_rss_bytes": peak_bytes, "cpus": cpus,
}))
"""


def measure_cold_start(
    pack: str | os.PathLike[str],
    *,
    backend: str,
    threads: int,
    dims: dict[str, int],
    cpus: Sequence[int] | None = None,
    repeats: int = 3,
) -> dict[str, Any]:
    """Medians over `repeats` new processes: import, load and first-inference seconds and their
    sum (`total_s`; input synthesis is not counted), the whole process wall time including the
    interpreter's start (`process_wall_s`), and peak RSS after the first inference and
    STEADY_RUNS more. The processes run on `cpus` when given."""
    if repeats < 1:
        raise BenchmarkError(f"cold start repeats must be at least 1, got {repeats}")
    argv = [
        sys.executable,
        "-c",
        CHILD_SCRIPT,
        os.fspath(pack),
        backend,
        str(threads),
        json.dumps(dims),
        ",".join(str(c) for c in cpus) if cpus else "",
        str(STEADY_RUNS),
    ]
    runs = []
    for _ in range(repeats):
        start = time.perf_counter()
        done = subprocess.run(argv, capture_output=True, text=True, check=False)
        wall = time.perf_counter() - start
        if done.returncode != 0:
            tail = done.stderr.strip().splitlines()[-1:] or ["(no output)"]
            raise BenchmarkError(
                f"the cold-start process for {pack} failed (exit {done.returncode}): {tail[0]}"
            )
        runs.append({**json.loads(done.stdout.strip().splitlines()[-1]), "process_wall_s": wall})
    keys = ("import_s", "load_s", "first_run_s", "process_wall_s")
    result: dict[str, Any] = {k: float(np.median([r[k] for r in runs])) for k in keys}
    totals = [r["import_s"] + r["load_s"] + r["first_run_s"] for r in runs]
    result["total_s"] = float(np.median(totals))
    result["totals_s"] = totals
    result["peak_rss_mib"] = float(np.median([r["peak_rss_bytes"] for r in runs])) / 2**20
    result["cpus"] = runs[0]["cpus"]
    result["repeats"] = repeats
    result["steady_runs"] = STEADY_RUNS
    return result
