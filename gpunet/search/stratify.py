"""Tier sampled networks by estimated latency (the paper's Fig. 2.A): each group is a sub-space
that a search algorithm then explores for accuracy."""
from __future__ import annotations

from dataclasses import dataclass
from typing import List, Sequence

import numpy as np

__all__ = ["LatencyGroup", "stratify", "stratum_labels"]


@dataclass(frozen=True)
class LatencyGroup:
    """Networks whose latency lies in ``[lo_ms, hi_ms)``; ``indices`` point into the input arrays."""

    label: int
    lo_ms: float
    hi_ms: float
    indices: np.ndarray
    vectors: np.ndarray
    latencies_ms: np.ndarray

    def __len__(self) -> int:
        return len(self.indices)

    def __repr__(self) -> str:
        return f"LatencyGroup({self.label}, [{self.lo_ms:g}, {self.hi_ms:g}) ms, {len(self)} networks)"


def _check_edges(edges_ms: Sequence[float]) -> np.ndarray:
    edges = np.asarray(edges_ms, dtype=np.float64).ravel()
    if len(edges) < 2:
        raise ValueError(f"edges_ms needs at least two values (one group), got {list(edges)}")
    if not np.all(np.isfinite(edges)) or np.any(np.diff(edges) <= 0):
        raise ValueError(f"edges_ms must be finite and strictly increasing, got {list(edges)}")
    return edges


def stratum_labels(latencies_ms, edges_ms: Sequence[float]) -> np.ndarray:
    """Group label per network: ``i`` for ``edges[i] <= t < edges[i+1]``, -1 outside or NaN."""
    edges = _check_edges(edges_ms)
    t = np.asarray(latencies_ms, dtype=np.float64)
    labels = np.searchsorted(edges, t, side="right") - 1
    labels[(labels < 0) | (labels >= len(edges) - 1) | ~np.isfinite(t)] = -1
    return labels.astype(np.int64)


def stratify(vectors, latencies_ms, edges_ms: Sequence[float]) -> List[LatencyGroup]:
    """Split networks into latency groups ``[edges[i], edges[i+1])``; networks outside are dropped.

    Returns one :class:`LatencyGroup` per interval (possibly empty), in edge order.
    """
    vectors = np.asarray(vectors)
    t = np.asarray(latencies_ms, dtype=np.float64)
    if len(vectors) != len(t):
        raise ValueError(f"vectors ({len(vectors)}) and latencies_ms ({len(t)}) differ in length")
    edges = _check_edges(edges_ms)
    labels = stratum_labels(t, edges)
    order = np.argsort(labels, kind="stable")
    bounds = np.searchsorted(labels[order], np.arange(len(edges)))
    groups = []
    for i in range(len(edges) - 1):
        idx = order[bounds[i]:bounds[i + 1]]
        groups.append(LatencyGroup(i, float(edges[i]), float(edges[i + 1]), idx, vectors[idx], t[idx]))
    return groups
