"""Register the hub's models with timm: ``timm.create_model("gpunet_0")`` after ``import gpunet``.

``gpunet_0`` ... ``gpunet_d2`` are NVIDIA's seven networks; their pretrained tag ``nvidia_in1k``
points at NVIDIA's published (NGC) weights, so ``timm.list_models("gpunet*", pretrained=True)``
lists them. ``gpunet_spec`` builds any GPUNet from ``spec=`` (a spec dict, file or NetworkSpec;
without one, GPUNet-0's network): the entry point of model folders of other networks.
Models of the user registry exported as folders (search winners, ``gpunet search export``) are
registered too, as ``gpunet_<name>`` (``search-run-1a2b`` -> ``gpunet_search_run_1a2b``), their
weights the folder's: on import, and by the export itself (:func:`register_user_models`).

Pretrained configs are :func:`gpunet.hub.hub_pretrained_cfg` (the dict ``gpunet.get_model``
attaches too). Weights load through gpunet (:func:`gpunet.folders.load_cfg_weights`) from
whatever timm passes: a ``local-dir:`` folder, an ``hf-hub:`` repo, ``pretrained_cfg["file"]`` /
``["state_dict"]`` / ``["hf_hub_id"]`` (or the same in ``pretrained_cfg_overlay``), else the
published weights through :mod:`gpunet.weights` (NVIDIA's checkpoints need key conversion).
"""
from __future__ import annotations

import os
import re
import warnings
from typing import Any, Dict, List, Optional, Tuple

from timm.models import build_model_with_cfg, generate_default_cfgs, is_model, register_model

from .errors import GPUNetError
from .folders import WEIGHTS_NAME, cfg_source, entry_pretrained_cfg, entry_spec, load_cfg_weights
from .hub import hub_pretrained_cfg
from .model import GENERIC_ARCHITECTURE, NVIDIA_TAG, GPUNet, gpunet_pretrained_cfg
from .registry import Registry, get_registry

__all__ = ["TIMM_NAMES", "USER_NAMES", "GENERIC_ARCHITECTURE", "create_gpunet", "timm_name", "register_user_models"]

#: timm model name -> hub name
TIMM_NAMES = {
    "gpunet_0": "gpunet-0", "gpunet_1": "gpunet-1", "gpunet_2": "gpunet-2",
    "gpunet_p0": "gpunet-p0", "gpunet_p1": "gpunet-p1", "gpunet_d1": "gpunet-d1", "gpunet_d2": "gpunet-d2",
}


# Packaged data only: the timm names cover the packaged models, and a damaged user registry file
# must not break `import gpunet` (it fails where it is used instead).
_PACKAGED = Registry()

#: timm model name -> (hub name, folder) of the user registry's exported models (filled at import)
USER_NAMES: Dict[str, Tuple[str, str]] = {}

default_cfgs = generate_default_cfgs({
    **{f"{t}.{NVIDIA_TAG}": hub_pretrained_cfg(h, _PACKAGED) for t, h in TIMM_NAMES.items()},
    GENERIC_ARCHITECTURE: gpunet_pretrained_cfg(_PACKAGED.spec("gpunet-0")),
})


def create_gpunet(variant: str, pretrained: bool = False, **kwargs: Any) -> GPUNet:
    """timm entry point: build through ``build_model_with_cfg`` (pretrained cfg, feature
    wrapping), loading weights with gpunet's loader before any feature wrapping.

    ``spec`` (``model_args`` of a folder's ``config.json``) is checked, errors naming the file and
    the field; for NVIDIA's names it must be that network (any class count)."""
    features_only = kwargs.pop("features_only", False)
    out_indices = kwargs.pop("out_indices", None)
    cfg = kwargs.get("pretrained_cfg")
    spec = kwargs.pop("spec", None)
    if spec is None and variant == GENERIC_ARCHITECTURE and not isinstance(cfg, dict):
        spec = _PACKAGED.spec("gpunet-0")  # timm's generic model tests build every entry point bare
    spec = entry_spec(variant, spec, cfg_source(cfg))
    kwargs["pretrained_cfg"] = entry_pretrained_cfg(variant, spec, cfg)
    model = build_model_with_cfg(GPUNet, variant, pretrained=False, spec=spec, **kwargs)
    if pretrained:
        source = load_cfg_weights(model, model.pretrained_cfg, hub_name=TIMM_NAMES.get(variant),
                                  cache_dir=kwargs.get("cache_dir"))
        hub, folder = USER_NAMES.get(variant, (None, None))
        if folder and source == os.path.join(folder, WEIGHTS_NAME):  # the registry model's own weights
            model.hub_weights = hub
    if features_only:
        from .hub import wrap_features

        model = wrap_features(model, out_indices)
    return model


