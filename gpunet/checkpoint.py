"""Load a local checkpoint file into a GPUNet: ours or NVIDIA's, never a silent partial load.

Accepted files: a bare state_dict, a timm training checkpoint (``state_dict_ema`` preferred,
then ``state_dict``), with or without DDP's ``module.`` prefix, in our key names or NVIDIA's
(``network.stage: 1 layer3...``); ``.pth`` / ``.pth.tar`` via ``torch.load(weights_only=True)``
and ``.safetensors``.
"""
from __future__ import annotations

import argparse
import os
from typing import Any, Dict, Mapping, Optional, Tuple

import torch
from torch import nn

from .nvidia import is_nvidia_state_dict, state_dict_from_nvidia
from .safetensors_mmap import SafetensorsFormatError, read_views
from .spec import NetworkSpec
from .errors import BadInputError

__all__ = ["CheckpointError", "read_safetensors", "read_checkpoint", "extract_state_dict", "to_gpunet_state_dict",
           "load_state_dict_checked", "load_state_dict_into", "load_checkpoint", "adopt_state_dict", "SAFE_GLOBALS"]

#: Non-tensor objects allowed while unpickling: timm's training checkpoints store ``args``.
SAFE_GLOBALS = [argparse.Namespace]

CLASSIFIER_KEYS = ("classifier.weight", "classifier.bias")


class CheckpointError(BadInputError, RuntimeError):
    """A checkpoint does not fit the architecture; the message lists the offending keys."""


def read_safetensors(path: str) -> Tuple[Dict[str, torch.Tensor], Dict[str, str]]:
    """A safetensors file's tensors and its header metadata: tensors over one private memory map
    (:mod:`gpunet.safetensors_mmap`), or through the safetensors library for what those cannot
    view."""
    try:
        views = read_views(path)
    except SafetensorsFormatError as e:
        raise CheckpointError(f"{path}: not a valid safetensors file ({e})") from None
    if views is not None:
        return views
    from safetensors import safe_open

    try:
        with safe_open(path, framework="pt", device="cpu") as f:
            return f.get_tensors(), dict(f.metadata() or {})
    except Exception as e:  # SafetensorError (bad header, truncated data) has no public base class
        raise CheckpointError(f"{path}: not a valid safetensors file ({type(e).__name__}: "
                              f"{str(e).splitlines()[0] if str(e) else ''})") from e


