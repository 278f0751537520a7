"""GPUNet building blocks: Conv-BN-Act, Squeeze-Excitation, Fused-IRB and IRB.

Each block is a small module with timm-style parameter names (``conv_pw``, ``bn1``, ...).
The two NVIDIA module families differ only in constructor arguments (BatchNorm eps,
how IRB mid channels are rounded, SE), so one class per block serves both.
"""
from __future__ import annotations

from typing import Optional

import torch
from torch import nn
from timm.layers import DropPath, make_divisible

__all__ = [
    "ConvBnAct", "SqueezeExcite", "FusedIRB", "IRB", "make_act", "conv_padding", "se_channels",
    "irb_mid_channels", "BN_EPS",
]

#: BatchNorm eps per module family (NVIDIA's standard builder uses TF-style 1e-3).
BN_EPS = {"standard": 1e-3, "distill": 1e-5}


def make_act(name: Optional[str]) -> nn.Module:
    """``relu`` -> ReLU, ``swish`` -> SiLU."""
    if name == "relu":
        return nn.ReLU(inplace=True)
    if name == "swish":
        return nn.SiLU(inplace=True)
    raise ValueError(f"unknown activation {name!r}; expected 'relu' or 'swish'")


def conv_padding(kind: str, kernel_size: int, stride: int, family: str) -> int:
    """Padding NVIDIA's builders use: ``k // 2`` except stride-2 Fused-IRB convs in the
    standard family, which are unpadded (GPUNet-0: 160 -> 79 -> 39)."""
    if family == "standard" and kind == "fused_irb" and stride == 2:
        return 0
    return ((stride - 1) + (kernel_size - 1)) // 2


def irb_mid_channels(in_channels: int, expansion: float, family: str) -> int:
    """Expanded width: nearest multiple of 8 (standard) or exactly ``in * e`` (distill)."""
    if family == "distill":
        return int(in_channels * expansion)
    return make_divisible(in_channels * expansion, 8)


def se_channels(mid_channels: int, expansion: float) -> int:
    """SE bottleneck width: a quarter of the block's *input* width, i.e. mid * 0.25 / e."""
    return round(mid_channels * 0.25 / expansion)


class ConvBnAct(nn.Module):
    """Conv (no bias) -> BatchNorm -> activation, with an optional identity shortcut."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, stride: int = 1,
                 act: Optional[str] = "relu", bn_eps: float = 1e-5, padding: Optional[int] = None,
                 skip: bool = False, drop_path_rate: float = 0.0):
        super().__init__()
        padding = kernel_size // 2 if padding is None else padding
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding, bias=False)
        self.bn = nn.BatchNorm2d(out_channels, eps=bn_eps)
        self.act = make_act(act) if act else nn.Identity()
        self.has_skip = skip and stride == 1 and in_channels == out_channels
        self.drop_path = DropPath(drop_path_rate) if self.has_skip and drop_path_rate > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x
        x = self.act(self.bn(self.conv(x)))
        if self.has_skip:
            x = self.drop_path(x) + shortcut
        return x


class SqueezeExcite(nn.Module):
    """Spatial mean -> 1x1 conv (reduce) -> act -> 1x1 conv (expand) -> sigmoid gate."""

    def __init__(self, channels: int, rd_channels: int, act: str = "relu"):
        super().__init__()
        self.conv_reduce = nn.Conv2d(channels, rd_channels, 1, bias=True)
        self.act = make_act(act)
        self.conv_expand = nn.Conv2d(rd_channels, channels, 1, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = x.mean((2, 3), keepdim=True)
        s = self.conv_expand(self.act(self.conv_reduce(s)))
        return x * torch.sigmoid(s)


class FusedIRB(nn.Module):
    """Fused inverted residual (EfficientNetV2's Fused-MBConv): kxk expand conv, BN, act,
    optional SE, 1x1 project, BN; identity shortcut when shape is kept."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, stride: int = 1,
                 expansion: float = 4.0, act: str = "relu", se: bool = False, bn_eps: float = 1e-3,
                 padding: Optional[int] = None, drop_path_rate: float = 0.0):
        super().__init__()
        mid = make_divisible(in_channels * expansion, 8)
        padding = kernel_size // 2 if padding is None else padding
        self.conv_exp = nn.Conv2d(in_channels, mid, kernel_size, stride, padding, bias=False)
        self.bn1 = nn.BatchNorm2d(mid, eps=bn_eps)
        self.act = make_act(act)
        self.se = SqueezeExcite(mid, se_channels(mid, expansion), act) if se else nn.Identity()
        self.conv_pwl = nn.Conv2d(mid, out_channels, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels, eps=bn_eps)
        self.has_skip = stride == 1 and in_channels == out_channels
        self.drop_path = DropPath(drop_path_rate) if self.has_skip and drop_path_rate > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x
        x = self.act(self.bn1(self.conv_exp(x)))
        x = self.se(x)
        x = self.bn2(self.conv_pwl(x))
        if self.has_skip:
            x = self.drop_path(x) + shortcut
        return x


class IRB(nn.Module):
    """Inverted residual (MobileNetV2 / MBConv): 1x1 expand, BN, act, kxk depthwise, BN, act,
    optional SE, 1x1 project, BN; identity shortcut when shape is kept."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, stride: int = 1,
                 expansion: float = 4.0, act: str = "relu", se: bool = False, bn_eps: float = 1e-3,
                 mid_channels: Optional[int] = None, drop_path_rate: float = 0.0):
        super().__init__()
        mid = mid_channels or make_divisible(in_channels * expansion, 8)
        self.conv_pw = nn.Conv2d(in_channels, mid, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(mid, eps=bn_eps)
        self.act1 = make_act(act)
        self.conv_dw = nn.Conv2d(mid, mid, kernel_size, stride, kernel_size // 2, groups=mid, bias=False)
        self.bn2 = nn.BatchNorm2d(mid, eps=bn_eps)
        self.act2 = make_act(act)
        self.se = SqueezeExcite(mid, se_channels(mid, expansion), act) if se else nn.Identity()
        self.conv_pwl = nn.Conv2d(mid, out_channels, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_channels, eps=bn_eps)
        self.has_skip = stride == 1 and in_channels == out_channels
        self.drop_path = DropPath(drop_path_rate) if self.has_skip and drop_path_rate > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x
        x = self.act1(self.bn1(self.conv_pw(x)))
        x = self.act2(self.bn2(self.conv_dw(x)))
        x = self.se(x)
        x = self.bn3(self.conv_pwl(x))
        if self.has_skip:
            x = self.drop_path(x) + shortcut
        return x
