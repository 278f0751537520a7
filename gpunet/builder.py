"""Decode a :class:`~gpunet.spec.NetworkSpec` into modules (timm's ``EfficientNetBuilder`` role).

The builder knows specs and blocks, not the model class (:func:`gpunet.model.build_model` is the
entry point). As it builds the stages it converts strides beyond ``output_stride`` into
dilations and records ``feature_info``, exactly as timm's EfficientNet builder does.
"""
from typing import Dict, List, Optional, Tuple

from torch import nn

from .blocks import conv_norm_act, fused_irb, irb
from .spec import LayerSpec, NetworkSpec, conv_padding

__all__ = ["build_stem", "build_stages", "build_block", "build_conv_head", "drop_path_rates", "Stem"]


class Stem(nn.Sequential):
    """One (``head``) or three (``head_large``) 3x3 Conv-BN-Act; the first has stride 2."""

    def __init__(self, layer: LayerSpec, family: str, in_channels: Optional[int] = None, **dd):
        super().__init__()
        act = layer.act or ("swish" if family == "standard" else "relu")
        cin = in_channels or layer.in_channels
        for i in range(3 if layer.kind == "head_large" else 1):
            stride = 2 if i == 0 else 1
            self.add_module(str(i), conv_norm_act(cin, layer.out_channels, 3, stride, act, family,
                                                  padding=conv_padding("head", 3, stride, family), **dd))
            cin = layer.out_channels
        self.out_channels = layer.out_channels


def drop_path_rates(spec: NetworkSpec, drop_path_rate: float) -> List[float]:
    """Per-layer drop-path rate, NVIDIA's schedule: ``rate * p / (N - 1)`` for the entry at
    position ``p`` of the NVIDIA file (``p = index + 1``, ``N - 1 = len(spec.layers)``)."""
    n = len(spec.layers)
    return [drop_path_rate * (i + 1) / n for i in range(n)]


def build_block(layer: LayerSpec, family: str, drop_path_rate: float = 0.0, *, stride: Optional[int] = None,
                dilation: int = 1, **dd) -> nn.Module:
    """One body block (``conv``, ``fused_irb`` or ``irb``); ``stride`` overrides the spec's
    (the builder passes 1 where it turned a stride into ``dilation``)."""
    stride = layer.stride if stride is None else stride
    act = layer.act or "relu"
    if layer.kind == "conv":
        pad = conv_padding("conv", layer.kernel_size, stride, family)
        return conv_norm_act(layer.in_channels, layer.out_channels, layer.kernel_size, stride, act, family,
                             padding=pad, dilation=dilation, **dd)
    if layer.kind in ("fused_irb", "irb"):
        make = fused_irb if layer.kind == "fused_irb" else irb
        return make(layer.in_channels, layer.out_channels, layer.kernel_size, stride, layer.expansion, act,
                    layer.se, family, dilation=dilation, drop_path_rate=drop_path_rate, **dd)
    raise ValueError(f"layer type {layer.kind!r} is not a body block")


def build_stem(spec: NetworkSpec, in_channels: Optional[int] = None, **dd) -> Stem:
    return Stem(spec.stem, spec.family, in_channels, **dd)


def build_stages(spec: NetworkSpec, drop_path_rate: float = 0.0, output_stride: Optional[int] = None,
                 **dd) -> Tuple[nn.Sequential, List[Dict]]:
    """Body blocks, one ``nn.Sequential`` per search-space stage, and their ``feature_info``.

    A feature level is recorded at the end of each stage after which the (nominal) stride
    grows, and at the last stage; ``reduction`` is the stride actually reached, so with
    ``output_stride=16`` the last two levels both report 16 (timm's convention). ``None`` keeps
    every stride (NVIDIA's published networks, bit-exact).
    """
    if output_stride is None:  # the network's own (32; 64 for GPUNet-P0 / P1)
        # (at least 4, so a network without a stride-2 body block builds as written too)
        output_stride = max(4, 2 ** (1 + sum(layer.stride.bit_length() - 1 for layer in spec.body)))
    if isinstance(output_stride, bool) or not isinstance(output_stride, int) or output_stride < 4 \
            or output_stride & (output_stride - 1):
        raise ValueError(f"output_stride must be a power of two >= 4 (8, 16, 32), got {output_stride!r}")
    rates = drop_path_rates(spec, drop_path_rate)
    groups = spec.stages()
    current_stride, dilation = 2, 1  # after the stem
    stages, feature_info = [], []
    for g, (_stage_id, indices) in enumerate(groups):
        blocks = []
        for i in indices:
            layer = spec.layers[i]
            stride, next_dilation = layer.stride, dilation
            if stride > 1:
                if current_stride * stride > output_stride:
                    next_dilation, stride = dilation * stride, 1
                else:
                    current_stride *= stride
            blocks.append(build_block(layer, spec.family, rates[i], stride=stride, dilation=dilation, **dd))
            dilation = next_dilation
        stages.append(nn.Sequential(*blocks))
        last = g == len(groups) - 1
        if last or any(spec.layers[i].stride > 1 for i in groups[g + 1][1]):
            feature_info.append(dict(num_chs=spec.layers[indices[-1]].out_channels, reduction=current_stride,
                                     module=f"stages.{g}", stage=g))
    return nn.Sequential(*stages), feature_info


def build_conv_head(spec: NetworkSpec, **dd) -> nn.Module:
    """The spec's ``tail`` up to pooling: 1x1 Conv-BN-ReLU to ``num_features``."""
    tail = spec.tail
    return conv_norm_act(tail.in_channels, tail.out_channels, 1, 1, "relu", spec.family, **dd)
