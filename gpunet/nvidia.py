"""Everything NVIDIA-specific in one place: their JSON config format and their state_dict names.

NVIDIA's GPUNet release (DeepLearningExamples, PyTorch/Classification/GPUNet) describes a
network as a JSON list whose element 0 is ``{"layer_type": "data", ...}`` and names
parameters after the list position (``network.stage: 1 layer3.conv.weight``,
``network. layer15.net.6.weight``, ``network.stage: 0 irb3.body.0.weight``). This module
translates both to and from gpunet's clean spec and module names.
"""
from __future__ import annotations

import re
from collections import OrderedDict
from typing import Any, Dict, List, Mapping, Optional

from .spec import LayerSpec, NetworkSpec, SpecError, parse_spec, read_json

__all__ = [
    "parse_any", "load_any", "spec_from_nvidia_config", "spec_to_nvidia_config", "nvidia_module_map",
    "state_dict_from_nvidia", "state_dict_to_nvidia", "is_nvidia_state_dict",
    "DISTILL_HEAD_CHANNELS", "NVIDIA_MODEL_NAMES",
]

#: The distill family's tail has a 1x1 conv to this width before pooling (hard-coded by NVIDIA).
DISTILL_HEAD_CHANNELS = 1152

#: NVIDIA's display names -> our hub names.
NVIDIA_MODEL_NAMES = {
    "GPUNet-0": "gpunet-0", "GPUNet-1": "gpunet-1", "GPUNet-2": "gpunet-2",
    "GPUNet-P0": "gpunet-p0", "GPUNet-P1": "gpunet-p1", "GPUNet-D1": "gpunet-d1",
    "GPUNet-D2": "gpunet-d2",
}

_NVIDIA_FIELD = {"in_channels": "num_in_channels", "out_channels": "num_out_channels", "se": "use_se",
                 "type": "layer_type"}
_COMMON = {"layer_type", "num_in_channels", "num_out_channels", "stage", "stage:"}
_ALLOWED = {
    "head": _COMMON | {"act"},
    "head_large": _COMMON | {"act"},
    "conv": _COMMON | {"stride", "kernel_size", "act"},
    "fused_irb": _COMMON | {"stride", "kernel_size", "act", "expansion", "use_se", "groups"},
    "irb": _COMMON | {"stride", "kernel_size", "act", "expansion", "use_se", "groups"},
    "tail": _COMMON | {"num_classes"},
}


# ----------------------------------------------------------------------------------------
# JSON config format


def parse_any(data: Any, source: Optional[str] = None) -> NetworkSpec:
    """Our JSON object or NVIDIA's list (the spec module itself reads only ours)."""
    if isinstance(data, list):
        return spec_from_nvidia_config(data, source=source)
    return parse_spec(data, source=source)


def load_any(path) -> NetworkSpec:
    """A spec file in our format or NVIDIA's (``0.65ms.json``)."""
    return parse_any(read_json(path), source=str(path))


def spec_from_nvidia_config(config: List[Any], source: Optional[str] = None,
                            name: Optional[str] = None) -> NetworkSpec:
    """Translate NVIDIA's list format (as in ``0.65ms.json``) into a validated spec."""
    if not config or not isinstance(config[0], dict) or config[0].get("layer_type") != "data":
        raise SpecError("NVIDIA config must start with a {'layer_type': 'data', ...} entry",
                        source=source, index=0, field="layer_type")
    data = config[0]
    for fld in ("img_resolution",):
        if fld not in data:
            raise SpecError("missing", source=source, index=0, field=fld)
    family = "distill" if data.get("distill", False) else "standard"
    layers: List[LayerSpec] = []
    num_classes = 1000
    for i, e in enumerate(config[1:], start=1):
        layers.append(_layer_from_entry(e, i, family, source))
        if e["layer_type"] == "tail":
            num_classes = e.get("num_classes", 1000)
    spec = NetworkSpec(layers=tuple(layers), resolution=data["img_resolution"], family=family,
                       num_classes=num_classes, name=name)
    try:
        return spec.validate(source=source)
    except SpecError as e:  # report positions and names as they are in NVIDIA's file
        if e.index is None:
            raise
        raise SpecError(e.message, source=source, index=e.index + 1,
                        field=_NVIDIA_FIELD.get(e.field, e.field)) from None


