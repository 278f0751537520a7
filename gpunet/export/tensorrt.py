"""TensorRT engines and their latency, measured the way the paper and NVIDIA report it.

Latency is the median *GPU compute time* at batch 1: the engine's enqueue captured in a CUDA
graph and replayed between CUDA events, inputs already on the GPU (no host transfers).

Two API generations are handled:

* TensorRT 10: weakly typed networks by default; ``fp16`` / ``bf16`` are builder flags that
  let TensorRT pick lower-precision kernels for an fp32 ONNX graph.
* TensorRT 11: networks are strongly typed (builder precision flags are gone); the tensor
  types in the ONNX file decide, so FP16 needs an FP16 export (``export_onnx(..., half=True)``).
* INT8 is explicit quantization only: a QDQ ONNX (``gpunet.quantize``) whose Q/DQ scales decide;
  no calibrator. TensorRT 10 (weakly typed) gets the INT8 and FP16 flags, as ``trtexec --int8
  --fp16``, so layers outside Q/DQ pairs may run in FP16; strongly typed builds (TensorRT 11, or
  ``strongly_typed=True``) keep those layers in the graph's float type.

Written against the TensorRT 10.x and 11.1 Python bindings (CUDA 12); never run in CI (no GPU).
The decisions (options, flags, shapes, the CUDA-graph fallback) are pure functions tested
without a GPU; ``engine_latency`` keeps only the calls into TensorRT and CUDA around them.

``tensorrt`` is imported only inside these functions; without it (or without an NVIDIA GPU)
every entry point raises an error saying what to install.
"""
from __future__ import annotations

import importlib.util
import os
import re
import statistics
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Tuple, Union

from .._checks import int_at_least, non_negative_int, positive, positive_int
from .._io import atomic_write_bytes
from ..errors import GPUNetError

__all__ = ["build_engine", "export_engine", "engine_latency", "engine_callable", "tensorrt_version", "parse_tensorrt_version",
           "validate_engine_options", "export_half", "builder_flags", "onnx_quantizers", "timing_label",
           "is_strongly_typed", "EngineOptions", "TENSORRT_PRECISIONS", "TensorRTUnavailable", "INSTALL_HINT"]

TENSORRT_PRECISIONS = ("fp32", "fp16", "bf16", "int8")
MIN_TENSORRT = 10
INSTALL_HINT = "install tensorrt (pip install tensorrt, or pip install 'gpunet[tensorrt]') and use an NVIDIA GPU"


class TensorRTUnavailable(GPUNetError, ImportError):
    """TensorRT (or a GPU it can use) is missing; the message says what to install."""


def _import_tensorrt():
    try:
        import tensorrt as trt
    except ImportError as e:
        raise TensorRTUnavailable(f"TensorRT is not available: {INSTALL_HINT}") from e
    parse_tensorrt_version(getattr(trt, "__version__", ""))
    return trt


def parse_tensorrt_version(version: str) -> Tuple[int, int]:
    """``"10.13.0.35"`` -> ``(10, 13)``; versions older than TensorRT 10 are refused."""
    m = re.match(r"^\s*(\d+)\.(\d+)", str(version))
    if not m:
        raise TensorRTUnavailable(f"cannot read the TensorRT version from {version!r}; {INSTALL_HINT}")
    major, minor = int(m.group(1)), int(m.group(2))
    if major < MIN_TENSORRT:
        raise TensorRTUnavailable(f"TensorRT {version} is too old: gpunet needs TensorRT {MIN_TENSORRT} or newer "
                                  f"(pip install -U tensorrt)")
    return major, minor


def tensorrt_version() -> Tuple[int, int]:
    """Installed TensorRT's (major, minor); raises :class:`TensorRTUnavailable` without it."""
    return parse_tensorrt_version(_import_tensorrt().__version__)


def is_strongly_typed(major: int) -> bool:
    """TensorRT 11 builds strongly typed networks only; 10 does when asked."""
    return major >= 11


