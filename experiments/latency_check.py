"""Latency estimates against published on-board measurements: one row per published figure with the
estimate, its range and the error, then the share within +-30%, the median error and the range
coverage, SEPARATELY for the calibration rows (the ones profiles cite, which the estimator is fitted
to) and the held-out rows (which nothing was fitted to). With --before-root it prints the same table
for another checkout's estimator too (e.g. main's), on the same rows and the same cost summaries.

    python -m experiments.latency_check --work /tmp/latency-check --before-root ../main

The split was decided before any estimate was looked at, and is written in ROWS below: per board
and runtime, at most two published figures calibrate (they are the profile's [[references]]); every
other figure is held out. Held-out rows whose source ran kernels edgepack never runs (TensorFlow
1.x before XNNPACK) are printed, and summarised on a line of their own; the target is judged on
the others. The models are built in code with random weights (experiments.zoo),
exported to ONNX, quantized (static QDQ int8) where the row is
int8, and cost-summarised; the estimate of a LiteRT row is made from that ONNX graph's cost summary
(the op counts of the TFLite graph the source ran are close to it, but not identical). The
source's other timm classifiers (TIMM_ARCHS) are exported from timm itself, which building their
costs needs (pip install timm, with a torchvision that loads with the installed torch).
"""

from __future__ import annotations

import argparse
import hashlib
import inspect
import json
import os
import statistics
import subprocess
import sys
import tempfile
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from edgepack.benchmarks.calibrate import REFERENCE_PRECISIONS
from edgepack.benchmarks.estimate import estimate_latency
from edgepack.compress import cost as cost_module
from edgepack.compress.cost import cost_summary
from edgepack.device_profiles import as_measured, load_profile

from . import zoo


class _MBConv(nn.Module):
    """EfficientNet's block (Tan & Le 2019): 1x1 expand, kxk depthwise, squeeze-excite on a
    quarter of the block's input channels (absent in the Lite variants), 1x1 project."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int, expand: int, lite: bool):
        super().__init__()
        act = nn.ReLU6 if lite else nn.SiLU
        hidden = cin * expand
        layers = [] if expand == 1 else [zoo.conv_bn(cin, hidden, 1, act=act)]
        layers.append(zoo.conv_bn(hidden, hidden, kernel, stride, groups=hidden, act=act))
        self.body = nn.Sequential(*layers)
        self.se = None
        if not lite:
            squeeze = max(1, cin // 4)
            self.se = nn.Sequential(
                nn.AdaptiveAvgPool2d(1), nn.Conv2d(hidden, squeeze, 1), nn.SiLU(),
                nn.Conv2d(squeeze, hidden, 1), nn.Sigmoid(),
            )  # fmt: skip
        self.project = zoo.conv_bn(hidden, cout, 1, act=None)
        self.residual = stride == 1 and cin == cout

    def forward(self, x):
        y = self.body(x)
        y = self.project(y * self.se(y) if self.se is not None else y)
        return x + y if self.residual else y


# (expansion, kernel, first stride, output channels, repeats): Table 1 of Tan & Le 2019.
EFFICIENTNET_B0 = [(1, 3, 1, 16, 1), (6, 3, 2, 24, 2), (6, 5, 2, 40, 2), (6, 3, 2, 80, 3),
                   (6, 5, 1, 112, 3), (6, 5, 2, 192, 4), (6, 3, 1, 320, 1)]  # fmt: skip


def efficientnet_b0(lite: bool = False) -> nn.Module:
    """EfficientNet-B0 at 224x224 (SiLU, squeeze-excite), or EfficientNet-Lite0 (ReLU6, none)."""
    act = nn.ReLU6 if lite else nn.SiLU
    layers: list[nn.Module] = [zoo.conv_bn(3, 32, 3, 2, act=act)]
    cin = 32
    for expand, kernel, stride, cout, repeats in EFFICIENTNET_B0:
        for i in range(repeats):
            layers.append(_MBConv(cin, cout, kernel, stride if i == 0 else 1, expand, lite))
            cin = cout
    layers += [zoo.conv_bn(cin, 1280, 1, act=act), nn.AdaptiveAvgPool2d(1), nn.Flatten()]
    return nn.Sequential(*layers, nn.Linear(1280, 1000))


class _ShuffleBlock(nn.Module):
    """ShuffleNet v2's unit (Ma et al. 2018, Fig. 3c/d): stride 1 splits the channels in half and
    runs one half through 1x1, 3x3 depthwise, 1x1; stride 2 runs both branches on all of them;
    the halves are concatenated and shuffled in two groups."""

    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        half = cout // 2
        self.left = None
        if stride == 2:
            self.left = nn.Sequential(zoo.conv_bn(cin, cin, 3, 2, groups=cin, act=None),
                                      zoo.conv_bn(cin, half, 1, act=nn.ReLU))  # fmt: skip
        right_in = cin if stride == 2 else half
        self.right = nn.Sequential(
            zoo.conv_bn(right_in, half, 1, act=nn.ReLU),
            zoo.conv_bn(half, half, 3, stride, groups=half, act=None),
            zoo.conv_bn(half, half, 1, act=nn.ReLU),
        )

    def forward(self, x):
        if self.left is None:
            keep, x = x.chunk(2, dim=1)
            out = torch.cat((keep, self.right(x)), dim=1)
        else:
            out = torch.cat((self.left(x), self.right(x)), dim=1)
        b, c, h, w = out.shape
        return out.view(b, 2, c // 2, h, w).transpose(1, 2).reshape(b, c, h, w)


class _ShuffleNetV2(nn.Module):
    """ShuffleNet v2 1.0x at 224 x 224 (Table 5 of Ma et al. 2018: 24, 116, 232, 464, 1024
    channels; 4, 8, 4 units), pooled by a mean over height and width as torchvision's is."""

    def __init__(self):
        super().__init__()
        layers: list[nn.Module] = [zoo.conv_bn(3, 24, 3, 2, act=nn.ReLU), nn.MaxPool2d(3, 2, 1)]
        cin = 24
        for cout, repeats in ((116, 4), (232, 8), (464, 4)):
            layers += [_ShuffleBlock(cin if i == 0 else cout, cout, 2 if i == 0 else 1)
                       for i in range(repeats)]  # fmt: skip
            cin = cout
        self.features = nn.Sequential(*layers, zoo.conv_bn(464, 1024, 1, act=nn.ReLU))
        self.fc = nn.Linear(1024, 1000)

    def forward(self, x):
        return self.fc(self.features(x).mean([2, 3]))