def _layer_from_entry(e: Any, i: int, family: str, source: Optional[str]) -> LayerSpec:
    """One entry of NVIDIA's list (position ``i``) as a layer, its keys checked for its kind."""
    if not isinstance(e, dict):
        raise SpecError(f"expected an object, got {type(e).__name__}", source=source, index=i)
    kind = e.get("layer_type")
    if kind not in _ALLOWED:
        raise SpecError(f"unknown layer_type {kind!r}; expected one of {sorted(_ALLOWED)}",
                        source=source, index=i, field="layer_type")
    unknown = sorted(set(e) - _ALLOWED[kind])
    if unknown:
        raise SpecError(f"unexpected keys {unknown} for layer_type {kind!r}", source=source, index=i)
    _require(e, ("num_in_channels", "num_out_channels"), i, source)
    if e.get("groups", 1) != 1:
        raise SpecError(f"only groups=1 is supported, got {e['groups']!r}", source=source, index=i, field="groups")
    stage = e.get("stage")
    if kind in ("head", "head_large"):
        act = e.get("act") or ("swish" if family == "standard" else "relu")
        return LayerSpec(kind, e["num_in_channels"], e["num_out_channels"], stride=2, act=act,
                         stage=0 if stage is None else stage)
    if kind == "tail":
        if family == "distill":
            return LayerSpec("tail", e["num_in_channels"], DISTILL_HEAD_CHANNELS,
                             pre_logits_channels=e["num_out_channels"])
        return LayerSpec("tail", e["num_in_channels"], e["num_out_channels"])
    _require(e, ("stride", "kernel_size") + (() if kind == "conv" else ("expansion",)), i, source)
    act = e.get("act") or ("relu" if family == "distill" else None)
    if act is None:
        raise SpecError("missing", source=source, index=i, field="act")
    return LayerSpec(kind, e["num_in_channels"], e["num_out_channels"], stride=e["stride"],
                     kernel_size=e["kernel_size"], expansion=e.get("expansion", 1), act=act,
                     se=bool(e.get("use_se", False)), stage=stage)


def _require(entry: Dict[str, Any], fields, i: int, source: Optional[str]) -> None:
    for f in fields:
        if f not in entry:
            raise SpecError("missing", source=source, index=i, field=f)


def spec_to_nvidia_config(spec: NetworkSpec) -> List[Dict[str, Any]]:
    """The inverse of :func:`spec_from_nvidia_config` (NVIDIA's key order, clean JSON)."""
    out: List[Dict[str, Any]] = [{"layer_type": "data", "img_resolution": spec.resolution,
                                  "distill": spec.family == "distill"}]
    for layer in spec.layers:
        e: Dict[str, Any] = {"layer_type": layer.kind, "num_in_channels": layer.in_channels}
        if layer.kind == "tail":
            e["num_out_channels"] = layer.pre_logits_channels or layer.out_channels
            e["num_classes"] = spec.num_classes
        else:
            e["num_out_channels"] = layer.out_channels
        if layer.kind in ("conv", "fused_irb", "irb"):
            e["stride"] = layer.stride
            if layer.kind != "conv":
                e["expansion"] = layer.to_dict()["expansion"]
            e["kernel_size"] = layer.kernel_size
            if spec.family == "distill":
                e["groups"] = 1
            else:
                e["act"] = layer.act
                if layer.kind != "conv":
                    e["use_se"] = layer.se
        elif layer.kind in ("head", "head_large") and spec.family == "standard" and layer.act != "swish":
            e["act"] = layer.act
        if layer.stage is not None and layer.kind != "tail":
            e["stage"] = layer.stage
        out.append(e)
    return out


# ----------------------------------------------------------------------------------------
# state_dict names


def _nvidia_layer_prefix(spec: NetworkSpec, index: int) -> str:
    """NVIDIA's module name for ``spec.layers[index]`` (its number is the JSON position + 1)."""
    layer = spec.layers[index]
    number = index + 2
    distill = spec.family == "distill"
    if layer.kind in ("head", "head_large"):
        return "network.head:" if distill else f"network.head: {number}"
    if layer.kind == "tail":
        return "network.tail:" if distill else f"network. layer{number}"
    return f"network.stage: {layer.stage} {'irb' if distill else 'layer'}{number}"