@dataclass(frozen=True)
class EngineOptions:
    precision: str
    workspace_bytes: int
    batch: int
    max_batch: int
    strongly_typed: bool


def validate_engine_options(precision: str = "fp16", workspace_gb: float = 4.0, batch: int = 1,
                            max_batch: Optional[int] = None, strongly_typed: Optional[bool] = None,
                            major: int = 10, onnx_dtype: Optional[str] = None,
                            quantized: Optional[bool] = None) -> EngineOptions:
    """Check build options against the TensorRT generation (``major``) and the ONNX graph.

    ``onnx_dtype`` is the float type the ONNX graph computes in (``"float32"`` / ``"float16"`` /
    ``"bfloat16"``) and ``quantized`` whether it holds Q/DQ nodes, where known.
    """
    if precision not in TENSORRT_PRECISIONS:
        raise ValueError(f"unsupported precision {precision!r} for TensorRT; expected one of "
                         f"{', '.join(TENSORRT_PRECISIONS)}")
    positive(workspace_gb, "workspace_gb")
    positive_int(batch, "batch")
    max_batch = int_at_least(batch if max_batch is None else max_batch, "max_batch", batch)
    if strongly_typed is None:
        strongly_typed = is_strongly_typed(major)
    elif not strongly_typed and is_strongly_typed(major):
        raise ValueError(f"TensorRT {major} only builds strongly typed networks; strongly_typed=False "
                         f"needs TensorRT 10")
    if precision == "int8" and quantized is False:
        raise ValueError("precision 'int8' needs an explicitly quantized ONNX (QuantizeLinear/DequantizeLinear "
                         "nodes; TensorRT takes no calibrator here): quantize first with gpunet quantize "
                         "(gpunet.quantize)")
    if precision != "int8" and quantized:
        raise ValueError(f"this ONNX is quantized (QuantizeLinear/DequantizeLinear nodes): build it with "
                         f"precision='int8', not {precision!r}")
    if strongly_typed and onnx_dtype is not None and precision != "int8":  # int8: the Q/DQ nodes decide
        want = {"fp32": "float32", "fp16": "float16", "bf16": "bfloat16"}[precision]
        if onnx_dtype != want:
            how = "export_onnx(..., half=True)" if precision == "fp16" else f"an ONNX export in {want}"
            raise ValueError(f"TensorRT {major} builds strongly typed networks, so precision {precision!r} comes "
                             f"from the ONNX tensor types, but this graph computes in {onnx_dtype}: use {how}"
                             + (" or precision='fp16'" if onnx_dtype == "float16" else ""))
    return EngineOptions(precision, int(workspace_gb * (1 << 30)), batch, max_batch, bool(strongly_typed))


def export_half(precision: str, major: int, half: bool = False, strongly_typed: Optional[bool] = None) -> bool:
    """Whether gpunet's ONNX export for this engine must be FP16, checked before the (slow) export.

    gpunet exports fp32 or fp16 ONNX only. Strongly typed builds (TensorRT 11) take their precision
    from the graph, so fp16 means an FP16 export and bf16 cannot be served; weakly typed TensorRT 10
    lowers an fp32 graph with builder flags.
    """
    if precision not in TENSORRT_PRECISIONS:
        raise ValueError(f"unsupported precision {precision!r} for TensorRT; expected one of "
                         f"{', '.join(TENSORRT_PRECISIONS)}")
    typed = is_strongly_typed(major) if strongly_typed is None else strongly_typed
    if precision == "int8":
        raise ValueError("an int8 engine is built from a QDQ ONNX file: quantize first with gpunet quantize "
                         "(gpunet.quantize), then gpunet.build_engine(file, engine, precision='int8')")
    if half and precision != "fp16":
        raise ValueError(f"half=True (--half) exports an FP16 graph, which contradicts precision {precision!r}; "
                         f"drop --half or use precision 'fp16'")
    if typed and precision == "bf16":
        raise ValueError(f"precision 'bf16' on TensorRT {major}: networks are strongly typed (BuilderFlag.BF16 is "
                         f"gone), so bf16 must come from a bf16 ONNX graph, and gpunet exports fp32 or fp16 only "
                         f"(ONNX Runtime cannot check a bf16 graph on the CPU). Use 'fp16', or convert the fp32 "
                         f"export yourself (ModelOpt AutoCast, low_precision_type='bf16') and build that file "
                         f"with gpunet.build_engine(..., precision='bf16')")
    return half or (typed and precision == "fp16")


