"""GPUNet building blocks: timm's EfficientNet layers, configured to reproduce NVIDIA exactly.

timm's ``ConvNormAct``, ``EdgeResidual`` (Fused-IRB), ``InvertedResidual`` (IRB) and
``SqueezeExcite`` bring device / dtype factories, dilation and norm / act injection; the
NVIDIA quirks are expressed through their arguments (``pad_type``, ``partial(BatchNormAct2d,
eps=...)``, ``rd_ratio`` + ``rd_round_fn``). Own code only where timm cannot express a quirk:

- ``DistillIRB``: NVIDIA's distill IRB expands to exactly ``in * e`` channels; timm's
  ``InvertedResidual`` always rounds the mid width to a multiple of 8.
- ``conv_padding`` (in :mod:`gpunet.spec`): stride-2 Fused-IRB convs of the standard family are
  unpadded (GPUNet-0: 160 -> 79 -> 39); passed to timm as an integer ``pad_type``.
"""
from functools import partial
from typing import Optional

from torch import nn
from timm.layers import BatchNormAct2d, ConvNormAct, DropPath, create_conv2d, get_act_layer, make_divisible
from timm.models._efficientnet_blocks import EdgeResidual, InvertedResidual, SqueezeExcite

from .spec import BN_EPS, conv_padding

__all__ = [
    "conv_norm_act", "fused_irb", "irb", "DistillIRB", "norm_act_layer", "act_layer", "conv_padding",
    "irb_mid_channels", "se_layer", "BN_EPS",
]

_ACTS = {"relu": "relu", "swish": "silu"}


def act_layer(name: Optional[str]):
    """``relu`` -> ReLU, ``swish`` -> SiLU (timm's activation factory)."""
    if name not in _ACTS:
        raise ValueError(f"unknown activation {name!r}; expected 'relu' or 'swish'")
    return get_act_layer(_ACTS[name])


def norm_act_layer(family: str):
    """BatchNorm + act with the family's eps (NVIDIA's standard builder uses TF-style 1e-3)."""
    return partial(BatchNormAct2d, eps=BN_EPS[family])


def irb_mid_channels(in_channels: int, expansion: float, family: str) -> int:
    """Expanded width: nearest multiple of 8 (standard) or exactly ``in * e`` (distill)."""
    if family == "distill":
        return int(in_channels * expansion)
    return make_divisible(in_channels * expansion, 8)


def se_layer(expansion: float):
    """SE squeezing to a quarter of the block's *input* width (timm's ``se_from_exp``), rounded."""
    return partial(SqueezeExcite, rd_ratio=0.25 / expansion, rd_round_fn=round)


def _pad(pad: int, kernel_size: int, stride: int, dilation: int):
    """timm's symmetric default (``''``) unless NVIDIA's padding differs (then the integer, which
    timm also applies to 1x1 convs of the block: only 0 is ever passed). Dilated convs (stride
    turned into dilation) always pad symmetrically."""
    if dilation > 1 or pad == ((stride - 1) + (kernel_size - 1)) // 2:
        return ""
    return pad


def conv_norm_act(in_channels: int, out_channels: int, kernel_size: int, stride: int, act: str,
                  family: str, padding: Optional[int] = None, dilation: int = 1, **dd) -> ConvNormAct:
    """Conv (no bias) -> BatchNorm -> act: stem convs, ``conv`` blocks and the 1x1 head conv."""
    pad = conv_padding("conv", kernel_size, stride, family) if padding is None else padding
    return ConvNormAct(in_channels, out_channels, kernel_size, stride, padding=_pad(pad, kernel_size, stride, dilation),
                       dilation=dilation, norm_layer=norm_act_layer(family), act_layer=act_layer(act), **dd)


def fused_irb(in_channels: int, out_channels: int, kernel_size: int, stride: int, expansion: float,
              act: str, se: bool, family: str, dilation: int = 1, drop_path_rate: float = 0.0,
              **dd) -> EdgeResidual:
    """Fused-IRB (EfficientNetV2's Fused-MBConv) = timm's ``EdgeResidual``."""
    pad = conv_padding("fused_irb", kernel_size, stride, family)
    return EdgeResidual(in_channels, out_channels, kernel_size, stride, dilation=dilation,
                        pad_type=_pad(pad, kernel_size, stride, dilation), exp_ratio=expansion,
                        act_layer=act_layer(act), norm_layer=norm_act_layer(family),
                        se_layer=se_layer(expansion) if se else None,
                        drop_path_rate=drop_path_rate, **dd)


def irb(in_channels: int, out_channels: int, kernel_size: int, stride: int, expansion: float,
        act: str, se: bool, family: str, dilation: int = 1, drop_path_rate: float = 0.0, **dd) -> nn.Module:
    """IRB (MobileNetV2 / MBConv) = timm's ``InvertedResidual``; :class:`DistillIRB` for exact widths."""
    kwargs = dict(dilation=dilation, act_layer=act_layer(act), norm_layer=norm_act_layer(family),
                  se_layer=se_layer(expansion) if se else None, drop_path_rate=drop_path_rate, **dd)
    if family == "distill":
        return DistillIRB(in_channels, out_channels, kernel_size, stride,
                          mid_channels=irb_mid_channels(in_channels, expansion, family), **kwargs)
    return InvertedResidual(in_channels, out_channels, kernel_size, stride, exp_ratio=expansion, **kwargs)


class DistillIRB(InvertedResidual):
    """timm's ``InvertedResidual`` (same forward, names, feature hooks) with an exact mid width."""

    def __init__(self, in_chs: int, out_chs: int, dw_kernel_size: int = 3, stride: int = 1,
                 dilation: int = 1, mid_channels: int = 0, act_layer=nn.ReLU, norm_layer=nn.BatchNorm2d,
                 se_layer=None, drop_path_rate: float = 0.0, device=None, dtype=None):
        nn.Module.__init__(self)
        dd = dict(device=device, dtype=dtype)
        norm_act = partial(norm_layer, act_layer=act_layer)
        mid = mid_channels
        self.has_skip = in_chs == out_chs and stride == 1
        self.conv_s2d = self.bn_s2d = None
        self.conv_pw = create_conv2d(in_chs, mid, 1, **dd)
        self.bn1 = norm_act(mid, inplace=True, **dd)
        self.conv_dw = create_conv2d(mid, mid, dw_kernel_size, stride=stride, dilation=dilation,
                                     groups=mid, **dd)
        self.bn2 = norm_act(mid, inplace=True, **dd)
        self.aa = nn.Identity()
        self.se = se_layer(mid, act_layer=act_layer, **dd) if se_layer else nn.Identity()
        self.conv_pwl = create_conv2d(mid, out_chs, 1, **dd)
        self.bn3 = norm_act(out_chs, apply_act=False, **dd)
        self.drop_path = DropPath(drop_path_rate) if drop_path_rate else nn.Identity()
