"""The latency model of the paper's section 3.2: what a block is (``codes``), the per-block table
(``table``) and how it is filled on this device (``build``), the estimate of whole networks from
it (``estimate``) with a per-device ``calibration``, an analytic ``costmodel`` for blocks the table
lacks, and ``validate`` (the paper's Fig. 4 on your device).

    from gpunet.search.lut import LatencyTable, build_lut, LatencyEstimator

It never imports the search engine (:mod:`gpunet.search.engine`).
"""
from __future__ import annotations

from ..._lazy import lazy_getattr
from .build import build_lut, measure_block
from .codes import BlockKey, network_blocks, spec_blocks
from .table import LUT_FORMAT, STATISTICS, LatencyTable, LUTDeviceMismatch, LUTError

_LAZY = {
    "Calibration": ".calibration",
    "LatencyEstimator": ".estimate", "EstimateResult": ".estimate", "estimate_latency": ".estimate",
    "estimate_spec": ".estimate",
    "RooflineModel": ".costmodel",
    "validate_lut": ".validate", "ValidationReport": ".validate", "plot_validation": ".validate",
}

__all__ = ["BlockKey", "LatencyTable", "LUTError", "LUTDeviceMismatch", "LUT_FORMAT", "STATISTICS", "build_lut",
           "measure_block", "network_blocks", "spec_blocks", *_LAZY]


__getattr__ = lazy_getattr(__name__, _LAZY, globals())
