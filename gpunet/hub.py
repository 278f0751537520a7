"""``get_model``: a hub name (or spec) in, a ready ``nn.Module`` out; ``resolve_model_input``: the same
plus the NCHW input it takes, for everything downstream that runs a model (export, latency)."""
from __future__ import annotations

import copy
import os
from typing import Any, Dict, Optional, Sequence, Tuple, Union

from torch import nn

from ._checks import positive_int
from .model import NVIDIA_PROVENANCE, NVIDIA_TAG, GPUNet, build_model, gpunet_pretrained_cfg
from .registry import Registry, get_registry, normalize_name
from .nvidia import load_any
from .spec import NetworkSpec

__all__ = ["get_model", "load_spec", "wrap_features", "resolve_model_input", "hub_pretrained_cfg",
           "folder_location", "RESOLUTION_MULTIPLE"]

#: every hub model's input side is a multiple of this (456 = 57 * 8); other sizes are refused
#: so stride-2 layers see the same aligned grids the published latencies were measured on.
RESOLUTION_MULTIPLE = 8


def _as_path(name: Any) -> Optional[str]:
    """The one rule for "is this a path": an ``os.PathLike``, or a string naming an existing
    file, ending in ``.json`` or holding a path separator. Anything else is a hub name."""
    if isinstance(name, os.PathLike):
        return os.fspath(name)
    if isinstance(name, str):
        seps = {os.sep, "/"} | ({os.altsep} if os.altsep else set())
        if os.path.isfile(name) or name.lower().endswith(".json") or any(s in name for s in seps):
            return name
    return None


def folder_location(name: Any) -> Optional[str]:
    """``"local-dir:DIR"`` / ``"hf-hub:ORG/NAME[@rev]"`` for a timm / Hugging Face model folder: a
    name with one of timm's two prefixes, or an existing directory (a bare word that is also a hub
    model name stays the hub model: ``./gpunet-0/`` or ``local-dir:gpunet-0`` names the folder)."""
    if isinstance(name, str) and name.startswith(("hf-hub:", "local-dir:")):
        return name
    if not isinstance(name, (str, os.PathLike)) or not os.path.isdir(name):
        return None
    if isinstance(name, str) and _as_path(name) is None and normalize_name(name) in get_registry().models:
        return None
    return "local-dir:" + os.fspath(name)


def hub_pretrained_cfg(name: str, registry: Optional[Registry] = None) -> Dict[str, Any]:
    """The ``pretrained_cfg`` of a hub model: its spec's input size, the registry's ``crop_pct`` (and
    ``interpolation`` where it records one) and, for NVIDIA's seven, their provenance (license,
    paper, origin), timm name / tag and where the weights are published (:func:`published_cfg_fields`;
    the same dict
    ``timm.create_model("gpunet_0")`` carries); for a user-registered model its ``source``."""
    reg = registry or get_registry()
    n = reg.resolve_model(name)
    info = reg.model_info(n)
    fields: Dict[str, Any] = {}
    if info.get("nvidia_config"):  # one of NVIDIA's networks
        fields = dict(NVIDIA_PROVENANCE, architecture=n.replace("-", "_"), tag=NVIDIA_TAG)
        from .weights.manifest import published_cfg_fields

        fields.update(published_cfg_fields(n))
    elif info.get("source"):  # a user-registered model (a search winner): where it comes from
        fields["description"] = str(info["source"])
    if info.get("interpolation"):
        fields["interpolation"] = info["interpolation"]
    return gpunet_pretrained_cfg(reg.spec(n), crop_pct=info.get("crop_pct", 1.0), **fields)


def load_spec(path_or_name: Union[str, os.PathLike]) -> NetworkSpec:
    """A spec from a file (our format or NVIDIA's), a hub model name (``"gpunet-0"``) or a model
    folder (``DIR`` / ``"hf-hub:ORG/NAME"``: the spec its ``config.json`` records)."""
    location = folder_location(path_or_name)
    if location is not None:
        from .folders import read_folder_config

        return read_folder_config(location).spec
    path = _as_path(path_or_name)
    if path is None:
        return get_registry().spec(path_or_name)
    return load_any(path)


