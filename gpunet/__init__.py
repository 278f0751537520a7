"""gpunet: GPUNet models tiered by latency, ready to fine-tune and deploy.

    import gpunet
    gpunet.query(max_latency_ms=1.0, gpu="gv100")      # model cards, best top-1 first
    model = gpunet.get_model("gpunet-1", gpu="gv100")   # nn.Module
    timm.create_model("gpunet_0")                      # registered on import
    gpunet.save_pretrained(model, "out/")               # a folder timm reads: timm.create_model("local-dir:out/")

Heavy, optional parts (export, TensorRT, search, training) load on first use.
"""
from __future__ import annotations

from ._lazy import lazy_getattr
from .checkpoint import CheckpointError, load_checkpoint
from .hub import get_model, load_spec
from .model import GPUNet, build_model
from .registry import ModelCard, UnknownNameError, list_devices, list_models, query
from .spec import LayerSpec, NetworkSpec, SpecError, save_spec
from . import timm_models as _timm_models  # noqa: F401  (registers gpunet_* with timm)

__version__ = "0.1.0"

# name -> module that defines it; imported on first attribute access so `import gpunet`
# never pulls in onnx, onnxruntime, tensorrt, ray, optuna or matplotlib.
_LAZY = {
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