def builder_flags(precision: str, strongly_typed: bool) -> Tuple[str, ...]:
    """``trt.BuilderFlag`` names a weakly typed TensorRT 10 build sets; none when strongly typed.

    int8 is INT8 + FP16 (as ``trtexec --int8 --fp16``): scales come from the Q/DQ nodes, no
    calibrator, and the layers outside Q/DQ pairs may run in FP16 instead of FP32.
    """
    if strongly_typed:
        return ()
    return {"fp32": (), "fp16": ("FP16",), "bf16": ("BF16",), "int8": ("INT8", "FP16")}[precision]


def onnx_quantizers(onnx_path: str) -> Dict[str, Any]:
    """Q/DQ node counts of an ONNX file and the quantizers TensorRT refuses (uint8 zero points)."""
    from .._extras import require

    onnx = require("onnx", "onnx", "Inspecting an ONNX file for TensorRT")
    model = onnx.load(onnx_path, load_external_data=False)
    zero_types = {t.name: t.data_type for t in model.graph.initializer}
    for node in model.graph.node:  # zero points may also be Constant nodes
        if node.op_type == "Constant":
            for a in node.attribute:
                if a.name == "value" and a.t is not None:
                    zero_types[node.output[0]] = a.t.data_type
    counts = {"QuantizeLinear": 0, "DequantizeLinear": 0}
    unsigned = []
    for node in model.graph.node:
        if node.op_type in counts:
            counts[node.op_type] += 1
            if len(node.input) > 2 and zero_types.get(node.input[2]) == onnx.TensorProto.UINT8:
                unsigned.append(node.name or node.output[0])
    return {"quantize": counts["QuantizeLinear"], "dequantize": counts["DequantizeLinear"],
            "quantized": any(counts.values()), "unsigned": unsigned}


def _onnx_compute_dtype(onnx_path: str) -> Optional[str]:
    """The float type the graph computes in: its float weights' type (an AutoCast / ``half=True``
    export keeps FP16 weights even with FP32 I/O), else its first input's type."""
    try:
        import onnx
    except ImportError:
        return None
    model = onnx.load(onnx_path, load_external_data=False)
    names = {onnx.TensorProto.FLOAT: "float32", onnx.TensorProto.FLOAT16: "float16",
             onnx.TensorProto.BFLOAT16: "bfloat16"}
    weights = {names[t.data_type] for t in model.graph.initializer if t.data_type in names}
    for low in ("float16", "bfloat16"):
        if low in weights:
            return low
    if weights:
        return "float32"
    if not model.graph.input:
        return None
    elem = model.graph.input[0].type.tensor_type.elem_type
    return names.get(elem, onnx.TensorProto.DataType.Name(elem).lower())


def _create(factory, logger, what: str):
    """``trt.Builder`` / ``trt.Runtime``: pybind11 raises TypeError ("factory function returned
    nullptr") or the binding returns None when CUDA cannot start; both mean no usable GPU."""
    try:
        obj, cause = factory(logger), None
    except Exception as e:  # TypeError / RuntimeError from the bindings
        obj, cause = None, e
    if obj is None:
        raise TensorRTUnavailable(f"TensorRT could not create its {what}: CUDA did not initialise "
                                  f"({cause or 'no GPU found'}): {INSTALL_HINT}") from cause
    return obj


def _builder(trt, logger):
    return _create(trt.Builder, logger, "builder")