def wrap_features(model: nn.Module, out_indices: Optional[Sequence[int]] = None) -> nn.Module:
    """timm's ``features_only`` wrapper: a list of multi-scale maps (see ``feature_info``); it keeps
    the model's ``pretrained_cfg`` (its data config)."""
    from timm.models._features import FeatureListNet

    n = len(model.feature_info)
    out_indices = tuple(range(n)) if out_indices is None else tuple(out_indices)
    bad = [i for i in out_indices if not -n <= i < n]
    if bad:
        raise ValueError(f"out_indices {bad} out of range: this model has {n} feature levels "
                         f"(reductions {[f['reduction'] for f in model.feature_info]})")
    cfg = getattr(model, "pretrained_cfg", None)
    feats = FeatureListNet(model, out_indices=out_indices, flatten_sequential=True)
    if cfg is not None:
        feats.pretrained_cfg = feats.default_cfg = cfg
    return feats


def get_model(name: Union[str, os.PathLike, NetworkSpec], gpu: Optional[str] = None, pretrained: bool = False,
              checkpoint_path: Optional[str] = None, weights: Optional[str] = None,
              features_only: bool = False, out_indices: Optional[Sequence[int]] = None,
              **kwargs: Any) -> nn.Module:
    """Build a hub model, optionally with weights.

    Args:
        name: hub name (``"gpunet-0"``, ``"GPUNet_0"``), a spec, a spec file path (``str`` or
            ``pathlib.Path``; see :func:`load_spec` for the rule), or a timm / Hugging Face model
            folder: a directory holding ``config.json`` (see :func:`gpunet.save_pretrained`),
            ``"local-dir:DIR"`` or ``"hf-hub:ORG/NAME[@rev]"`` (through huggingface_hub's cache;
            ``HF_HUB_OFFLINE=1`` reads the cache only). A folder's weights always load.
        gpu: device whose latency tier you chose from; checked against the registry so a
            typo or an untiered model fails loudly.
        pretrained: download (once) and load published weights (see :mod:`gpunet.weights`).
        checkpoint_path: a local file: NVIDIA's ``.pth.tar`` as published, a timm training
            checkpoint, or our state_dict / safetensors. A registry model that records a
            ``checkpoint`` (a search winner from ``gpunet search export``) loads it by default.
        weights: which weight variant to use with ``pretrained`` (e.g. ``"nvidia-ngc"``).
        features_only: return timm's multi-scale feature extractor instead of a classifier.
        **kwargs: ``num_classes``, ``in_chans``, ``drop_rate``, ``drop_path_rate``, ``global_pool``.
            With a different ``num_classes`` the loaded classifier is dropped (fine-tuning).

    The model carries timm's ``pretrained_cfg`` / ``default_cfg`` (input size, crop_pct,
    interpolation, mean / std; provenance for NVIDIA's networks): the same dict timm builds.
    """
    reg = get_registry()
    hub_name = None
    if gpu is not None:
        device = reg.resolve_device(gpu)
    location = None if isinstance(name, NetworkSpec) else folder_location(name)
    if location is not None:
        from .folders import load_folder

        model = load_folder(location, checkpoint_path=checkpoint_path, weights=weights, **kwargs)
        return wrap_features(model, out_indices) if features_only else model
    if isinstance(name, NetworkSpec):
        spec = name
    elif _as_path(name) is not None:
        spec = load_any(_as_path(name))
    else:
        hub_name = reg.resolve_model(name)
        spec = reg.spec(hub_name)
    if gpu is not None and hub_name is not None and not reg.latency_entries(hub_name, device):
        tiered = [m for m in reg.list_models() if reg.latency_entries(m, device)]
        raise ValueError(f"model {hub_name!r} has no latency tier on device {device!r}; "
                         f"models tiered there: {', '.join(tiered) or 'none'}")
    if pretrained and checkpoint_path:
        raise ValueError("pass either pretrained=True or checkpoint_path, not both")
    model = build_model(spec, **kwargs)
    if hub_name is not None:
        model.pretrained_cfg = model.default_cfg = hub_pretrained_cfg(hub_name, reg)
    _load_weights(model, reg, hub_name, spec, pretrained, checkpoint_path, weights)
    if features_only:
        return wrap_features(model, out_indices)
    return model


