"""TensorRT engines and their latency, measured the way the paper and NVIDIA report it.

Latency is the median *GPU compute time* at batch 1: the engine's enqueue captured in a CUDA
graph and replayed between CUDA events, inputs already on the GPU (no host transfers).

Two API generations are handled:

* TensorRT 10: weakly typed networks by default; ``fp16`` / ``bf16`` are builder flags that
  let TensorRT pick lower-precision kernels for an fp32 ONNX graph.
* TensorRT 11: networks are strongly typed (builder precision flags are gone); the tensor
  types in the ONNX file decide, so FP16 needs an FP16 export (``export_onnx(..., half=True)``).

``tensorrt`` is imported only inside these functions; without it (or without an NVIDIA GPU)
every entry point raises an error saying what to install.
"""
from __future__ import annotations

import os
import re
import statistics
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Tuple, Union

from .._io import atomic_write_bytes
from ..errors import GPUNetError

__all__ = ["build_engine", "engine_latency", "tensorrt_version", "parse_tensorrt_version",
           "validate_engine_options", "is_strongly_typed", "EngineOptions", "TENSORRT_PRECISIONS",
           "TensorRTUnavailable", "INSTALL_HINT"]

TENSORRT_PRECISIONS = ("fp32", "fp16", "bf16")
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
                            major: int = 10, onnx_dtype: Optional[str] = None) -> EngineOptions:
    """Check build options against the TensorRT generation (``major``) and the ONNX input type.

    ``onnx_dtype`` is the float type the ONNX graph computes in (``"float32"`` / ``"float16"``), if known.
    """
    if precision not in TENSORRT_PRECISIONS:
        extra = " (int8 needs a calibration set, which gpunet does not build)" if precision == "int8" else ""
        raise ValueError(f"unsupported precision {precision!r} for TensorRT{extra}; expected one of "
                         f"{', '.join(TENSORRT_PRECISIONS)}")
    if isinstance(workspace_gb, bool) or not isinstance(workspace_gb, (int, float)) or not workspace_gb > 0:
        raise ValueError(f"workspace_gb must be a positive number of GiB, got {workspace_gb!r}")
    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
        raise ValueError(f"batch must be a positive integer, got {batch!r}")
    max_batch = batch if max_batch is None else max_batch
    if isinstance(max_batch, bool) or not isinstance(max_batch, int) or max_batch < batch:
        raise ValueError(f"max_batch must be an integer >= batch ({batch}), got {max_batch!r}")
    if strongly_typed is None:
        strongly_typed = is_strongly_typed(major)
    elif not strongly_typed and is_strongly_typed(major):
        raise ValueError(f"TensorRT {major} only builds strongly typed networks; strongly_typed=False "
                         f"needs TensorRT 10")
    if strongly_typed and onnx_dtype is not None:
        want = {"fp32": "float32", "fp16": "float16", "bf16": "bfloat16"}[precision]
        if onnx_dtype != want:
            how = "export_onnx(..., half=True)" if precision == "fp16" else f"an ONNX export in {want}"
            raise ValueError(f"TensorRT {major} builds strongly typed networks, so precision {precision!r} comes "
                             f"from the ONNX tensor types, but this graph computes in {onnx_dtype}: use {how}"
                             + (" or precision='fp16'" if onnx_dtype == "float16" else ""))
    return EngineOptions(precision, int(workspace_gb * (1 << 30)), batch, max_batch, bool(strongly_typed))


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


def _builder(trt, logger):
    try:
        builder = trt.Builder(logger)
    except Exception as e:  # TensorRT raises TypeError/RuntimeError when CUDA cannot start
        builder, cause = None, e
    else:
        cause = None
    if builder is None:
        raise TensorRTUnavailable(f"TensorRT could not initialise CUDA ({cause or 'no GPU found'}): {INSTALL_HINT}")
    return builder