# Architectures the held-out rows need beyond experiments.zoo's, registered there so its export
# and quantization (the same as every other row's) build them.
zoo.ZOO.setdefault(
    "efficientnet_b0",
    zoo.ZooModel(efficientnet_b0, zoo._image(224), "image-classification", "int8-static"),
)
zoo.ZOO.setdefault(
    "efficientnet_lite0",
    zoo.ZooModel(lambda: efficientnet_b0(lite=True), zoo._image(224), "image-classification",
                 "int8-static"),
)  # fmt: skip
zoo.ZOO.setdefault(
    "shufflenet_v2",
    zoo.ZooModel(_ShuffleNetV2, zoo._image(224), "image-classification", "int8-static"),
)
# ispcojp's other models, in the order of its tables (ShuffleNet v2 as shufflenet_v2).
ISPCOJP_MORE = ("ese_vovnet19b_dw", "mixnet_s", "mnasnet_a1", "mobilenetv2_050", "mobilenetv2_110d",
                "mobilenetv3_small_050", "repvgg_b0", "shufflenet_v2", "vgg13")  # fmt: skip
# Those not built in code are timm classifiers, exported from timm itself (random weights) the way
# the source's classification/export_onnx.py does: torch.onnx.export of timm.create_model at
# 1 x 3 x 224 x 224. Building their costs needs timm (and a torchvision that loads with the torch
# installed); the costs are then kept in --work's costs.json.
TIMM_ARCHS = tuple(arch for arch in ISPCOJP_MORE if arch not in zoo.ZOO)

XNNPACK = "https://github.com/google/XNNPACK/blob/master/README.md"
ALLAN = "https://github.com/aallan/benchmarking-ml-on-the-edge"
# TensorFlow blog, "Faster Quantized Inference with XNNPACK" (Sept 2021), Raspberry Pi 3B+ table;
# read in the copy at https://velog.io/@kcw4875/Faster-Quantized-Inference-with-XNNPACK.
TF_BLOG_QS8 = "https://blog.tensorflow.org/2021/09/faster-quantized-inference-with-xnnpack.html"
XNN_ISSUE_814 = "https://github.com/google/XNNPACK/issues/814"
ISPCOJP = "https://github.com/ispcojp/ai_inference_device_benchmark/blob/main/results/{}.md"
QENGINEERING = "https://github.com/Qengineering/{}/blob/HEAD/README.md"
DEEPEDGEBENCH = "https://github.com/stephanballer/deepedgebench/blob/HEAD/results/results.py"
INES_NANO = "https://github.com/InES-HPMM/ai_on_nano/blob/HEAD/target/software/torchONNX.py"
ODUQUE = "https://github.com/ODuqueDvise/edge-ai-benchmark/blob/master/results/OE3_ANALISIS.md"
# The int8 variant of ODUQUE's rows, quantized as its scripts/quantize_int8.py does: static QDQ,
# int8 activations with zero point 0 (ActivationSymmetric), int8 per-channel weights, float bias.
ARM_SYMMETRIC = "int8-symmetric"
# A system's results; each row's figure is in <model>/singlestream/performance/run_1/.
MLPERF = "https://github.com/mlcommons/inference_results_{}/tree/master/{}/Krai/results/{}"
NOBUO = ("https://github.com/NobuoTsukamoto/benchmarks/blob/HEAD/tensorflow/lite/"
         "tf1_detection_model_zoo/raspi.md")  # fmt: skip
WITHIN = 0.30  # the target band: |estimate / published - 1| <= 30%


@dataclass(frozen=True)
class Row:
    split: str  # "calibration" (a profile's [[references]]) or "held-out"
    profile: str
    backend: str
    arch: str  # an experiments.zoo model
    precision: str  # as published: fp32, int8, uint8
    threads: int
    published_ms: float
    source: str
    note: str
    # False where the published run used kernels edgepack never runs (TensorFlow Lite's own
    # kernels, without XNNPACK: TensorFlow 1.x, a 2021 Makefile build of the C++ library, or a
    # CMake build with XNNPACK off): the row is printed, and summarised on its own line.
    runtime_modelled: bool = True
    # The board's CPU clock and memory bandwidth in the published run, where the source says they
    # differ from the profile's (a reference's board_clock_ghz, board_bandwidth_gbs): the row is
    # estimated at those.
    board_clock_ghz: float | None = None
    board_bandwidth_gbs: float | None = None
    # The cost variant where the source quantized otherwise than experiments.zoo does.
    quantized_as: str | None = None


def _xnn(split: str, profile: str, arch: str, precision: str, ms: float, column: str) -> Row:
    return Row(split, profile, "litert", arch, precision, 4, ms, XNNPACK,
               f"XNNPACK end2end-bench, {column}, Feb 2022, all 4 cores")  # fmt: skip


def _allan(split: str, profile: str, arch: str, ms: float, when: str) -> Row:
    note = f"TensorFlow Lite, quantized model, 4 threads, mean of invoke(); {when}"
    return Row(split, profile, "litert", arch, "uint8", 4, ms, ALLAN, note)


def _allan_2019(profile: str, arch: str, ms: float, board: str) -> Row:
    """The 2019 runs: tf.lite.Interpreter of TensorFlow 1.x on 32-bit Raspbian (the repository's
    legacy benchmark_tf_lite.py imports tensorflow), whose uint8 kernels were TensorFlow Lite's
    own; XNNPACK came to TensorFlow Lite in 2020 for float and in September 2021 for quantized
    models (TF_BLOG_QS8). edgepack runs LiteRT with XNNPACK, so these are not its runtime."""
    note = (
        "TensorFlow 1.x tf.lite.Interpreter, uint8 model, 4 threads, mean of invoke() (NMS op "
        f"included, no Python pre/post-processing); {board}, 2019, before XNNPACK"
    )
    return Row("held-out", profile, "litert", arch, "uint8", 4, ms, ALLAN, note, False)


