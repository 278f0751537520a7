"""Register the hub's models with timm: ``timm.create_model("gpunet_0")`` after ``import gpunet``.

Pretrained configs follow timm's conventions (``generate_default_cfgs``); weights come
through :mod:`gpunet.weights` because NVIDIA's checkpoints need key conversion.
"""
from __future__ import annotations

from typing import Any, Dict

from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from timm.models import build_model_with_cfg, generate_default_cfgs, register_model

from .model import GPUNet
from .registry import Registry

__all__ = ["TIMM_NAMES", "create_gpunet"]

#: timm model name -> hub name
TIMM_NAMES = {
    "gpunet_0": "gpunet-0", "gpunet_1": "gpunet-1", "gpunet_2": "gpunet-2",
    "gpunet_p0": "gpunet-p0", "gpunet_p1": "gpunet-p1", "gpunet_d1": "gpunet-d1", "gpunet_d2": "gpunet-d2",
}


# Packaged data only: the timm names cover the packaged models, and a damaged user registry file
# must not break `import gpunet` (it fails where it is used instead).
_PACKAGED = Registry()


def _cfg(hub_name: str) -> Dict[str, Any]:
    reg = _PACKAGED
    spec, info = reg.spec(hub_name), reg.model_info(hub_name)
    r = spec.resolution
    pool = spec.spatial_sizes(r)[-1]
    return dict(
        url="", num_classes=spec.num_classes, input_size=(3, r, r), pool_size=(pool, pool),
        crop_pct=info.get("crop_pct", 1.0), interpolation="bicubic", mean=IMAGENET_DEFAULT_MEAN,
        std=IMAGENET_DEFAULT_STD, first_conv="stem.0.conv", classifier="classifier",
        license="apache-2.0", paper_ids="arXiv:2205.00841",
        paper_name="Searching the Deployable Convolution Neural Networks for GPUs",
        origin_url="https://github.com/NVIDIA/DeepLearningExamples/tree/master/PyTorch/Classification/GPUNet",
    )


default_cfgs = generate_default_cfgs({f"{t}.nvidia_in1k": _cfg(h) for t, h in TIMM_NAMES.items()})


def create_gpunet(variant: str, pretrained: bool = False, **kwargs: Any) -> GPUNet:
    """timm entry point: build through ``build_model_with_cfg`` (pretrained cfg, feature
    wrapping), loading weights with gpunet's loader before any feature wrapping."""
    hub_name = TIMM_NAMES[variant]
    features_only = kwargs.pop("features_only", False)
    out_indices = kwargs.pop("out_indices", None)
    overlay = kwargs.get("pretrained_cfg_overlay") or {}
    model = build_model_with_cfg(GPUNet, variant, pretrained=False, spec=_PACKAGED.spec(hub_name), **kwargs)
    if pretrained:
        if overlay.get("file"):
            from .checkpoint import load_checkpoint

            load_checkpoint(model, overlay["file"])
        else:
            from .weights import load_pretrained

            load_pretrained(model, hub_name)
    if features_only:
        from .hub import wrap_features

        cfg = model.pretrained_cfg
        model = wrap_features(model, out_indices)
        model.pretrained_cfg = model.default_cfg = cfg
    return model


def _register(timm_name: str):
    def fn(pretrained: bool = False, **kwargs: Any) -> GPUNet:
        return create_gpunet(timm_name, pretrained, **kwargs)

    fn.__name__ = timm_name
    fn.__qualname__ = timm_name
    fn.__doc__ = f"GPUNet ({TIMM_NAMES[timm_name]}), NVIDIA's architecture, from gpunet's hub."
    fn.__module__ = __name__
    return register_model(fn)


for _t in TIMM_NAMES:
    globals()[_t] = _register(_t)