def _register(name: str, doc: str, spec: Any = None):
    def fn(pretrained: bool = False, **kwargs: Any) -> GPUNet:
        if spec is not None:
            if kwargs.get("spec") is not None:
                raise TypeError(f"{name} is the registry's network; spec= builds another: use {GENERIC_ARCHITECTURE}")
            kwargs["spec"] = spec
        return create_gpunet(name, pretrained, **kwargs)

    fn.__name__ = name
    fn.__qualname__ = name
    fn.__doc__ = doc
    fn.__module__ = __name__
    return register_model(fn)


def timm_name(hub_name: str) -> str:
    """The timm name of a hub model: ``gpunet_`` and the name with ``-`` (any non-alphanumeric) as ``_``."""
    base = re.sub(r"[^0-9a-z]+", "_", hub_name.lower()).strip("_")
    return base if base.startswith("gpunet_") else f"gpunet_{base}"


def _user_entry(reg: Registry, name: str) -> Optional[Tuple[str, str]]:
    """(timm name, folder) of a user-registry model exported as a folder, None for any other; a
    name timm already has from elsewhere is left alone (warned)."""
    info = reg.models[name]
    if info.get("origin") != "user" or not isinstance(info.get("folder"), str) or info.get("nvidia_config"):
        return None
    t = timm_name(name)
    if t in TIMM_NAMES or t == GENERIC_ARCHITECTURE or (is_model(t) and t not in USER_NAMES):
        warnings.warn(f"user registry model {name!r}: timm name {t!r} is taken; build it with "
                      f"timm.create_model('local-dir:{info['folder']}')", stacklevel=3)
        return None
    return t, info["folder"]


def register_user_models(registry: Optional[Registry] = None) -> List[str]:
    """Register with timm each model of the user registry exported as a model folder (``folder``:
    ``gpunet search export``'s winners) as :func:`timm_name`, weights from the folder, so
    ``timm.create_model("gpunet_<name>", pretrained=True)`` builds it and ``timm.list_models(
    pretrained=True)`` lists it. Returns the timm names registered (again: updated in place)."""
    reg = registry or get_registry()
    done = []
    for name in reg.list_models():
        found = _user_entry(reg, name)
        if found is None:
            continue
        t, folder = found
        spec = reg.spec(name)
        default_cfgs.update(generate_default_cfgs({t: dict(hub_pretrained_cfg(name, reg), file=folder)}))
        USER_NAMES[t] = (name, folder)
        with warnings.catch_warnings():  # timm warns on a re-registration; ours replaces our own entry
            warnings.simplefilter("ignore")
            globals()[t] = _register(t, f"GPUNet {name} of the user registry (a model folder: {folder}).", spec)
        done.append(t)
    return done


for _t in TIMM_NAMES:
    globals()[_t] = _register(_t, f"GPUNet ({TIMM_NAMES[_t]}), NVIDIA's architecture, from gpunet's hub.")
globals()[GENERIC_ARCHITECTURE] = _register(
    GENERIC_ARCHITECTURE, "Any GPUNet, from ``spec=`` (a gpunet spec dict / file / NetworkSpec; default GPUNet-0's).")


def _register_user_models_on_import() -> None:
    """A damaged user registry must not break ``import gpunet``: it is reported, and fails where used."""
    try:
        register_user_models()
    except (GPUNetError, OSError, ValueError) as e:
        warnings.warn(f"gpunet: the user registry's models were not registered with timm: {e}", stacklevel=2)


_register_user_models_on_import()
