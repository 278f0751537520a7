"""Decode a :class:`~gpunet.spec.NetworkSpec` into modules (timm's EfficientNetBuilder role).

``build_model(spec)`` is the public entry point; :class:`gpunet.model.GPUNet` calls the
``build_*`` helpers here for its stem, stages and head.
"""
from __future__ import annotations

from typing import List, Optional

from torch import nn

from .blocks import BN_EPS, ConvBnAct, FusedIRB, IRB, conv_padding, irb_mid_channels
from .spec import LayerSpec, NetworkSpec

__all__ = ["build_model", "build_stem", "build_stages", "build_block", "drop_path_rates", "Stem"]


class Stem(nn.Sequential):
    """One (``head``) or three (``head_large``) 3x3 Conv-BN-Act; the first has stride 2."""

    def __init__(self, layer: LayerSpec, family: str, in_channels: Optional[int] = None):
        super().__init__()
        act = layer.act or ("swish" if family == "standard" else "relu")
        eps = BN_EPS[family]
        cin = in_channels or layer.in_channels
        n = 3 if layer.kind == "head_large" else 1
        for i in range(n):
            stride = 2 if i == 0 else 1
            self.add_module(str(i), ConvBnAct(cin, layer.out_channels, 3, stride, act, eps,
                                              padding=conv_padding("head", 3, stride, family)))
            cin = layer.out_channels
        self.out_channels = layer.out_channels



def drop_path_rates(spec: NetworkSpec, drop_path_rate: float) -> List[float]:
    """Per-layer drop-path rate, NVIDIA's schedule: ``rate * p / (N - 1)`` for the entry at
    position ``p`` of the NVIDIA file (``p = index + 1``, ``N - 1 = len(spec.layers)``)."""
    n = len(spec.layers)
    return [drop_path_rate * (i + 1) / n for i in range(n)]


def build_block(layer: LayerSpec, family: str, drop_path_rate: float = 0.0) -> nn.Module:
    """One body block (``conv``, ``fused_irb`` or ``irb``) of the given family."""
    eps = BN_EPS[family]
    pad = conv_padding(layer.kind, layer.kernel_size, layer.stride, family)
    if layer.kind == "conv":
        return ConvBnAct(layer.in_channels, layer.out_channels, layer.kernel_size, layer.stride,
                         layer.act or "relu", eps, padding=pad)
    if layer.kind == "fused_irb":
        return FusedIRB(layer.in_channels, layer.out_channels, layer.kernel_size, layer.stride,
                        layer.expansion, layer.act or "relu", layer.se, eps, padding=pad,
                        drop_path_rate=drop_path_rate)
    if layer.kind == "irb":
        mid = irb_mid_channels(layer.in_channels, layer.expansion, family)
        return IRB(layer.in_channels, layer.out_channels, layer.kernel_size, layer.stride,
                   layer.expansion, layer.act or "relu", layer.se, eps, mid_channels=mid,
                   drop_path_rate=drop_path_rate)
    raise ValueError(f"layer type {layer.kind!r} is not a body block")


def build_stem(spec: NetworkSpec, in_channels: Optional[int] = None) -> Stem:
    return Stem(spec.stem, spec.family, in_channels)


def build_stages(spec: NetworkSpec, drop_path_rate: float = 0.0) -> nn.Sequential:
    """Body blocks grouped into one ``nn.Sequential`` per search-space stage."""
    rates = drop_path_rates(spec, drop_path_rate)
    stages = []
    for _stage_id, indices in spec.stages():
        stages.append(nn.Sequential(*[build_block(spec.layers[i], spec.family, rates[i]) for i in indices]))
    return nn.Sequential(*stages)


def build_model(spec: NetworkSpec, **kwargs) -> nn.Module:
    """Build a :class:`~gpunet.model.GPUNet` from a spec or a spec file (hub names: ``get_model``).

    Keyword arguments are those of :class:`~gpunet.model.GPUNet` (``num_classes``,
    ``in_chans``, ``drop_rate``, ``drop_path_rate``, ``global_pool``).
    """
    from .model import GPUNet
    from .spec import load_spec

    if not isinstance(spec, NetworkSpec):
        spec = load_spec(spec)
    return GPUNet(spec, **kwargs)