def _runtime(trt, logger):
    return _create(trt.Runtime, logger, "runtime")


def build_engine(onnx_path: Union[str, os.PathLike], engine_path: Union[str, os.PathLike], precision: str = "fp16",
                 workspace_gb: float = 4.0, batch: int = 1, max_batch: Optional[int] = None,
                 strongly_typed: Optional[bool] = None) -> Dict[str, Any]:
    """Build a serialized TensorRT engine from an ONNX file (written atomically to ``engine_path``).

    Args:
        precision: ``fp32``, ``fp16``, ``bf16`` or ``int8``. On TensorRT 10 a builder flag; on
            TensorRT 11 (strongly typed) it must match the ONNX tensor types (FP16 from an FP16
            export). ``int8`` needs a QDQ ONNX (``gpunet.quantize``); its scales come from the graph.
        workspace_gb: builder workspace memory pool limit.
        batch / max_batch: optimisation profile for a dynamic batch axis (min 1, opt ``batch``,
            max ``max_batch``).
        strongly_typed: force strong typing on TensorRT 10 (always on for 11).
    Returns:
        a dict with the engine path, TensorRT version, precision, builder flags and I/O shapes.
    """
    onnx_path, engine_path = os.fspath(onnx_path), os.fspath(engine_path)
    quant = _check_onnx_file(onnx_path, precision, workspace_gb, batch, max_batch, strongly_typed)
    trt = _import_tensorrt()
    major, minor = parse_tensorrt_version(trt.__version__)
    opts = validate_engine_options(precision, workspace_gb, batch, max_batch, strongly_typed, major,
                                   _onnx_compute_dtype(onnx_path), quant["quantized"] if quant else None)
    logger = trt.Logger(trt.Logger.WARNING)
    builder = _builder(trt, logger)
    # the parser owns the network's weights: it stays referenced here until the engine is built
    network, parser = _parse_network(trt, builder, logger, onnx_path, opts.strongly_typed)
    config, set_flags = _builder_config(trt, builder, opts)
    inputs, dynamic = _add_batch_profile(builder, network, config, opts)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise RuntimeError(f"TensorRT failed to build an engine from {onnx_path} (see the TensorRT log above)")
    atomic_write_bytes(engine_path, bytes(serialized))
    return {"engine_path": engine_path, "tensorrt": trt.__version__, "precision": opts.precision,
            "strongly_typed": opts.strongly_typed, "builder_flags": list(set_flags), "inputs": inputs,
            "dynamic_batch": dynamic, "batch": opts.batch, "max_batch": opts.max_batch if dynamic else opts.batch}


def _check_onnx_file(onnx_path: str, precision: str, workspace_gb: float, batch: int, max_batch: Optional[int],
                     strongly_typed: Optional[bool]) -> Optional[Dict[str, Any]]:
    """Everything checkable before touching TensorRT, so option errors are the same everywhere;
    returns :func:`onnx_quantizers` of the file, or None where onnx is missing and not needed."""
    validate_engine_options(precision, workspace_gb, batch, max_batch, strongly_typed, major=10)
    if not os.path.isfile(onnx_path):
        raise FileNotFoundError(f"ONNX file {onnx_path} does not exist (export it with gpunet.export_onnx)")
    # Q/DQ nodes decide int8 and rule out the other precisions; without onnx only int8 insists on looking
    quant = onnx_quantizers(onnx_path) if precision == "int8" or importlib.util.find_spec("onnx") else None
    if quant is not None:
        validate_engine_options(precision, workspace_gb, batch, max_batch, strongly_typed, major=10,
                                quantized=quant["quantized"])
        if quant["unsigned"]:
            raise ValueError(f"{onnx_path}: TensorRT takes signed int8 quantizers only, but {len(quant['unsigned'])} "
                             f"have uint8 zero points (e.g. {quant['unsigned'][0]!r}); quantize again without "
                             f"--uint8-activations (signed_activations=True)")
    return quant