def _tf_blog(arch: str, precision: str, ms: float) -> Row:
    note = (
        "TFLite + XNNPACK, RPi 3B+ table; threads not stated in the copy read, 4 assumed (one "
        "1.4 GHz A53 peaks at 5.6 GFLOP/s, so 134 ms for MobileNet v1 cannot be 1 thread)"
    )
    return Row("held-out", "rpi3b-plus", "litert", arch, precision, 4, ms, TF_BLOG_QS8, note)


def _xnn_814(threads: int, ms: float) -> Row:
    note = (
        "XNNPACK end2end-bench FP32MobileNetV1/T:N, Pi 4 at 1.5 GHz, 64-bit Ubuntu, performance "
        "governor, July 2020; the reporter says it does not reproduce the README table"
    )
    return Row("held-out", "rpi4-1.5ghz", "litert", "mobilenet_v1", "fp32", threads, ms,
               XNN_ISSUE_814, note)  # fmt: skip


def _ort(split: str, profile: str, page: str, arch: str, ms: float, threads: int) -> Row:
    origin = "torchvision" if arch == "shufflenet_v2" else "timm"  # as the source built it
    note = (
        f"ONNX Runtime CPU EP, default session options (threads = cores), fp32 {origin} model at "
        "224x224, mean of 10 session.run() from Python after a dry run"
    )
    board: tuple[float | None, float | None] = (None, None)
    if "Orin" in page:  # JetPack 5.1.1, before the Super modes
        note += ("; JetPack 5.1.1: CPU at most 1.5 GHz, memory 68 GB/s (profile: MAXN SUPER, "
                 "1.7 GHz, 102 GB/s), estimated at those")  # fmt: skip
        board = (1.5, 68.0)
    return Row(split, profile, "onnxruntime", arch, "fp32", threads, ms, ISPCOJP.format(page),
               note, True, *board)  # fmt: skip


def _qe_nano(repo: str, arch: str, fps: float, what: str) -> Row:
    """Q-engineering's Jetson Nano TensorFlow Lite examples (2021): C++ against libtensorflow-lite.a
    of the Makefile build (their .cbp links tensorflow/lite/tools/make/gen/linux_aarch64/lib), a
    uint8 model, SetNumThreads(4), no delegate applied (the GPU one is commented out); the README
    gives frames per second at the stock 1479 MHz CPU clock, which is 1000 / the integer ms of
    std::chrono around the timed region. XNNPACK ran no uint8 model before 2021's opt-in QU8, so
    these are TensorFlow Lite's own uint8 kernels, not edgepack's runtime."""
    note = (f"TFLite C++ (2021 Makefile build, own uint8 kernels, no XNNPACK), 4 threads, CPU at "
            f"1479 MHz; {fps} FPS in the README = 1000/{fps} ms; timed: {what}")  # fmt: skip
    return Row("held-out", "jetson-nano", "litert", arch, "uint8", 4, round(1000 / fps, 1),
               QENGINEERING.format(repo), note, False)  # fmt: skip


def _ines_nano(arch: str, ms: float) -> Row:
    """ZHAW InES's Jetson Nano workflow (2021): torchONNX.py runs the exported timm model with
    onnxruntime.InferenceSession(path, None) in a container whose Dockerfile pip-installs
    onnxruntime (the aarch64 wheel has only the CPU provider); its docstring quotes the run."""
    note = (
        "ONNX Runtime CPU EP (pip onnxruntime in an L4T r32.5 container, JetPack 4.5), default "
        "session options (threads = the 4 cores); timm efficientnet_b0 exported at 224x224, opset "
        "10 (host/convert_torch_to_onnx.py; the same top-5 logits); median of 101 timed loops "
        "that also read, resize and normalize a JPEG"
    )
    return Row("held-out", "jetson-nano", "onnxruntime", arch, "fp32", 4, ms, INES_NANO, note)


def _deepedgebench(profile: str, board: str, precision: str, seconds: float) -> Row:
    """DeepEdgeBench (Baller et al., IC2E 2021): results/results.py's inf_durations_avg of the
    ts_<board>_tflite_mn2[q] runs, 5000 ImageNet images at 224x224, invoke() alone timed
    (utils/test/tflite.py). Its tflite_runtime.Interpreter is built without num_threads, so
    TensorFlow Lite's own kernels ran at their default of one thread (the Nano's quantized
    MobileNet v2 at 131.5 ms, against Q-engineering's 27.5 ms for the larger MobileNet v1 uint8 at 4
    threads on the same board, fits that and no XNNPACK): other kernels."""
    what = "quantized" if precision == "int8" else "float"
    note = (f"tflite_runtime Interpreter, TFLite's own kernels (no XNNPACK) at the default one "
            f"thread, TF MobileNet v2 1.0 224 {what}; "
            f"{board}; inf_durations_avg {seconds:.4f} s")  # fmt: skip
    return Row("held-out", profile, "litert", "mobilenet_v2", precision, 1,
               round(seconds * 1e3, 1), DEEPEDGEBENCH, note, False)  # fmt: skip


def _oduque(profile: str, arch: str, precision: str, ms: float) -> Row:
    """ODuqueDvise/edge-ai-benchmark (a 2026 master's thesis): torchvision MobileNetV2 and
    ResNet-50 (ImageNet weights, opset 18) on the ONNX Runtime CPU EP with default session options
    (threads = cores), 100 warm-up and 2000 timed run() calls per run; the figure is the geometric
    mean over the independent runs (OE3_ANALISIS.md, section 1). The Orin's JSONs record
    nvpmodel 'NV Power Mode: 15W' (JetPack 6.2's mode 0): its CPU at most 1.5 GHz, memory 68 GB/s,
    estimated at those."""
    board: tuple[float | None, float | None] = (None, None)
    if profile == "rpi5":
        threads, note = 4, "Pi 5, performance governor, ONNX Runtime 1.27.0, 4 threads"
    else:
        threads, note = 6, "Orin Nano CPU in the 15 W mode, ONNX Runtime 1.24.0, 6 threads"
        board = (1.5, 68.0)
    if precision == "int8":
        note += "; static QDQ int8, symmetric int8 activations, per-channel int8 weights"
    return Row("held-out", profile, "onnxruntime", arch, precision, threads, ms, ODUQUE, note,
               True, *board, ARM_SYMMETRIC if precision == "int8" else None)  # fmt: skip


