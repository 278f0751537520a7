"""Run a deploy path: one callable per backend over an in-memory graph or the artifact's files,
fixed-batch chunking, and the image preprocessing recorded in ``deploy.json``.

The same callables are timed by :mod:`gpunet.deploy.measure` and returned (through the
artifact's files) by :func:`gpunet.deploy.load_deployed`, so what was measured is what runs.
"""
from __future__ import annotations

import os
from typing import Any, Callable, Dict, Optional, Sequence

import numpy as np

from ..latency.bench import ort_callable, usable_threads

__all__ = ["cpu_graph", "ort_callable", "openvino_callable", "tensorrt_engine", "path_callable", "run_batched",
           "usable_threads", "preprocess_images", "image_transform"]

Runner = Callable[[np.ndarray], np.ndarray]


def cpu_graph(int8_proto):
    """A copy of an INT8 QDQ graph with NNCF's uint8 activations back, for x86 CPU runtimes."""
    from ..export.quantize import cpu_activations

    proto = type(int8_proto)()
    proto.CopyFrom(int8_proto)
    cpu_activations(proto)
    return proto


def openvino_callable(graph: Any, precision: str, threads: Optional[int]) -> Runner:
    """OpenVINO CPU infer request over a ``ModelProto``, an ``.onnx`` or an IR ``.xml`` file.
    ``precision`` ``int8``: the QDQ graph with the rest in bf16 where native, else fp32."""
    from ..export.openvino import compile_openvino, int8_rest_precision

    if precision == "int8":
        precision = int8_rest_precision()
    compiled = compile_openvino(os.fspath(graph) if isinstance(graph, (str, os.PathLike)) else graph,
                                precision, threads)
    request = compiled.create_infer_request()
    out = compiled.output(0)
    return lambda x: np.asarray(request.infer({0: x})[out])


def tensorrt_engine(graph: Any, precision: str) -> bytes:
    """A serialized TensorRT engine of an ONNX ``ModelProto`` (static shape) at ``precision``;
    INT8 takes the signed QDQ graph, fp16 on a strongly typed TensorRT an FP16 export."""
    import tempfile

    from ..export.tensorrt import build_engine

    with tempfile.TemporaryDirectory(prefix="gpunet-deploy-trt-") as tmp:
        src, dst = os.path.join(tmp, "model.onnx"), os.path.join(tmp, "model.engine")
        with open(src, "wb") as f:
            f.write(graph.SerializeToString())
        build_engine(src, dst, precision=precision)
        with open(dst, "rb") as f:
            return f.read()


def path_callable(backend: str, precision: str, graph: Any, threads: Optional[int]) -> Runner:
    """The callable for ``backend`` / ``precision`` (``graph``: proto or file; TensorRT: the
    engine's bytes or file, run on the GPU, ``threads`` unused)."""
    if backend == "onnxruntime":
        return ort_callable(graph, threads)
    if backend == "openvino":
        return openvino_callable(graph, precision, threads)
    if backend == "tensorrt":
        from ..export.tensorrt import engine_callable

        return engine_callable(graph)
    raise ValueError(f"backend {backend!r} cannot be run by gpunet deploy (onnxruntime, openvino or tensorrt)")


def run_batched(run: Runner, x: np.ndarray, batch: int) -> np.ndarray:
    """``run`` takes exactly ``batch`` images: feed ``x`` (N, C, H, W) in chunks, the last padded."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    outs = []
    for i in range(0, len(x), batch):
        chunk = x[i:i + batch]
        n = len(chunk)
        if n < batch:
            chunk = np.concatenate([chunk, np.repeat(chunk[-1:], batch - n, axis=0)])
        outs.append(np.asarray(run(chunk))[:n])
    return np.concatenate(outs) if outs else np.zeros((0,), np.float32)


def image_transform(preprocessing: Dict[str, Any]):
    """The eval transform (resize, centre crop, normalise) of a ``deploy.json`` ``preprocessing``."""
    from ..train.data import eval_transform

    cfg = dict(preprocessing)
    cfg["input_size"] = tuple(cfg["input_size"])
    cfg["mean"], cfg["std"] = tuple(cfg["mean"]), tuple(cfg["std"])
    return eval_transform(cfg)


def _from_pil(img, transform) -> np.ndarray:
    return transform(img.convert("RGB")).numpy().astype(np.float32)


def _one(item: Any, transform, chw: Sequence[int]) -> np.ndarray:
    """(N, C, H, W) float32 from one PIL image, HWC / NHWC uint8 array, or preprocessed CHW / NCHW."""
    from PIL import Image

    if isinstance(item, Image.Image):
        return _from_pil(item, transform)[None]
    if type(item).__module__.startswith("torch"):
        item = item.detach().cpu().float().numpy()
    a = np.asarray(item)
    if a.dtype == np.uint8:
        if a.ndim == 3 and a.shape[-1] in (1, 3, 4):
            return _from_pil(Image.fromarray(a if a.shape[-1] != 1 else a[..., 0]), transform)[None]
        if a.ndim == 4 and a.shape[-1] in (1, 3, 4):
            return np.concatenate([_one(row, transform, chw) for row in a])
        raise ValueError(f"images: a uint8 array must be HWC or NHWC with 1, 3 or 4 channels, got shape {a.shape}")
    if not np.issubdtype(a.dtype, np.floating):
        raise TypeError(f"images: expected PIL images, uint8 HWC arrays or preprocessed float CHW / NCHW tensors, "
                        f"got {a.dtype} array of shape {a.shape}")
    if a.ndim == 3:
        a = a[None]
    if a.ndim != 4 or tuple(a.shape[1:]) != tuple(chw):
        raise ValueError(f"images: a float tensor must be preprocessed CHW {tuple(chw)} or NCHW (N, "
                         f"{', '.join(map(str, chw))}), got shape {tuple(a.shape)}")
    return a.astype(np.float32)


def preprocess_images(images: Any, transform, chw: Sequence[int]) -> np.ndarray:
    """(N, C, H, W) float32 from one image / array / tensor or a list of them."""
    if isinstance(images, (list, tuple)):
        if not images:
            raise ValueError("images: the list is empty")
        return np.concatenate([_one(i, transform, chw) for i in images])
    return _one(images, transform, chw)
