"""Latency benchmark: one harness for PyTorch eager, ONNX Runtime, OpenVINO and TensorRT.

The ONNX-based backends share one export path (:func:`gpunet.export.onnx.export_onnx_proto`,
in memory; OpenVINO reads it through a temp dir). Each run warms up, times ``iters``
single inferences with ``time.perf_counter`` (host wall clock, input already in memory;
TensorRT: GPU compute time from CUDA events), and reports order statistics, so one slow
outlier from a busy machine moves the mean but not the median.
"""
from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from torch import nn

from .._checks import non_negative_int, positive_int
from .._extras import require
from ..export.onnx import export_onnx_proto
from ..hub import resolve_model_input
from .fingerprint import device_fingerprint, fingerprint_id

__all__ = ["benchmark", "BenchmarkResult", "BACKENDS", "PRECISIONS", "make_result", "make_runner", "ort_callable",
           "summarize", "usable_threads", "GIVEN_GRAPH_CALIBRATION"]

#: backend -> precisions it can be asked for (subject to the hardware, checked at run time).
PRECISIONS = {"torch": ("fp32", "bf16"), "onnxruntime": ("fp32", "int8"), "openvino": ("fp32", "bf16", "fp16", "int8"),
              "tensorrt": ("fp32", "fp16", "bf16", "int8")}
BACKENDS = tuple(PRECISIONS)

#: ``BenchmarkResult.calibration`` of an INT8 timing of a given, already quantized ``onnx_graph``
GIVEN_GRAPH_CALIBRATION = "as calibrated in the given onnx_graph"


@dataclass
class BenchmarkResult:
    """Latency statistics of one model / backend / precision / batch on this device."""

    model: str
    backend: str
    precision: str
    batch_size: int
    input_shape: Tuple[int, ...]
    iters: int
    warmup: int
    threads: Optional[int]
    median_ms: float
    p90_ms: float
    p99_ms: float
    mean_ms: float
    std_ms: float
    min_ms: float
    max_ms: float
    throughput: float  # images per second at the median latency
    timing: str  # what was timed
    fingerprint: Dict[str, Any] = field(default_factory=dict)
    date: str = ""
    times_ms: List[float] = field(default_factory=list, repr=False)
    calibration: Optional[str] = None  # int8: what the quantizer was calibrated on

    def to_dict(self, include_times: bool = False) -> Dict[str, Any]:
        d = dataclasses.asdict(self)
        d["input_shape"] = list(self.input_shape)
        if not include_times:
            d.pop("times_ms")
        return d


def summarize(times_ms: Sequence[float]) -> Dict[str, float]:
    a = np.asarray(times_ms, dtype=np.float64)
    return {"median_ms": float(np.median(a)), "p90_ms": float(np.percentile(a, 90)),
            "p99_ms": float(np.percentile(a, 99)), "mean_ms": float(a.mean()),
            "std_ms": float(a.std(ddof=1)) if a.size > 1 else 0.0, "min_ms": float(a.min()),
            "max_ms": float(a.max())}