def _parse_network(trt, builder, logger, onnx_path: str, strongly_typed: bool):
    """(network, parser) for the ONNX file; keep the parser alive until the engine is built."""
    flags = 0
    if strongly_typed and hasattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED"):
        flags |= 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    network = builder.create_network(flags)  # explicit batch is the only mode since TensorRT 10
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(onnx_path):
        errors = "; ".join(str(parser.get_error(i).desc()) for i in range(parser.num_errors))
        raise RuntimeError(f"TensorRT could not parse {onnx_path}: {errors}")
    return network, parser


def _builder_config(trt, builder, opts: EngineOptions):
    """(builder config with the workspace limit and precision flags set, the flag names set)."""
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, opts.workspace_bytes)
    set_flags = builder_flags(opts.precision, opts.strongly_typed)
    for flag in set_flags:
        if not hasattr(trt.BuilderFlag, flag):
            raise ValueError(f"TensorRT {trt.__version__} has no {flag} builder flag; export the ONNX in that "
                             f"precision and build strongly typed")
        config.set_flag(getattr(trt.BuilderFlag, flag))
    return config, set_flags


def _add_batch_profile(builder, network, config, opts: EngineOptions) -> Tuple[List[Dict[str, Any]], bool]:
    """(the inputs' names and shapes, whether any is dynamic); a dynamic batch axis gets the
    optimisation profile 1 / ``opts.batch`` / ``opts.max_batch``, other dynamic dims are refused."""
    profile, dynamic = builder.create_optimization_profile(), False
    inputs = []
    for i in range(network.num_inputs):
        t = network.get_input(i)
        shape = tuple(t.shape)
        inputs.append({"name": t.name, "shape": list(shape)})
        if any(d < 0 for d in shape):
            if any(d < 0 for d in shape[1:]):
                raise ValueError(f"input {t.name!r} has dynamic non-batch dims {shape}; export with a fixed resolution")
            rest = shape[1:]
            profile.set_shape(t.name, (1,) + rest, (opts.batch,) + rest, (opts.max_batch,) + rest)
            dynamic = True
    if dynamic:
        config.add_optimization_profile(profile)
    return inputs, dynamic


def export_engine(model_or_name: Any, engine_path: Union[str, os.PathLike], precision: str = "fp16",
                  batch_size: int = 1, max_batch: Optional[int] = None, dynamic_batch: bool = False,
                  half: bool = False, resolution: Optional[int] = None, opset: Optional[int] = None,
                  check: bool = True, workspace_gb: float = 4.0) -> Dict[str, Any]:
    """Export a model to ONNX (temp file) and build its engine; every option is checked first.

    ``max_batch`` (needs ``dynamic_batch``) is the top of the optimisation profile; without it a
    dynamic engine serves batch 1 to ``batch_size``.
    """
    import tempfile

    from . import onnx as onnx_export

    major, _ = tensorrt_version()  # the install hint comes before a slow export
    if max_batch is not None and not dynamic_batch:
        raise ValueError("max_batch (--max-batch) needs dynamic_batch (--dynamic-batch): a static export "
                         "has one batch size")
    half = export_half(precision, major, half)
    validate_engine_options(precision, workspace_gb, batch_size, max_batch, major=major,
                            onnx_dtype="float16" if half else "float32")
    with tempfile.TemporaryDirectory(prefix="gpunet-trt-") as tmp:
        onnx_path = os.path.join(tmp, "model.onnx")
        onnx_export.export_onnx(model_or_name, onnx_path, batch_size=batch_size, dynamic_batch=dynamic_batch,
                                half=half, check=check, resolution=resolution, opset=opset)
        return build_engine(onnx_path, engine_path, precision=precision, workspace_gb=workspace_gb,
                            batch=batch_size, max_batch=max_batch)


