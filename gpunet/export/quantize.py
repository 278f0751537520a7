"""Post-training INT8: NNCF on our ONNX export gives ONE explicitly quantized (QDQ) ONNX file.

The same file runs as is in ONNX Runtime and OpenVINO, and TensorRT builds it as an explicitly
quantized network (``build_engine(path, ..., precision="int8")``). To keep it portable the
quantizers are what all three accept: weights int8, symmetric, per output channel; activations
int8, symmetric, per tensor (zero point 0). NNCF picks uint8 for non-negative tensors (after
ReLU) and per-channel scales for depthwise-convolution inputs; ONNX Runtime's QLinearConv
refuses the latter and TensorRT the former, so activations are forced per tensor and uint8
quantizers are rewritten as int8 with the same covered range (scale * 255 / 127).

Calibration images go through the model card's eval transform (resize / crop / normalise, as
:func:`gpunet.train.data.eval_data_config` chooses) at the model's or the given resolution.
With validation data the fp32 model (PyTorch) and the INT8 file (ONNX Runtime) are compared on
the same images; a top-1 drop above ``max_drop`` raises and nothing is written.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import os
import time
from dataclasses import dataclass
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from torch import nn

from .._io import atomic_path
from .._extras import require
from ..hub import resolve_model_input
from .onnx import check_onnx, export_onnx_proto, quiet
from ..errors import GPUNetError

__all__ = ["quantize", "quantize_proto", "QuantizeReport", "QuantizationError", "AccuracyDropError",
           "calibration_samples", "random_calibration", "cpu_activations", "NONNEGATIVE_KEY", "IMAGE_EXTENSIONS"]

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".ppm", ".pgm", ".tif", ".tiff", ".webp")
#: what ``calibration`` says when no images were given (``gpunet bench --precision int8``).
RANDOM_CALIBRATION = "random inputs (speed only: accuracy not meaningful)"


class QuantizationError(GPUNetError, RuntimeError):
    """NNCF failed, or the quantized graph does not run."""


class AccuracyDropError(QuantizationError):
    """INT8 top-1 fell more than ``max_drop`` points below fp32; ``report`` holds the figures."""

    def __init__(self, message: str, report: "QuantizeReport"):
        super().__init__(message)
        self.report = report


@dataclass
class QuantizeReport:
    """What :func:`quantize` wrote and how the INT8 file compares with the fp32 model.

    ``top1_fp32`` / ``top1_int8`` / ``agreement`` are percentages (agreement: share of images
    whose top-1 class is the same for both); ``None`` without validation data.
    """

    path: Optional[str]
    model: str
    input_shape: Tuple[int, ...]
    dynamic_batch: bool
    calibration: str
    calib_images: int
    quantizers: int  # QuantizeLinear nodes (weights and activations)
    size_bytes: int
    top1_fp32: Optional[float] = None
    top1_int8: Optional[float] = None
    agreement: Optional[float] = None
    drop: Optional[float] = None
    val_images: int = 0
    max_drop: float = 1.0
    data_config: Dict[str, Any] = dataclasses.field(default_factory=dict)
    seconds: float = 0.0

    def to_dict(self) -> Dict[str, Any]:
        d = dataclasses.asdict(self)
        d["input_shape"] = list(self.input_shape)
        return d


# ----------------------------------------------------------------------------------------- inputs

def _load_model(model_or_name: Union[str, nn.Module], checkpoint_path: Optional[str], pretrained: Optional[bool],
                resolution: Optional[int]) -> Tuple[nn.Module, Optional[int]]:
    """(eval model, resolution: the given one, else a training checkpoint's)."""
    if isinstance(model_or_name, nn.Module):
        if checkpoint_path or pretrained:
            raise ValueError("checkpoint_path / pretrained apply to a model name; load weights into a module yourself")
        return model_or_name.eval(), resolution
    if not isinstance(model_or_name, str):
        raise TypeError(f"model_or_name must be a hub / timm model name or an nn.Module, "
                        f"got {type(model_or_name).__name__}")
    from ..train.distill import create_model

    if checkpoint_path:
        if not os.path.isfile(checkpoint_path):
            raise FileNotFoundError(f"checkpoint_path: file not found: {checkpoint_path}")
        from ..train.evaluate import checkpoint_facts

        classes, trained_size = checkpoint_facts(checkpoint_path)
        model = create_model(model_or_name, num_classes=classes, checkpoint_path=checkpoint_path)
        return model.eval(), resolution or trained_size
    # A name alone: the published weights (quantizing random weights only makes sense for speed).
    model = create_model(model_or_name, pretrained=True if pretrained is None else pretrained)
    return model.eval(), resolution


def _data_config(model: nn.Module, shape: Sequence[int]) -> Dict[str, Any]:
    from ..train.data import eval_data_config

    if shape[2] != shape[3]:
        raise ValueError(f"calibration images need a square input; the model input is {tuple(shape[1:])}")
    return eval_data_config(model, img_size=shape[-1])


def _image_files(folder: str, what: str) -> List[str]:
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"{what}: image folder not found: {folder}")
    files = []
    for root, dirs, names in os.walk(folder):
        dirs.sort()
        files += [os.path.join(root, n) for n in sorted(names) if n.lower().endswith(IMAGE_EXTENSIONS)]
    if not files:
        raise ValueError(f"{what}: no images ({', '.join(IMAGE_EXTENSIONS)}) in {folder} or its sub-folders")
    return files


