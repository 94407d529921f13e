"""How many threads ONNX Runtime's MLAS gives a float convolution when the graph is not rewritten
to NCHWc (the path every Arm build takes). MlasConvPrepare and MlasGemmBatch size a call's thread
count by its work, one thread per MLAS_SGEMM_THREAD_COMPLEXITY (64 Ki) multiply-adds plus one, so
a small call runs on the calling thread alone. A depthwise convolution is one call per channel
group (im2col + a one-row SGEMM each); a 1 x 1 convolution is one GEMM.

Times, at 1 and N intra-op threads side by side, single depthwise Conv layers of MobileNet-like
shapes and chains of 1 x 1 Convs of small channel counts, and prints per layer the multiply-adds
per call, the cycles per call, the speed-up of --threads (default 2) over one, and the threads
the estimator's kernel_threads() gives that call. On a board (with --threads 4 and the board's
clock) it measures the per-group cycles and the fork/join the estimator assumes.

Run it with the Python of an environment holding the onnxruntime to look at (e.g. 1.15.1, the
release behind the published on-board figures), onnx and numpy:

    /tmp/ort115/bin/python experiments/mlas_threads.py --ghz 2.0

--ghz is this host's core clock, for the cycle figures (cycles = seconds x clock).

With --memory it times instead, on one thread, depthwise layers of one map size whose input and
output together take about 1.6 MB, 26 MB and 1 GB (in L2, in L3 or past it, by the machine's
caches), so the compute per group is the same and only where the tensor lives changes, beside a
one-thread copy of the same bytes: whether the channel loop's memory traffic hides under its
compute (the roofline) or adds to it. It needs about 2 GB of memory and takes at most 5 rounds.

Standalone on purpose: it imports neither torch nor edgepack.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

# (channels, output side, kernel, stride): MobileNet v2's depthwise layers at 224 x 224, and two
# of EfficientNet-B0's 5 x 5 ones.
LAYERS = [
    (32, 112, 3, 1), (96, 56, 3, 2), (144, 56, 3, 1), (144, 28, 3, 2), (192, 28, 3, 1),
    (384, 14, 3, 1), (576, 14, 3, 1), (576, 7, 3, 2), (960, 7, 3, 1),
    (240, 28, 5, 1), (672, 14, 5, 1),
]  # fmt: skip
# (channels, side): chains of C -> C 1 x 1 convolutions on a side x side map, on both sides of
# the 64 Ki multiply-add threshold.
POINTWISE = [(8, 28), (16, 14), (32, 7), (24, 14), (40, 7), (48, 14), (96, 28)]
# 1 x 1 convolutions per chain, so that the per-run overhead is a small part of the time.
CHAIN = 32
THREAD_MACS = 65536  # runtimes.toml: fp32_thread_macs


def depthwise_model(channels: int, side: int, kernel: int, stride: int) -> onnx.ModelProto:
    """One depthwise Conv (+ bias) whose output is side x side."""
    pad = kernel // 2
    inside = side * stride
    weight = np.random.default_rng(0).standard_normal((channels, 1, kernel, kernel), np.float32)
    node = helper.make_node(
        "Conv", ["x", "w", "b"], ["y"], group=channels, kernel_shape=[kernel, kernel],
        pads=[pad] * 4, strides=[stride, stride],
    )  # fmt: skip
    graph = helper.make_graph(
        [node], "dw",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, channels, inside, inside])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, channels, side, side])],
        [numpy_helper.from_array(weight, "w"),
         numpy_helper.from_array(np.zeros(channels, np.float32), "b")],
    )  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8  # readable by the older releases this is meant for
    return model


def pointwise_chain(channels: int, side: int) -> onnx.ModelProto:
    """CHAIN dependent C -> C 1 x 1 Convs (no bias) on a side x side map."""
    rng = np.random.default_rng(0)
    nodes, weights, previous = [], [], "x"
    for i in range(CHAIN):
        w = rng.standard_normal((channels, channels, 1, 1), np.float32) / np.sqrt(channels)
        weights.append(numpy_helper.from_array(w.astype(np.float32), f"w{i}"))
        out = "y" if i == CHAIN - 1 else f"y{i}"
        nodes.append(helper.make_node("Conv", [previous, f"w{i}"], [out], kernel_shape=[1, 1]))
        previous = out
    shape = [1, channels, side, side]
    graph = helper.make_graph(
        nodes, "pw", [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, shape)], weights,
    )  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    return model


def session(path: Path, threads: int) -> ort.InferenceSession:
    """A CPU session without the NCHWc rewrite (x86-only), so MLAS takes its Arm path."""
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def median_seconds(sessions: dict[int, ort.InferenceSession], feed: dict, rounds: int) -> dict:
    """Median of `rounds` runs per thread count, the runs of the thread counts interleaved so
    that the machine's load falls on all of them alike."""
    times: dict[int, list[float]] = {t: [] for t in sessions}
    for s in sessions.values():
        for _ in range(3):
            s.run(None, feed)
    for _ in range(rounds):
        for threads, s in sessions.items():
            start = time.perf_counter()
            s.run(None, feed)
            times[threads].append(time.perf_counter() - start)
    return {t: statistics.median(v) for t, v in times.items()}