def _mlperf(round_: str, model: str, ms: float) -> Row:
    """MLPerf Inference's Raspberry Pi 4 SingleStream runs (Krai, open division; ResNet-50 in the
    closed one): krai/ck-mlperf's image-classification-tflite-loadgen calls
    interpreter->SetNumThreads(hardware_concurrency()), 4 on a Pi 4, and applies no delegate, and
    its "-ruy" systems link the CK package lib-tflite built `with.ruy`, which turns ruy on and
    leaves -DTFLITE_ENABLE_XNNPACK=OFF (ctuning/ck-tensorflow, package/lib-tflite-cmake: XNNPACK
    only `with.xnnpack`, a separate system): TensorFlow Lite's own kernels, other kernels. The
    figure is LoadGen's mean latency (>= 1024 queries and 600 s; a query copies the preprocessed
    image in, runs Invoke() and reads the 1000 scores)."""
    profile, system, tflite = MLPERF_SYSTEMS[round_]
    arch, precision = MLPERF_MODELS[model]
    division = "closed" if model == "resnet50" else "open"
    note = (f"MLPerf {round_} SingleStream, {system}: TFLite {tflite} C++ with ruy, XNNPACK off, "
            f"4 threads; mean of LoadGen's queries; {model}")  # fmt: skip
    return Row("held-out", profile, "litert", arch, precision, 4, ms,
               MLPERF.format(round_, division, system), note, False)  # fmt: skip


# One round per clock of the Pi 4, the latest TFLite of each: 1.5 GHz (v1.1, Ubuntu 20.04 64-bit)
# and 1.8 GHz (v2.1, a Pi 4 Rev 1.4, Ubuntu 22.04 64-bit), as the systems/*.json files say.
MLPERF_SYSTEMS = {
    "v1.1": ("rpi4-1.5ghz", "rpi4coral-fan.on-tflite-v2.5.0-ruy", "2.5.0"),
    "v2.1": ("rpi4-1.8ghz", "rpi4-tflite-v2.7.1-ruy", "2.7.1"),
}
MLPERF_MODELS = {  # the result directory -> (arch, precision); the quantized MobileNets are
    # TensorFlow's uint8 ones, EfficientNet-Lite0's is full-integer int8 with uint8 input/output
    "mobilenet-v1-1.0-224-non-quantized": ("mobilenet_v1", "fp32"),
    "mobilenet-v1-1.0-224-quantized": ("mobilenet_v1", "uint8"),
    "mobilenet-v2-1.0-224-non-quantized": ("mobilenet_v2", "fp32"),
    "mobilenet-v2-1.0-224-quantized": ("mobilenet_v2", "uint8"),
    "mobilenet-v3-large_224_1.0_float": ("mobilenet_v3_large", "fp32"),
    "mobilenet-v3-large_224_1.0_uint8": ("mobilenet_v3_large", "uint8"),
    "mobilenet-v3-small_224_1.0_float": ("mobilenet_v3_small", "fp32"),
    "mobilenet-v3-small_224_1.0_uint8": ("mobilenet_v3_small", "uint8"),
    "efficientnet-lite0-non-quantized": ("efficientnet_lite0", "fp32"),
    "efficientnet-lite0-quantized": ("efficientnet_lite0", "int8"),
    "resnet50": ("resnet50", "fp32"),
}
# "Mean latency (ns)" of each run_1/mlperf_log_summary.txt / 1e6, in MLPERF_MODELS' order
MLPERF_MS = {
    "v1.1": (69.911, 29.324, 57.094, 24.822, 53.488, 27.203, 20.681, 11.096, 69.408, 32.384,
             527.419),
    "v2.1": (67.571, 27.281, 63.166, 23.683, 55.910, 24.686, 22.426, 9.731, 75.337, 29.748,
             575.256),
}  # fmt: skip


def _nobuo(profile: str, board: str, threads: int, ms: float) -> Row:
    """NobuoTsukamoto/benchmarks (2021): TF1 detection zoo SSD MobileNet v2 (300x300, float),
    tflite_runtime 2.5.0 with XNNPACK (PINTO0309's wheel) on Raspberry Pi OS 64-bit, 350 runs
    at --thread N; the mean after 50 warm-up runs of set_input_tensor + invoke()
    (tflite-cv-example's benchmark_tflite.py), the graph's TFLite_Detection_PostProcess (NMS)
    included, as in the Pi 5 SSD rows."""
    note = (f"tflite_runtime 2.5.0 + XNNPACK, fp32, {threads} thread(s), {board}, 64-bit OS; mean "
            "of set_input + invoke() incl. the NMS op")  # fmt: skip
    return Row("held-out", profile, "litert", "ssd_mobilenet_v2", "fp32", threads, ms, NOBUO,
               note)  # fmt: skip


NOBUO_MS = {  # raspi.md, "Latency mean (ms)", SSD Mobilenet v2 FP32, threads 1-4
    ("rpi4-1.5ghz", "Raspberry Pi 4 Model B Rev 1.2"): (498.06, 327.27, 320.19, 318.97),
    ("rpi3b-plus", "Raspberry Pi 3 Model B+"): (714.44, 432.01, 367.88, 532.58),
}