class _ImageSource:
    """Re-iterable calibration source over image files: loads and transforms lazily."""

    def __init__(self, files: Sequence[str], transform: Callable):
        self.files, self.transform = list(files), transform

    def __len__(self) -> int:
        return len(self.files)

    def __iter__(self):
        from PIL import Image

        for f in self.files:
            try:
                with Image.open(f) as img:
                    x = self.transform(img.convert("RGB"))
            except OSError as e:
                raise ValueError(f"calib_data: cannot read image {f}: {e}") from e
            yield x.unsqueeze(0).numpy().astype(np.float32)


def _as_array(item: Any, where: str) -> np.ndarray:
    if isinstance(item, (tuple, list)) and item and not isinstance(item[0], (int, float)):
        item = item[0]  # (images, labels) from a DataLoader
    if isinstance(item, torch.Tensor):
        item = item.detach().cpu().float().numpy()
    try:
        a = np.asarray(item, dtype=np.float32)
    except (TypeError, ValueError) as e:
        raise TypeError(f"{where}: expected a tensor or array, got {type(item).__name__}") from e
    return a


def _tensor_samples(data: Iterable[Any], shape: Sequence[int], limit: int, what: str) -> List[np.ndarray]:
    """Split tensors / arrays ((C, H, W) or (N, C, H, W)) into single-image (1, C, H, W) samples."""
    chw = tuple(shape[1:])
    out: List[np.ndarray] = []
    for i, item in enumerate(data):
        a = _as_array(item, f"{what} item {i}")
        if a.ndim == 3:
            a = a[None]
        if a.ndim != 4 or a.shape[1:] != chw:
            raise ValueError(f"{what} item {i}: shape {tuple(a.shape)} does not match the model input; expected "
                             f"(C, H, W) = {chw} or (N, C, H, W) = (N, {', '.join(map(str, chw))})")
        if not np.all(np.isfinite(a)):
            raise ValueError(f"{what} item {i}: contains NaN or infinite values")
        for row in a:
            out.append(np.ascontiguousarray(row[None]))
            if len(out) >= limit:
                return out
    if not out:
        raise ValueError(f"{what}: no samples (the iterable was empty)")
    return out


