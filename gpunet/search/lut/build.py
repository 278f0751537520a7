"""Filling a latency table on this device: the one place that calls the benchmark harness.

:func:`build_lut` creates or extends a table with every missing block, timed by
:func:`measure_block`; a build on a busy machine is noted in the table (``busy_builds``).
"""
from __future__ import annotations

import functools
import time
from typing import Any, Callable, Dict, Iterable, Optional

from ...latency.machine import busy_load_limit, load_average
from .codes import BlockKey
from .table import LatencyTable

__all__ = ["build_lut", "measure_block"]


def measure_block(key: BlockKey, backend: str, iters: int = 50, warmup: int = 10, threads: Optional[int] = None,
                  timing: str = "wall"):
    """Latency of one block: with :func:`gpunet.latency.benchmark` (``timing="wall"``: ONNX
    Runtime, OpenVINO, torch, TensorRT), or from OpenVINO's per-node counters (``"kernels"``:
    :func:`gpunet.latency.ovkernels.kernel_times`, the block's edges and the infer call left out)."""
    if timing == "kernels":
        from ...latency.bench import make_result
        from ...latency.fingerprint import device_fingerprint
        from ...latency.ovkernels import kernel_times

        if backend != "openvino":
            raise ValueError(f"timing 'kernels' is OpenVINO's per-node counters; backend {backend!r} has none")
        times, label = kernel_times(key.build_module(), key.input_shape, key.precision, threads, warmup, iters)
        return make_result(key.key, backend, key.precision, key.input_shape, iters, warmup, threads, times, label,
                           device_fingerprint(backend))
    from ...latency import benchmark

    return benchmark(key.build_module(), backend=backend, input_shape=key.input_shape, iters=iters,
                     warmup=warmup, precision=key.precision, threads=threads)


def build_lut(path: str, keys: Iterable[BlockKey], backend: str, iters: int = 50, warmup: int = 10,
              threads: Optional[int] = None, progress: Optional[bool] = None,
              fingerprint: Optional[Dict[str, Any]] = None,
              measure: Optional[Callable[[BlockKey], Any]] = None, refresh: bool = False,
              block_timing: Optional[str] = None) -> Dict[str, int]:
    """Create or extend the table at ``path`` with every missing key, measured on this device.

    ``threads`` (CPU backends) is fixed when the table is created; later builds reuse it and
    refuse another value, since block latencies at different thread counts do not add up. So is
    ``block_timing`` (:meth:`LatencyTable.resolve_block_timing`): ``wall`` (each block run alone,
    host wall clock) or, on OpenVINO, ``kernels`` (its per-node counters, the block's edge nodes
    and the infer call left out); a new table takes :func:`~gpunet.search.lut.table.default_block_timing`
    (``kernels`` on OpenVINO but for INT8 blocks, else ``wall``).
    """
    keys = list(keys)
    if measure is None:  # refuse what the backend cannot run before a table file is created
        from ...latency.bench import PRECISIONS

        if backend not in PRECISIONS:
            raise ValueError(f"unknown backend {backend!r}; expected one of {', '.join(PRECISIONS)}")
        bad = sorted({k.precision for k in keys} - set(PRECISIONS[backend]))
        if bad:
            raise ValueError(f"unsupported precision {bad[0]!r} for backend {backend!r}; expected one of "
                             f"{', '.join(PRECISIONS[backend])}")
    if fingerprint is None:
        from ...latency import device_fingerprint

        fingerprint = device_fingerprint(backend)
    with LatencyTable(path, backend=backend, fingerprint=fingerprint, create=True) as table:
        threads = table.resolve_threads(threads)
        if measure is None:
            measure = functools.partial(measure_block, backend=backend, iters=iters, warmup=warmup, threads=threads,
                                        timing=table.resolve_block_timing(block_timing, {k.precision for k in keys}))
        loads = [load_average()]
        counts = table.fill(keys, measure, progress=progress, fingerprint=fingerprint, refresh=refresh)
        loads.append(load_average())
        counts["load_avg"] = loads
        limit = busy_load_limit(threads)
        counts["busy"] = bool(counts["measured"]) and max(loads) > limit
        if counts["busy"]:  # remembered in the table: its blocks may be inflated (rebuild with --refresh)
            warnings = table.get_meta("busy_builds") or []
            table.set_meta("busy_builds", warnings + [{"at": time.time(), "load_avg": loads,
                                                        "measured": counts["measured"], "limit": limit}])
        return counts