NANO, PI4 = "Jetson Nano", "Raspberry Pi 4 (clock not stated: 1.5 GHz assumed)"
ISPCOJP_MORE_MS = {  # (profile, page, threads): ms in ISPCOJP_MORE's order
    ("rpi4-1.8ghz", "RPi4", 4):
        (249.765, 194.713, 113.957, 46.726, 146.234, 20.494, 542.541, 40.200, 1738.197),
    ("rpi5", "RPi5", 4):
        (63.804, 66.758, 34.858, 13.970, 44.584, 7.580, 108.095, 9.432, 421.593),
    ("jetson-orin-nano", "Jetson_Orin_Nano", 6):
        (43.191, 51.086, 31.279, 12.926, 35.295, 7.092, 83.378, 10.497, 262.275),
}  # fmt: skip


# The split (decided first; never moved after looking at estimates). The rows from TF_BLOG_QS8 and
# XNN_ISSUE_814 were added in a second session and held out before any estimate of them was made:
# their boards already had their two LiteRT calibration rows.
ROWS = [
    _xnn("calibration", "rpi4-1.5ghz", "mobilenet_v1", "fp32", 77, "RPi 4 ARM64"),
    _xnn("calibration", "rpi4-1.5ghz", "mobilenet_v1", "int8", 24, "RPi 4 ARM64"),
    _xnn("calibration", "rpi3b-plus", "mobilenet_v1", "fp32", 114, "RPi 3+ (32-bit build)"),
    _xnn("calibration", "rpi3b-plus", "mobilenet_v1", "int8", 46, "RPi 3+ (32-bit build)"),
    _allan("calibration", "rpi5", "ssd_mobilenet_v2", 23.5, "Pi 5, 2023"),
    _xnn("held-out", "rpi4-1.5ghz", "mobilenet_v2", "fp32", 46, "RPi 4 ARM64"),
    _xnn("held-out", "rpi4-1.5ghz", "mobilenet_v3_large", "fp32", 40, "RPi 4 ARM64"),
    _xnn("held-out", "rpi4-1.5ghz", "mobilenet_v3_small", "fp32", 15, "RPi 4 ARM64"),
    _xnn("held-out", "rpi4-1.5ghz", "mobilenet_v2", "int8", 17, "RPi 4 ARM64"),
    _xnn("held-out", "rpi3b-plus", "mobilenet_v2", "fp32", 79, "RPi 3+ (32-bit build)"),
    _xnn("held-out", "rpi3b-plus", "mobilenet_v3_large", "fp32", 67, "RPi 3+ (32-bit build)"),
    _xnn("held-out", "rpi3b-plus", "mobilenet_v3_small", "fp32", 22, "RPi 3+ (32-bit build)"),
    _xnn("held-out", "rpi3b-plus", "mobilenet_v2", "int8", 30, "RPi 3+ (32-bit build)"),
    _allan_2019("rpi4-1.5ghz", "ssd_mobilenet_v2", 112.6, "Pi 4 launch"),
    _allan_2019("rpi4-1.5ghz", "ssd_mobilenet_v1_075", 82.7, "Pi 4 launch"),
    _allan_2019("rpi3b-plus", "ssd_mobilenet_v2", 379.6, "Pi 3 B+"),
    _allan_2019("rpi3b-plus", "ssd_mobilenet_v1_075", 271.5, "Pi 3 B+"),
    _allan("held-out", "rpi5", "ssd_mobilenet_v1_075", 16.9, "Pi 5, 2023"),
    _tf_blog("mobilenet_v1", "fp32", 134.4),
    _tf_blog("mobilenet_v1", "int8", 77.0),
    _tf_blog("mobilenet_v2", "fp32", 95.7),
    _tf_blog("mobilenet_v2", "int8", 70.5),
    _xnn_814(1, 312.0),
    _xnn_814(4, 142.4),
    # Third session: ONNX Runtime rows (ispcojp). Split decided before any estimate of them was
    # made: per board, the dense resnet18 calibrates (one reference, the profile's), the
    # depthwise-heavy MobileNets are held out.
    _ort("calibration", "rpi4-1.8ghz", "RPi4", "resnet18", 274.989, 4),
    _ort("calibration", "rpi5", "RPi5", "resnet18", 50.285, 4),
    _ort("calibration", "jetson-orin-nano", "Jetson_Orin_Nano", "resnet18", 40.043, 6),
    _ort("held-out", "rpi4-1.8ghz", "RPi4", "mobilenet_v2", 103.894, 4),
    _ort("held-out", "rpi4-1.8ghz", "RPi4", "mobilenet_v3_large", 97.349, 4),
    _ort("held-out", "rpi5", "RPi5", "mobilenet_v2", 30.221, 4),
    _ort("held-out", "rpi5", "RPi5", "mobilenet_v3_large", 29.030, 4),
    _ort("held-out", "jetson-orin-nano", "Jetson_Orin_Nano", "mobilenet_v2", 26.283, 6),
    _ort("held-out", "jetson-orin-nano", "Jetson_Orin_Nano", "mobilenet_v3_large", 26.290, 6),
    # Added after the model of this session was written, before any estimate of them was made:
    # the same sources' EfficientNet rows (B0 on ONNX Runtime; Lite0 in the TensorFlow blog).
    _ort("held-out", "rpi4-1.8ghz", "RPi4", "efficientnet_b0", 200.081, 4),
    _ort("held-out", "rpi5", "RPi5", "efficientnet_b0", 63.013, 4),
    _ort("held-out", "jetson-orin-nano", "Jetson_Orin_Nano", "efficientnet_b0", 47.993, 6),
    _tf_blog("efficientnet_lite0", "fp32", 135.2),
    _tf_blog("efficientnet_lite0", "int8", 82.7),
    # Fourth session: the first Jetson Nano CPU rows, all held out (decided before any estimate of
    # them was made). The ONNX Runtime one cannot calibrate the Nano: benchmarks/calibrate.py's
    # REFERENCE_MODELS has no EfficientNet-B0, so a profile reference naming it would be skipped.
    _ines_nano("efficientnet_b0", 202.7),
    _qe_nano(
        "TensorFlow_Lite_Classification_Jetson-Nano",
        "mobilenet_v1",
        36.3,
        "Invoke() only; mobilenet_v1_1.0_224_quant.tflite",
    ),
    _qe_nano(
        "TensorFlow_Lite_SSD_Jetson-Nano",
        "ssd_mobilenet_v1_075",
        21.8,
        "resize of a video frame, Invoke() (incl. TFLite_Detection_PostProcess) and drawing "
        "the boxes; detect.tflite is SSD MobileNet v1 0.75 depth (19x19x384 and 10x10x768 "
        "maps, 91 classes: read from the file)",
    ),
    # Also held out, decided before any estimate of them: DeepEdgeBench's 1-thread TFLite rows
    # (the first 1-thread rows besides XNNPACK issue 814's, and other kernels).
    _deepedgebench("jetson-nano", NANO, "fp32", 0.1810185181617737),
    _deepedgebench("jetson-nano", NANO, "int8", 0.13154509816169738),
    _deepedgebench("rpi4-1.5ghz", PI4, "fp32", 0.19301421723365783),
    _deepedgebench("rpi4-1.5ghz", PI4, "int8", 0.1280070918560028),
    # Fifth session: the rest of ispcojp's ONNX Runtime table (the same pages, harness and
    # boards as the calibrating ResNet-18 rows): all nine models on all three boards, held out,
    # decided before any estimate of them was made. The timm models are timm's own (TIMM_ARCHS);
    # ShuffleNet v2, which the source took from torchvision, is built in code above.
    *[
        _ort("held-out", profile, page, arch, ms, threads)
        for (profile, page, threads), figures in ISPCOJP_MORE_MS.items()
        for arch, ms in zip(ISPCOJP_MORE, figures, strict=True)
    ],
    # Sixth session: the first ONNX Runtime int8 rows (ODUQUE), all held out, added before any
    # estimate of them was made: the same two models in fp32 and int8 on the Pi 5 and the Orin.
    _oduque("rpi5", "mobilenet_v2", "fp32", 22.830),
    _oduque("rpi5", "mobilenet_v2", "int8", 26.788),
    _oduque("rpi5", "resnet50", "fp32", 151.433),
    _oduque("rpi5", "resnet50", "int8", 78.489),
    _oduque("jetson-orin-nano", "mobilenet_v2", "fp32", 12.611),
    _oduque("jetson-orin-nano", "mobilenet_v2", "int8", 12.509),
    _oduque("jetson-orin-nano", "resnet50", "fp32", 90.094),
    _oduque("jetson-orin-nano", "resnet50", "int8", 36.013),
    # Seventh session: all held out, added before any estimate of them was made. MLPerf's Pi 4
    # runs of TensorFlow Lite's own kernels (other kernels: one round per Pi 4 clock, see
    # MLPERF_SYSTEMS), and XNNPACK's 1- to 4-thread SSD MobileNet v2 on the Pi 4 and the Pi 3 B+
    # (the source's 64-bit OS columns: edgepack's runtimes ship aarch64 wheels, no armv7 ones).
    # Its int8 rows are SSDLite, which experiments.zoo does not build.
    *[
        _mlperf(round_, model, ms)
        for round_, figures in MLPERF_MS.items()
        for model, ms in zip(MLPERF_MODELS, figures, strict=True)
    ],
    *[
        _nobuo(profile, board, threads, ms)
        for (profile, board), figures in NOBUO_MS.items()
        for threads, ms in enumerate(figures, start=1)
    ],
]


