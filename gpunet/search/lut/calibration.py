"""The per-device calibration that maps a table's block sum to a network's end-to-end latency.

Fitted by ``gpunet lut validate`` on networks measured end to end (least squares on relative
error) and stored in the table's meta; :class:`~gpunet.search.lut.estimate.LatencyEstimator`
applies it. A calibration holds for the space (resolutions), statistic and precision it was fitted on.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, Optional

import numpy as np

__all__ = ["Calibration", "CACHE_FORMS", "MIN_NETWORKS_CACHE_TERM", "missed_mb"]


@dataclass
class Calibration:
    """``end_to_end ~= scale * table_sum + per_block_ms * n_blocks + per_weight_mb * weight_mb
    + per_weight_mb_over_cache * missed_mb(weight_mb) + offset_ms``.

    The per-block term absorbs what every standalone block measurement pays and a whole network
    does not (runtime call overhead, layout reorders at the block's edges). The weight terms are
    what a block timed alone does not pay: its weights stay in cache between timed runs, while
    inside a network the other blocks' weights evict them, so each image re-reads the network's
    weights from further away (``weight_mb``: the network's weight megabytes, see
    :func:`~gpunet.search.lut.costmodel.block_weight_bytes`). Past the share of the last-level cache
    a network can keep (``cache_mb``, fitted) weights come from DRAM and cost more per megabyte:
    ``missed_mb`` is ``max(w - cache_mb, 0) ** 2 / w`` (``cache_form='smooth'``: nothing at the
    threshold, about one DRAM megabyte per extra megabyte far above it; a shared cache does not
    drop all of a network's weights at once) or ``max(w - cache_mb, 0)`` (``'hard'``, tables
    calibrated before the smooth form). ``per_weight_mb=0`` is the older three-term form.
    """

    scale: float = 1.0
    per_block_ms: float = 0.0
    offset_ms: float = 0.0
    n: int = 0
    per_weight_mb: float = 0.0
    per_weight_mb_over_cache: float = 0.0
    cache_mb: float = float("inf")
    cache_form: str = "smooth"

    def __post_init__(self):
        if self.cache_form not in CACHE_FORMS:
            raise ValueError(f"calibration cache_form must be one of {CACHE_FORMS}, got {self.cache_form!r}")

    def apply(self, table_sum_ms, n_blocks, weight_mb=0.0) -> np.ndarray:
        w = np.asarray(weight_mb, dtype=np.float64)
        over = missed_mb(w, self.cache_mb, self.cache_form) if np.isfinite(self.cache_mb) else np.zeros_like(w)
        return (self.scale * np.asarray(table_sum_ms) + self.per_block_ms * np.asarray(n_blocks)
                + self.per_weight_mb * w + self.per_weight_mb_over_cache * over + self.offset_ms)

    @classmethod
    def fit(cls, table_sum_ms, n_blocks, measured_ms, weight_mb=None,
            per_block: Optional[bool] = None, cache: Optional[bool] = None) -> "Calibration":
        """Least squares on relative error (so small and large networks weigh alike).

        With ``weight_mb`` the terms are scale, weight and offset (``per_block`` off unless asked
        for: on ONNX Runtime CPU it is nearly collinear with the others and made fits on 20
        networks unstable across seeds); without it, the older scale, per-block and offset.
        ``cache`` (default: with ``weight_mb`` and at least :data:`MIN_NETWORKS_CACHE_TERM`
        networks) adds the DRAM term (the smooth form), its ``cache_mb`` chosen on a 1 MB grid
        inside the observed weight range (at least 5 networks each side) by the same least squares.
        """
        x = np.asarray(table_sum_ms, dtype=np.float64)
        nb = np.asarray(n_blocks, dtype=np.float64)
        y = np.asarray(measured_ms, dtype=np.float64)
        ok = np.isfinite(x) & np.isfinite(y) & (y > 0)
        per_block = (weight_mb is None) if per_block is None else per_block
        cols = {"scale": x}
        if per_block:
            cols["per_block_ms"] = nb
        wm = None
        if weight_mb is not None:
            wm = np.asarray(weight_mb, dtype=np.float64) * np.ones_like(x)
            ok &= np.isfinite(wm)
            cols["per_weight_mb"] = wm
        cols["offset_ms"] = np.ones_like(x)
        if ok.sum() < len(cols):
            raise ValueError(f"calibration needs at least {len(cols)} networks with measured and table latencies, "
                             f"got {int(ok.sum())}")

        def solve(columns):
            a = np.stack([c[ok] for c in columns.values()], axis=1) / y[ok, None]
            coef, *_ = np.linalg.lstsq(a, np.ones(int(ok.sum())), rcond=None)
            return coef, float(np.sum((a @ coef - 1.0) ** 2))

        coef, best = solve(cols)
        fitted = {name: float(c) for name, c in zip(cols, coef)}
        use_cache = (wm is not None and ok.sum() >= MIN_NETWORKS_CACHE_TERM) if cache is None else cache
        if use_cache and wm is not None:
            w_ok = np.sort(wm[ok])
            lo, hi = (np.floor(w_ok[4]), np.ceil(w_ok[-6])) if len(w_ok) >= 11 else (1.0, 0.0)
            for cache_mb in np.arange(lo, hi + 0.5, 1.0):
                trial = {**cols, "per_weight_mb_over_cache": missed_mb(wm, cache_mb, "smooth")}
                c, sse = solve(trial)
                if sse < best and c[-1] > 0:  # a cache term that lowers the error and costs time
                    best, fitted = sse, {**{name: float(v) for name, v in zip(trial, c)}, "cache_mb": float(cache_mb)}
        return cls(n=int(ok.sum()), **fitted)

    def to_dict(self) -> Dict[str, Any]:
        return {"scale": self.scale, "per_block_ms": self.per_block_ms, "per_weight_mb": self.per_weight_mb,
                "per_weight_mb_over_cache": self.per_weight_mb_over_cache,
                "cache_mb": self.cache_mb if np.isfinite(self.cache_mb) else None, "cache_form": self.cache_form,
                "offset_ms": self.offset_ms, "n": self.n}

    @classmethod
    def from_dict(cls, d: Dict[str, Any]) -> "Calibration":
        cache = d.get("cache_mb")
        return cls(float(d["scale"]), float(d["per_block_ms"]), float(d["offset_ms"]), int(d.get("n", 0)),
                   float(d.get("per_weight_mb", 0.0)), float(d.get("per_weight_mb_over_cache", 0.0)),
                   float("inf") if cache is None else float(cache), d.get("cache_form", "hard"))


#: how weights past the cache share are priced (see :class:`Calibration`)
CACHE_FORMS = ("smooth", "hard")


def missed_mb(weight_mb, cache_mb: float, form: str = "smooth") -> np.ndarray:
    """Megabytes of a network's weights read from DRAM per image, for a cache share of ``cache_mb``."""
    w = np.asarray(weight_mb, dtype=np.float64)
    over = np.maximum(w - cache_mb, 0.0)
    return over if form == "hard" else over * over / np.maximum(w, 1e-9)


#: networks a calibration needs before it also fits where the weights outgrow the cache (4 terms
#: and a threshold: with 20 networks the threshold follows noise)
MIN_NETWORKS_CACHE_TERM = 40
