"""The GPUNet module, with the interface timm users expect.

Layout (clean names; :mod:`gpunet.nvidia` maps NVIDIA's checkpoint keys onto them)::

    stem            Conv-BN-Act (x1 or x3), stride 2
    stages.<i>.<j>  body blocks, one nn.Sequential per search-space stage
    conv_head       1x1 Conv-BN-ReLU to ``num_features``      (end of forward_features)
    global_pool     adaptive pooling
    conv_pre_logits 1x1 conv + ReLU after pooling (distill family only)
    classifier      Linear
"""
from __future__ import annotations

import math
from typing import Dict, List, Optional, Tuple, Union

import torch
import torch.nn.functional as F
from torch import nn
from timm.layers import SelectAdaptivePool2d
from timm.models._features import feature_take_indices
from timm.models._manipulate import checkpoint_seq

from .blocks import BN_EPS, ConvBnAct
from .builder import build_stages, build_stem
from .spec import NetworkSpec

__all__ = ["GPUNet"]


class GPUNet(nn.Module):
    """A GPUNet built from a :class:`~gpunet.spec.NetworkSpec`.

    Args:
        spec: the architecture.
        num_classes: classifier outputs (default: the spec's); 0 removes the classifier.
        in_chans: input channels (default 3).
        drop_rate: dropout before the classifier (NVIDIA's networks use 0.2).
        drop_path_rate: stochastic depth, scheduled linearly over the network as NVIDIA does.
        global_pool: ``'avg'`` (default), ``'max'``, ``'avgmax'``, ``'catavgmax'`` or ``''``.
    """

    def __init__(self, spec: NetworkSpec, num_classes: Optional[int] = None, in_chans: int = 3,
                 drop_rate: float = 0.2, drop_path_rate: float = 0.0, global_pool: str = "avg"):
        super().__init__()
        spec.validate()
        self.spec = spec
        self.num_classes = spec.num_classes if num_classes is None else num_classes
        self.in_chans = in_chans
        self.drop_rate = drop_rate
        self.grad_checkpointing = False

        self.stem = build_stem(spec, in_chans)
        self.stages = build_stages(spec, drop_path_rate)
        tail = spec.tail
        self.num_features = tail.out_channels
        self.conv_head = ConvBnAct(tail.in_channels, tail.out_channels, 1, 1, "relu", BN_EPS[spec.family])
        self.global_pool = SelectAdaptivePool2d(pool_type=global_pool, flatten=False)
        if tail.pre_logits_channels:
            pre = tail.pre_logits_channels
            self.conv_pre_logits = nn.Conv2d(self.num_features * self.global_pool.feat_mult(), pre, 1, bias=False)
            self.pre_logits_act = nn.ReLU(inplace=True)
            self.head_hidden_size = pre
        else:
            self.conv_pre_logits = None
            self.pre_logits_act = None
            self.head_hidden_size = self.num_features * self.global_pool.feat_mult()
        self.flatten = nn.Flatten(1) if global_pool else nn.Identity()
        self.classifier = (nn.Linear(self.head_hidden_size, self.num_classes) if self.num_classes > 0
                           else nn.Identity())
        self.feature_info = self._feature_info()
        self._stage_ends = [int(f["module"].split(".")[1]) for f in self.feature_info]
        _init_weights(self)

    # -- timm model interface --------------------------------------------------------------
    def _feature_info(self) -> List[Dict]:
        """One entry per output stride: the last stage that produces it (detection backbones)."""
        info: List[Dict] = []
        reduction = 2
        for i, stage in enumerate(self.stages):
            for block in stage:
                reduction *= _block_stride(block)
            channels = _block_out_channels(stage[-1])
            entry = dict(num_chs=channels, reduction=reduction, module=f"stages.{i}")
            if info and info[-1]["reduction"] == reduction:
                info[-1] = entry
            else:
                info.append(entry)
        return info

    @torch.jit.ignore
    def group_matcher(self, coarse: bool = False):
        return dict(
            stem=r"^stem",
            blocks=[
                (r"^stages\.(\d+)" if coarse else r"^stages\.(\d+)\.(\d+)", None),
                (r"^conv_head", (99999,)),
            ],
        )

    @torch.jit.ignore
    def set_grad_checkpointing(self, enable: bool = True) -> None:
        self.grad_checkpointing = enable

    @torch.jit.ignore
    def get_classifier(self) -> nn.Module:
        return self.classifier

    def reset_classifier(self, num_classes: int, global_pool: Optional[str] = None) -> None:
        self.num_classes = num_classes
        if global_pool is not None:
            old_mult = self.global_pool.feat_mult()
            self.global_pool = SelectAdaptivePool2d(pool_type=global_pool, flatten=False)
            self.flatten = nn.Flatten(1) if global_pool else nn.Identity()
            mult = self.global_pool.feat_mult()
            if self.conv_pre_logits is not None and mult != old_mult:
                self.conv_pre_logits = nn.Conv2d(self.num_features * mult, self.head_hidden_size, 1, bias=False)
            elif self.conv_pre_logits is None:
                self.head_hidden_size = self.num_features * mult
        p = next(self.parameters())
        self.classifier = (nn.Linear(self.head_hidden_size, num_classes, device=p.device, dtype=p.dtype)
                           if num_classes > 0 else nn.Identity())

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        if self.grad_checkpointing and not torch.jit.is_scripting():
            x = checkpoint_seq(self.stages, x, flatten=True)
        else:
            x = self.stages(x)
        return self.conv_head(x)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.global_pool(x)
        if self.conv_pre_logits is not None:
            x = self.pre_logits_act(self.conv_pre_logits(x))
        x = self.flatten(x)
        if pre_logits:
            return x
        if self.drop_rate > 0.0:
            x = F.dropout(x, p=self.drop_rate, training=self.training)
        return self.classifier(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def forward_intermediates(
            self,
            x: torch.Tensor,
            indices: Optional[Union[int, List[int]]] = None,
            norm: bool = False,
            stop_early: bool = False,
            output_fmt: str = "NCHW",
            intermediates_only: bool = False,
    ) -> Union[List[torch.Tensor], Tuple[torch.Tensor, List[torch.Tensor]]]:
        """Features at each output stride (``feature_info`` order), timm's API."""
        assert output_fmt == "NCHW", "Output shape must be NCHW."
        take_indices, max_index = feature_take_indices(len(self._stage_ends), indices)
        take_stages = {self._stage_ends[i] for i in take_indices}
        last_stage = self._stage_ends[max_index]
        intermediates = []
        x = self.stem(x)
        for i, stage in enumerate(self.stages):
            if stop_early and i > last_stage:
                break
            x = stage(x)
            if i in take_stages:
                intermediates.append(x)
        if intermediates_only:
            return intermediates
        if stop_early and last_stage < len(self.stages) - 1:  # truncated: the head conv would not fit
            return x, intermediates
        return self.conv_head(x), intermediates

    def prune_intermediate_layers(self, indices: Union[int, List[int]] = 1, prune_norm: bool = False,
                                  prune_head: bool = True) -> List[int]:
        """Drop what follows the last wanted feature level (timm's API)."""
        take_indices, max_index = feature_take_indices(len(self._stage_ends), indices)
        last_stage = self._stage_ends[max_index]
        truncated = last_stage < len(self.stages) - 1
        self.stages = self.stages[:last_stage + 1]
        if prune_head or prune_norm or truncated:
            self.conv_head = nn.Identity()
            self.conv_pre_logits = None
            self.pre_logits_act = None
            self.num_features = self.head_hidden_size = self.feature_info[max_index]["num_chs"]
            self.reset_classifier(0, "")
        return take_indices


def _block_stride(block: nn.Module) -> int:
    for m in block.modules():
        if isinstance(m, nn.Conv2d) and m.stride[0] > 1:
            return m.stride[0]
    return 1


def _block_out_channels(block: nn.Module) -> int:
    return [m for m in block.modules() if isinstance(m, nn.Conv2d)][-1].out_channels


def _init_weights(model: nn.Module) -> None:
    """EfficientNet-style init (fan-out normal convs, unit BN, small classifier)."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            fan_out = m.kernel_size[0] * m.kernel_size[1] * m.out_channels // m.groups
            nn.init.normal_(m.weight, 0, math.sqrt(2.0 / fan_out))
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            init_range = 1.0 / math.sqrt(m.weight.size(0))
            nn.init.uniform_(m.weight, -init_range, init_range)
            nn.init.zeros_(m.bias)
