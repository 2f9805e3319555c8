"""Hand-written PyTorch pieces of the export-variant zoo (tools/make_zoo.py): the forms
users write themselves, where timm or torchvision have no equivalent.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
import cbam_models as cm  # noqa: E402


def conv_bn(cin: int, cout: int, k: int = 3, stride: int = 1, relu: bool = True, **conv) -> nn.Sequential:
    layers: list[nn.Module] = [
        nn.Conv2d(cin, cout, k, stride=stride, padding=conv.pop("padding", k // 2), bias=False, **conv),
        nn.BatchNorm2d(cout),
    ]
    if relu:
        layers.append(nn.ReLU())
    return nn.Sequential(*layers)


# --- CBAM the way the authors' published code writes it -------------------------------------
# Channel gate: global pooling by avg_pool2d/max_pool2d with the full map as kernel, a
# Flatten written as view(N, -1), a Linear MLP with biases (reduction 16), the attention
# broadcast with unsqueeze + expand_as. Spatial gate: [max; mean] over channels, a 7x7 conv
# without bias, BatchNorm, sigmoid.


class OfficialChannelGate(nn.Module):
    def __init__(self, channels: int, reduction: int = 16) -> None:
        super().__init__()
        hidden = max(1, channels // reduction)
        self.mlp = nn.Sequential(nn.Linear(channels, hidden), nn.ReLU(), nn.Linear(hidden, channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        kernel = (x.size(2), x.size(3))
        total = None
        for pooled in (F.avg_pool2d(x, kernel, stride=kernel), F.max_pool2d(x, kernel, stride=kernel)):
            raw = self.mlp(pooled.view(pooled.size(0), -1))
            total = raw if total is None else total + raw
        scale = torch.sigmoid(total).unsqueeze(2).unsqueeze(3).expand_as(x)
        return x * scale


class OfficialSpatialGate(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 1, 7, padding=3, bias=False)
        self.bn = nn.BatchNorm2d(1, eps=1e-5, momentum=0.01)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = torch.cat((torch.max(x, 1)[0].unsqueeze(1), torch.mean(x, 1).unsqueeze(1)), dim=1)
        return x * torch.sigmoid(self.bn(self.conv(pooled)))


class OfficialCbam(nn.Sequential):
    def __init__(self, channels: int) -> None:
        super().__init__(OfficialChannelGate(channels), OfficialSpatialGate())


class SpatialOnly(nn.Module):
    """Spatial attention alone: sigmoid(conv7x7([mean_c; max_c])) * x."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 1, 7, padding=3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = torch.cat([x.mean(1, keepdim=True), x.amax(1, keepdim=True)], 1)
        return x * torch.sigmoid(self.conv(pooled))


# --- ResNets ---------------------------------------------------------------------------------


def _projection(cin: int, cout: int, stride: int) -> nn.Module:
    if stride == 1 and cin == cout:
        return nn.Identity()
    return conv_bn(cin, cout, 1, stride=stride, relu=False)


class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, attention: nn.Module) -> None:
        super().__init__()
        self.conv1 = conv_bn(cin, cout, stride=stride)
        self.conv2 = conv_bn(cout, cout, relu=False)
        self.attention = attention
        self.shortcut = _projection(cin, cout, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.attention(self.conv2(self.conv1(x))) + self.shortcut(x))


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, cin: int, width: int, stride: int, attention: nn.Module) -> None:
        super().__init__()
        cout = width * self.expansion
        self.conv1 = conv_bn(cin, width, 1)
        self.conv2 = conv_bn(width, width, 3, stride=stride)
        self.conv3 = conv_bn(width, cout, 1, relu=False)
        self.attention = attention
        self.shortcut = _projection(cin, cout, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.attention(self.conv3(self.conv2(self.conv1(x)))) + self.shortcut(x))


