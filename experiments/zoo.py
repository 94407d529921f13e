"""Well-known architectures built in plain torch with random weights, exported to ONNX packs whose
manifests carry the cost summary: the models the latency estimator is checked and calibrated on
(experiments/latency_check.py).

    python -m experiments.zoo --out DIR [--models mobilenet_v2,resnet18] [--costs costs.json]

`--costs benchmarks/reference_costs.json` rewrites the cost summaries the package ships.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from edgepack.compress.cost import cost_summary
from edgepack.compress.export_onnx import export_onnx
from edgepack.packing import assemble_pack, describe_model_file
from edgepack.runtime.errors import EdgepackError

PathLike = str | os.PathLike[str]


def conv_bn(cin: int, cout: int, k: int = 3, stride: int = 1, groups: int = 1, act=nn.ReLU6):
    """Convolution, batch norm and an optional activation: the unit every CNN below is made of."""
    layers = [
        nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=False),
        nn.BatchNorm2d(cout),
    ]
    return nn.Sequential(*layers, act(inplace=True)) if act else nn.Sequential(*layers)


class InvertedResidual(nn.Module):
    """MobileNetV2's block: 1x1 expand, 3x3 depthwise, 1x1 project, residual when shapes allow."""

    def __init__(self, cin: int, cout: int, stride: int, expand: int):
        super().__init__()
        hidden = cin * expand
        self.expand = conv_bn(cin, hidden, 1) if expand != 1 else nn.Identity()
        self.rest = nn.Sequential(
            conv_bn(hidden, hidden, 3, stride, groups=hidden), conv_bn(hidden, cout, 1, act=None)
        )
        self.residual = stride == 1 and cin == cout

    def forward(self, x):
        y = self.rest(self.expand(x))
        return x + y if self.residual else y


# (expansion, channels, repeats, first stride), from the MobileNetV2 paper's Table 2.
MOBILENET_V2_STAGES = (
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)


def mobilenet_v2_blocks() -> list[nn.Module]:
    """Stem, the 17 inverted residual blocks and the 1x1 conv to 1280 channels."""
    blocks: list[nn.Module] = [conv_bn(3, 32, 3, 2)]
    cin = 32
    for expand, cout, repeats, stride in MOBILENET_V2_STAGES:
        for i in range(repeats):
            blocks.append(InvertedResidual(cin, cout, stride if i == 0 else 1, expand))
            cin = cout
    return [*blocks, conv_bn(cin, 1280, 1)]


def mobilenet_v2(classes: int = 1000) -> nn.Module:
    """MobileNetV2 1.0 (Sandler et al. 2018), 224x224 input."""
    return nn.Sequential(
        *mobilenet_v2_blocks(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(1280, classes),
    )


class Bottleneck(nn.Module):
    """ResNet's residual block: two 3x3 convs (basic) or 1x1-3x3-1x1 with 4x expansion."""

    def __init__(self, cin: int, width: int, stride: int, deep: bool):
        super().__init__()
        cout = width * 4 if deep else width
        if deep:
            self.body = nn.Sequential(
                conv_bn(cin, width, 1, act=nn.ReLU),
                conv_bn(width, width, 3, stride, act=nn.ReLU),
                conv_bn(width, cout, 1, act=None),
            )
        else:
            self.body = nn.Sequential(
                conv_bn(cin, width, 3, stride, act=nn.ReLU), conv_bn(width, cout, 3, act=None)
            )
        short = stride != 1 or cin != cout
        self.shortcut = conv_bn(cin, cout, 1, stride, act=None) if short else nn.Identity()
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x):
        return self.relu(self.body(x) + self.shortcut(x))


def resnet(depths: Sequence[int], deep: bool, classes: int = 1000) -> nn.Module:
    """ResNet (He et al. 2016): ResNet-18 is [2, 2, 2, 2] basic, ResNet-50 [3, 4, 6, 3] deep."""
    layers: list[nn.Module] = [conv_bn(3, 64, 7, 2, act=nn.ReLU), nn.MaxPool2d(3, 2, 1)]
    cin = 64
    for stage, repeats in enumerate(depths):
        width = 64 * 2**stage
        for i in range(repeats):
            layers.append(Bottleneck(cin, width, 2 if i == 0 and stage > 0 else 1, deep))
            cin = width * 4 if deep else width
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(cin, classes))


