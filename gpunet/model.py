"""The GPUNet module, with the interface timm users expect.

Layout (clean names; :mod:`gpunet.nvidia` maps NVIDIA's checkpoint keys onto them)::

    stem            Conv-BN-Act (x1 or x3), stride 2
    stages.<i>.<j>  body blocks, one nn.Sequential per search-space stage
    conv_head       1x1 Conv-BN-ReLU to ``num_features``      (end of forward_features)
    global_pool     adaptive pooling
    conv_pre_logits 1x1 conv + ReLU after pooling (distill family only)
    classifier      Linear
"""
import os
from typing import Any, Dict, List, Optional, Tuple, Union

import torch
import torch.nn.functional as F
from torch import nn
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from timm.layers import SelectAdaptivePool2d
from timm.layers.helpers import get_device_dtype
from timm.models._efficientnet_builder import efficientnet_init_weights
from timm.models._features import feature_take_indices
from timm.models._manipulate import checkpoint_seq
from timm.models._pretrained import PretrainedCfg

from .builder import build_conv_head, build_stages, build_stem
from .nvidia import load_any
from .spec import NetworkSpec

__all__ = ["GPUNet", "build_model", "gpunet_pretrained_cfg", "PAPER", "NVIDIA_PROVENANCE", "NVIDIA_TAG",
           "GENERIC_ARCHITECTURE"]

#: the paper every GPUNet architecture comes from (NVIDIA's networks and gpunet's search winners alike)
PAPER = dict(paper_ids="arXiv:2205.00841",
             paper_name="Searching the Deployable Convolution Neural Networks for GPUs")
#: where NVIDIA's seven networks (and their published weights) come from
NVIDIA_PROVENANCE = dict(
    license="apache-2.0",
    origin_url="https://github.com/NVIDIA/DeepLearningExamples/tree/master/PyTorch/Classification/GPUNet")
#: timm pretrained tag of NVIDIA's published ImageNet-1k weights (``gpunet_0.nvidia_in1k``)
NVIDIA_TAG = "nvidia_in1k"
#: timm entry point that builds any GPUNet from a spec (``model_args["spec"]``)
GENERIC_ARCHITECTURE = "gpunet_spec"


def gpunet_pretrained_cfg(spec: NetworkSpec, crop_pct: float = 1.0, **fields: Any) -> Dict[str, Any]:
    """timm's ``pretrained_cfg`` for a GPUNet of ``spec``: the one function behind timm's
    ``default_cfgs`` for ``gpunet_*`` and the cfg of every model gpunet builds.

    Input size is the spec's resolution (``(3, r, r)``), ``pool_size`` the last feature map there,
    bicubic interpolation, ImageNet mean / std, ``num_classes`` the spec's. Like timm's, it
    describes the architecture's (or weights') source: a model built with ``num_classes=10``
    keeps the spec's. ``fields`` add or replace keys (provenance, ``url``, ``architecture``).
    Returns timm's normalised dict (``PretrainedCfg(...).to_dict()``).
    """
    r = spec.resolution
    pool = spec.spatial_sizes(r)[-1]
    cfg = dict(num_classes=spec.num_classes, input_size=(spec.in_channels, r, r), pool_size=(pool, pool),
               crop_pct=crop_pct, interpolation="bicubic", mean=IMAGENET_DEFAULT_MEAN, std=IMAGENET_DEFAULT_STD,
               first_conv="stem.0.conv", classifier="classifier", **PAPER)
    cfg.update(fields)
    return PretrainedCfg(**cfg).to_dict()