def calibration_samples(calib_data: Any, shape: Sequence[int], data_config: Optional[Dict[str, Any]] = None,
                        calib_size: int = 300, seed: int = 0):
    """(re-iterable source of (1, C, H, W) float32 arrays, count, description).

    ``calib_data``: an image folder (ImageFolder ``<class>/<image>`` or flat; at most
    ``calib_size`` images drawn with ``seed`` so every class is represented) or an iterable of
    tensors / arrays, ``(C, H, W)`` or ``(N, C, H, W)`` (or ``(images, labels)`` pairs).
    """
    if calib_data is None:
        raise ValueError("calib_data is required: an image folder or an iterable of tensors / arrays")
    if isinstance(calib_data, (str, os.PathLike)):
        from ..train.data import eval_transform

        folder = os.fspath(calib_data)
        files = _image_files(folder, "calib_data")
        if len(files) > calib_size:
            idx = np.sort(np.random.default_rng(seed).choice(len(files), calib_size, replace=False))
            files = [files[i] for i in idx]
        src = _ImageSource(files, eval_transform(data_config))
        return src, len(src), f"{len(src)} images from {folder}"
    if isinstance(calib_data, (torch.Tensor, np.ndarray)):
        calib_data = [calib_data]
    samples = _tensor_samples(calib_data, shape, calib_size, "calib_data")
    return samples, len(samples), f"{len(samples)} given tensors"


def random_calibration(shape: Sequence[int], n: int = 8, seed: int = 0) -> List[np.ndarray]:
    """Normal-noise samples: a valid INT8 graph for timing only (its accuracy means nothing)."""
    rng = np.random.default_rng(seed)
    return [rng.standard_normal((1, *shape[1:]), dtype=np.float32) for _ in range(n)]


# ----------------------------------------------------------------------------------------- NNCF

def _signed_activations(proto) -> int:
    """Rewrite uint8 (zero point 0) quantizers as int8 covering the same range; returns how many."""
    from onnx import TensorProto, numpy_helper

    inits = {i.name: i for i in proto.graph.initializer}
    scales, zps = set(), set()
    for node in proto.graph.node:
        if node.op_type in ("QuantizeLinear", "DequantizeLinear") and len(node.input) > 2:
            zp = inits.get(node.input[2])
            if zp is not None and zp.data_type == TensorProto.UINT8:
                if np.any(numpy_helper.to_array(zp)):
                    raise QuantizationError(f"{node.name}: asymmetric uint8 quantizer (non-zero zero point); "
                                            f"TensorRT needs symmetric int8")
                if node.input[1] not in inits:
                    raise QuantizationError(f"{node.name}: scale {node.input[1]} is not a constant")
                scales.add(node.input[1])
                zps.add(node.input[2])
    used_elsewhere = {n.input[1] for n in proto.graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear")
                      and len(n.input) > 2 and n.input[2] not in zps and n.input[1] in scales}
    if used_elsewhere:
        raise QuantizationError(f"scale {sorted(used_elsewhere)[0]} is shared by uint8 and int8 quantizers")
    for name in scales:
        s = numpy_helper.to_array(inits[name]).astype(np.float32)
        inits[name].CopyFrom(numpy_helper.from_array((s * np.float32(255.0 / 127.0)).astype(np.float32), name))
    for name in zps:
        z = numpy_helper.to_array(inits[name])
        inits[name].CopyFrom(numpy_helper.from_array(np.zeros(z.shape, dtype=np.int8), name))
    q_outputs = {n.output[0] for n in proto.graph.node if n.op_type == "QuantizeLinear" and len(n.input) > 2
                 and n.input[2] in zps}
    for vi in proto.graph.value_info:  # the recorded type of each rewritten quantized tensor
        if vi.name in q_outputs:
            vi.type.tensor_type.elem_type = TensorProto.INT8
    if zps:  # remembered, so CPU runtimes can have NNCF's uint8 back (cpu_activations)
        _set_metadata(proto, NONNEGATIVE_KEY, json.dumps(sorted(zps)))
    return len(zps)


#: ONNX metadata key: JSON list of the zero-point initializers :func:`_signed_activations` turned
#: from uint8 into int8, i.e. the activations NNCF found non-negative.
NONNEGATIVE_KEY = "gpunet.int8.nonnegative_zero_points"


def _set_metadata(proto, key: str, value: str) -> None:
    for prop in proto.metadata_props:
        if prop.key == key:
            prop.value = value
            return
    proto.metadata_props.add(key=key, value=value)


