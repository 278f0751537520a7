"""torch.hub entry points: ``torch.hub.load("<owner>/gpunet", "gpunet_0", pretrained=True)``.

``nvidia_gpunet`` takes the arguments of NVIDIA's own hub entry point
(``torch.hub.load("NVIDIA/DeepLearningExamples:torchhub", "nvidia_gpunet", pretrained=True,
model_type="GPUNet-0", model_math="fp32")``), so switching is a change of repository name.
Weights load on the CPU; move the model where you need it.
"""
dependencies = ["torch", "timm", "safetensors"]

from gpunet.hub import get_model as _get_model  # noqa: E402
from gpunet.nvidia import NVIDIA_MODEL_NAMES as _NVIDIA_MODEL_NAMES  # noqa: E402

_MATH = ("fp32", "fp16")


def _entry(hub_name):
    def fn(pretrained=False, **kwargs):
        return _get_model(hub_name, pretrained=pretrained, **kwargs)

    fn.__name__ = hub_name.replace("-", "_")
    fn.__doc__ = (f"{hub_name} (NVIDIA's {[k for k, v in _NVIDIA_MODEL_NAMES.items() if v == hub_name][0]}). "
                  "pretrained=True downloads NVIDIA's weights once (see gpunet.weights); kwargs go to "
                  "gpunet.get_model (num_classes, weights, features_only, ...).")
    return fn


gpunet_0 = _entry("gpunet-0")
gpunet_1 = _entry("gpunet-1")
gpunet_2 = _entry("gpunet-2")
gpunet_p0 = _entry("gpunet-p0")
gpunet_p1 = _entry("gpunet-p1")
gpunet_d1 = _entry("gpunet-d1")
gpunet_d2 = _entry("gpunet-d2")


def nvidia_gpunet(pretrained=True, model_type="GPUNet-0", model_math="fp32", **kwargs):
    """NVIDIA's signature: ``model_type`` one of GPUNet-0, GPUNet-1, GPUNet-2, GPUNet-P0, GPUNet-P1,
    GPUNet-D1, GPUNet-D2; ``model_math`` ``"fp32"`` or ``"fp16"`` (weights cast to half)."""
    if model_type not in _NVIDIA_MODEL_NAMES:
        raise ValueError(f"model_type {model_type!r} is not one of NVIDIA's GPUNets: "
                         f"{', '.join(_NVIDIA_MODEL_NAMES)}")
    if model_math not in _MATH:
        raise ValueError(f"model_math {model_math!r}: expected one of {_MATH}")
    model = _get_model(_NVIDIA_MODEL_NAMES[model_type], pretrained=pretrained, **kwargs)
    return model.half() if model_math == "fp16" else model