def nvidia_module_map(spec: NetworkSpec) -> "OrderedDict[str, str]":
    """Map each of our leaf modules (conv / bn / linear) to NVIDIA's name for it."""
    m: "OrderedDict[str, str]" = OrderedDict()
    distill = spec.family == "distill"
    head = _nvidia_layer_prefix(spec, 0)
    for i in range(3 if spec.stem.kind == "head_large" else 1):
        m[f"stem.{i}.conv"] = f"{head}.net.{3 * i}"
        m[f"stem.{i}.bn"] = f"{head}.net.{3 * i + 1}"
    for g, (_stage, indices) in enumerate(spec.stages()):
        for b, li in enumerate(indices):
            layer = spec.layers[li]
            ours, theirs = f"stages.{g}.{b}", _nvidia_layer_prefix(spec, li)
            if layer.kind == "conv":
                subs = {"conv": "conv", "bn": "bn1"}
            elif distill:
                subs = {"conv_pw": "body.0", "bn1": "body.1", "conv_dw": "body.3", "bn2": "body.4",
                        "conv_pwl": "body.6", "bn3": "body.7"}
            elif layer.kind == "fused_irb":
                subs = {"conv_exp": "conv_exp", "bn1": "bn1", "conv_pwl": "conv_pwl", "bn2": "bn2"}
            else:
                subs = {"conv_pw": "conv_pw", "bn1": "bn1", "conv_dw": "conv_dw", "bn2": "bn2",
                        "conv_pwl": "conv_pwl", "bn3": "bn3"}
            if layer.se:
                subs.update({"se.conv_reduce": "se.conv_reduce", "se.conv_expand": "se.conv_expand"})
            for a, t in subs.items():
                m[f"{ours}.{a}"] = f"{theirs}.{t}"
    tail = _nvidia_layer_prefix(spec, len(spec.layers) - 1)
    m["conv_head.conv"] = f"{tail}.net.0"
    m["conv_head.bn"] = f"{tail}.net.1"
    if distill or spec.tail.pre_logits_channels:
        m["conv_pre_logits"] = f"{tail}.net.4"
        m["classifier"] = f"{tail}.net.8"
    else:
        m["classifier"] = f"{tail}.net.6"
    return m


def is_nvidia_state_dict(state_dict: Mapping[str, Any]) -> bool:
    return any(k.startswith("network.") for k in state_dict)


_PARAM = re.compile(r"^(.*)\.([A-Za-z_]+)$")


def _rename(state_dict: Mapping[str, Any], module_map: Mapping[str, str], what: str,
            source: Optional[str]) -> "OrderedDict[str, Any]":
    out: "OrderedDict[str, Any]" = OrderedDict()
    unknown = []
    for key, value in state_dict.items():
        match = _PARAM.match(key)
        target = module_map.get(match.group(1)) if match else None
        if target is None:
            unknown.append(key)
            continue
        out[f"{target}.{match.group(2)}"] = value
    if unknown:
        where = f"{source}: " if source else ""
        raise KeyError(f"{where}{len(unknown)} {what} key(s) have no counterpart in this architecture, "
                       f"e.g. {unknown[:5]}")
    return out


def state_dict_from_nvidia(state_dict: Mapping[str, Any], spec: NetworkSpec,
                           source: Optional[str] = None) -> "OrderedDict[str, Any]":
    """Rename NVIDIA's keys (``network.stage: 1 layer3.conv.weight``) to ours (``stages.0.0.conv.weight``)."""
    inverse = {v: k for k, v in nvidia_module_map(spec).items()}
    return _rename(state_dict, inverse, "NVIDIA", source)


def state_dict_to_nvidia(state_dict: Mapping[str, Any], spec: NetworkSpec) -> "OrderedDict[str, Any]":
    """Rename our keys to NVIDIA's, e.g. to hand a fine-tuned model back to NVIDIA's tooling."""
    return _rename(state_dict, nvidia_module_map(spec), "gpunet", None)