def build_engine(onnx_path: Union[str, os.PathLike], engine_path: Union[str, os.PathLike], precision: str = "fp16",
                 workspace_gb: float = 4.0, batch: int = 1, max_batch: Optional[int] = None,
                 strongly_typed: Optional[bool] = None) -> Dict[str, Any]:
    """Build a serialized TensorRT engine from an ONNX file (written atomically to ``engine_path``).

    Args:
        precision: ``fp32``, ``fp16`` or ``bf16``. On TensorRT 10 a builder flag; on TensorRT 11
            (strongly typed) it must match the ONNX tensor types (FP16 from an FP16 export).
        workspace_gb: builder workspace memory pool limit.
        batch / max_batch: optimisation profile for a dynamic batch axis (opt = ``batch``).
        strongly_typed: force strong typing on TensorRT 10 (always on for 11).
    Returns:
        a dict with the engine path, TensorRT version, precision, and I/O tensor shapes.
    """
    onnx_path, engine_path = os.fspath(onnx_path), os.fspath(engine_path)
    # validate what can be validated before touching TensorRT, so option errors are the same everywhere
    validate_engine_options(precision, workspace_gb, batch, max_batch, strongly_typed, major=10)
    if not os.path.isfile(onnx_path):
        raise FileNotFoundError(f"ONNX file {onnx_path} does not exist (export it with gpunet.export_onnx)")
    trt = _import_tensorrt()
    major, minor = parse_tensorrt_version(trt.__version__)
    opts = validate_engine_options(precision, workspace_gb, batch, max_batch, strongly_typed, major,
                                   _onnx_compute_dtype(onnx_path))
    logger = trt.Logger(trt.Logger.WARNING)
    builder = _builder(trt, logger)
    flags = 0
    if opts.strongly_typed and hasattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED"):
        flags |= 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    network = builder.create_network(flags)  # explicit batch is the only mode since TensorRT 10
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(onnx_path):
        errors = "; ".join(str(parser.get_error(i).desc()) for i in range(parser.num_errors))
        raise RuntimeError(f"TensorRT could not parse {onnx_path}: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, opts.workspace_bytes)
    if not opts.strongly_typed and opts.precision != "fp32":
        flag = {"fp16": "FP16", "bf16": "BF16"}[opts.precision]
        if not hasattr(trt.BuilderFlag, flag):
            raise ValueError(f"TensorRT {trt.__version__} has no {flag} builder flag; export the ONNX in that "
                             f"precision and build strongly typed")
        config.set_flag(getattr(trt.BuilderFlag, flag))
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
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise RuntimeError(f"TensorRT failed to build an engine from {onnx_path} (see the TensorRT log above)")
    atomic_write_bytes(engine_path, bytes(serialized))
    return {"engine_path": engine_path, "tensorrt": trt.__version__, "precision": opts.precision,
            "strongly_typed": opts.strongly_typed, "inputs": inputs, "dynamic_batch": dynamic,
            "batch": opts.batch, "max_batch": opts.max_batch}


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


def engine_latency(engine_path: Union[str, os.PathLike], batch: int = 1, warmup: int = 10, iters: int = 100,
                   cuda_graph: bool = True) -> Dict[str, Any]:
    """GPU compute time of one inference, per iteration in ms (CUDA events around a graph replay).

    Inputs and outputs live on the GPU, so no host transfer is timed (as ``trtexec``'s
    "GPU Compute Time"). Returns ``{"times_ms": [...], "median_ms": ..., "cuda_graph": bool}``.
    """
    for name, v, lo in (("batch", batch, 1), ("warmup", warmup, 0), ("iters", iters, 1)):
        if isinstance(v, bool) or not isinstance(v, int) or v < lo:
            raise ValueError(f"{name} must be an integer >= {lo}, got {v!r}")
    engine_path = os.fspath(engine_path)
    if not os.path.isfile(engine_path):
        raise FileNotFoundError(f"engine file {engine_path} does not exist (build it with gpunet.build_engine)")
    trt = _import_tensorrt()
    import torch

    if not torch.cuda.is_available():
        raise TensorRTUnavailable(f"no CUDA device visible to PyTorch: {INSTALL_HINT}")
    logger = trt.Logger(trt.Logger.WARNING)
    runtime = trt.Runtime(logger)
    with open(engine_path, "rb") as f:
        engine = runtime.deserialize_cuda_engine(f.read())
    if engine is None:
        raise RuntimeError(f"TensorRT could not load {engine_path} (built by another TensorRT version or GPU?)")
    ctx = engine.create_execution_context()
    buffers: List[Any] = []
    names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
    for name in names:  # inputs first: output shapes follow from them
        if engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT:
            shape = tuple(engine.get_tensor_shape(name))
            if shape and shape[0] < 0:
                shape = (batch,) + shape[1:]
                ctx.set_input_shape(name, shape)
            elif shape and shape[0] != batch:
                raise ValueError(f"engine {engine_path} has a fixed batch of {shape[0]}, not {batch}")
            t = torch.randn(shape, device="cuda").to(_torch_dtype(trt, engine.get_tensor_dtype(name)))
            buffers.append(t)
            ctx.set_tensor_address(name, t.data_ptr())
    for name in names:
        if engine.get_tensor_mode(name) == trt.TensorIOMode.OUTPUT:
            t = torch.empty(tuple(ctx.get_tensor_shape(name)), device="cuda",
                            dtype=_torch_dtype(trt, engine.get_tensor_dtype(name)))
            buffers.append(t)
            ctx.set_tensor_address(name, t.data_ptr())
    stream = torch.cuda.Stream()
    run = lambda: ctx.execute_async_v3(stream.cuda_stream)  # noqa: E731
    with torch.cuda.stream(stream):
        if not run():
            raise RuntimeError("TensorRT execution failed")
        stream.synchronize()
        graph, used_graph = None, False
        if cuda_graph:
            try:
                graph = torch.cuda.CUDAGraph()
                with torch.cuda.graph(graph, stream=stream):
                    run()
                used_graph = True
            except RuntimeError:  # some engines (e.g. with data-dependent shapes) cannot be captured
                graph = None
        step = graph.replay if graph is not None else run
        for _ in range(warmup):
            step()
        stream.synchronize()
        times = []
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        for _ in range(iters):
            start.record(stream)
            step()
            end.record(stream)
            end.synchronize()
            times.append(start.elapsed_time(end))
    return {"times_ms": times, "median_ms": statistics.median(times), "cuda_graph": used_graph,
            "tensorrt": trt.__version__, "gpu": torch.cuda.get_device_name()}
