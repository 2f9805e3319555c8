"""CBAM (Woo et al., ECCV 2018) and the two Fashion-MNIST example networks.

A `CbamStyle` changes only which ONNX operators a CBAM block exports to. Every style with
the same `spatial_k` and `mlp_bias` computes the same function from equivalent parameters,
so one trained state dict serves all of them (`convert_state_dict` reshapes the parameters
that are stored differently: Linear vs 1x1-conv MLP weights, the swapped input channels of
the spatial conv in `max_mean` order, and a spatial BatchNorm that reproduces the bias).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

POOLINGS = ("adaptive", "reduce", "pool")
MLP_KINDS = ("linear", "conv")
SPATIAL_ORDERS = ("mean_max", "max_mean")

# How much the spatial BatchNorm style scales the conv output, so the exported BN is not
# an identity that an importer could get right by ignoring it.
_SPATIAL_BN_GAIN = 2.0
_SPATIAL_BN_MEAN = 0.1
_SPATIAL_BN_VAR = 0.25


@dataclass(frozen=True)
class CbamStyle:
    pooling: str = "adaptive"
    mlp: str = "linear"
    spatial_order: str = "mean_max"
    spatial_bn: bool = False
    spatial_k: int = 7
    mlp_bias: bool = True

    def __post_init__(self) -> None:
        if self.pooling not in POOLINGS:
            raise ValueError(f"pooling {self.pooling!r} is not one of {POOLINGS}")
        if self.mlp not in MLP_KINDS:
            raise ValueError(f"mlp {self.mlp!r} is not one of {MLP_KINDS}")
        if self.spatial_order not in SPATIAL_ORDERS:
            raise ValueError(f"spatial_order {self.spatial_order!r} is not one of {SPATIAL_ORDERS}")
        if self.spatial_k not in (3, 7):
            raise ValueError(f"spatial_k {self.spatial_k} must be 3 or 7 (the paper's choices)")

    def as_dict(self) -> dict:
        return asdict(self)


class GlobalPool(nn.Module):
    """Global average or max pooling to (N, C, 1, 1), exported as the chosen ONNX form."""

    def __init__(self, kind: str, pooling: str) -> None:
        super().__init__()
        if kind not in ("avg", "max"):
            raise ValueError(f"pool kind {kind!r} must be 'avg' or 'max'")
        self.kind = kind
        self.pooling = pooling

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.pooling == "adaptive":
            # GlobalAveragePool / GlobalMaxPool in the legacy exporter.
            if self.kind == "avg":
                return F.adaptive_avg_pool2d(x, 1)
            return F.adaptive_max_pool2d(x, 1)
        if self.pooling == "reduce":
            if self.kind == "avg":
                return torch.mean(x, dim=(2, 3), keepdim=True)
            return torch.amax(x, dim=(2, 3), keepdim=True)
        kernel = (int(x.shape[2]), int(x.shape[3]))
        if self.kind == "avg":
            return F.avg_pool2d(x, kernel)
        return F.max_pool2d(x, kernel)


class SharedMlp(nn.Module):
    """The channel-attention MLP C -> C/r -> C, shared by the average and max branches."""

    def __init__(self, channels: int, hidden: int, kind: str, bias: bool) -> None:
        super().__init__()
        self.kind = kind
        self.channels = channels
        if kind == "linear":
            self.fc1 = nn.Linear(channels, hidden, bias=bias)
            self.fc2 = nn.Linear(hidden, channels, bias=bias)
        else:
            self.fc1 = nn.Conv2d(channels, hidden, 1, bias=bias)
            self.fc2 = nn.Conv2d(hidden, channels, 1, bias=bias)

    def forward(self, pooled: torch.Tensor) -> torch.Tensor:
        z = torch.flatten(pooled, 1) if self.kind == "linear" else pooled
        z = self.fc2(F.relu(self.fc1(z)))
        # A constant target shape keeps the exported Reshape free of Shape/Gather chains.
        return z.reshape(-1, self.channels, 1, 1) if self.kind == "linear" else z


class ChannelAttention(nn.Module):
    def __init__(self, channels: int, reduction: int, style: CbamStyle) -> None:
        super().__init__()
        hidden = max(1, channels // reduction)
        self.avg = GlobalPool("avg", style.pooling)
        self.max = GlobalPool("max", style.pooling)
        self.mlp = SharedMlp(channels, hidden, style.mlp, style.mlp_bias)

    def weights(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.mlp(self.avg(x)) + self.mlp(self.max(x)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.weights(x)


class SpatialAttention(nn.Module):
    def __init__(self, style: CbamStyle) -> None:
        super().__init__()
        k = style.spatial_k
        self.mean_first = style.spatial_order == "mean_max"
        self.conv = nn.Conv2d(2, 1, k, padding=k // 2, bias=not style.spatial_bn)
        self.bn = nn.BatchNorm2d(1) if style.spatial_bn else None

    def weights(self, x: torch.Tensor) -> torch.Tensor:
        mean = torch.mean(x, dim=1, keepdim=True)
        mx = torch.amax(x, dim=1, keepdim=True)
        s = torch.cat([mean, mx] if self.mean_first else [mx, mean], dim=1)
        s = self.conv(s)
        if self.bn is not None:
            s = self.bn(s)
        return torch.sigmoid(s)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.weights(x)


class Cbam(nn.Module):
    """F' = Mc(F) * F, then F'' = Ms(F') * F'."""

    def __init__(self, channels: int, style: CbamStyle, reduction: int = 8) -> None:
        super().__init__()
        self.channel = ChannelAttention(channels, reduction, style)
        self.spatial = SpatialAttention(style)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.spatial(self.channel(x))