def variant(row: Row) -> str:
    return row.quantized_as or REFERENCE_PRECISIONS[row.precision]


def _counter_fingerprint() -> str:
    """A digest of the cost counter's source: costs a different counter built are not reused."""
    return hashlib.sha256(inspect.getsource(cost_module).encode()).hexdigest()[:16]


def export_timm(arch: str, dest: Path) -> None:
    """timm's `arch` with random weights, exported as the ispcojp source exported it."""
    try:
        import timm
    except ImportError:
        raise SystemExit(
            f"the held-out rows of {arch!r} need timm to build the model: pip install timm "
            "(with a torchvision that loads with this torch)"
        ) from None
    model = timm.create_model(arch, pretrained=False).eval()
    tmp = dest.with_name(dest.name + ".tmp")
    try:
        torch.onnx.export(model, (torch.randn(1, 3, 224, 224),), str(tmp), input_names=["input"],
                          output_names=["score"], dynamo=False, opset_version=17)  # fmt: skip
        tmp.replace(dest)
    finally:
        tmp.unlink(missing_ok=True)


def build_costs(rows: list[Row], work: Path) -> dict[str, dict[str, Any]]:
    """{"arch/variant": cost} for every row, built once into work/costs.json and built again when
    compress/cost.py has changed since (the exported models in `work` are kept: delete them when a
    model's definition changes)."""
    store = work / "costs.json"
    saved = json.loads(store.read_text()) if store.is_file() else {}
    counter = _counter_fingerprint()
    costs = saved.get("costs", {}) if saved.get("counter") == counter else {}
    if saved and not costs:
        print(f"{store} was built by another compress/cost.py: counting the costs again",
              file=sys.stderr)  # fmt: skip
    needed = sorted({(r.arch, variant(r)) for r in rows} - {tuple(k.split("/")) for k in costs})
    for i, (arch, kind) in enumerate(needed):
        print(f"[{i + 1}/{len(needed)}] exporting {arch} ({kind})", file=sys.stderr)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fp32 = work / f"{arch}-fp32.onnx"
            if not fp32.is_file():
                (export_timm if arch in TIMM_ARCHS else zoo.export_zoo_model)(arch, fp32)
            path = fp32
            if kind == ARM_SYMMETRIC:
                path = zoo.quantize_onnx(arch, fp32, work / f"{arch}-{kind}.onnx",
                                         activations="int8", symmetric=True, per_channel=True,
                                         quantize_bias=False)  # fmt: skip
            elif kind != "fp32":
                path = zoo.quantize_onnx(arch, fp32, work / f"{arch}-{kind}.onnx")
            costs[f"{arch}/{kind}"] = cost_summary(path)
        tmp = store.with_suffix(".tmp")
        tmp.write_text(json.dumps({"counter": counter, "costs": costs}, indent=1))
        tmp.replace(store)  # a stopped run keeps what it built
    return costs


