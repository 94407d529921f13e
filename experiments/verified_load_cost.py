"""What verifying a pack costs at load: edgepack's load() against a bare onnxruntime session.

Each figure is the median of fresh processes, side by side and interleaved (import onnxruntime,
then create the session or load the pack): `bare` gives onnxruntime the model path and checks
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
print(json.dumps(time.perf_counter() - start))
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
    parser.add_argument("--repeats", type=int, default=9)
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
            out = subprocess.run(
                [sys.executable, "-c", CHILD, *argv], capture_output=True, text=True, check=True
            )
            times[label].append(json.loads(out.stdout.strip().splitlines()[-1]))
    bare = statistics.median(times["bare onnxruntime (path)"])
    print(f"{'how':32} {'median s':>9} {'min s':>7} {'vs bare':>8}")
    for label, values in times.items():
        med = statistics.median(values)
        print(f"{label:32} {med:9.3f} {min(values):7.3f} {med / bare:7.2f}x")


if __name__ == "__main__":
    main()