def _torch_dtype(trt, dtype):
    import torch

    table = {trt.float32: torch.float32, trt.float16: torch.float16, trt.int32: torch.int32,
             trt.int8: torch.int8, trt.bool: torch.bool}
    for name, tdt in (("bfloat16", torch.bfloat16), ("int64", torch.int64), ("uint8", torch.uint8)):
        if hasattr(trt, name):
            table[getattr(trt, name)] = tdt
    if dtype not in table:
        raise RuntimeError(f"unsupported TensorRT tensor type {dtype}")
    return table[dtype]


def _io_shapes(engine, ctx, input_mode, batch: int, where: str) -> Tuple[List[Tuple[str, tuple]], List[Tuple[str, tuple]]]:
    """Set the input shapes for ``batch`` on ``ctx`` and read the output shapes they give.

    A batch outside the optimisation profile is refused quoting the profile (``set_input_shape``
    returns False); ``-1`` output dims (data-dependent shapes) are refused.
    """
    names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
    inputs, outputs = [], []
    for name in names:  # inputs first: output shapes follow from them
        if engine.get_tensor_mode(name) != input_mode:
            continue
        shape = tuple(engine.get_tensor_shape(name))
        if any(d < 0 for d in shape[1:]):
            raise ValueError(f"engine {where}: input {name!r} has dynamic non-batch dims {shape}; gpunet measures "
                             f"engines with a fixed resolution")
        if shape and shape[0] < 0:
            shape = (batch,) + shape[1:]
            if not ctx.set_input_shape(name, shape):
                lo, opt, hi = (tuple(d) for d in engine.get_tensor_profile_shape(name, 0))
                raise ValueError(f"engine {where}: input {name!r} cannot take shape {shape}; its optimisation "
                                 f"profile 0 allows min {lo}, opt {opt}, max {hi}: use a batch in "
                                 f"{lo[0]}..{hi[0]} or rebuild with a larger max_batch (--max-batch)")
        elif shape and shape[0] != batch:
            raise ValueError(f"engine {where} has a fixed batch of {shape[0]}, not {batch}")
        inputs.append((name, shape))
    for name in names:
        if engine.get_tensor_mode(name) == input_mode:
            continue
        shape = tuple(ctx.get_tensor_shape(name))
        if any(d < 0 for d in shape):
            raise RuntimeError(f"engine {where}: output {name!r} has shape {shape} with the inputs set: a "
                               f"data-dependent shape, known only after execution, which needs an "
                               f"IOutputAllocator (IExecutionContext.set_output_allocator); gpunet's latency "
                               f"harness preallocates outputs and does not support such engines")
        outputs.append((name, shape))
    return inputs, outputs


def timing_label(cuda_graph: bool, fallback: bool = False) -> str:
    """What a TensorRT latency figure is, worded from whether a CUDA graph was replayed
    (``fallback``: a graph was asked for, but its capture failed)."""
    how = "a CUDA-graph replay" if cuda_graph else "plain execute_async_v3 enqueues"
    why = "; CUDA-graph capture failed" if fallback and not cuda_graph else ""
    return f"GPU compute time (CUDA events around {how}{why}), TensorRT"


def _enqueue(run, what: str = "TensorRT execute_async_v3") -> None:
    if not run():
        raise RuntimeError(f"{what} returned False: the inference was not enqueued (see the TensorRT log above)")


def _measure(run, cuda, warmup: int, iters: int, cuda_graph: bool = True) -> Tuple[List[float], bool, Optional[str]]:
    """Time ``run`` (one enqueue, returns TensorRT's bool) on ``cuda``'s stream.

    Order as trtexec: wait for the inputs written on the default stream, one checked enqueue
    (lazy initialisation stays out of the graph), then capture. A capture whose enqueue returned
    False, or that CUDA invalidated, is dropped and plain enqueues are timed instead, each checked.
    Returns (times in ms, whether a graph was replayed, why not).
    """
    cuda.wait_for_inputs()
    _enqueue(run, "the first TensorRT enqueue")
    cuda.synchronize()
    graph, why = None, None
    if cuda_graph:
        graph, ok, error = cuda.capture(run)
        if error is not None:
            graph, why = None, f"CUDA-graph capture failed: {error}"
        elif not ok:  # enqueueV3 failed inside the capture: whatever the capture ended with is not the inference
            graph, why = None, "execute_async_v3 returned False inside the CUDA-graph capture"
        cuda.synchronize()
    step = graph.replay if graph is not None else (lambda: _enqueue(run))
    for _ in range(warmup):
        step()
    cuda.synchronize()
    times = [cuda.time(step) for _ in range(iters)]
    return times, graph is not None, why