def _load_weights(model: GPUNet, reg: Registry, hub_name: Optional[str], spec: NetworkSpec, pretrained: bool,
                  checkpoint_path: Optional[str], weights: Optional[str]) -> None:
    """``get_model``'s weights: a checkpoint file, the registry model's own checkpoint (a search
    winner's) or its published weights. ``model.hub_weights`` names the hub model whose own
    weights it then holds (what a model card may claim the registry's top-1 for)."""
    own = reg.models[hub_name].get("checkpoint") if hub_name is not None else None
    if own and not checkpoint_path:  # a search winner (gpunet search export): its weights are the model
        checkpoint_path, pretrained = own, False
    if checkpoint_path:
        from .checkpoint import load_checkpoint

        load_checkpoint(model, checkpoint_path, spec)
        if own and checkpoint_path == own:
            model.hub_weights = hub_name
    elif pretrained:
        if hub_name is None:
            raise ValueError("pretrained=True needs a hub model name; use checkpoint_path for a spec")
        from .weights import load_pretrained

        load_pretrained(model, hub_name, weights=weights)
        model.hub_weights = hub_name


def _check_resolution(resolution: Any, spec: Any = None) -> int:
    positive_int(resolution, "resolution")
    if resolution % RESOLUTION_MULTIPLE:
        lo = resolution // RESOLUTION_MULTIPLE * RESOLUTION_MULTIPLE
        raise ValueError(f"resolution {resolution} is not a multiple of {RESOLUTION_MULTIPLE} as GPUNet "
                         f"inputs must be; try {max(lo, RESOLUTION_MULTIPLE)} or {lo + RESOLUTION_MULTIPLE}")
    if spec is not None:
        sizes = spec.spatial_sizes(resolution)
        if min(sizes) < 1:
            raise ValueError(f"resolution {resolution} is too small for {spec.name or 'this model'}: "
                             f"its feature maps shrink to {min(sizes)} px")
    return resolution


def resolve_model_input(model_or_name: Union[str, nn.Module], batch_size: int = 1,
                        resolution: Optional[int] = None,
                        input_shape: Optional[Sequence[int]] = None) -> Tuple[nn.Module, Tuple[int, ...], str]:
    """(eval-mode model, NCHW input shape, display name) for a hub name, GPUNet or any module.

    A module the caller passed is copied first: its training mode and dtype stay as they were."""
    positive_int(batch_size, "batch_size")
    if isinstance(model_or_name, str):
        model = get_model(model_or_name)
        name = model.spec.name or model_or_name
    elif isinstance(model_or_name, nn.Module):
        model, name = model_or_name, getattr(getattr(model_or_name, "spec", None), "name", None) \
            or type(model_or_name).__name__
    else:
        raise TypeError(f"model_or_name must be a hub model name or an nn.Module, got {type(model_or_name).__name__}")
    spec = model.spec if isinstance(model, GPUNet) else None
    if input_shape is not None:
        shape = tuple(int(s) for s in input_shape)
        if len(shape) == 3:
            shape = (batch_size,) + shape
        if len(shape) != 4 or min(shape) < 1:
            raise ValueError(f"input_shape must be (C, H, W) or (N, C, H, W) with positive sizes, got {input_shape!r}")
        if resolution is not None and shape[2:] != (resolution, resolution):
            raise ValueError(f"resolution={resolution} contradicts input_shape={tuple(input_shape)}")
        if spec is not None:
            for side in shape[2:]:
                _check_resolution(side, spec)
    elif spec is not None:
        res = _check_resolution(spec.resolution if resolution is None else resolution, spec)
        shape = (batch_size, getattr(model, "in_chans", 3), res, res)
    else:
        raise ValueError(f"input_shape=(C, H, W) is required for a {type(model).__name__} "
                         f"(only GPUNets and hub names know their input size)")
    if model is model_or_name:
        model = copy.deepcopy(model)
    return model.eval(), shape, str(name)