def read_checkpoint(path: str) -> Any:
    """Read a checkpoint file without unpickling arbitrary objects."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"checkpoint not found: {path}")
    if path.endswith(".safetensors"):
        return read_safetensors(path)[0]
    try:
        with torch.serialization.safe_globals(SAFE_GLOBALS):
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # pickle.UnpicklingError or a corrupt archive
        raise CheckpointError(f"{path}: cannot be read as a PyTorch checkpoint with weights_only=True "
                              f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})") from e


def extract_state_dict(obj: Any, source: str = "checkpoint") -> Dict[str, torch.Tensor]:
    """The weights inside a loaded checkpoint: EMA first (NVIDIA's published ones), then raw."""
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"{source}: expected a dict of tensors or a training checkpoint, got "
                              f"{type(obj).__name__}")
    for key in ("state_dict_ema", "state_dict", "model_ema", "model"):
        inner = obj.get(key)
        if isinstance(inner, Mapping) and inner and all(isinstance(v, torch.Tensor) for v in inner.values()):
            obj = inner
            break
    sd = {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    if not sd:
        raise CheckpointError(f"{source}: no tensors found (keys: {list(obj)[:8]})")
    if all(k.startswith("module.") for k in sd):
        sd = {k[len("module."):]: v for k, v in sd.items()}
    return sd


def to_gpunet_state_dict(sd: Mapping[str, torch.Tensor], spec: NetworkSpec,
                         source: str = "checkpoint") -> Dict[str, torch.Tensor]:
    """Our key names, whatever names the checkpoint used."""
    if is_nvidia_state_dict(sd):
        try:
            return dict(state_dict_from_nvidia(sd, spec, source=source))
        except KeyError as e:
            raise CheckpointError(str(e.args[0])) from None
    return dict(sd)


def load_state_dict_checked(model: nn.Module, sd: Mapping[str, torch.Tensor], source: str = "checkpoint",
                            skip_classifier: bool = False, adopt: bool = False) -> None:
    """Strict load with an error listing the first missing / unexpected / mis-shaped keys.

    ``skip_classifier`` keeps the model's (new) classifier, for fine-tuning to other classes.
    ``adopt`` (the caller owns ``sd`` and drops it): see :func:`adopt_state_dict`, whose one pass
    over the keys is also the check when everything fits.
    """
    own = model.state_dict(keep_vars=True)  # the parameters and buffers themselves
    sd = dict(sd)
    if skip_classifier:
        for k in CLASSIFIER_KEYS:
            sd.pop(k, None)
    elif adopt and adopt_state_dict(own, sd):
        return
    _check_fits(own, sd, source, skip_classifier)
    model.load_state_dict(sd, strict=not skip_classifier)


def _check_fits(own: Mapping[str, torch.Tensor], sd: Mapping[str, torch.Tensor], source: str,
                skip_classifier: bool) -> None:
    missing = [k for k in own if k not in sd and not (skip_classifier and k in CLASSIFIER_KEYS)]
    unexpected = [k for k in sd if k not in own]
    shapes = [f"{k}: checkpoint {tuple(sd[k].shape)} vs model {tuple(own[k].shape)}"
              for k in own if k in sd and tuple(sd[k].shape) != tuple(own[k].shape)]
    if missing or unexpected or shapes:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing (e.g. {missing[:5]})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected (e.g. {unexpected[:5]})")
        if shapes:
            parts.append(f"{len(shapes)} mis-shaped (e.g. {shapes[:5]})")
        raise CheckpointError(f"{source} does not fit this architecture: " + "; ".join(parts))


def adopt_state_dict(own: Mapping[str, torch.Tensor], sd: Mapping[str, torch.Tensor]) -> bool:
    """Let every parameter and buffer in ``own`` (``model.state_dict(keep_vars=True)``) take over
    the checkpoint's tensor (``t.data = new``: the same Parameter objects, so optimizers and hooks
    keep them) instead of copying into it: for GPUNet-2 (99 MiB) the copy cost more than reading
    the file. Only when it changes nothing but the memory: same keys, shapes, dtypes and devices,
    contiguous tensors, no tensor shared between two names; False (nothing done) otherwise, and
    the caller checks and copies. ``sd`` must be no one else's (a file just read): the model now
    holds its tensors."""
    if len(sd) != len(own):
        return False
    for k, t in own.items():
        new = sd.get(k)
        if new is None or new.shape != t.shape or new.dtype != t.dtype or new.device != t.device \
                or not new.is_contiguous():
            return False
    if len({t.data_ptr() for t in own.values()}) != len(own) \
            or len({t.data_ptr() for t in sd.values()}) != len(own):  # two names, one tensor: copy, not alias
        return False
    with torch.no_grad():
        for k, t in own.items():
            t.data = sd[k]
    return True


def load_state_dict_into(model: nn.Module, obj: Any, spec: Optional[NetworkSpec] = None,
                         source: str = "state_dict", adopt: bool = False) -> nn.Module:
    """Load an in-memory checkpoint (a state_dict or a training checkpoint, our key names or
    NVIDIA's) into ``model`` like :func:`load_checkpoint` loads a file. ``adopt``: the tensors
    are no one else's (just read from a file), so the model may take them over (no copy)."""
    spec = spec or getattr(model, "spec")
    sd = to_gpunet_state_dict(extract_state_dict(obj, source), spec, source)
    ckpt_classes = sd["classifier.weight"].shape[0] if "classifier.weight" in sd else None
    skip = ckpt_classes is not None and ckpt_classes != getattr(model, "num_classes", ckpt_classes)
    load_state_dict_checked(model, sd, source=source, skip_classifier=skip, adopt=adopt)
    return model


def load_checkpoint(model: nn.Module, path: str, spec: Optional[NetworkSpec] = None) -> nn.Module:
    """Load ``path`` into ``model`` (a GPUNet). The classifier is skipped when the model was
    built with a different class count than the checkpoint's (fine-tuning). The tensors just read
    are adopted by the model's parameters rather than copied into them (see
    :func:`load_state_dict_checked`)."""
    return load_state_dict_into(model, read_checkpoint(path), spec, path, adopt=True)