def after(rows: list[Row], costs: dict, history: Path) -> list[dict[str, Any]]:
    """This checkout's estimates (no recorded history: only the model and its calibration)."""
    out = []
    for row in rows:
        e = estimate_latency(
            costs[f"{row.arch}/{variant(row)}"],
            as_measured(load_profile(row.profile), row.board_clock_ghz, row.board_bandwidth_gbs),
            backend=row.backend,
            threads=row.threads,
            history=history,
        )
        out.append({"latency_ms": e["latency_ms"], "range_ms": e["range_ms"],
                    "calibration": e["calibration"]["kind"]})  # fmt: skip
    return out


# Run by --before-root's Python: the estimator there is edgepack.benchmarks.predict (main before
# the rename) or .estimate; its profiles lack rpi3b-plus, which gets a copy of ours without the
# fields it does not know.
BEFORE_SCRIPT = r"""
import dataclasses, json, sys, warnings
warnings.simplefilter("ignore")
try:
    from edgepack.benchmarks.predict import predict_latency as estimate
except ImportError:
    from edgepack.benchmarks.estimate import estimate_latency as estimate
from edgepack.device_profiles import load_profile
jobs = json.load(sys.stdin)
out = []
for job in jobs:
    try:
        p = load_profile(job["profile"])
        # The row's board mode, as device_profiles.as_measured sets it (older checkouts lack it).
        if job["clock_ghz"]:
            cpu = dataclasses.replace(p.cpu, max_clock_ghz=job["clock_ghz"])
            p = dataclasses.replace(p, cpu=cpu)
        if job["bandwidth_gbs"]:
            memory = dataclasses.replace(p.memory, bandwidth_gbs=job["bandwidth_gbs"])
            p = dataclasses.replace(p, memory=memory)
        e = estimate(job["cost"], p, backend=job["backend"], threads=job["threads"],
                     history=job["history"])
        out.append({"latency_ms": e["latency_ms"], "range_ms": e["range_ms"],
                    "calibration": e["calibration"].get("status", "")[:24]})
    except Exception as exc:
        out.append({"error": f"{type(exc).__name__}: {exc}"})
json.dump(out, sys.stdout)
"""
# Profile fields an older estimator may reject (bandwidth: its 'estimate' kind), each as the
# string its profile schema holds when it knows the field.
UNKNOWN_TO_OLD = (
    '"memory.l2_kib"', '"memory.l2_shared"', '"memory.l3_kib"', '"memory.bandwidth_gbs"',
    '"memory.bandwidth_kind"', '"cpu.all_core_speedup"', '"board_clock_ghz"',
    '"board_bandwidth_gbs"', '"cpu.one_thread_cnn_mcycles"',
)  # fmt: skip


def _strip_for_old(text: str, schema: str) -> str:
    """A profile without the fields an older estimator does not know (it rejects unknown ones):
    those of UNKNOWN_TO_OLD that its profile schema (the text of its profile.py) never names,
    as a field of their table (or of a reference), a source or a note."""
    unknown = {
        field.strip('"').rpartition(".")[2] for field in UNKNOWN_TO_OLD if field not in schema
    }
    kept = []
    for line in text.splitlines():
        name = line.split("=")[0].strip().strip('"')
        if name.rpartition(".")[2] not in unknown:
            kept.append(line)
    return "\n".join(kept) + "\n"


