"""What verifying a pack costs at load: edgepack's load() against a bare onnxruntime session.

Fresh processes, side by side and interleaved: `cold` is the median of import onnxruntime and
the first session or load; `warm` the fastest of the loads that follow in the same processes
(less sensitive to a busy machine). `bare` gives onnxruntime the model path and checks
nothing; `bytes+sha256` reads the file once, hashes it and hands onnxruntime those bytes;
`edgepack` is `edgepack.runtime.load`, which checks every listed sha256. The difference from
`bare` is what verification costs.

    python -m experiments.verified_load_cost PACK_DIR [--archive PACK.edgepack] [--repeats 9]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys

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
    from edgepack.runtime import read_manifest

    manifest = read_manifest(pack)
    return f"{pack}/{manifest.models[0].path}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("pack", help="a pack directory (for bare) and optionally an archive")
    parser.add_argument("--archive", help="the same pack as a .edgepack archive")
    parser.add_argument("--repeats", type=int, default=9, help="fresh processes per kind")
    parser.add_argument("--warm", type=int, default=5, help="loads after the first, per process")
    args = parser.parse_args()
    model = _model_path(args.pack)
    kinds = {
        "bare onnxruntime (path)": ("bare", model, ""),
        "bare onnxruntime (bytes+sha256)": ("bytes", model, ""),
        "edgepack load (directory)": ("ep", "", args.pack),
    }
    if args.archive:
        kinds["edgepack load (archive)"] = ("ep", "", args.archive)
    times: dict[str, list[float]] = {k: [] for k in kinds}
    for _ in range(args.repeats):
        for label, argv in kinds.items():
            command = [sys.executable, "-c", CHILD, *argv, str(args.warm)]
            out = subprocess.run(command, capture_output=True, text=True, check=True)
            times[label].append(json.loads(out.stdout.strip().splitlines()[-1]))
    cold = {k: statistics.median(v[0] for v in values) for k, values in times.items()}
    warm = {k: min(v[1] for v in values) for k, values in times.items()}
    first = next(iter(times))
    print(f"{'how':32} {'cold s (median)':>16} {'vs bare':>8} {'warm s (min)':>13} {'vs bare':>8}")
    for label in times:
        print(
            f"{label:32} {cold[label]:16.3f} {cold[label] / cold[first]:7.2f}x "
            f"{warm[label]:13.3f} {warm[label] / warm[first]:7.2f}x"
        )


if __name__ == "__main__":
    main()
