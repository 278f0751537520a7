"""OpenVINO: the paper's CPU engine. Compiles our ONNX export on CPU in fp32 or bf16.

bf16 runs on CPUs with AVX512-BF16 or AMX (``OPTIMIZATION_CAPABILITIES`` lists ``BF16``);
elsewhere asking for it raises instead of silently running fp32.
"""
from __future__ import annotations

import os
import shutil
import tempfile
from typing import Any, Dict, List, Optional, Sequence, Union

from torch import nn

from .._checks import positive_int
from .._extras import require
from .._io import atomic_path
from ..hub import resolve_model_input
from .onnx import ExportError, check_onnx, export_onnx_proto, max_errors, TOLERANCES

__all__ = ["compile_openvino", "export_openvino", "openvino_precisions", "int8_rest_precision", "OPENVINO_PRECISIONS"]

#: our precision names -> OpenVINO's INFERENCE_PRECISION_HINT values.
OPENVINO_PRECISIONS = {"fp32": "f32", "bf16": "bf16", "fp16": "f16"}


def _openvino():
    return require("openvino", "openvino", "The OpenVINO backend")


def openvino_precisions(device: str = "CPU") -> List[str]:
    """Precisions this machine's OpenVINO ``device`` can run natively, e.g. ``['fp32', 'bf16']``."""
    ov = _openvino()
    caps = ov.Core().get_property(device, "OPTIMIZATION_CAPABILITIES")
    out = ["fp32"]
    if "BF16" in caps:
        out.append("bf16")
    if "FP16" in caps:
        out.append("fp16")
    return out


def int8_rest_precision(device: str = "CPU") -> str:
    """The precision OpenVINO runs an INT8 (QDQ) graph's unquantized ops in: bf16 where ``device``
    runs it natively, else fp32 (OpenVINO's own default)."""
    return "bf16" if "bf16" in openvino_precisions(device) else "fp32"


def compile_openvino(onnx_model: Union[str, os.PathLike, Any], precision: str = "fp32",
                     threads: Optional[int] = None, device: str = "CPU", perf_count: bool = False):
    """``ov.CompiledModel`` for an ONNX file or ``ModelProto``, in ``precision`` on ``device``;
    ``perf_count``: with per-node performance counters (``request.get_profiling_info()``)."""
    ov = _openvino()
    if precision not in OPENVINO_PRECISIONS:
        raise ValueError(f"unsupported precision {precision!r} for OpenVINO; expected one of "
                         f"{', '.join(OPENVINO_PRECISIONS)}")
    supported = openvino_precisions(device)
    if precision not in supported:
        raise ValueError(f"precision {precision!r} is not supported by OpenVINO on this {device} "
                         f"(supported here: {', '.join(supported)}; bf16 needs AVX512-BF16 or AMX)")
    if threads is not None:
        positive_int(threads, "threads")
    core = ov.Core()
    if isinstance(onnx_model, (str, os.PathLike)):
        model = core.read_model(os.fspath(onnx_model))
    else:  # an in-memory ModelProto: OpenVINO reads ONNX from a file, so go through a temp dir
        tmpdir = tempfile.mkdtemp(prefix="gpunet-ov-")
        try:
            p = os.path.join(tmpdir, "model.onnx")
            with open(p, "wb") as f:
                f.write(onnx_model.SerializeToString())
            model = core.read_model(p)
        finally:
            shutil.rmtree(tmpdir, ignore_errors=True)
    config: Dict[str, Any] = {"INFERENCE_PRECISION_HINT": OPENVINO_PRECISIONS[precision],
                              "PERFORMANCE_HINT": "LATENCY"}
    if threads is not None:
        config["INFERENCE_NUM_THREADS"] = threads
    if perf_count:
        config["PERF_COUNT"] = True
    return core.compile_model(model, device, config)


def export_openvino(model_or_name: Union[str, nn.Module], path: Union[str, os.PathLike], batch_size: int = 1,
                    dynamic_batch: bool = False, precision: str = "fp32", check: bool = True,
                    resolution: Optional[int] = None, input_shape: Optional[Sequence[int]] = None,
                    compress_to_fp16: bool = False) -> Dict[str, Any]:
    """Write OpenVINO IR (``path`` = ``model.xml`` plus ``model.bin`` beside it) via our ONNX export.

    With ``check`` the IR is compiled in ``precision`` and compared with PyTorch (tolerance
    :data:`~gpunet.export.onnx.TOLERANCES` for the precision). Both files appear only on success.
    """
    import torch

    ov = _openvino()
    path = os.fspath(path)
    if not path.endswith(".xml"):
        raise ValueError(f"OpenVINO IR path must end in .xml (the weights go to a .bin beside it), got {path!r}")
    model, shape, _ = resolve_model_input(model_or_name, batch_size, resolution, input_shape)
    proto = export_onnx_proto(model, shape, dynamic_batch)
    report: Dict[str, Any] = {"path": path, "bin_path": path[:-4] + ".bin", "input_shape": list(shape),
                              "precision": precision}
    if check:
        batches = sorted({shape[0], 3}) if dynamic_batch else [shape[0]]
        check_onnx(proto, model, shape, batches)
        compiled = compile_openvino(proto, precision)
        gen = torch.Generator().manual_seed(1)
        worst = (0.0, 0.0)
        for b in batches:
            x = torch.randn(b, *shape[1:], generator=gen)
            with torch.no_grad():
                ref = model(x).numpy()
            out = compiled(x.numpy())[compiled.output(0)]
            err = max_errors(out, ref)
            if not err[1] <= TOLERANCES[precision]:
                raise ExportError(f"OpenVINO {precision} output differs from PyTorch at batch {b}: max abs "
                                  f"error {err[0]:.3g}, max rel error {err[1]:.3g} > {TOLERANCES[precision]:g}")
            worst = (max(worst[0], err[0]), max(worst[1], err[1]))
        report.update(checked=True, max_abs_err=worst[0], max_rel_err=worst[1])
    with atomic_path(path, suffix=".xml") as xml_tmp, atomic_path(report["bin_path"], suffix=".bin") as bin_tmp:
        tmpdir = tempfile.mkdtemp(prefix="gpunet-ov-", dir=os.path.dirname(os.path.abspath(path)))
        try:
            onnx_file = os.path.join(tmpdir, "model.onnx")
            with open(onnx_file, "wb") as f:
                f.write(proto.SerializeToString())
            ir = ov.Core().read_model(onnx_file)
            ov.save_model(ir, os.path.join(tmpdir, "model.xml"), compress_to_fp16=compress_to_fp16)
            # the .xml names its .bin by basename, so the final names must match the pair we rename to
            os.replace(os.path.join(tmpdir, "model.xml"), xml_tmp)
            os.replace(os.path.join(tmpdir, "model.bin"), bin_tmp)
        finally:
            shutil.rmtree(tmpdir, ignore_errors=True)
        # Two renames cannot be one atomic step: drop the old .xml first, so a crash between the
        # .bin and .xml renames leaves a lone .bin (nothing loads it), never an old .xml + new .bin.
        if os.path.exists(path):
            os.unlink(path)
    return report
