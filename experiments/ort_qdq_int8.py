"""What ONNX Runtime runs for a static QDQ int8 CNN, and how it threads memory-bound ops: the host
measurements behind compress/cost.py's QDQ rules and the estimator's elementwise thread rule.

Default mode: builds MobileNet v2 and ResNet-50 (experiments.zoo, random weights), quantizes each
twice with onnxruntime.quantization (static QDQ, per-channel int8 weights, uint8 activations with
their zero point kept and symmetric, i.e. zero point 128), then times fp32 and both int8 models
side by side in interleaved rounds and prints per model the medians, their ratio to fp32, the node
types ONNX Runtime's profiler saw run, and how many ops the cost summary counts in float. With
symmetric activations the Q after a Relu/ReLU6 has a range that starts below 0, so ONNX Runtime
keeps the clamp, in float, between a DequantizeLinear and a QuantizeLinear (uint8 activations:
x86 builds fuse int8-activation convolutions less; Arm builds take both).

    python -m experiments.ort_qdq_int8 --threads 1

--elementwise: times QuantizeLinear, DequantizeLinear, Clip and Add at MobileNet v2's tensor
sizes at 1 and --threads threads and prints the speed-up beside the threads the estimator's
elementwise_threads() gives (runtimes.toml's elementwise_cycles_per_element).
"""

from __future__ import annotations

import argparse
import collections
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

# Elements of MobileNet v2's activations at 224 x 224: 960 x 7 x 7 up to 96 x 112 x 112.
SIZES = (47_040, 75_264, 150_528, 451_584, 1_204_224)
ELEMENTWISE = ("QuantizeLinear", "DequantizeLinear", "Clip", "Add")
QUANTIZERS = ("QuantizeLinear", "DequantizeLinear")


def elementwise_model(op: str, elements: int) -> onnx.ModelProto:
    """One op on a 1-D tensor of `elements`: float in (int8 for DequantizeLinear)."""
    inputs = ["x", "x"] if op == "Add" else ["x"]
    inits = []
    if op in QUANTIZERS:
        inputs += ["s", "z"]
        inits = [numpy_helper.from_array(np.array(0.05, np.float32), "s"),
                 numpy_helper.from_array(np.array(0, np.int8), "z")]  # fmt: skip
    elif op == "Clip":
        inputs += ["lo", "hi"]
        inits = [
            numpy_helper.from_array(np.array(v, np.float32), n) for n, v in (("lo", 0), ("hi", 6))
        ]
    in_type = TensorProto.INT8 if op == "DequantizeLinear" else TensorProto.FLOAT
    out_type = TensorProto.INT8 if op == "QuantizeLinear" else TensorProto.FLOAT
    graph = helper.make_graph(
        [helper.make_node(op, inputs, ["y"])], op,
        [helper.make_tensor_value_info("x", in_type, [elements])],
        [helper.make_tensor_value_info("y", out_type, [elements])], inits,
    )  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def session(model: onnx.ModelProto | Path, threads: int, profile: str | None = None):
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    if profile:
        options.enable_profiling = True
        options.profile_file_prefix = profile
    source = model.SerializeToString() if isinstance(model, onnx.ModelProto) else str(model)
    return ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])


def interleaved_medians(runs: dict, rounds: int) -> dict[str, float]:
    """{name: median seconds} of callables timed in turn, round after round (noisy host)."""
    for call in runs.values():
        for _ in range(3):
            call()
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(rounds):
        for name, call in runs.items():
            start = time.perf_counter()
            call()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}