def before(
    rows: list[Row], costs: dict, root: Path, work: Path, *, their_profiles: bool = False
) -> list[dict[str, Any]]:
    """The estimates of the checkout at `root`, run in its own process on the same costs. By
    default it reads OUR profiles (stripped of fields it does not know), so both estimators see
    the same boards and the same calibration references; with their_profiles, its own (plus our
    rpi3b-plus, which it lacks), whose references may include rows held out here."""
    shim = work / "before-shim" / "edgepack"
    shim.mkdir(parents=True, exist_ok=True)
    for part in ("runtime", "schema", "benchmarks", "device_profiles", "compress", "cli"):
        link = shim / part
        if link.is_symlink():
            link.unlink()  # it may point at the checkout of an earlier run
        if (root / part).is_dir():
            link.symlink_to(root.resolve() / part)
    profiles = work / ("before-their-profiles" if their_profiles else "before-our-profiles")
    profiles.mkdir(exist_ok=True)
    for name in sorted({r.profile for r in rows}):
        ours = Path(load_profile(name).path)
        if their_profiles and (root / "device_profiles" / ours.name).is_file():
            continue
        schema = (root / "device_profiles" / "profile.py").read_text()
        (profiles / ours.name).write_text(_strip_for_old(ours.read_text(), schema))
    jobs = [
        {"cost": costs[f"{r.arch}/{variant(r)}"], "profile": r.profile, "backend": r.backend,
         "threads": r.threads, "history": str(work / "before-no-history.json"),
         "clock_ghz": r.board_clock_ghz, "bandwidth_gbs": r.board_bandwidth_gbs}
        for r in rows
    ]  # fmt: skip
    env = {
        **os.environ,
        "PYTHONPATH": str(shim.parent),
        "EDGEPACK_PROFILES_DIR": str(profiles),
        "EDGEPACK_CACHE_DIR": str(work / "before-cache"),  # its microbenchmarks, measured once
    }
    done = subprocess.run(
        [sys.executable, "-c", BEFORE_SCRIPT],
        input=json.dumps(jobs),
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    if done.returncode != 0:
        raise SystemExit(f"the estimator at {root} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout)


def _error(estimate: dict, row: Row) -> float | None:
    return None if "error" in estimate else estimate["latency_ms"] / row.published_ms - 1


# The summary groups: the calibration rows; the held-out rows of runtimes edgepack runs (the
# target is met or missed on these); and all held-out rows, with those of other kernels.
GROUPS = {
    "calibration": lambda r: r.split == "calibration",
    "held-out": lambda r: r.split == "held-out" and r.runtime_modelled,
    "held-out incl. other kernels": lambda r: r.split == "held-out",
}


def summary(rows: list[Row], estimates: list[dict]) -> dict[str, dict[str, Any]]:
    """Per group: rows, share within +-30%, median |error|, share of published values in range."""
    result = {}
    for split, member in GROUPS.items():
        pairs = [(r, e) for r, e in zip(rows, estimates, strict=True) if member(r)]
        errors = [abs(_error(e, r)) for r, e in pairs if "error" not in e]
        inside = [e["range_ms"][0] <= r.published_ms <= e["range_ms"][1]
                  for r, e in pairs if "error" not in e]  # fmt: skip
        result[split] = {
            "rows": len(pairs),
            "estimated": len(errors),
            "within_30pct": sum(x <= WITHIN for x in errors) / len(errors) if errors else None,
            "median_abs_error": statistics.median(errors) if errors else None,
            "range_coverage": sum(inside) / len(inside) if inside else None,
        }
    return result


def print_table(title: str, rows: list[Row], estimates: list[dict]) -> None:
    print(f"\n{title}")
    print(f"{'split':<12}{'profile':<17}{'runtime':<12}{'model':<21}{'prec':<6}{'thr':>4}"
          f"{'published':>10}{'estimate':>10}{'error':>8}  range (in?)   calibration")  # fmt: skip
    for split in ("calibration", "held-out"):
        for row, e in zip(rows, estimates, strict=True):
            if row.split != split:
                continue
            start = (f"{row.split:<12}{row.profile:<17}{row.backend:<12}{row.arch:<21}"
                     f"{row.precision:<6}{row.threads:>4}{row.published_ms:>10.1f}")  # fmt: skip
            if "error" in e:
                print(f"{start}  {e['error'][:60]}")
                continue
            low, high = e["range_ms"]
            inside = "yes" if low <= row.published_ms <= high else "NO"
            other = "" if row.runtime_modelled else "  [other kernels: TFLite's own, no XNNPACK]"
            cal = e.get("calibration", "")
            print(f"{start}{e['latency_ms']:>10.1f}{100 * _error(e, row):>+7.0f}%"
                  f"  {low:.0f}-{high:.0f} ({inside})  {cal}{other}")  # fmt: skip
    for split, s in summary(rows, estimates).items():
        if not s["estimated"]:
            print(f"  {split}: {s['rows']} rows, none estimated")
            continue
        print(
            f"  {split}: {s['estimated']}/{s['rows']} rows estimated; within +-30%: "
            f"{s['within_30pct']:.0%}; median |error|: {s['median_abs_error']:.0%}; "
            f"published value inside the stated range: {s['range_coverage']:.0%}"
        )


def print_disagreements(rows: list[Row]) -> None:
    """Rows of the same board, runtime, model, precision and threads from different sources: how far
    the published figures disagree with each other bounds how close any estimate can get."""
    groups: dict[tuple, list[Row]] = {}
    for row in rows:
        key = (row.profile, row.backend, row.arch, variant(row), row.threads)
        groups.setdefault(key, []).append(row)
    pairs = [g for g in groups.values() if len({r.source for r in g}) > 1]
    if not pairs:
        return
    print("\npublished figures of the same setup from different sources (slowest / fastest):")
    for group in pairs:
        low, high = min(r.published_ms for r in group), max(r.published_ms for r in group)
        first, figures = group[0], " vs ".join(f"{r.published_ms:g}" for r in group)
        print(f"  {first.profile:<17}{first.arch:<21}{first.precision:<6}{first.threads:>3} thr  "
              f"{figures} ms: x{high / low:.2f}")  # fmt: skip


def write_reference_costs(costs: dict, target: Path) -> None:
    """Merge the built costs into the reference costs the device side calibrates with, as a pack
    carries them."""
    data = json.loads(target.read_text()) if target.is_file() else {}
    for key, cost in costs.items():
        arch, kind = key.split("/")
        data.setdefault(arch, {})[kind] = cost
    tmp = target.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
    tmp.replace(target)
    print(f"wrote {target}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m experiments.latency_check", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--work", type=Path, help="folder for models and costs (kept for reuse)")
    parser.add_argument("--before-root", type=Path, help="another checkout to compare (e.g. main)")
    parser.add_argument(
        "--before-their-profiles",
        action="store_true",
        help="let --before-root use its own profiles (and their references) instead of ours",
    )
    parser.add_argument("--json", type=Path, help="also write rows, estimates and summaries here")
    parser.add_argument(
        "--write-reference-costs",
        action="store_true",
        help="merge the costs into benchmarks/reference_costs.json (the device's calibration)",
    )
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="edgepack-latency-check-") as scratch:
        work = args.work or Path(scratch)
        work.mkdir(parents=True, exist_ok=True)
        costs = build_costs(ROWS, work)
        if args.write_reference_costs:
            here = Path(__file__).resolve().parent.parent
            write_reference_costs(costs, here / "benchmarks" / "reference_costs.json")
        report: dict[str, Any] = {"rows": [asdict(r) for r in ROWS]}
        if args.before_root:
            theirs = args.before_their_profiles
            report["before"] = before(ROWS, costs, args.before_root, work, their_profiles=theirs)
            which = "its own profiles" if theirs else "this checkout's profiles and references"
            title = f"BEFORE: the estimator of {args.before_root}, with {which}"
            print_table(title, ROWS, report["before"])
        report["after"] = after(ROWS, costs, Path(scratch) / "no-history.json")
        print_table("AFTER: this checkout's estimator", ROWS, report["after"])
    report["summary"] = {k: summary(ROWS, report[k]) for k in ("before", "after") if k in report}
    print_disagreements(ROWS)
    print("\nsources:", ", ".join(sorted({r.source for r in ROWS})))
    if args.json:
        args.json.write_text(json.dumps(report, indent=1))
    misses = [
        f"{split}: {s['within_30pct']:.0%} within +-30%, median {s['median_abs_error']:.0%}"
        for split, s in report["summary"]["after"].items()
        if split in ("calibration", "held-out")
        and s["estimated"]
        and (s["within_30pct"] < 0.8 or s["median_abs_error"] > 0.2)
    ]
    print("target (>= 80% within +-30%, median <= 20%) " + ("missed: " + "; ".join(misses)
          if misses else "met on both splits"))  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
