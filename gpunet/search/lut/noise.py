"""How well this machine repeats a timing, and the share within ±10 % that leaves a table without error.

A validation's share within ±10 % mixes two errors: the table's (its block sum, calibrated, is not
the network's latency) and the measurement's (one timing of a block or of a network is not its
latency either). Two repeats measure the second, at little cost: a network's passes give the
standard error of its median, and a sample of the table's blocks timed again (a fresh session,
minutes after the first timing) gives the spread of one block timing. A table with no error of
its own would still miss a network by the noise of its measured median plus that of its block sum
(its blocks' timings, each weighted by its share of the sum); :func:`reachable_share` is the share
such a table would put within ±10 %, assuming normal errors. Where it is below a target, no
calibration reaches the target on that machine at that noise: time more (passes, blocks again
with ``--refresh-blocks``), use fewer threads, or a quieter machine.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Dict, List, Optional

import numpy as np

__all__ = ["NoiseFloor", "median_standard_error", "repeat_sd", "sum_noise", "reachable_share", "noise_floor"]


def median_standard_error(per_pass) -> np.ndarray:
    """Per network (columns of a passes x networks array of timings, ms): the relative standard
    error of the median of its passes, ``sqrt(pi / 2) * sd(log t) / sqrt(passes)``; NaN with one pass."""
    t = np.asarray(per_pass, dtype=np.float64)
    if t.ndim != 2:
        raise ValueError(f"per_pass must be a passes x networks array, got shape {t.shape}")
    if len(t) < 2:
        return np.full(t.shape[1], np.nan)
    return math.sqrt(math.pi / 2) * np.log(t).std(axis=0, ddof=1) / math.sqrt(len(t))


def repeat_sd(first_ms, again_ms) -> float:
    """Relative spread of one timing (of its log), from pairs of timings of the same things:
    ``1.4826 * MAD(log(again / first)) / sqrt(2)``, the sd a normal spread would have. Robust on
    purpose: block timings on a noisy VM have heavy tails (re-timed, some come back 2x off), whose sd would
    make the normal share within ±10 % far too low. NaN with fewer than two valid pairs."""
    a, b = np.asarray(first_ms, dtype=np.float64), np.asarray(again_ms, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"first_ms and again_ms must pair up, got shapes {a.shape} and {b.shape}")
    ok = np.isfinite(a) & np.isfinite(b) & (a > 0) & (b > 0)
    if ok.sum() < 2:
        return float("nan")
    d = np.log(b[ok] / a[ok])
    return float(1.4826 * np.median(np.abs(d - np.median(d))) / math.sqrt(2))


def sum_noise(block_ms, counts, block_sd: float) -> np.ndarray:
    """Per network (rows): the relative spread of its table sum when each block's timing
    (``block_ms``, networks x slots, NaN or 0 where unused) is off by a relative ``block_sd`` on
    its own; a block repeated ``counts`` times in a network carries its error that many times."""
    t = np.nan_to_num(np.asarray(block_ms, dtype=np.float64)) * np.asarray(counts, dtype=np.float64)
    total = t.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return block_sd * np.sqrt((t * t).sum(axis=1)) / total


def reachable_share(sigma, tol: float = 0.10) -> float:
    """The share of networks within ``±tol`` when each is missed by a normal relative error of
    spread ``sigma`` (and nothing else): the mean of ``erf(tol / (sigma * sqrt 2))``; NaN entries
    are left out (NaN when all are)."""
    s = np.asarray(sigma, dtype=np.float64)
    s = s[np.isfinite(s)]
    if not len(s):
        return float("nan")
    return float(np.mean([1.0 if x <= 0 else math.erf(tol / (x * math.sqrt(2))) for x in s]))


@dataclass
class NoiseFloor:
    """This run's measurement noise and what it leaves a table without error (see the module)."""

    block_repeat_sd: Optional[float]  # one block timing, relative (None: no blocks timed again)
    blocks_rechecked: int
    network_median_se: Optional[float]  # median over networks of their median's relative s.e.
    within_10pct: Optional[float]  # what a table without error would reach at this noise
    block_pairs_ms: List[List[float]]  # per block timed again: [the table's timing, now's]

    def to_dict(self) -> Dict[str, Any]:
        return asdict(self)


def noise_floor(per_pass, block_ms, counts, first_ms, again_ms) -> NoiseFloor:
    """:class:`NoiseFloor` of a validation: ``per_pass`` (passes x networks timings), the
    networks' block timings and counts (networks x slots), and the blocks timed again
    (``first_ms``: the table's, ``again_ms``: now; empty when none were)."""
    se = median_standard_error(per_pass)
    block_sd = repeat_sd(first_ms, again_ms) if len(first_ms) else float("nan")
    sigma = np.sqrt(np.nan_to_num(se) ** 2 + np.nan_to_num(sum_noise(block_ms, counts, block_sd)) ** 2)
    known = np.isfinite(se).any() or np.isfinite(block_sd)
    finite = (lambda x: float(x) if np.isfinite(x) else None)
    return NoiseFloor(block_repeat_sd=finite(block_sd), blocks_rechecked=int(len(first_ms)),
                      network_median_se=finite(np.nanmedian(se)) if np.isfinite(se).any() else None,
                      within_10pct=reachable_share(sigma) if known else None,
                      block_pairs_ms=[[float(a), float(b)] for a, b in zip(first_ms, again_ms)])
