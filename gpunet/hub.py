"""``get_model``: a hub name (or spec) in, a ready ``nn.Module`` out."""
from __future__ import annotations

import os
from typing import Any, Optional, Sequence, Union

from torch import nn

from .model import build_model
from .registry import get_registry
from .nvidia import load_any
from .spec import NetworkSpec

__all__ = ["get_model", "load_spec", "wrap_features"]


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


def load_spec(path_or_name: Union[str, os.PathLike]) -> NetworkSpec:
    """A spec from a file (our format or NVIDIA's) or a hub model name (``"gpunet-0"``)."""
    path = _as_path(path_or_name)
    if path is None:
        return get_registry().spec(path_or_name)
    return load_any(path)


def wrap_features(model: nn.Module, out_indices: Optional[Sequence[int]] = None) -> nn.Module:
    """timm's ``features_only`` wrapper: a list of multi-scale maps (see ``feature_info``)."""
    from timm.models._features import FeatureListNet

    n = len(model.feature_info)
    out_indices = tuple(range(n)) if out_indices is None else tuple(out_indices)
    bad = [i for i in out_indices if not -n <= i < n]
    if bad:
        raise ValueError(f"out_indices {bad} out of range: this model has {n} feature levels "
                         f"(reductions {[f['reduction'] for f in model.feature_info]})")
    return FeatureListNet(model, out_indices=out_indices, flatten_sequential=True)


def get_model(name: Union[str, os.PathLike, NetworkSpec], gpu: Optional[str] = None, pretrained: bool = False,
              checkpoint_path: Optional[str] = None, weights: Optional[str] = None,
              features_only: bool = False, out_indices: Optional[Sequence[int]] = None,
              **kwargs: Any) -> nn.Module:
    """Build a hub model, optionally with weights.

    Args:
        name: hub name (``"gpunet-0"``, ``"GPUNet_0"``), a spec, or a spec file path
            (``str`` or ``pathlib.Path``; see :func:`load_spec` for the rule).
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
    """
    reg = get_registry()
    hub_name = None
    if isinstance(name, NetworkSpec):
        spec = name
    elif _as_path(name) is not None:
        spec = load_any(_as_path(name))
    else:
        hub_name = reg.resolve_model(name)
        spec = reg.spec(hub_name)
    if gpu is not None:
        device = reg.resolve_device(gpu)
        if hub_name is not None and not reg.latency_entries(hub_name, device):
            tiered = [m for m in reg.list_models() if reg.latency_entries(m, device)]
            raise ValueError(f"model {hub_name!r} has no latency tier on device {device!r}; "
                             f"models tiered there: {', '.join(tiered) or 'none'}")
    if pretrained and checkpoint_path:
        raise ValueError("pass either pretrained=True or checkpoint_path, not both")
    own = reg.models[hub_name].get("checkpoint") if hub_name is not None else None
    if own and not checkpoint_path:  # a search winner (gpunet search export): its weights are the model
        checkpoint_path, pretrained = own, False
    model = build_model(spec, **kwargs)
    if checkpoint_path:
        from .checkpoint import load_checkpoint

        load_checkpoint(model, checkpoint_path, spec)
    elif pretrained:
        if hub_name is None:
            raise ValueError("pretrained=True needs a hub model name; use checkpoint_path for a spec")
        from .weights import load_pretrained

        load_pretrained(model, hub_name, weights=weights)
    if features_only:
        return wrap_features(model, out_indices)
    return model