class _TorchCuda:
    """The CUDA side of :func:`_measure` through PyTorch: one side stream, events, graph capture."""

    def __init__(self, torch):
        self.torch = torch
        self.producer = torch.cuda.current_stream()  # where the inputs were written
        self.stream = torch.cuda.Stream()
        self.start = torch.cuda.Event(enable_timing=True)
        self.end = torch.cuda.Event(enable_timing=True)

    def wait_for_inputs(self) -> None:
        self.stream.wait_stream(self.producer)

    def synchronize(self) -> None:
        self.stream.synchronize()

    def capture(self, fn):
        """(graph, fn's result, error): thread-local capture mode as trtexec, so other threads'
        CUDA calls cannot invalidate it; a capture CUDA invalidates raises at its end."""
        graph, result = self.torch.cuda.CUDAGraph(), None
        try:
            with self.torch.cuda.graph(graph, stream=self.stream, capture_error_mode="thread_local"):
                result = fn()
        except RuntimeError as e:
            return None, False, str(e)
        return graph, bool(result), None

    def time(self, step) -> float:
        self.start.record(self.stream)
        step()  # runs with self.stream current (engine_latency), which graph.replay() launches on
        self.end.record(self.stream)
        self.end.synchronize()
        return self.start.elapsed_time(self.end)


def engine_latency(engine_path: Union[str, os.PathLike], batch: int = 1, warmup: int = 10, iters: int = 100,
                   cuda_graph: bool = True) -> Dict[str, Any]:
    """GPU compute time of one inference, per iteration in ms (CUDA events around a graph replay).

    Inputs and outputs live on the GPU, so no host transfer is timed (as ``trtexec``'s
    "GPU Compute Time"). Returns ``{"times_ms", "median_ms", "cuda_graph", "timing",
    "graph_fallback", "tensorrt", "gpu"}``; ``cuda_graph`` is False when the capture failed and
    plain enqueues were timed instead (``graph_fallback`` says why).
    """
    positive_int(batch, "batch"), non_negative_int(warmup, "warmup"), positive_int(iters, "iters")
    engine_path = os.fspath(engine_path)
    if not os.path.isfile(engine_path):
        raise FileNotFoundError(f"engine file {engine_path} does not exist (build it with gpunet.build_engine)")
    trt = _import_tensorrt()
    import torch

    if not torch.cuda.is_available():
        raise TensorRTUnavailable(f"no CUDA device visible to PyTorch: {INSTALL_HINT}")
    engine = _load_engine(trt, engine_path, engine_path)
    ctx = engine.create_execution_context()
    inputs, outputs = _io_shapes(engine, ctx, trt.TensorIOMode.INPUT, batch, engine_path)
    buffers: List[Any] = []  # kept alive until the timing is done
    for name, shape in inputs:  # written on the default stream; _measure makes the side stream wait
        t = torch.randn(shape, device="cuda").to(_torch_dtype(trt, engine.get_tensor_dtype(name)))
        buffers.append(t)
        ctx.set_tensor_address(name, t.data_ptr())
    for name, shape in outputs:
        t = torch.empty(shape, device="cuda", dtype=_torch_dtype(trt, engine.get_tensor_dtype(name)))
        buffers.append(t)
        ctx.set_tensor_address(name, t.data_ptr())
    cuda = _TorchCuda(torch)  # created on the default stream: the inputs' producer
    stream = cuda.stream
    with torch.cuda.stream(stream):
        times, used_graph, why = _measure(lambda: ctx.execute_async_v3(stream.cuda_stream), cuda, warmup, iters,
                                          cuda_graph)
    return {"times_ms": times, "median_ms": statistics.median(times), "cuda_graph": used_graph,
            "timing": timing_label(used_graph, fallback=why is not None), "graph_fallback": why,
            "tensorrt": trt.__version__, "gpu": torch.cuda.get_device_name()}


