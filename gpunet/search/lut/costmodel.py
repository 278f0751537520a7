"""Analytic, roofline-style block latency: a stand-in for blocks not yet measured.

Each block is split into its ops (convolutions, SE, residual add); an op costs
``max(flops / peak, bytes / bandwidth) + overhead`` (the roofline, plus a launch cost), and a
block is the sum of its ops. The three parameters can be fitted to a table's measured blocks
(:meth:`RooflineModel.fit`), which is how a partially built table fills its gaps. Everything
this model produces is an *estimate*; :mod:`gpunet.search.lut.estimate` marks networks that used
it, and nothing it predicts is ever written into a lookup table.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Tuple

import numpy as np

from ...spec import LAYER_KINDS

__all__ = ["RooflineModel", "block_ops", "block_weight_bytes"]

# block codes store a kind as its index into gpunet.spec.LAYER_KINDS
HEAD, HEAD_LARGE, CONV, FUSED, IRB, TAIL = (LAYER_KINDS.index(k) for k in
                                            ("head", "head_large", "conv", "fused_irb", "irb", "tail"))


def _make_divisible8(v: np.ndarray) -> np.ndarray:
    # timm's make_divisible(v, 8): round to nearest multiple of 8, at least 8, never below 90% of v
    new = np.maximum(8, (np.asarray(v, dtype=np.float64) + 4) // 8 * 8)
    return np.where(new < 0.9 * v, new + 8, new)


def block_ops(f: Dict[str, np.ndarray], bytes_per_value: int = 4) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """FLOPs, bytes moved and op count per block, from key field arrays.

    ``f`` holds ``kind`` (index into :data:`gpunet.spec.LAYER_KINDS`), ``cin``,
    ``cout``, ``k``, ``stride``, ``e`` (expansion), ``se``, ``h`` (square input size), ``batch``.
    """
    kind = np.asarray(f["kind"])
    cin, cout, k, s = (np.asarray(f[n], dtype=np.float64) for n in ("cin", "cout", "k", "stride"))
    e, se, h = (np.asarray(f[n], dtype=np.float64) for n in ("e", "se", "h"))
    b = np.asarray(f.get("batch", 1), dtype=np.float64) * np.ones_like(h)
    nbytes = float(bytes_per_value)
    hout = np.ceil(h / s)
    flops = np.zeros_like(h)
    mem = np.zeros_like(h)
    ops = np.zeros_like(h)

    def conv(mask, ci, co, kk, hi, ho, groups=None):
        g = ci if groups == "dw" else 1.0
        fl = 2 * b * ho * ho * co * (ci / g) * kk * kk
        by = nbytes * (b * hi * hi * ci + b * ho * ho * co + co * (ci / g) * kk * kk)
        return np.where(mask, fl, 0), np.where(mask, by, 0), mask.astype(np.float64)

    def add(parts):
        nonlocal flops, mem, ops
        flops = flops + parts[0]
        mem = mem + parts[1]
        ops = ops + parts[2]

    head = (kind == HEAD) | (kind == HEAD_LARGE)
    add(conv(head, cin, cout, 3.0, h, hout))
    add(conv(kind == HEAD_LARGE, cout, cout, 3.0, hout, hout))
    add(conv(kind == HEAD_LARGE, cout, cout, 3.0, hout, hout))
    add(conv(kind == CONV, cin, cout, k, h, hout))
    mid = _make_divisible8(cin * e)
    fused, irb = kind == FUSED, kind == IRB
    add(conv(fused, cin, mid, k, h, hout))
    add(conv(irb, cin, mid, 1.0, h, h))
    add(conv(irb, mid, mid, k, h, hout, groups="dw"))
    has_se = (fused | irb) & (se > 0)
    add((np.where(has_se, 4 * b * hout * hout * mid, 0), np.where(has_se, 3 * nbytes * b * hout * hout * mid, 0),
         has_se.astype(np.float64) * 3))
    add(conv(fused | irb, mid, cout, 1.0, hout, hout))
    skip = (fused | irb | (kind == CONV)) & (s == 1) & (cin == cout)
    add((np.where(skip, b * hout * hout * cout, 0), np.where(skip, 3 * nbytes * b * hout * hout * cout, 0),
         skip.astype(np.float64)))
    tail = kind == TAIL
    add(conv(tail, cin, cout, 1.0, h, h))
    classes = np.asarray(f.get("classes", 1000), dtype=np.float64) * np.ones_like(h)
    add((np.where(tail, b * h * h * cout + 2 * b * cout * classes, 0),
         np.where(tail, nbytes * (b * h * h * cout + cout * classes), 0), tail.astype(np.float64) * 2))
    return flops, mem, ops


def block_weight_bytes(f: Dict[str, np.ndarray], bytes_per_value: int = 4) -> np.ndarray:
    """Bytes of weights per block (convolutions, SE, classifier; BatchNorm folds into the convs).

    ``f`` as for :func:`block_ops`, plus ``classes`` (tail) and ``distill`` (the family's exact
    IRB mid width).

    A block timed alone re-reads its weights from a warm cache on every run; inside a network
    they were evicted by the other blocks' weights since the previous image, so the table sum
    misses a cost that grows with the network's weight bytes (see :class:`~.calibration.Calibration`).
    """
    kind = np.asarray(f["kind"])
    cin, cout, k = (np.asarray(f[n], dtype=np.float64) for n in ("cin", "cout", "k"))
    e, se = np.asarray(f["e"], dtype=np.float64), np.asarray(f["se"], dtype=np.float64)
    classes = np.asarray(f.get("classes", 1000), dtype=np.float64)
    mid = _make_divisible8(cin * e)
    head = (kind == HEAD) | (kind == HEAD_LARGE)
    conv, fused, irb, tail = kind == CONV, kind == FUSED, kind == IRB, kind == TAIL
    if f.get("distill", False):  # the distill family's IRB expands to exactly int(in * e)
        mid = np.where(irb, np.floor(cin * e), mid)
    w = np.where(head, 9 * cin * cout + np.where(kind == HEAD_LARGE, 18 * cout * cout, 0), 0.0)
    w = w + np.where(conv, k * k * cin * cout, 0)
    w = w + np.where(fused, k * k * cin * mid + mid * cout, 0)
    w = w + np.where(irb, cin * mid + k * k * mid + mid * cout, 0)
    w = w + np.where((fused | irb) & (se > 0), 2 * mid * np.maximum(1, np.rint(mid * 0.25 / np.maximum(e, 1e-9))), 0)
    w = w + np.where(tail, cin * cout + cout * classes, 0)
    return w * float(bytes_per_value)


@dataclass
class RooflineModel:
    """``peak_gflops`` (compute roof), ``bandwidth_gbs`` (memory roof), ``overhead_us`` per op.

    The block-level roofline is applied to the summed FLOPs and bytes of the block, which keeps
    the model vectorised; ``fitted`` records whether the parameters came from measurements.
    """

    peak_gflops: float = 50.0
    bandwidth_gbs: float = 10.0
    overhead_us: float = 10.0
    fitted: bool = False

    def predict(self, fields: Dict[str, np.ndarray]) -> np.ndarray:
        """Estimated latency (ms) per block."""
        flops, mem, ops = block_ops(fields)
        return self._predict(flops, mem, ops, np.log([self.peak_gflops, self.bandwidth_gbs, self.overhead_us]))

    @staticmethod
    def _predict(flops, mem, ops, logp):
        peak, bw, ovh = np.exp(logp)
        return np.maximum(flops / (peak * 1e6), mem / (bw * 1e6)) + ops * ovh * 1e-3

    def fit(self, fields: Dict[str, np.ndarray], measured_ms: np.ndarray) -> "RooflineModel":
        """Least-squares fit (relative error) of the three parameters to measured blocks."""
        from scipy.optimize import least_squares

        t = np.asarray(measured_ms, dtype=np.float64)
        ok = np.isfinite(t) & (t > 0)
        if ok.sum() < 3:
            raise ValueError(f"fitting the cost model needs at least 3 measured blocks, got {int(ok.sum())}")
        flops, mem, ops = (a[ok] for a in block_ops({k: np.asarray(v)[ok] if np.ndim(v) else v
                                                   for k, v in fields.items()}))
        logt = np.log(t[ok])
        x0 = np.log([self.peak_gflops, self.bandwidth_gbs, self.overhead_us])
        res = least_squares(lambda p: np.log(self._predict(flops, mem, ops, p)) - logt, x0, method="trf")
        self.peak_gflops, self.bandwidth_gbs, self.overhead_us = (float(v) for v in np.exp(res.x))
        self.fitted = True
        return self