def cpu_activations(proto) -> int:
    """Give x86 CPU runtimes NNCF's uint8 back on the activations it found non-negative (in place).

    The file keeps signed int8 activations because TensorRT refuses uint8 quantizers, but OpenVINO's
    and ONNX Runtime's x86 INT8 kernels are built for u8 activations x s8 weights; with s8 inputs
    OpenVINO picks slower kernels for some layers (GPUNet-D1: 16.3 -> 14.6 ms, AMX, 2 threads). Only
    the quantizers :func:`_signed_activations` rewrote (listed in the file's metadata) change, and
    their scale stays: every value the file represents (0..127 steps) is represented identically;
    values above the calibrated range saturate at 255 steps instead of 127, and negative values
    (which NNCF's statistics did not see there) at 0, as NNCF's own uint8 would. Returns how many
    zero points changed (0 for a file gpunet did not write, which is left as it is).
    """
    from onnx import TensorProto, numpy_helper

    meta = {p.key: p.value for p in proto.metadata_props}
    if NONNEGATIVE_KEY not in meta:
        return 0
    zps = set(json.loads(meta[NONNEGATIVE_KEY]))
    inits = {i.name: i for i in proto.graph.initializer}
    missing = sorted(zps - set(inits))
    if missing:
        raise QuantizationError(f"{NONNEGATIVE_KEY} names zero point {missing[0]!r}, which is not an initializer "
                                f"of this graph (the file was edited after quantization)")
    for name in zps:
        z = numpy_helper.to_array(inits[name])
        if z.dtype != np.int8 or np.any(z):
            raise QuantizationError(f"zero point {name!r} is {z.dtype.name} {z.ravel()[:3].tolist()}, expected int8 0 "
                                    f"(the file was edited after quantization)")
        inits[name].CopyFrom(numpy_helper.from_array(np.zeros(z.shape, dtype=np.uint8), name))
    q_outputs = {n.output[0] for n in proto.graph.node if n.op_type == "QuantizeLinear" and len(n.input) > 2
                 and n.input[2] in zps}
    for vi in proto.graph.value_info:
        if vi.name in q_outputs:
            vi.type.tensor_type.elem_type = TensorProto.UINT8
    keep = [(p.key, p.value) for p in proto.metadata_props if p.key != NONNEGATIVE_KEY]
    del proto.metadata_props[:]  # the graph no longer matches what the key describes
    for key, value in keep:
        proto.metadata_props.add(key=key, value=value)
    return len(zps)


def quantize_proto(proto, samples: Iterable[np.ndarray], subset_size: int, signed_activations: bool = True):
    """NNCF post-training INT8 of an in-memory fp32 ONNX model -> QDQ ``ModelProto``.

    ``samples``: re-iterable (1, C, H, W) float32 arrays, ``subset_size`` of them used.
    ``signed_activations``: int8 everywhere (TensorRT refuses uint8 quantizers); ``False`` keeps
    NNCF's uint8 after ReLU, which ONNX Runtime's CPU kernels run faster (u8 x s8).
    """
    nncf = require("nncf", "quant", "INT8 quantization")
    from nncf.quantization.advanced_parameters import AdvancedQuantizationParameters, QuantizationParameters

    name = proto.graph.input[0].name
    dataset = nncf.Dataset(samples, lambda x: {name: x})
    params = AdvancedQuantizationParameters(activations_quantization_params=QuantizationParameters(per_channel=False))
    with quiet(("nncf",), stderr=True):
        try:
            q = nncf.quantize(proto, dataset, preset=nncf.QuantizationPreset.PERFORMANCE,
                              target_device=nncf.TargetDevice.ANY, subset_size=subset_size,
                              advanced_parameters=params)
        except (ValueError, TypeError, FileNotFoundError):
            raise  # our own data errors, raised from inside the calibration loop
        except Exception as e:  # NNCF raises many internal types; keep the cause
            raise QuantizationError(f"NNCF quantization failed: {e}") from e
    if signed_activations:
        _signed_activations(q)
    return q