def elementwise_main(threads: int, rounds: int, sizes: tuple[int, ...]) -> None:
    from edgepack.benchmarks.cost_model import (
        BYTES_PER_ELEMENT,
        QUANTIZE_BYTES_PER_ELEMENT,
        elementwise_threads,
    )
    from edgepack.device_profiles.cores import runtime_model

    runtime = runtime_model("onnxruntime")
    print(f"{'op':18s} {'elements':>9s} {'1 thread us':>12s} {f'{threads} threads us':>13s} "
          f"{'speed-up':>8s} {'estimator threads':>17s}")  # fmt: skip
    rng = np.random.default_rng(0)
    for op in ELEMENTWISE:
        for n in sizes:
            x = (rng.integers(-100, 100, n).astype(np.int8) if op == "DequantizeLinear"
                 else rng.random(n, np.float32))  # fmt: skip
            model = elementwise_model(op, n)
            sessions = {t: session(model, t) for t in (1, threads)}
            medians = interleaved_medians(
                {t: (lambda s=s, x=x: s.run(None, {"x": x})) for t, s in sessions.items()}, rounds
            )
            cost = {"op_class": "quantize" if op in QUANTIZERS else "elementwise",
                    "precision": "int8" if op == "DequantizeLinear" else "fp32", "count": 1,
                    "flops": 0.0,
                    "bytes": n * (QUANTIZE_BYTES_PER_ELEMENT if op in QUANTIZERS
                                  else BYTES_PER_ELEMENT["fp32"])}  # fmt: skip
            print(f"{op:18s} {n:9d} {medians[1] * 1e6:12.1f} {medians[threads] * 1e6:13.1f} "
                  f"{medians[1] / medians[threads]:8.2f} "
                  f"{elementwise_threads(cost, runtime, threads):17d}")  # fmt: skip


def executed_ops(path: Path, threads: int, feed: dict, work: Path) -> dict[str, int]:
    """Op type -> nodes the profiler saw run in one inference."""
    s = session(path, threads, str(work / f"{path.stem}-profile"))
    s.run(None, feed)
    with open(s.end_profiling()) as trace:
        events = json.load(trace)
    return dict(collections.Counter(
        e["args"]["op_name"] for e in events
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time")
    ))  # fmt: skip


def models_main(names: list[str], threads: int, rounds: int) -> None:
    from edgepack.compress.cost import cost_summary

    from . import zoo

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for name in names:
            spec = zoo.ZOO[name]
            paths = {"fp32": zoo.export_zoo_model(name, work / f"{name}.onnx")}
            for variant, symmetric in (("int8 zero point kept", False), ("int8 symmetric", True)):
                path = work / f"{name}-{'sym' if symmetric else 'asym'}.onnx"
                paths[variant] = zoo.quantize_onnx(
                    name, paths["fp32"], path, symmetric=symmetric, per_channel=True
                )
            feed = {k: v.numpy() for k, v in spec.inputs().items()}
            sessions = {v: session(p, threads) for v, p in paths.items()}
            medians = interleaved_medians(
                {v: (lambda s=s, f=feed: s.run(None, f)) for v, s in sessions.items()}, rounds
            )
            print(f"{name}, {threads} thread(s), median of {rounds} interleaved rounds:")
            for variant, path in paths.items():
                ran = executed_ops(path, threads, feed, work)
                floats = sum(
                    op["count"] for op in cost_summary(path)["ops"]
                    if op["op_class"] == "elementwise" and op["precision"] == "fp32"
                )  # fmt: skip
                shown = ", ".join(f"{k} {v}" for k, v in sorted(ran.items(), key=lambda kv: -kv[1]))
                print(f"  {variant:21s} {medians[variant] * 1e3:8.2f} ms  "
                      f"fp32 / this {medians['fp32'] / medians[variant]:5.2f}  "
                      f"float elementwise ops counted {floats:3d}  ran: {shown}")  # fmt: skip


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=2, help="threads (beside 1: --elementwise)")
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--models", nargs="+", default=["mobilenet_v2", "resnet50"])
    parser.add_argument("--elementwise", action="store_true", help="time the memory-bound ops")
    parser.add_argument("--sizes", type=int, nargs="+", default=list(SIZES),
                        help="elements per op for --elementwise")  # fmt: skip
    args = parser.parse_args(argv)
    if args.elementwise:
        elementwise_main(args.threads, args.rounds, tuple(args.sizes))
    else:
        models_main(args.models, args.threads, args.rounds)


if __name__ == "__main__":
    main()
