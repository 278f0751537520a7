"""How much last-level cache this process gets right now, from read bandwidth over growing buffers.

On a cloud VM the last-level cache is shared with other tenants, and how much of it a network's
weights keep changes with what they do: the same 56 MB (fp32 weights) 64 px network ran at 1.67x
its block sum one hour and 1.11x another (``gpunet lut validate``, ONNX Runtime, 1 thread), with
our load average at 1.0 both times. The load average cannot see a neighbour's cache traffic;
streaming over buffers of growing size can: reads slow down where a buffer stops fitting.
``lut validate`` probes before and after its passes and reports the share, so weight-heavy
networks measured under another share are named rather than silently compared.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Dict, Sequence

import numpy as np

__all__ = ["CacheShare", "cache_share", "DEFAULT_SIZES_MB"]

#: buffer sizes probed; 4 MB is past the per-core L2 of current x86 server CPUs (1-2 MB)
DEFAULT_SIZES_MB = (4, 8, 16, 24, 32, 48, 64, 96, 128, 192, 256)


@dataclass
class CacheShare:
    """``mb``: the largest buffer still read at ``>= drop`` x the bandwidth of the smallest
    (``at_least``: none was slower, the share is at least ``mb``); ``gb_s``: read bandwidth per
    buffer size, one thread."""

    mb: float
    at_least: bool
    drop: float
    gb_s: Dict[int, float] = field(default_factory=dict)

    def to_dict(self) -> Dict:
        return {"mb": self.mb, "at_least": self.at_least, "drop": self.drop,
                "gb_s": {str(k): round(v, 2) for k, v in self.gb_s.items()}}


def _read_gb_s(buf, mb: float, repeat_mb: float) -> float:
    buf.sum()  # first touch, and warm
    times = []
    for _ in range(max(3, int(repeat_mb / mb))):
        t0 = time.perf_counter()
        buf.sum()
        times.append(time.perf_counter() - t0)
    return mb / 1024.0 / float(np.median(times))


def cache_share(sizes_mb: Sequence[int] = DEFAULT_SIZES_MB, drop: float = 0.8, repeat_mb: float = 1024.0) -> CacheShare:
    """Probe the cache share (about 1 s): each buffer is summed ``repeat_mb / size`` times on one
    thread (torch, vectorised, memory-bound) and the median pass gives its read bandwidth."""
    import torch

    sizes = sorted(int(s) for s in sizes_mb)
    if len(sizes) < 2 or sizes[0] <= 0:
        raise ValueError(f"sizes_mb needs at least two positive sizes, got {list(sizes_mb)}")
    if not 0.0 < drop < 1.0:
        raise ValueError(f"drop must lie in (0, 1), got {drop!r}")
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        gb_s = {}
        for mb in sizes:
            buf = torch.ones(int(mb * 2 ** 20 // 4), dtype=torch.float32)
            gb_s[mb] = _read_gb_s(buf, mb, repeat_mb)
            del buf
    finally:
        torch.set_num_threads(old)
    slow = [mb for mb in sizes if gb_s[mb] < drop * gb_s[sizes[0]]]
    share = max(mb for mb in sizes if not slow or mb < slow[0])
    return CacheShare(mb=float(share), at_least=not slow, drop=drop, gb_s=gb_s)