def _load_engine(trt, engine: Union[str, os.PathLike, bytes], where: str):
    """A deserialized engine from an engine file or its bytes."""
    if not isinstance(engine, (bytes, bytearray)):
        with open(os.fspath(engine), "rb") as f:
            engine = f.read()
    loaded = _runtime(trt, trt.Logger(trt.Logger.WARNING)).deserialize_cuda_engine(bytes(engine))
    if loaded is None:
        raise RuntimeError(f"TensorRT could not load {where} (built by another TensorRT version or GPU?)")
    return loaded


def _engine_batch(engine, where: str) -> int:
    """The fixed batch of an engine's first input (a dynamic batch must be given)."""
    shape = tuple(engine.get_tensor_shape(engine.get_tensor_name(0)))
    if not shape or shape[0] < 0:
        raise ValueError(f"engine {where} has a dynamic batch: give batch= (a size inside its optimisation profile)")
    return int(shape[0])


def engine_callable(engine: Union[str, os.PathLike, bytes], batch: Optional[int] = None):
    """``run(x) -> logits``: numpy in, numpy (float32) out, through a TensorRT engine (file or bytes).

    What a user's serving loop pays per call: the host-to-device copy of ``x`` (cast to the
    engine's input type), one ``execute_async_v3`` on a side stream, the device-to-host copy of
    the output. Buffers are allocated once for ``batch`` (default: the engine's fixed batch);
    ``x`` must have that shape.
    """
    if batch is not None:
        positive_int(batch, "batch")
    where = "engine bytes" if isinstance(engine, (bytes, bytearray)) else os.fspath(engine)
    trt = _import_tensorrt()
    import numpy as np
    import torch

    if not torch.cuda.is_available():
        raise TensorRTUnavailable(f"no CUDA device visible to PyTorch: {INSTALL_HINT}")
    loaded = _load_engine(trt, engine, where)
    batch = _engine_batch(loaded, where) if batch is None else batch
    ctx = loaded.create_execution_context()
    inputs, outputs = _io_shapes(loaded, ctx, trt.TensorIOMode.INPUT, batch, where)
    if len(inputs) != 1 or len(outputs) != 1:
        raise ValueError(f"engine {where}: gpunet runs engines with one input and one output, this one has "
                         f"{len(inputs)} and {len(outputs)}")
    (in_name, in_shape), (out_name, out_shape) = inputs[0], outputs[0]
    x_dev = torch.empty(in_shape, device="cuda", dtype=_torch_dtype(trt, loaded.get_tensor_dtype(in_name)))
    y_dev = torch.empty(out_shape, device="cuda", dtype=_torch_dtype(trt, loaded.get_tensor_dtype(out_name)))
    ctx.set_tensor_address(in_name, x_dev.data_ptr())
    ctx.set_tensor_address(out_name, y_dev.data_ptr())
    stream = torch.cuda.Stream()

    def run(x):
        if tuple(x.shape) != tuple(in_shape):
            raise ValueError(f"engine {where} takes input {tuple(in_shape)}, got {tuple(x.shape)}")
        with torch.cuda.stream(stream):
            x_dev.copy_(torch.from_numpy(np.ascontiguousarray(x)), non_blocking=False)
            _enqueue(lambda: ctx.execute_async_v3(stream.cuda_stream))
            y = y_dev.float().cpu()
        stream.synchronize()
        return y.numpy()

    run.buffers = (ctx, x_dev, y_dev, loaded)  # the context and buffers live as long as the callable
    return run
