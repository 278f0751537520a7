"""Parameter and FLOP counts of a built network (used by the registry, cards and ``gpunet info``)."""
from __future__ import annotations

from typing import Optional

import torch
from torch import nn

__all__ = ["count_params", "count_flops"]


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@torch.no_grad()
def count_flops(model: nn.Module, resolution: int, in_chans: Optional[int] = None) -> int:
    """Multiply-accumulate count of one forward pass at batch 1 (the convention of the
    GPUNet / EfficientNet papers' "FLOPs"): convolutions and linear layers only."""
    total = 0

    def conv_hook(m: nn.Conv2d, inp, out):
        nonlocal total
        kh, kw = m.kernel_size
        total += out.numel() * (m.in_channels // m.groups) * kh * kw

    def linear_hook(m: nn.Linear, inp, out):
        nonlocal total
        total += out.numel() * m.in_features

    handles = []
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            handles.append(m.register_forward_hook(conv_hook))
        elif isinstance(m, nn.Linear):
            handles.append(m.register_forward_hook(linear_hook))
    was_training = model.training
    model.eval()
    try:
        p = next(model.parameters())
        c = in_chans or getattr(model, "in_chans", 3)
        model(torch.zeros(1, c, resolution, resolution, dtype=p.dtype, device=p.device))
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    return total