# (channels, side) per map size: input + output of about 1.6 MB, 26 MB and 1 GB.
MEMORY_LAYERS = {112: (16, 256, 10240), 56: (64, 1024, 40960), 28: (256, 4096, 163840)}


def copy_gbs(nbytes: int, rounds: int = 3) -> float:
    """One thread's copy rate over `nbytes` (read + written bytes per second), best of rounds."""
    a = np.ones(nbytes // 8, np.float32)
    b = np.empty_like(a)
    best = min(_timed(lambda: np.copyto(b, a)) for _ in range(rounds))
    return 2 * a.nbytes / best / 1e9


def _timed(call) -> float:
    start = time.perf_counter()
    call()
    return time.perf_counter() - start


def memory_main(rounds: int) -> None:
    """--memory: one-thread depthwise 3 x 3 layers at one map size and growing channel counts."""
    print(f"onnxruntime {ort.__version__}; 1 thread, median of {rounds} runs per layer")
    print(f"{'layer':<24}{'MB in+out':>10}{'us/group':>10}{'added us':>10}{'added GB/s':>11}"
          f"{'copy GB/s':>10}")  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="edgepack-mlas-") as tmp:
        for side, channel_counts in MEMORY_LAYERS.items():
            baseline = None  # the first, L2-resident layer's time per group
            for channels in channel_counts:
                path = Path(tmp) / "layer.onnx"
                onnx.save(depthwise_model(channels, side, 3, 1), path)
                x = np.random.default_rng(1).standard_normal((1, channels, side, side), np.float32)
                per_group = median_seconds({1: session(path, 1)}, {"x": x}, rounds)[1] / channels
                nbytes = 2 * x.nbytes
                baseline = per_group if baseline is None else baseline
                added = per_group - baseline
                group_bytes = nbytes / channels
                rate = f"{group_bytes / added / 1e9:>11.1f}" if added > 0 else f"{'-':>11}"
                print(f"{f'dw {channels}x{side}x{side} k3 s1':<24}{nbytes / 1e6:>10.1f}"
                      f"{per_group * 1e6:>10.2f}{added * 1e6:>10.2f}{rate}"
                      f"{copy_gbs(nbytes):>10.1f}")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--ghz", type=float, required=True, help="this host's core clock")
    parser.add_argument("--threads", type=int, default=2, help="the thread count beside 1")
    parser.add_argument("--rounds", type=int, default=200)
    parser.add_argument(
        "--memory",
        action="store_true",
        help="time where the depthwise loop's tensors live instead (1 thread, at most 5 rounds)",
    )
    args = parser.parse_args()
    if args.memory:
        memory_main(min(args.rounds, 5))
        return
    many = args.threads
    if many < 2:
        parser.error(f"--threads must be at least 2 (got {many}): it is compared with 1 thread")
    print(f"onnxruntime {ort.__version__}; median of {args.rounds} runs, 1 and {many} threads "
          "interleaved")  # fmt: skip
    print(f"{'layer':<24}{'MACs/call':>10}{'1 thr ms':>10}{f'{many} thr ms':>10}{'speed-up':>9}"
          f"{'cyc/call':>10}{'cyc/MAC':>9}{'model thr':>10}")  # fmt: skip
    layers = [(f"dw {c}x{side}x{side} k{k} s{st}", depthwise_model(c, side, k, st),
               (1, c, side * st, side * st), c, side * side * k * k)
              for c, side, k, st in LAYERS]  # fmt: skip
    layers += [(f"1x1 {c}->{c} {side}x{side} x{CHAIN}", pointwise_chain(c, side),
                (1, c, side, side), CHAIN, c * c * side * side)
               for c, side in POINTWISE]  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="edgepack-mlas-") as tmp:
        for name, model, shape, calls, macs in layers:
            path = Path(tmp) / "layer.onnx"
            onnx.save(model, path)
            x = np.random.default_rng(1).standard_normal(shape, np.float32)
            t = median_seconds({n: session(path, n) for n in (1, many)}, {"x": x}, args.rounds)
            cycles = t[1] * args.ghz * 1e9 / calls
            threads = min(many, macs // THREAD_MACS + 1)  # cost_model.kernel_threads' rule
            figures = f"{t[1] * 1e3:>10.3f}{t[many] * 1e3:>10.3f}{t[1] / t[many]:>9.2f}"
            print(f"{name:<24}{macs:>10}{figures}{cycles:>10.0f}{cycles / macs:>9.2f}{threads:>10}")


if __name__ == "__main__":
    main()