def _batched(samples: Iterable[np.ndarray], batch: int) -> List[np.ndarray]:
    """Group (1, C, H, W) samples into (batch, C, H, W) ones for a graph with a fixed batch."""
    rows = [s[0] for s in samples]
    out = [np.stack(rows[i:i + batch]) for i in range(0, len(rows) - batch + 1, batch)]
    if not out:
        raise ValueError(f"calibration: {len(rows)} images are fewer than the fixed batch size {batch}")
    return out


def int8_graph(model: nn.Module, input_shape: Sequence[int], calib_data: Any = None, calib_size: int = 300,
               seed: int = 0) -> Tuple[Any, str]:
    """(QDQ ``ModelProto`` with a fixed batch ``input_shape[0]``, calibration description) for timing.

    Without ``calib_data`` it calibrates on random inputs: the graph runs at INT8 speed but its
    accuracy is meaningless, and the description says so (:data:`RANDOM_CALIBRATION`).
    """
    shape = tuple(input_shape)
    if calib_data is None:
        samples, described = random_calibration(shape, n=max(8, shape[0])), RANDOM_CALIBRATION
    else:
        samples, _, described = calibration_samples(calib_data, shape, _data_config(model, shape), calib_size, seed)
    if shape[0] > 1:
        samples = _batched(samples, shape[0])
    proto = export_onnx_proto(model, shape)
    return quantize_proto(proto, samples, len(samples)), described


def _ort_session(proto):
    ort = require("onnxruntime", "onnx", "Running the INT8 model")
    so = ort.SessionOptions()
    so.log_severity_level = 3
    try:
        return ort.InferenceSession(proto.SerializeToString(), so, providers=["CPUExecutionProvider"])
    except Exception as e:
        raise QuantizationError(f"ONNX Runtime could not load the quantized graph: {e}") from e


# ----------------------------------------------------------------------------------------- accuracy

def _val_batches(val_data: Any, data_config: Dict[str, Any], batch_size: int):
    if isinstance(val_data, (str, os.PathLike)):
        from ..train.data import eval_transform, open_dataset

        folder = os.fspath(val_data)
        if not os.path.isdir(folder):
            raise FileNotFoundError(f"val_data: image folder not found: {folder}")
        ds = open_dataset(folder, "val", allow_root=True)
        ds.transform = eval_transform(data_config)
        return torch.utils.data.DataLoader(ds, batch_size=batch_size, shuffle=False, num_workers=0)
    return val_data


def compare_top1(model: nn.Module, sess, val_data: Any, data_config: Dict[str, Any], shape: Sequence[int],
                 batch_size: int = 32) -> Tuple[float, float, float, int]:
    """(top-1 fp32 %, top-1 INT8 %, agreement %, images): PyTorch fp32 vs the ONNX Runtime session."""
    name = sess.get_inputs()[0].name
    static = isinstance(sess.get_inputs()[0].shape[0], int)
    correct_fp = correct_q = same = n = 0
    for i, item in enumerate(_val_batches(val_data, data_config, batch_size)):
        if not (isinstance(item, (tuple, list)) and len(item) == 2):
            raise TypeError(f"val_data item {i}: expected (images, labels), got {type(item).__name__}")
        x = _as_array(item[0], f"val_data item {i}")
        y = np.asarray(item[1].numpy() if isinstance(item[1], torch.Tensor) else item[1]).reshape(-1)
        if x.ndim == 3:
            x = x[None]
        if x.ndim != 4 or x.shape[1:] != tuple(shape[1:]) or len(y) != len(x):
            raise ValueError(f"val_data item {i}: images {tuple(x.shape)} / labels {tuple(y.shape)} do not match "
                             f"the model input (N, {', '.join(map(str, shape[1:]))}) with one label per image")
        with torch.no_grad():
            fp = model(torch.from_numpy(x)).float().numpy()
        if static:
            q = np.concatenate([sess.run(None, {name: x[j:j + 1]})[0] for j in range(len(x))])
        else:
            q = sess.run(None, {name: x})[0]
        if len(y) and (y.max() >= fp.shape[-1] or y.min() < 0):
            raise ValueError(f"val_data: label {int(y.max())} is out of range for a model with {fp.shape[-1]} "
                             f"outputs (check the class folders / num_classes)")
        p_fp, p_q = fp.argmax(-1), q.argmax(-1)
        correct_fp += int((p_fp == y).sum())
        correct_q += int((p_q == y).sum())
        same += int((p_fp == p_q).sum())
        n += len(y)
    if n == 0:
        raise ValueError("val_data: no images")
    return 100.0 * correct_fp / n, 100.0 * correct_q / n, 100.0 * same / n, n


