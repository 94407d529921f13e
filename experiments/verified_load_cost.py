"""What verifying a pack costs at load: edgepack's load() against hashing alone and against a
bare onnxruntime session.

In-process, interleaved on a pack directory (issue 12's criterion: handing the interpreter the
bytes that were hashed must not cost more than the hashing already did): `hash then path
(before)` is load() as it was, hashing the model file and then giving onnxruntime its path (which
reads the file again, so a concurrent writer could slip unverified bytes in); `edgepack load
(now: read lease)` is load() as it is, hashing and handing over the file under a read lease
that keeps writers out until onnxruntime has read it; `edgepack load, sealed copy` is load()
with the sealed in-memory copy that LiteRT and archives get (and a refused lease falls back to).
The steps are also timed without the interpreter: the hash alone, under a lease, and the copy.

Fresh processes, side by side and interleaved: `cold` is the median of import onnxruntime and
the first session or load; `warm` the fastest of the loads that follow in the same processes
(less sensitive to a busy machine). `bare` gives onnxruntime the model path and checks
nothing; `bytes+sha256` reads the file once, hashes it and hands onnxruntime those bytes;
`edgepack` is `edgepack.runtime.load`, which checks every listed sha256. `--repeats 0` skips
this table.

    python -m experiments.verified_load_cost PACK_DIR [--archive PACK.edgepack] [--loads 8]
        [--repeats 9]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from unittest import mock

import edgepack.runtime as ep
from edgepack.benchmarks.scenarios import measure
from edgepack.runtime.pack import PackReader

CHILD = """
import json, sys, time
start = time.perf_counter()
import onnxruntime as ort
opts = ort.SessionOptions(); opts.intra_op_num_threads = 1
def once():
    if sys.argv[1] == "bare":
        ort.InferenceSession(sys.argv[2], opts, providers=["CPUExecutionProvider"])
    elif sys.argv[1] == "bytes":
        import hashlib
        data = open(sys.argv[2], "rb").read()
        hashlib.sha256(data).hexdigest()
        ort.InferenceSession(data, opts, providers=["CPUExecutionProvider"])
    else:
        import edgepack.runtime as ep
        ep.load(sys.argv[3], threads=1)
once()
cold = time.perf_counter() - start
warm = []
for _ in range(int(sys.argv[4])):
    start = time.perf_counter()
    once()
    warm.append(time.perf_counter() - start)
print(json.dumps([cold, min(warm)]))
"""


def _model_path(pack: str) -> str:
    """Where the model file of a directory pack lies (bare ORT needs a plain file)."""
    return f"{pack}/{ep.read_manifest(pack).models[0].path}"


@contextmanager
def _hash_then_path(reader: PackReader, relpath: str, copied: bool = False) -> Iterator[Path]:
    """PackReader.verified before issue 12's fix: hash the file, then hand over its path."""
    reader.check(relpath)
    yield reader.path / relpath


_VERIFIED = PackReader.verified


def _sealed_copy(reader: PackReader, relpath: str, copied: bool = False) -> Any:
    """PackReader.verified as LiteRT and archives get it: the sealed in-memory copy."""
    return _VERIFIED(reader, relpath, copied=False)


def in_process(pack: str, loads: int) -> None:
    """Full loads before and now, and their verification steps alone, interleaved."""
    relpath = ep.read_manifest(pack).models[0].path

    def before() -> None:
        with mock.patch.object(PackReader, "verified", _hash_then_path):
            ep.load(pack, threads=1)

    def hash_only() -> None:
        with PackReader(pack) as reader:
            reader.check(relpath)

    def sealed() -> None:
        with mock.patch.object(PackReader, "verified", _sealed_copy):
            ep.load(pack, threads=1)

    def lease_only() -> None:
        with PackReader(pack) as reader, reader.verified(relpath, copied=True):
            pass

    def copy_only() -> None:
        with PackReader(pack) as reader, reader.verified(relpath):
            pass

    before_, hash_ = "hash then path (before)", "  step: hash the model file"
    kinds: dict[str, tuple[Callable[[], object], str]] = {  # label: (how, compared with)
        before_: (before, before_),
        "edgepack load (now: read lease)": (lambda: ep.load(pack, threads=1), before_),
        "edgepack load, sealed copy": (sealed, before_),
        hash_: (hash_only, hash_),
        "  step: hash under a read lease": (lease_only, hash_),
        "  step: sealed copy": (copy_only, hash_),
    }
    # The harness's loop: warm-up (imports, page cache), then turns in short blocks, the order
    # reversed every round, until each kind has `loads` runs.
    samples, _ = measure([run for run, _ in kinds.values()], warmup=1, min_count=loads,
                         min_duration_s=0)  # fmt: skip
    times = {label: list(1e3 * s) for label, s in zip(kinds, samples, strict=True)}
    print(f"in-process, at least {loads} interleaved runs each, pack {pack}, threads=1")
    print(f"{'how':32} {'median ms':>10} {'min ms':>8} {'median ratio':>13} {'min ratio':>10}")
    for label, (_, base) in kinds.items():
        med, low = statistics.median(times[label]), min(times[label])
        ratio, low_ratio = med / statistics.median(times[base]), low / min(times[base])
        print(f"{label:32} {med:10.1f} {low:8.1f} {ratio:12.2f}x {low_ratio:9.2f}x")


def fresh_processes(pack: str, archive: str | None, repeats: int, warm_loads: int) -> None:
    model = _model_path(pack)
    kinds = {
        "bare onnxruntime (path)": ("bare", model, ""),
        "bare onnxruntime (bytes+sha256)": ("bytes", model, ""),
        "edgepack load (directory)": ("ep", "", pack),
    }
    if archive:
        kinds["edgepack load (archive)"] = ("ep", "", archive)
    times: dict[str, list[float]] = {k: [] for k in kinds}
    for _ in range(repeats):
        for label, argv in kinds.items():
            command = [sys.executable, "-c", CHILD, *argv, str(warm_loads)]
            out = subprocess.run(command, capture_output=True, text=True, check=True)
            times[label].append(json.loads(out.stdout.strip().splitlines()[-1]))
    cold = {k: statistics.median(v[0] for v in values) for k, values in times.items()}
    warm = {k: min(v[1] for v in values) for k, values in times.items()}
    first = next(iter(times))
    print(f"\nfresh processes, {repeats} each")
    print(f"{'how':32} {'cold s (median)':>16} {'vs bare':>8} {'warm s (min)':>13} {'vs bare':>8}")
    for label in times:
        print(
            f"{label:32} {cold[label]:16.3f} {cold[label] / cold[first]:7.2f}x "
            f"{warm[label]:13.3f} {warm[label] / warm[first]:7.2f}x"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("pack", help="a pack directory (for bare) and optionally an archive")
    parser.add_argument("--archive", help="the same pack as a .edgepack archive")
    parser.add_argument("--loads", type=int, default=8, help="in-process runs per kind")
    parser.add_argument("--repeats", type=int, default=9, help="fresh processes per kind")
    parser.add_argument("--warm", type=int, default=5, help="loads after the first, per process")
    args = parser.parse_args()
    print("loadavg before: {:.2f} {:.2f} {:.2f}, {} cores".format(*os.getloadavg(), os.cpu_count()))
    in_process(args.pack, args.loads)
    if args.repeats:
        fresh_processes(args.pack, args.archive, args.repeats, args.warm)
    print("loadavg after: {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()))


if __name__ == "__main__":
    main()