class ResNetBasicPaper(nn.Module):
    """Stem, a basic block, a stride-2 basic block with 1x1 projection; CBAM (the paper's
    form, tools/cbam_models.py) on each branch."""

    def __init__(self, style: cm.CbamStyle) -> None:
        super().__init__()
        self.stem = conv_bn(3, 16)
        self.layer1 = BasicBlock(16, 16, 1, cm.Cbam(16, style))
        self.layer2 = BasicBlock(16, 32, 2, cm.Cbam(32, style))
        self.fc = nn.Linear(32, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.layer2(self.layer1(self.stem(x)))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


class ResNetBottleneckOfficial(nn.Module):
    """Stride-2 stem, two bottleneck blocks (the second stride 2), each with a 1x1 projection
    shortcut and the official code's CBAM on the branch."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = conv_bn(3, 16, stride=2)
        self.layer1 = Bottleneck(16, 8, 1, OfficialCbam(32))
        self.layer2 = Bottleneck(32, 16, 2, OfficialCbam(64))
        self.fc = nn.Linear(64, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.layer2(self.layer1(self.stem(x)))
        x = F.avg_pool2d(x, x.size(3))
        return self.fc(x.view(x.size(0), -1))


class ResNet8(nn.Module):
    """MLPerf Tiny image classification ResNet-8 (3x32x32): 16-32-64 filters, 1x1 stride-2
    conv shortcuts without BN, 8x8 average pool, dense, softmax."""

    def __init__(self, attention: bool = False) -> None:
        super().__init__()
        self.stem = conv_bn(3, 16)
        self.stacks = nn.ModuleList()
        cin = 16
        for cout, stride in ((16, 1), (32, 2), (64, 2)):
            shortcut = nn.Identity() if stride == 1 else nn.Conv2d(cin, cout, 1, stride=stride)
            self.stacks.append(nn.ModuleDict({
                "branch": nn.Sequential(conv_bn(cin, cout, stride=stride), conv_bn(cout, cout, relu=False)),
                "attention": SpatialOnly() if attention else nn.Identity(),
                "shortcut": shortcut,
            }))
            cin = cout
        self.fc = nn.Linear(64, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        for stack in self.stacks:
            x = F.relu(stack["attention"](stack["branch"](x)) + stack["shortcut"](x))
        x = torch.flatten(F.avg_pool2d(x, 8), 1)
        return torch.softmax(self.fc(x), dim=1)


class VggSpatial(nn.Module):
    """Plain VGG-style stack at 3x32x32: dilated convs, TF-style 'SAME' stride-2 convs written
    with an asymmetric ZeroPad2d, max pooling, spatial-only attention, a reshape flatten, a
    Dropout before the classifier."""

    def __init__(self) -> None:
        super().__init__()
        self.block1 = nn.Sequential(conv_bn(3, 16), conv_bn(16, 16, dilation=2, padding=2))
        self.down1 = nn.Sequential(nn.ZeroPad2d((0, 1, 0, 1)), conv_bn(16, 24, stride=2, padding=0))
        self.attn1 = SpatialOnly()
        self.block2 = nn.Sequential(conv_bn(24, 24), nn.MaxPool2d(2))
        self.down2 = nn.Sequential(nn.ZeroPad2d((0, 1, 0, 1)), conv_bn(24, 32, stride=2, padding=0))
        self.attn2 = SpatialOnly()
        self.dropout = nn.Dropout(0.3)
        self.fc = nn.Linear(32 * 4 * 4, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.attn1(self.down1(self.block1(x)))
        x = self.attn2(self.down2(self.block2(x)))
        return self.fc(self.dropout(x.reshape(x.shape[0], -1)))


# --- MobileNets ------------------------------------------------------------------------------


class InvertedResidual(nn.Module):
    """MobileNetV2 block: 1x1 expand + ReLU6, depthwise 3x3 + ReLU6, linear 1x1 projection,
    optional attention on the branch, residual add when the shape allows."""

    def __init__(self, cin: int, cout: int, stride: int, expand: int, attention: nn.Module | None = None,
                 act: type[nn.Module] = nn.ReLU6) -> None:
        super().__init__()
        hidden = cin * expand
        layers: list[nn.Module] = []
        if expand != 1:
            layers += [nn.Conv2d(cin, hidden, 1, bias=False), nn.BatchNorm2d(hidden), act()]
        layers += [nn.Conv2d(hidden, hidden, 3, stride, 1, groups=hidden, bias=False), nn.BatchNorm2d(hidden), act()]
        if attention is not None:
            layers.append(attention)
        layers += [nn.Conv2d(hidden, cout, 1, bias=False), nn.BatchNorm2d(cout)]
        self.branch = nn.Sequential(*layers)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.branch(x)
        return x + y if self.residual else y


class MobileNetV2Small(nn.Module):
    """MobileNetV2 shape at small width; `se` picks the attention inside each expanded block:
    None, or a torchvision SqueezeExcitation with a sigmoid or hard-sigmoid gate (the latter
    with Hardswish activations, as in MobileNetV3)."""

    def __init__(self, se: str | None = None) -> None:
        super().__init__()
        from torchvision.ops import SqueezeExcitation

        act = nn.Hardswish if se == "hardsigmoid" else nn.ReLU6

        def attention(channels: int) -> nn.Module | None:
            if se is None:
                return None
            gate = nn.Hardsigmoid if se == "hardsigmoid" else nn.Sigmoid
            return SqueezeExcitation(channels, max(4, channels // 4), scale_activation=gate)

        self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, 2, 1, bias=False), nn.BatchNorm2d(16), act())
        blocks, cin = [], 16
        for cout, stride, expand in ((8, 1, 1), (16, 2, 4), (16, 1, 4), (24, 2, 4), (24, 1, 4), (32, 2, 4)):
            blocks.append(InvertedResidual(cin, cout, stride, expand, attention(cin * expand), act))
            cin = cout
        self.blocks = nn.Sequential(*blocks)
        self.head = nn.Sequential(nn.Conv2d(cin, 64, 1, bias=False), nn.BatchNorm2d(64), act())
        self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(64, 10))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.head(self.blocks(self.stem(x)))
        return self.classifier(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))