# ----------------------------------------------------------------------------------------- quantize() steps

def _check_quantize_args(calib_data: Any, val_data: Any, calib_size: Any, max_drop: Any, **flags: Any) -> None:
    """:func:`quantize`'s argument checks, made before any slow work (``flags``: the booleans)."""
    if isinstance(calib_size, bool) or not isinstance(calib_size, int) or calib_size < 1:
        raise ValueError(f"calib_size must be a positive integer, got {calib_size!r}")
    if isinstance(max_drop, bool) or not isinstance(max_drop, (int, float)) or not max_drop >= 0:
        raise ValueError(f"max_drop must be a number of top-1 points >= 0, got {max_drop!r}")
    for flag, value in flags.items():
        if not isinstance(value, bool):
            raise ValueError(f"{flag} must be True or False, got {value!r}")
    if calib_data is None:
        raise ValueError("calib_data is required: an image folder or an iterable of tensors / arrays")
    if isinstance(calib_data, (str, os.PathLike)) and not os.path.isdir(calib_data):
        raise FileNotFoundError(f"calib_data: image folder not found: {os.fspath(calib_data)}")
    if isinstance(val_data, (str, os.PathLike)) and not os.path.isdir(val_data):
        raise FileNotFoundError(f"val_data: image folder not found: {os.fspath(val_data)}")


def _model_and_input(model_or_name: Union[str, nn.Module], checkpoint_path: Optional[str],
                     pretrained: Optional[bool], resolution: Optional[int],
                     input_shape: Optional[Sequence[int]]) -> Tuple[nn.Module, Tuple[int, ...], str]:
    """(eval model, its batch-1 NCHW input shape, its name); a timm model without ``resolution``
    or ``input_shape`` takes its ``pretrained_cfg`` input size."""
    model, resolution = _load_model(model_or_name, checkpoint_path, pretrained, resolution)
    if input_shape is None and resolution is None and not hasattr(model, "spec"):
        size = (getattr(model, "pretrained_cfg", None) or {}).get("input_size")
        input_shape = tuple(size) if size else None
    return resolve_model_input(model, 1, resolution, input_shape)


def _int8_model(model: nn.Module, shape: Sequence[int], samples: Iterable[np.ndarray], subset_size: int,
                dynamic_batch: bool, signed_activations: bool):
    """The fp32 ONNX export of ``model``, checked against PyTorch, then quantized by NNCF (QDQ ``ModelProto``)."""
    proto = export_onnx_proto(model, shape, dynamic_batch=dynamic_batch)
    check_onnx(proto, model, shape, [1])
    return quantize_proto(proto, samples, subset_size, signed_activations)


def _check_int8(report: QuantizeReport, model: nn.Module, sess, val_data: Any, data_config: Dict[str, Any],
                shape: Sequence[int], max_drop: float, allow_drop: bool) -> None:
    """With ``val_data``: fill ``report``'s top-1 figures, and past ``max_drop`` (unless
    ``allow_drop``) clear ``report.path`` and raise :class:`AccuracyDropError`. Without it,
    prove the INT8 graph runs."""
    if val_data is None:
        sess.run(None, {sess.get_inputs()[0].name: np.zeros((1, *shape[1:]), np.float32)})
        return
    path = report.path
    f, i8, agree, n = compare_top1(model, sess, val_data, data_config, shape)
    report.top1_fp32, report.top1_int8, report.agreement, report.val_images = f, i8, agree, n
    report.drop = f - i8
    if report.drop > max_drop and not allow_drop:
        report.path = None
        raise AccuracyDropError(
            f"INT8 top-1 {i8:.2f}% is {report.drop:.2f} points below fp32 {f:.2f}% on {n} images "
            f"(max_drop {max_drop:g}); nothing written to {path}. Try more / more representative "
            f"calibration images, or pass allow_drop=True (--allow-drop) to keep it", report)


