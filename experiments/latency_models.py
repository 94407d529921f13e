"""The architectures of experiments/latency_check.py's published rows that compress.zoo lacks,
built in plain torch with random weights (latency does not depend on the weights): MobileNetV1
1.0 and MobileNetV3-Large/Small, after the papers' tables as torchvision defines them."""

from __future__ import annotations

from torch import nn

from edgepack.compress import zoo
from edgepack.compress.zoo import ZooModel, conv_bn, mobilenet_v1_blocks


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


EXTRA = {
    "mobilenet_v1": ZooModel(mobilenet_v1, zoo._image(224), "image-classification", "int8-static"),
    "mobilenet_v3_large": ZooModel(
        lambda: mobilenet_v3(V3_LARGE, 960, 1280), zoo._image(224), "image-classification",
        "int8-static",
    ),
    "mobilenet_v3_small": ZooModel(
        lambda: mobilenet_v3(V3_SMALL, 576, 1024), zoo._image(224), "image-classification",
        "int8-static",
    ),
}  # fmt: skip


def register() -> None:
    """Make compress.zoo's export and quantize functions know these architectures too (the zoo
    is a workstation helper; these definitions stay out of the library until it moves here)."""
    zoo.ZOO.update(EXTRA)