class SSD(nn.Module):
    """SSD heads over a backbone's two feature maps plus four extra stride-2 layers, as in the
    TensorFlow Object Detection API's quantized SSD MobileNet configs (samples/configs/
    ssd_mobilenet_v2_quantized_300x300_coco.config and ssd_mobilenet_v1_0.75_depth_quantized_
    300x300_coco14_sync.config): 1x1 box predictors, 3 boxes per cell on the first map and 6 on
    the others. Post-processing (box decoding, NMS) is not included."""

    def __init__(
        self,
        trunk: nn.Module,
        head: nn.Module,
        channels: tuple[int, int],
        extra_depths: Sequence[int],
        classes: int,
        kernel: int = 1,
    ):
        super().__init__()
        self.trunk, self.head = trunk, head
        extras, cin, maps = [], channels[1], list(channels)
        for depth in extra_depths:
            extras.append(
                nn.Sequential(conv_bn(cin, depth // 2, 1), conv_bn(depth // 2, depth, 3, 2))
            )
            cin = depth
            maps.append(depth)
        self.extras = nn.ModuleList(extras)
        boxes = [3] + [6] * (len(maps) - 1)
        self.box = nn.ModuleList(
            nn.Conv2d(c, b * 4, kernel, 1, kernel // 2) for c, b in zip(maps, boxes, strict=True)
        )
        self.cls = nn.ModuleList(
            nn.Conv2d(c, b * classes, kernel, 1, kernel // 2)
            for c, b in zip(maps, boxes, strict=True)
        )
        self.classes = classes

    def forward(self, x):
        first = self.trunk(x)
        features = [first, self.head(first)]
        for extra in self.extras:
            features.append(extra(features[-1]))
        boxes = [
            b(f).permute(0, 2, 3, 1).flatten(1, 2) for b, f in zip(self.box, features, strict=True)
        ]
        scores = [
            c(f).permute(0, 2, 3, 1).flatten(1, 2) for c, f in zip(self.cls, features, strict=True)
        ]
        boxes = torch.cat([b.reshape(b.shape[0], -1, 4) for b in boxes], 1)
        scores = torch.cat([s.reshape(s.shape[0], -1, self.classes) for s in scores], 1)
        return boxes, torch.sigmoid(scores)


def ssd_mobilenet_v2() -> nn.Module:
    """SSD MobileNetV2 (COCO, 300x300): maps from block 13's expansion (19x19x576) and the final
    1x1 conv (10x10x1280), extras 512-256-256-128, 90 classes plus background."""
    blocks = mobilenet_v2_blocks()
    block13 = blocks[14]  # stem + 13 blocks precede it: the first block of the 160-channel stage
    trunk = nn.Sequential(*blocks[:14], block13.expand)
    head = nn.Sequential(block13.rest, *blocks[15:])
    return SSD(trunk, head, (576, 1280), (512, 256, 256, 128), classes=91)


def mobilenet_v1_blocks(alpha: float) -> list[nn.Module]:
    """MobileNetV1 (Howard et al. 2017) at width multiplier alpha: stem and 13 separable blocks."""
    plan = [(64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2)]
    plan += [(512, 1)] * 5 + [(1024, 2), (1024, 1)]
    cin = int(32 * alpha)
    blocks: list[nn.Module] = [conv_bn(3, cin, 3, 2)]
    for channels, stride in plan:
        cout = int(channels * alpha)
        blocks.append(
            nn.Sequential(conv_bn(cin, cin, 3, stride, groups=cin), conv_bn(cin, cout, 1))
        )
        cin = cout
    return blocks


def ssd_mobilenet_v1_075() -> nn.Module:
    """SSD MobileNetV1 0.75 depth (COCO, 300x300): maps from separable block 11 (19x19x384) and 13
    (10x10x768), extras 512-256-256-128 scaled by 0.75, 90 classes (background encoded as zeros)."""
    blocks = mobilenet_v1_blocks(0.75)
    trunk, head = nn.Sequential(*blocks[:12]), nn.Sequential(*blocks[12:])
    return SSD(trunk, head, (384, 768), (384, 192, 192, 96), classes=90)


def mobilenet_v1(classes: int = 1000) -> nn.Module:
    """MobileNetV1 1.0 (Howard et al. 2017), 224x224 input."""
    return nn.Sequential(
        *mobilenet_v1_blocks(1.0),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(1024, classes),
    )


def _divisible(value: float, divisor: int = 8) -> int:
    """Channel counts rounded as MobileNetV3 does (to a multiple of 8, never 10% below)."""
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * value else rounded


class SqueezeExcite(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        hidden = _divisible(channels / 4)
        self.gate = nn.Sequential(
            nn.AdaptiveAvgPool2d(1),
            nn.Conv2d(channels, hidden, 1),
            nn.ReLU(inplace=True),
            nn.Conv2d(hidden, channels, 1),
            nn.Hardsigmoid(inplace=True),
        )

    def forward(self, x):
        return x * self.gate(x)


class Bneck(nn.Module):
    """MobileNetV3's block: 1x1 expand, kxk depthwise (+ squeeze-excite), 1x1 project."""

    def __init__(self, cin: int, kernel: int, hidden: int, cout: int, se: bool, act, stride: int):
        super().__init__()
        layers = [] if hidden == cin else [conv_bn(cin, hidden, 1, act=act)]
        layers.append(conv_bn(hidden, hidden, kernel, stride, groups=hidden, act=act))
        if se:
            layers.append(SqueezeExcite(hidden))
        layers.append(conv_bn(hidden, cout, 1, act=None))
        self.body = nn.Sequential(*layers)
        self.residual = stride == 1 and cin == cout

    def forward(self, x):
        y = self.body(x)
        return x + y if self.residual else y


RE, HS = nn.ReLU, nn.Hardswish
# (kernel, expansion size, output channels, squeeze-excite, activation, stride): Table 1 and 2 of
# Howard et al. 2019, "Searching for MobileNetV3".
V3_LARGE = [
    (3, 16, 16, False, RE, 1), (3, 64, 24, False, RE, 2), (3, 72, 24, False, RE, 1),
    (5, 72, 40, True, RE, 2), (5, 120, 40, True, RE, 1), (5, 120, 40, True, RE, 1),
    (3, 240, 80, False, HS, 2), (3, 200, 80, False, HS, 1), (3, 184, 80, False, HS, 1),
    (3, 184, 80, False, HS, 1), (3, 480, 112, True, HS, 1), (3, 672, 112, True, HS, 1),
    (5, 672, 160, True, HS, 2), (5, 960, 160, True, HS, 1), (5, 960, 160, True, HS, 1),
]  # fmt: skip
V3_SMALL = [
    (3, 16, 16, True, RE, 2), (3, 72, 24, False, RE, 2), (3, 88, 24, False, RE, 1),
    (5, 96, 40, True, HS, 2), (5, 240, 40, True, HS, 1), (5, 240, 40, True, HS, 1),
    (5, 120, 48, True, HS, 1), (5, 144, 48, True, HS, 1), (5, 288, 96, True, HS, 2),
    (5, 576, 96, True, HS, 1), (5, 576, 96, True, HS, 1),
]  # fmt: skip


def mobilenet_v3(plan: list[tuple], last: int, head: int, classes: int = 1000) -> nn.Module:
    """MobileNetV3 1.0 at 224x224: stem, the bneck blocks of `plan`, 1x1 conv to `last`
    channels, pooling and the two-layer classifier of `head` units."""
    layers: list[nn.Module] = [conv_bn(3, 16, 3, 2, act=HS)]
    cin = 16
    for kernel, hidden, cout, se, act, stride in plan:
        layers.append(Bneck(cin, kernel, hidden, cout, se, act, stride))
        cin = cout
    layers += [conv_bn(cin, last, 1, act=HS), nn.AdaptiveAvgPool2d(1), nn.Flatten()]
    layers += [nn.Linear(last, head), nn.Hardswish(inplace=True), nn.Linear(head, classes)]
    return nn.Sequential(*layers)


def bert_base() -> nn.Module:
    """A BERT-base-shaped encoder (12 layers, hidden 768, 12 heads) from transformers.BertConfig."""
    from transformers import BertConfig, BertModel

    model = BertModel(BertConfig(attn_implementation="eager"), add_pooling_layer=True)

    class Encoder(nn.Module):
        def __init__(self):
            super().__init__()
            self.bert = model

        def forward(self, input_ids, attention_mask, token_type_ids):
            out = self.bert(
                input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
            )
            return out.last_hidden_state, out.pooler_output

    return Encoder()


def _image(size: int) -> Callable[[], dict[str, torch.Tensor]]:
    return lambda: {"image": torch.randn(1, 3, size, size)}


def _text(sequence: int = 128) -> dict[str, torch.Tensor]:
    ids = torch.randint(1000, 30000, (1, sequence))
    return {
        "input_ids": ids,
        "attention_mask": torch.ones_like(ids),
        "token_type_ids": torch.zeros_like(ids),
    }


@dataclass(frozen=True)
class ZooModel:
    """How to build one architecture, feed it, and quantize it (the scheme its kind usually has)."""

    build: Callable[[], nn.Module]
    inputs: Callable[[], dict[str, torch.Tensor]]
    task: str
    int8: str  # "int8-static" (QDQ, as full-integer deployments run) or "int8-dynamic"
    dynamic: dict[str, dict[int, str]] = field(default_factory=dict)


_TEXT_AXES = {0: "batch", 1: "sequence"}
ZOO: dict[str, ZooModel] = {
    "mobilenet_v2": ZooModel(mobilenet_v2, _image(224), "image-classification", "int8-static"),
    "resnet18": ZooModel(
        lambda: resnet([2, 2, 2, 2], deep=False), _image(224), "image-classification", "int8-static"
    ),
    "resnet50": ZooModel(
        lambda: resnet([3, 4, 6, 3], deep=True), _image(224), "image-classification", "int8-static"
    ),
    "ssd_mobilenet_v2": ZooModel(ssd_mobilenet_v2, _image(300), "other", "int8-static"),
    "ssd_mobilenet_v1_075": ZooModel(ssd_mobilenet_v1_075, _image(300), "other", "int8-static"),
    "bert_base": ZooModel(
        bert_base,
        _text,
        "feature-extraction",
        "int8-dynamic",
        {name: _TEXT_AXES for name in ("input_ids", "attention_mask", "token_type_ids")},
    ),
    "mobilenet_v1": ZooModel(mobilenet_v1, _image(224), "image-classification", "int8-static"),
    "mobilenet_v3_large": ZooModel(
        lambda: mobilenet_v3(V3_LARGE, 960, 1280), _image(224), "image-classification",
        "int8-static",
    ),
    "mobilenet_v3_small": ZooModel(
        lambda: mobilenet_v3(V3_SMALL, 576, 1024), _image(224), "image-classification",
        "int8-static",
    ),
}  # fmt: skip


def export_zoo_model(name: str, dest: PathLike) -> Path:
    """Build zoo model `name` with random weights (seed 0) and export it with compress's
    export_onnx (opset 17, checked against PyTorch); batch norm folds into the convolutions in
    eval mode, as deployments have it. Only the axes the model's spec names are dynamic."""
    spec = ZOO[name]
    torch.manual_seed(0)
    module = spec.build().eval()
    return export_onnx(module, spec.inputs(), dest, dynamic_axes=spec.dynamic).path


def quantize_onnx(
    name: str,
    source: PathLike,
    dest: PathLike,
    samples: int = 2,
    *,
    activations: str = "uint8",
    symmetric: bool = False,
    per_channel: bool = False,
    quantize_bias: bool = True,
) -> Path:
    """Quantize an exported zoo model the way its kind usually is: QDQ static int8 (uint8
    activations, int8 weights, calibrated on random inputs; latency does not depend on accuracy)
    or dynamic int8 for transformers. The keywords change the static scheme: int8 activations,
    activations with zero point 0 (symmetric), per-channel weights, bias left in float."""
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_dynamic,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    spec = ZOO[name]
    if spec.int8 == "int8-dynamic":
        quantize_dynamic(str(source), str(dest), weight_type=QuantType.QInt8)
        return Path(dest)

    class RandomInputs(CalibrationDataReader):
        def __init__(self):
            torch.manual_seed(1)
            self.feeds = iter(
                [{k: v.numpy() for k, v in spec.inputs().items()} for _ in range(samples)]
            )

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self.feeds, None)

    # Pre-processing (shape inference, ORT's basic graph optimizations) removes the exporter's
    # Identity nodes on shared biases, which otherwise keep some convolutions in float.
    prepared = Path(dest).with_suffix(".pre.onnx")
    quant_pre_process(str(source), str(prepared))
    quantize_static(
        str(prepared),
        str(dest),
        RandomInputs(),
        quant_format=QuantFormat.QDQ,
        activation_type=QuantType.QInt8 if activations == "int8" else QuantType.QUInt8,
        weight_type=QuantType.QInt8,
        per_channel=per_channel,
        extra_options={"ActivationSymmetric": symmetric, "QuantizeBias": quantize_bias},
    )
    return Path(dest)


def build_packs(
    name: str, precisions: Sequence[str], out: PathLike, work: PathLike
) -> list[dict[str, Any]]:
    """Export zoo model `name` once, quantize it where asked, and write one pack per precision
    ("fp32", "int8") as OUT/NAME-PRECISION with the cost summary in its manifest.
    Returns [{model, precision, pack, cost}] in the order asked."""
    if name not in ZOO:
        raise EdgepackError(f"unknown zoo model {name!r}; known: {', '.join(ZOO)}")
    unknown = [p for p in precisions if p not in ("fp32", "int8")]
    if unknown:
        raise EdgepackError(f"zoo precisions are 'fp32' and 'int8', got {unknown}")
    work, out = Path(work), Path(out)
    fp32 = export_zoo_model(name, work / f"{name}-fp32.onnx")
    built = []
    for precision in precisions:
        path, label = fp32, "fp32"
        if precision == "int8":
            path, label = quantize_onnx(name, fp32, work / f"{name}-int8.onnx"), ZOO[name].int8
        cost = cost_summary(path)
        entry = describe_model_file(path, pack_path="model.onnx", precision=label)
        entry.cost = cost
        dest = out / f"{name}-{precision}"
        assemble_pack(
            dest,
            [(path, entry)],
            name=f"{name}-{precision}",
            task=ZOO[name].task,
            provenance={"source_model": f"experiments.zoo:{name} (random weights)"},
        )
        built.append({"model": name, "precision": label, "pack": str(dest), "cost": cost})
    return built


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m experiments.zoo",
        description="Export well-known architectures (random weights) as packs with their cost.",
    )
    parser.add_argument("--out", type=Path, required=True, help="directory for the packs")
    parser.add_argument("--models", default=",".join(ZOO), help=f"comma list from {', '.join(ZOO)}")
    parser.add_argument("--precisions", default="fp32,int8", help="comma list of fp32, int8")
    parser.add_argument(
        "--costs", type=Path, help="also write {model: {precision: cost}} to this JSON file"
    )
    args = parser.parse_args(argv)
    costs: dict[str, dict[str, Any]] = {}
    args.out.mkdir(parents=True, exist_ok=True)
    try:
        with tempfile.TemporaryDirectory(prefix="edgepack-zoo-") as work:
            for name in args.models.split(","):
                for built in build_packs(name, args.precisions.split(","), args.out, work):
                    costs.setdefault(name, {})[built["precision"]] = built.pop("cost")
                    print(json.dumps(built), flush=True)
    except EdgepackError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if args.costs:
        args.costs.write_text(json.dumps(costs, indent=1, sort_keys=True) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