# ----------------------------------------------------------------------------------------- API

def quantize(model_or_name: Union[str, nn.Module], out_path: Union[str, os.PathLike], calib_data: Any = None, *,
             checkpoint_path: Optional[str] = None, resolution: Optional[int] = None, calib_size: int = 300,
             val_data: Any = None, input_shape: Optional[Sequence[int]] = None, max_drop: float = 1.0,
             allow_drop: bool = False, dynamic_batch: bool = True, pretrained: Optional[bool] = None,
             signed_activations: bool = True, seed: int = 0) -> QuantizeReport:
    """Post-training INT8 quantization to one QDQ ONNX file (ONNX Runtime, OpenVINO, TensorRT).

    Args:
        model_or_name: hub / timm name, a GPUNet, or any image ``nn.Module`` (then pass
            ``input_shape``). A name without ``checkpoint_path`` loads the published weights
            (``pretrained=False`` to quantize random weights, for speed checks only).
        out_path: the ``.onnx`` file; written atomically, and only if every check passed.
        calib_data: image folder (ImageFolder or flat) or iterable of tensors / arrays
            (``(C, H, W)`` / ``(N, C, H, W)``, already transformed). Folder images go through
            the model card's eval transform at the model's (or ``resolution``'s) size.
        checkpoint_path: fine-tuned weights (class count and training resolution read from it).
        calib_size: calibration images used (NNCF's ``subset_size``; 300 is its default).
        val_data: image folder (``val/`` inside, or the class folders themselves) or iterable of
            ``(images, labels)``: top-1 of the fp32 model (PyTorch) and the INT8 file (ONNX
            Runtime) on the same images, and their agreement.
        max_drop / allow_drop: a top-1 drop above ``max_drop`` points raises
            :class:`AccuracyDropError` (nothing written) unless ``allow_drop``.
        dynamic_batch: symbolic batch axis (default); ``False`` fixes batch 1.
        signed_activations: int8 activations everywhere (default), so the same file builds in
            TensorRT; ``False`` keeps uint8 after ReLU (faster in ONNX Runtime on x86 CPUs,
            refused by TensorRT's ONNX parser).
    """
    start = time.perf_counter()
    _check_quantize_args(calib_data, val_data, calib_size, max_drop, allow_drop=allow_drop,
                         dynamic_batch=dynamic_batch, signed_activations=signed_activations)
    require("nncf", "quant", "INT8 quantization")  # before any slow work
    path = os.fspath(out_path)
    model, shape, name = _model_and_input(model_or_name, checkpoint_path, pretrained, resolution, input_shape)
    data_config = _data_config(model, shape)
    with atomic_path(path) as tmp:  # fails early on an unwritable directory
        samples, n_calib, described = calibration_samples(calib_data, shape, data_config, calib_size, seed)
        q = _int8_model(model, shape, samples, min(calib_size, n_calib), dynamic_batch, signed_activations)
        sess = _ort_session(q)
        report = QuantizeReport(
            path=path, model=name, input_shape=tuple(shape), dynamic_batch=dynamic_batch, calibration=described,
            calib_images=n_calib, quantizers=sum(n.op_type == "QuantizeLinear" for n in q.graph.node),
            size_bytes=q.ByteSize(), max_drop=float(max_drop), data_config=dict(data_config))
        _check_int8(report, model, sess, val_data, data_config, shape, max_drop, allow_drop)
        with open(tmp, "wb") as fh:
            fh.write(q.SerializeToString())
    report.seconds = time.perf_counter() - start
    return report
