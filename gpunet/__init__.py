"""gpunet: GPUNet models tiered by latency, ready to fine-tune and deploy.

    import gpunet
    gpunet.query(max_latency_ms=1.0, gpu="gv100")      # model cards, best top-1 first
    model = gpunet.get_model("gpunet-1", gpu="gv100")   # nn.Module
    timm.create_model("gpunet_0")                      # registered when timm is imported
    gpunet.save_pretrained(model, "out/")               # a folder timm reads: timm.create_model("local-dir:out/")

Heavy, optional parts (export, TensorRT, search, training) load on first use.
"""
from __future__ import annotations

from ._lazy import lazy_getattr
from ._timm_hook import register_when_timm_loads
from ._version import __version__
from .registry import ModelCard, UnknownNameError, list_devices, list_models, query
from .spec import LayerSpec, NetworkSpec, SpecError, save_spec

# name -> module that defines it; imported on first attribute access so `import gpunet` (and
# `gpunet --help`) pulls in neither torch nor timm, nor onnx, onnxruntime, tensorrt, ray, optuna
# or matplotlib.
_LAZY = {
    "get_model": ".hub", "load_spec": ".hub", "GPUNet": ".model", "build_model": ".model",
    "CheckpointError": ".checkpoint", "load_checkpoint": ".checkpoint",
    "export_onnx": ".export", "export_openvino": ".export", "build_engine": ".export",
    "benchmark": ".latency", "BenchmarkResult": ".latency", "device_fingerprint": ".latency",
    "save_tiers": ".latency", "plot_pareto": ".plot",
    "load_pretrained": ".weights", "fetch_weights": ".weights", "convert_to_safetensors": ".weights",
    "evaluate": ".train",
    "quantize": ".export.quantize",
    "save_pretrained": ".folders", "push_folder": ".folders",
    "load_deployed": ".deploy",
}

__all__ = [
    "build_model", "get_model", "GPUNet", "ModelCard", "UnknownNameError", "list_devices", "list_models",
    "query", "LayerSpec", "NetworkSpec", "SpecError", "load_spec", "save_spec", "CheckpointError",
    "load_checkpoint", "__version__", *_LAZY,
]


__getattr__ = lazy_getattr(__name__, _LAZY, globals())

register_when_timm_loads(f"{__name__}.timm_models")  # timm.create_model("gpunet_0") once timm is imported
