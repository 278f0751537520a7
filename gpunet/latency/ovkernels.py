"""A block's own compute time on OpenVINO CPU, from the runtime's per-node performance counters.

Timed alone, a block pays what a compiled network pays once: the infer request, and the
``Reorder`` / ``Convert`` nodes that bring an fp32 NCHW input into the plugin's blocked layout
and precision and take the output back. Inside a network those edges are gone (measured: ~1 % of
a network's time, where they are 10-60 % of a small block's), so sums of wall-clock block times
land 20-90 % above the network. With ``PERF_COUNT`` on, OpenVINO reports every executed node's
time per inference; a block's latency here is the sum over its nodes but every ``Reorder`` /
``Convert`` (the edges, and also the few inside, e.g. into an SE block's 1x1 convolutions, that a
network pays too: 2-10 us each) and the infer call. What a network pays once goes to the latency
table's calibration offset.
"""
from __future__ import annotations

from typing import List, Optional, Sequence, Tuple

import numpy as np
from torch import nn

__all__ = ["EDGE_NODE_TYPES", "TIMING", "kernel_times", "own_node_ms"]

#: node types that adapt a graph's input / output to the plugin (and the graph's ends themselves)
EDGE_NODE_TYPES = frozenset({"Reorder", "Convert", "Parameter", "Result"})
TIMING = ("OpenVINO CPU per-node perf counters: the sum of the block's own nodes per inference "
          "(edge Reorder / Convert and the infer call left out)")


def own_node_ms(profiling_info) -> float:
    """Milliseconds of one inference spent in executed nodes that are not edge nodes."""
    total = 0.0
    for node in profiling_info:
        if node.status == node.Status.EXECUTED and node.node_type not in EDGE_NODE_TYPES:
            total += node.real_time.total_seconds()
    return total * 1e3


def kernel_times(model: nn.Module, input_shape: Sequence[int], precision: str, threads: Optional[int],
                 warmup: int, iters: int) -> Tuple[List[float], str]:
    """(own-node milliseconds of each of ``iters`` inferences after ``warmup``, timing label) of
    ``model`` compiled for OpenVINO CPU with performance counters on."""
    from ..export.onnx import export_onnx_proto
    from ..export.openvino import compile_openvino, int8_rest_precision
    from ..export.quantize import cpu_activations, int8_graph

    if precision == "int8":  # the QDQ graph calibrated on random inputs, as a wall-clock INT8 timing runs it
        proto, _ = int8_graph(model.eval(), tuple(input_shape))
        cpu_activations(proto)
        precision = int8_rest_precision()
    else:
        proto = export_onnx_proto(model.eval(), tuple(input_shape))
    compiled = compile_openvino(proto, precision, threads, perf_count=True)
    request = compiled.create_infer_request()
    x = np.random.default_rng(0).random(tuple(input_shape), dtype=np.float32)
    for _ in range(warmup):
        request.infer({0: x})
    times = []
    for _ in range(iters):
        request.infer({0: x})
        times.append(own_node_ms(request.get_profiling_info()))
    return times, TIMING