class GPUNet(nn.Module):
    """A GPUNet built from a :class:`~gpunet.spec.NetworkSpec`.

    Args:
        spec: the architecture.
        num_classes: classifier outputs (default: the spec's); 0 removes the classifier.
        in_chans: input channels (default 3).
        drop_rate: dropout before the classifier (NVIDIA's networks use 0.2).
        drop_path_rate: stochastic depth, scheduled linearly over the network as NVIDIA does.
        global_pool: ``'avg'`` (default), ``'max'``, ``'avgmax'``, ``'catavgmax'`` or ``''``
            (no pooling: the classifier is applied at every location, logits are NCHW).
        output_stride: ``None`` keeps the spec's strides (32, or 64 for GPUNet-P0 / P1); 16 or 8
            turn the later strides into dilations (dense prediction backbones).
        device, dtype: factory kwargs for every parameter (``device="meta"`` builds no storage).
    """

    def __init__(self, spec: NetworkSpec, num_classes: Optional[int] = None, in_chans: int = 3,
                 drop_rate: float = 0.2, drop_path_rate: float = 0.0, global_pool: str = "avg",
                 output_stride: Optional[int] = None, device=None, dtype=None):
        super().__init__()
        dd = dict(device=device, dtype=dtype)
        spec.validate()
        self.spec = spec
        self.num_classes = spec.num_classes if num_classes is None else num_classes
        self.in_chans = in_chans
        self.drop_rate = drop_rate
        self.grad_checkpointing = False

        self.stem = build_stem(spec, in_chans, **dd)
        self.stages, self.feature_info = build_stages(spec, drop_path_rate, output_stride, **dd)
        self._stage_ends = [f["stage"] for f in self.feature_info]
        self.output_stride = self.feature_info[-1]["reduction"]
        self.num_features = spec.tail.out_channels
        self.conv_head = build_conv_head(spec, **dd)
        self.global_pool = SelectAdaptivePool2d(pool_type=global_pool, flatten=False)
        pooled = self.num_features * self.global_pool.feat_mult()
        if spec.tail.pre_logits_channels:  # distill family: 1x1 conv + ReLU after pooling
            self.conv_pre_logits = nn.Conv2d(pooled, spec.tail.pre_logits_channels, 1, bias=False, **dd)
            self.pre_logits_act = nn.ReLU(inplace=True)
            self.head_hidden_size = spec.tail.pre_logits_channels
        else:
            self.conv_pre_logits = None
            self.pre_logits_act = None
            self.head_hidden_size = pooled
        self.flatten = nn.Flatten(1) if global_pool else nn.Identity()
        self.dense_logits = not global_pool and self.num_classes > 0
        self.classifier = (nn.Linear(self.head_hidden_size, self.num_classes, **dd) if self.num_classes > 0
                           else nn.Identity())
        efficientnet_init_weights(self)
        # timm's data config (resolve_model_data_config); get_model / timm add the registry's crop_pct
        # and provenance for hub models
        self.pretrained_cfg = gpunet_pretrained_cfg(spec)
        self.default_cfg = self.pretrained_cfg

    # -- timm model interface --------------------------------------------------------------
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
        """New classifier on the model's device and dtype; ``global_pool`` None keeps the pooling.

        The distill family's trained ``conv_pre_logits`` is sized for the pooled width: a pool
        change that would resize it raises (as timm's MobileNetV3 refuses) instead of dropping it.
        """
        dd = get_device_dtype(self)
        if global_pool is None:
            global_pool = self.global_pool.pool_type
        pool = SelectAdaptivePool2d(pool_type=global_pool, flatten=False)
        pooled = self.num_features * pool.feat_mult()
        if self.conv_pre_logits is not None:
            if self.conv_pre_logits.in_channels != pooled:
                raise ValueError(
                    f"global_pool={global_pool!r} pools to {pooled} channels but the trained "
                    f"conv_pre_logits takes {self.conv_pre_logits.in_channels}; keep a pooling of "
                    f"the same width (avg / max / avgmax / '')")
        else:
            self.head_hidden_size = pooled
        self.num_classes = num_classes
        self.global_pool = pool.train(self.training)
        self.flatten = (nn.Flatten(1) if global_pool else nn.Identity()).train(self.training)
        self.dense_logits = not global_pool and num_classes > 0
        self.classifier = (nn.Linear(self.head_hidden_size, num_classes, **dd) if num_classes > 0
                           else nn.Identity()).train(self.training)

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
        if self.dense_logits:  # no pooling: classify every location, logits stay NCHW
            return self.classifier(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
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


def build_model(spec: Union[NetworkSpec, str, os.PathLike], **kwargs) -> GPUNet:
    """A :class:`GPUNet` from a spec or a spec file (hub names: :func:`gpunet.get_model`).

    Keyword arguments are those of :class:`GPUNet` (``num_classes``, ``in_chans``, ``drop_rate``,
    ``drop_path_rate``, ``global_pool``, ``output_stride``, ``device``, ``dtype``).
    """
    if not isinstance(spec, NetworkSpec):
        spec = load_any(spec)
    return GPUNet(spec, **kwargs)