def usable_threads() -> int:
    """Every core this process may use (its CPU affinity; the core count where the OS has none)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def _resolve_threads(threads: Optional[int], backend: str) -> Optional[int]:
    if backend == "tensorrt":
        return None
    if threads is None:  # all cores this process may use, set explicitly so every backend gets the same
        return usable_threads()
    return positive_int(threads, "threads")


@contextlib.contextmanager
def _torch_threads(n: Optional[int]):
    old = torch.get_num_threads()
    if n is not None:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def _torch_runner(model: nn.Module, x: torch.Tensor, precision: str, threads: Optional[int]) -> Callable[[], Any]:
    if precision == "bf16" and not torch.backends.mkldnn.is_available():
        raise ValueError("precision 'bf16' for the torch backend needs oneDNN (mkldnn), not available here")

    def run():  # thread count is set once around the whole timing loop (setting it per call is slow)
        with torch.inference_mode(), \
                torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
            return model(x)
    return run


def ort_callable(graph: Any, threads: Optional[int]) -> Callable[[np.ndarray], np.ndarray]:
    """ONNX Runtime CPU session (all graph optimisations, ``threads`` intra-op) over a ``ModelProto``
    or an ``.onnx`` file, as ``f(x) -> first output``: what ``benchmark`` times and deploy runs."""
    ort = require("onnxruntime", "onnx", "The onnxruntime backend")
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.log_severity_level = 3
    if threads is not None:
        so.intra_op_num_threads = threads
        so.inter_op_num_threads = 1
    source = os.fspath(graph) if isinstance(graph, (str, os.PathLike)) else graph.SerializeToString()
    sess = ort.InferenceSession(source, so, providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    return lambda x: sess.run(None, {name: x})[0]


def _ort_runner(proto, x: np.ndarray, threads: Optional[int]) -> Callable[[], Any]:
    run = ort_callable(proto, threads)
    return lambda: run(x)


def _openvino_runner(proto, x: np.ndarray, precision: str, threads: Optional[int]) -> Callable[[], Any]:
    from ..export.openvino import compile_openvino

    compiled = compile_openvino(proto, precision, threads)
    request = compiled.create_infer_request()
    out = compiled.output(0)
    return lambda: request.infer({0: x})[out]


def make_runner(model: nn.Module, input_shape: Sequence[int], backend: str, precision: str,
                threads: Optional[int], workdir: str, proto: Any = None) -> Tuple[Callable[[], Any], str]:
    """A zero-argument callable running one inference, and a description of what is timed.

    ``proto``: an ONNX graph to run instead of exporting ``model`` (the INT8 QDQ graph, or the
    model exported once and timed again in a fresh session).
    """
    x = torch.randn(*input_shape, generator=torch.Generator().manual_seed(0))
    if precision == "int8" and backend in ("onnxruntime", "openvino"):
        if proto is None:
            raise ValueError("precision 'int8' needs the quantized graph (gpunet.export.quantize.int8_graph)")
        from ..export.quantize import cpu_activations

        given, proto = proto, type(proto)()
        proto.CopyFrom(given)  # x86 runtimes get NNCF's uint8 back where the file has int8 only for TensorRT
        unsigned = cpu_activations(proto)
        what = f"INT8 QDQ, {unsigned} activation quantizers uint8 for the CPU" if unsigned else "INT8 QDQ"
        if backend == "onnxruntime":
            return _ort_runner(proto, x.numpy(), threads), f"host wall clock, ONNX Runtime CPU session.run, {what}"
        from ..export.openvino import int8_rest_precision

        rest = int8_rest_precision()
        return (_openvino_runner(proto, x.numpy(), rest, threads),
                f"host wall clock, OpenVINO CPU infer request, {what} ({rest} elsewhere)")
    if backend == "torch":
        return _torch_runner(model, x, precision, threads), "host wall clock, PyTorch eager, inference_mode"
    if backend == "onnxruntime":
        proto = export_onnx_proto(model, input_shape) if proto is None else proto
        return _ort_runner(proto, x.numpy(), threads), "host wall clock, ONNX Runtime CPU session.run"
    if backend == "openvino":
        from ..export.openvino import openvino_precisions

        require("openvino", "openvino", "The openvino backend")
        if precision not in openvino_precisions():  # fail before the (slow) export
            raise ValueError(f"precision {precision!r} is not supported by OpenVINO on this CPU (supported here: "
                             f"{', '.join(openvino_precisions())}; bf16 needs AVX512-BF16 or AMX)")
        proto = export_onnx_proto(model, input_shape) if proto is None else proto
        return _openvino_runner(proto, x.numpy(), precision, threads), "host wall clock, OpenVINO CPU infer request"
    raise AssertionError(backend)


def _tensorrt_half(precision: str, batch: int) -> bool:
    """TensorRT present, options valid, and whether the export is FP16: all before any slow work
    (bf16 on strongly typed TensorRT 11 is refused here, not after an fp32 export)."""
    from ..export import tensorrt as trt_export

    major, _ = trt_export.tensorrt_version()
    if precision == "int8":  # the QDQ graph from int8_graph; its Q/DQ nodes are checked by build_engine
        trt_export.validate_engine_options(precision, batch=batch, major=major)
        return False
    half = trt_export.export_half(precision, major)
    trt_export.validate_engine_options(precision, batch=batch, major=major, onnx_dtype="float16" if half else "float32")
    return half


def _tensorrt_times(model: nn.Module, input_shape: Sequence[int], precision: str, warmup: int, iters: int,
                    workdir: str, proto: Any = None) -> Dict[str, Any]:
    """Export (or take the INT8 QDQ ``proto``), build, and time; engine_latency's dict (times,
    whether a CUDA graph was replayed, the timing label, TensorRT version, GPU)."""
    from ..export import tensorrt as trt_export

    half = _tensorrt_half(precision, input_shape[0])
    onnx_path, engine_path = os.path.join(workdir, "model.onnx"), os.path.join(workdir, "model.engine")
    if proto is None:
        proto = export_onnx_proto(model, input_shape, half=half)
    with open(onnx_path, "wb") as f:
        f.write(proto.SerializeToString())
    trt_export.build_engine(onnx_path, engine_path, precision=precision, batch=input_shape[0])
    return trt_export.engine_latency(engine_path, batch=input_shape[0], warmup=warmup, iters=iters)


def benchmark(model_or_name: Union[str, nn.Module], backend: str = "onnxruntime", batch_size: int = 1,
              resolution: Optional[int] = None, input_shape: Optional[Sequence[int]] = None,
              precision: str = "fp32", warmup: int = 10, iters: int = 50, threads: Optional[int] = None,
              progress: bool = False, calib_data: Any = None, calib_size: int = 300,
              onnx_graph: Any = None) -> BenchmarkResult:
    """Measure inference latency of a hub model, GPUNet, or any ``nn.Module``.

    Args:
        model_or_name: hub name, a GPUNet, or any module (then ``input_shape`` is required).
        backend: ``onnxruntime``, ``openvino``, ``torch`` (eager, CPU) or ``tensorrt`` (GPU).
        batch_size: images per inference.
        resolution: square input side (default: the model's native resolution).
        input_shape: ``(C, H, W)`` or ``(N, C, H, W)`` instead of ``resolution``.
        precision: see :data:`PRECISIONS`; unsupported-on-this-hardware raises ``ValueError``.
        warmup / iters: untimed and timed inferences.
        threads: CPU threads for the backend (default: every core this process may use).
        progress: a tqdm bar on stderr.
        calib_data / calib_size: ``int8`` only: calibration images (folder or tensors, see
            :func:`gpunet.quantize`); without them the graph is calibrated on random inputs,
            valid for speed only, which ``result.calibration`` says.
        onnx_graph: ``onnxruntime`` / ``openvino`` only: the ONNX ``ModelProto`` of ``model`` at
            this input shape (e.g. from :func:`gpunet.export.onnx.export_onnx_proto`; at ``int8``
            its QDQ graph from :func:`gpunet.export.quantize.int8_graph`, already calibrated) to
            time instead of exporting (and quantizing) again. The export takes seconds and the
            timing a fraction of one, so re-timing one network in fresh sessions (``gpunet lut
            validate``'s passes) exports it once.
    """
    _check_benchmark_args(backend, precision, warmup, iters, calib_data, onnx_graph)
    threads = _resolve_threads(threads, backend)
    model, shape, name = resolve_model_input(model_or_name, batch_size, resolution, input_shape)
    if onnx_graph is not None:
        _check_graph_input(onnx_graph, shape)
    date = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    times, timing, calibration, trt_info = _run_timed(
        model, shape, name, backend, precision, warmup, iters, threads, progress, calib_data, calib_size, onnx_graph)
    return make_result(name, backend, precision, shape, iters, warmup, threads, times, timing,
                       _fingerprint(backend, trt_info), date, calibration)


def make_result(name: str, backend: str, precision: str, shape: Sequence[int], iters: int, warmup: int,
                threads: Optional[int], times: Sequence[float], timing: str, fingerprint: Dict[str, Any],
                date: Optional[str] = None, calibration: Optional[str] = None) -> BenchmarkResult:
    """A :class:`BenchmarkResult` from timed runs (ms), their statistics computed here."""
    stats = summarize(times)
    return BenchmarkResult(
        model=name, backend=backend, precision=precision, batch_size=shape[0], input_shape=tuple(shape),
        iters=iters, warmup=warmup, threads=threads, throughput=shape[0] * 1e3 / stats["median_ms"],
        timing=timing, fingerprint=fingerprint, date=date or time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        times_ms=[float(t) for t in times], calibration=calibration, **stats)


def _check_benchmark_args(backend: str, precision: str, warmup: Any, iters: Any, calib_data: Any,
                          onnx_graph: Any) -> None:
    """``benchmark``'s option errors, before any model is built."""
    if backend not in PRECISIONS:
        raise ValueError(f"unknown backend {backend!r}; expected one of {', '.join(BACKENDS)}")
    if precision not in PRECISIONS[backend]:
        raise ValueError(f"unsupported precision {precision!r} for backend {backend!r}; expected one of "
                         f"{', '.join(PRECISIONS[backend])}")
    non_negative_int(warmup, "warmup")
    positive_int(iters, "iters")
    if calib_data is not None and precision != "int8":
        raise ValueError(f"calib_data applies to precision 'int8' only, not {precision!r}")
    if onnx_graph is not None and backend not in ("onnxruntime", "openvino"):
        raise ValueError(f"onnx_graph applies to the onnxruntime and openvino backends only, not {backend!r}")
    if onnx_graph is not None and precision == "int8":
        if calib_data is not None:
            raise ValueError("calib_data and onnx_graph exclude each other at precision 'int8': the given graph "
                             "is already calibrated")
        if not any(n.op_type == "QuantizeLinear" for n in onnx_graph.graph.node):
            raise ValueError("onnx_graph at precision 'int8' must be the quantized (QDQ) graph, e.g. from "
                             "gpunet.export.quantize.int8_graph; this one has no QuantizeLinear node")


def _check_graph_input(onnx_graph: Any, shape: Sequence[int]) -> None:
    """A given ``onnx_graph`` must take the input shape asked for (symbolic dims match anything)."""
    dims = [d.dim_value or None for d in onnx_graph.graph.input[0].type.tensor_type.shape.dim]
    if len(dims) != len(shape) or any(d is not None and d != s for d, s in zip(dims, shape)):
        raise ValueError(f"onnx_graph takes input {dims}, not the {list(shape)} asked for; export it at "
                         f"this shape")


def _run_timed(model: nn.Module, shape: Sequence[int], name: str, backend: str, precision: str, warmup: int,
               iters: int, threads: Optional[int], progress: bool, calib_data: Any, calib_size: int,
               proto: Any) -> Tuple[List[float], str, Optional[str], Optional[Dict[str, Any]]]:
    """(times in ms, timing label, int8 calibration, TensorRT's info dict or None); a temp dir
    holds whatever the backend writes and is removed afterwards."""
    workdir = tempfile.mkdtemp(prefix="gpunet-bench-")
    calibration, trt_info = None, None
    try:
        if backend == "tensorrt":
            _tensorrt_half(precision, shape[0])  # install hint / option errors before export or calibration
        if precision == "int8" and proto is not None:
            calibration = GIVEN_GRAPH_CALIBRATION
        elif precision == "int8" and backend in ("onnxruntime", "openvino", "tensorrt"):
            from ..export.quantize import int8_graph

            positive_int(calib_size, "calib_size")
            proto, calibration = int8_graph(model, shape, calib_data, calib_size)
        if backend == "tensorrt":
            trt_info = _tensorrt_times(model, shape, precision, warmup, iters, workdir, proto=proto)
            times, timing = trt_info["times_ms"], trt_info["timing"]  # says whether a CUDA graph was replayed
        else:
            run, timing = make_runner(model, shape, backend, precision, threads, workdir, proto=proto)
            times = _time_loop(run, warmup, iters, threads if backend == "torch" else None,
                               f"{name} {backend} {precision}" if progress else None)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return times, timing, calibration, trt_info


def _time_loop(run: Callable[[], Any], warmup: int, iters: int, torch_threads: Optional[int],
               desc: Optional[str]) -> List[float]:
    """``warmup`` untimed then ``iters`` timed calls of ``run`` (ms each); ``desc``: a tqdm bar."""
    steps = range(iters)
    if desc is not None:
        from tqdm.auto import tqdm

        steps = tqdm(steps, desc=desc, leave=False, unit="it")
    times = []
    with _torch_threads(torch_threads):
        for _ in range(warmup):
            run()
        for _ in steps:
            t0 = time.perf_counter()
            run()
            times.append((time.perf_counter() - t0) * 1e3)
    return times


def _fingerprint(backend: str, trt_info: Optional[Dict[str, Any]]) -> Dict[str, Any]:
    """This device's fingerprint; with TensorRT, what actually ran, from TensorRT and CUDA themselves."""
    fingerprint = device_fingerprint(backend)
    if trt_info is not None:
        fingerprint["tensorrt"] = trt_info["tensorrt"]
        if not fingerprint.get("gpu"):
            fingerprint["gpu"] = trt_info["gpu"]
            fingerprint["id"] = fingerprint_id(fingerprint)
    return fingerprint