def _cbam_or_identity(channels: int, style: CbamStyle | None) -> nn.Module:
    return nn.Identity() if style is None else Cbam(channels, style)


class ConvBn(nn.Sequential):
    def __init__(self, cin: int, cout: int, k: int = 3, stride: int = 1, relu: bool = True):
        layers: list[nn.Module] = [
            nn.Conv2d(cin, cout, k, stride=stride, padding=k // 2, bias=False),
            nn.BatchNorm2d(cout),
        ]
        if relu:
            layers.append(nn.ReLU(inplace=False))
        super().__init__(*layers)


class Head(nn.Module):
    def __init__(self, channels: int, classes: int) -> None:
        super().__init__()
        self.fc = nn.Linear(channels, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


class FmnistCbam(nn.Module):
    """Plain CNN: conv-bn-relu blocks, CBAM after three of them, max-pool downsampling.

    `style=None` builds the same network with every CBAM block removed.
    """

    def __init__(self, style: CbamStyle | None = CbamStyle(), classes: int = 10) -> None:
        super().__init__()
        self.stem = ConvBn(1, 24)
        self.pool1 = nn.MaxPool2d(2)
        self.conv2 = ConvBn(24, 32)
        self.cbam2 = _cbam_or_identity(32, style)
        self.conv3 = ConvBn(32, 48)
        self.cbam3 = _cbam_or_identity(48, style)
        self.pool3 = nn.MaxPool2d(2)
        self.conv4 = ConvBn(48, 64)
        self.cbam4 = _cbam_or_identity(64, style)
        self.head = Head(64, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool1(self.stem(x))
        x = self.cbam2(self.conv2(x))
        x = self.pool3(self.cbam3(self.conv3(x)))
        x = self.cbam4(self.conv4(x))
        return self.head(x)


class BasicBlock(nn.Module):
    """ResNet basic block with CBAM on the residual branch before the add (paper, Fig. 3)."""

    def __init__(self, cin: int, cout: int, stride: int, style: CbamStyle | None) -> None:
        super().__init__()
        self.conv1 = ConvBn(cin, cout, stride=stride)
        self.conv2 = ConvBn(cout, cout, relu=False)
        self.cbam = _cbam_or_identity(cout, style)
        needs_projection = stride != 1 or cin != cout
        self.shortcut = ConvBn(cin, cout, k=1, stride=stride, relu=False) if needs_projection else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        branch = self.cbam(self.conv2(self.conv1(x)))
        return F.relu(branch + self.shortcut(x))


class FmnistCbamRes(nn.Module):
    """Stem, an identity block at 32 channels, a projection block to 64, an identity block."""

    def __init__(self, style: CbamStyle | None = CbamStyle(), classes: int = 10) -> None:
        super().__init__()
        self.stem = ConvBn(1, 32)
        self.pool1 = nn.MaxPool2d(2)
        self.layer1 = BasicBlock(32, 32, 1, style)
        self.layer2 = BasicBlock(32, 64, 2, style)
        self.layer3 = BasicBlock(64, 64, 1, style)
        self.head = Head(64, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool1(self.stem(x))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.head(x)


ARCHITECTURES = {"fmnist_cbam": FmnistCbam, "fmnist_cbam_res": FmnistCbamRes}


def build(arch: str, style: CbamStyle | None) -> nn.Module:
    if arch not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {arch!r}; choose one of {sorted(ARCHITECTURES)}")
    return ARCHITECTURES[arch](style)


def count_cbam_blocks(model: nn.Module) -> int:
    return sum(1 for m in model.modules() if isinstance(m, Cbam))


def _convert_cbam_entry(key: str, value: torch.Tensor, src: CbamStyle, dst: CbamStyle) -> dict:
    """Map one CBAM parameter from `src` style storage to `dst` style storage."""
    if ".channel.mlp.fc" in key and key.endswith(".weight") and src.mlp != dst.mlp:
        if dst.mlp == "conv":
            return {key: value.reshape(*value.shape, 1, 1)}
        return {key: value.reshape(value.shape[0], value.shape[1])}
    if ".channel.mlp.fc" in key and key.endswith(".bias") and not dst.mlp_bias:
        raise ValueError(f"{key}: a bias-free MLP cannot reproduce a trained bias; fine-tune instead")
    if key.endswith(".spatial.conv.weight"):
        if value.shape[-1] != dst.spatial_k:
            raise ValueError(f"{key}: kernel {value.shape[-1]} cannot become {dst.spatial_k}; fine-tune instead")
        if src.spatial_order != dst.spatial_order:
            value = value.flip(1)
        if dst.spatial_bn and not src.spatial_bn:
            value = value / _SPATIAL_BN_GAIN
        return {key: value}
    if key.endswith(".spatial.conv.bias") and dst.spatial_bn:
        return _spatial_bn_entries(key.removesuffix(".conv.bias"), value)
    return {key: value}


def _spatial_bn_entries(prefix: str, bias: torch.Tensor) -> dict:
    """A BatchNorm that multiplies by the gain and adds `bias`: the conv weight was divided by it."""
    eps = nn.BatchNorm2d(1).eps
    denom = (_SPATIAL_BN_VAR + eps) ** 0.5
    gamma = _SPATIAL_BN_GAIN * denom
    beta = bias + _SPATIAL_BN_GAIN * _SPATIAL_BN_MEAN
    return {
        f"{prefix}.bn.weight": torch.full_like(bias, gamma),
        f"{prefix}.bn.bias": beta,
        f"{prefix}.bn.running_mean": torch.full_like(bias, _SPATIAL_BN_MEAN),
        f"{prefix}.bn.running_var": torch.full_like(bias, _SPATIAL_BN_VAR),
        f"{prefix}.bn.num_batches_tracked": torch.tensor(0),
    }


def convert_state_dict(state: dict, src: CbamStyle, dst: CbamStyle) -> dict:
    """Re-store a state dict trained in `src` style for a module built in `dst` style.

    Supports the storage-only differences (pooling, MLP kind, spatial order, adding a
    spatial BatchNorm). A different kernel size or dropping trained biases changes the
    function and raises: those variants are fine-tuned instead.
    """
    if src.spatial_bn and not dst.spatial_bn:
        raise ValueError("converting from a spatial-BN style is not supported; train in the base style")
    out: dict = {}
    for key, value in state.items():
        if ".spatial." in key or ".channel.mlp." in key:
            out.update(_convert_cbam_entry(key, value, src, dst))
        else:
            out[key] = value
    return out
