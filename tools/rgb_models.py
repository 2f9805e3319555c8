"""The two RGB example networks, built the way users build theirs.

`rgb_resnet_cbam64`: timm's own ResNet (`resnet10t`: deep tiered stem, basic blocks,
average-pool-then-1x1 downsampling shortcuts) at a quarter of its width (channels 16-128, stem 6-8-16), with timm's own CBAM module
(`block_args=dict(attn_layer='cbam')`) in every block. Input 3x64x64.

`rgb_mbv2_cbam96`: a MobileNetV2-style network for a microcontroller (3x96x96, the Visual
Wake Words size): inverted residuals (1x1 expand, depthwise 3x3, ReLU6, linear 1x1
bottleneck, residual add when the shape allows), CBAM (the paper's form, tools/cbam_models.py)
on the branch before the add in three blocks, the first at 48x48. Early maps are 48x48 with
16-64 channels, as in MCUNet's VWW models.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
import cbam_models as cm  # noqa: E402

CLASSES = 10


def rgb_resnet_cbam64() -> nn.Module:
    import timm

    return timm.create_model(
        "resnet10t",
        pretrained=False,
        num_classes=CLASSES,
        channels=(16, 32, 64, 128),
        stem_width=8,
        block_args=dict(attn_layer="cbam"),
    )


def _conv_bn(cin: int, cout: int, k: int, stride: int = 1, groups: int = 1, act: bool = True) -> list[nn.Module]:
    layers: list[nn.Module] = [
        nn.Conv2d(cin, cout, k, stride=stride, padding=k // 2, groups=groups, bias=False),
        nn.BatchNorm2d(cout),
    ]
    if act:
        layers.append(nn.ReLU6(inplace=False))
    return layers


class InvertedResidual(nn.Module):
    """1x1 expand (skipped when expand == 1), depthwise 3x3, linear 1x1 projection; CBAM on
    the branch before the residual add."""

    def __init__(self, cin: int, cout: int, stride: int, expand: int, cbam: bool) -> None:
        super().__init__()
        hidden = cin * expand
        layers: list[nn.Module] = []
        if expand != 1:
            layers += _conv_bn(cin, hidden, 1)
        layers += _conv_bn(hidden, hidden, 3, stride=stride, groups=hidden)
        layers += _conv_bn(hidden, cout, 1, act=False)
        self.branch = nn.Sequential(*layers)
        self.cbam = cm.Cbam(cout, cm.CbamStyle(), reduction=4) if cbam else nn.Identity()
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.cbam(self.branch(x))
        return x + y if self.residual else y


# (out channels, stride, expand, cbam) per block, after the stride-2 stem to 16 channels.
MBV2_BLOCKS = (
    (16, 1, 1, True),   # 48x48
    (24, 2, 4, False),  # 24x24 (expands to 64 channels at 48x48)
    (24, 1, 4, True),
    (40, 2, 4, False),  # 12x12
    (40, 1, 4, False),
    (64, 2, 4, False),  # 6x6
    (64, 1, 4, True),
    (96, 1, 4, False),
)


class MobileNetV2Cbam(nn.Module):
    def __init__(self, classes: int = CLASSES, stem: int = 16, head: int = 192) -> None:
        super().__init__()
        self.stem = nn.Sequential(*_conv_bn(3, stem, 3, stride=2))
        blocks, cin = [], stem
        for cout, stride, expand, cbam in MBV2_BLOCKS:
            blocks.append(InvertedResidual(cin, cout, stride, expand, cbam))
            cin = cout
        self.blocks = nn.Sequential(*blocks)
        self.head = nn.Sequential(*_conv_bn(cin, head, 1))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(0.1)
        self.fc = nn.Linear(head, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.head(self.blocks(self.stem(x)))
        return self.fc(self.dropout(torch.flatten(self.pool(x), 1)))


def rgb_mbv2_cbam96() -> nn.Module:
    return MobileNetV2Cbam()


# name -> (constructor, input size, exporter, opset)
MODELS = {
    "rgb_resnet_cbam64": (rgb_resnet_cbam64, 64, "legacy", 17),
    "rgb_mbv2_cbam96": (rgb_mbv2_cbam96, 96, "dynamo", 18),
}
