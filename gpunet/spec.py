"""Architecture specs: the data a GPUNet is built from.

A :class:`NetworkSpec` is a flat list of :class:`LayerSpec` entries (one stem, the body
blocks, one tail), the input resolution and the module *family* (NVIDIA's "standard" or
"distill" implementation, which differ in BatchNorm eps, IRB layout and padding).
Specs validate themselves, round-trip through our JSON format and hash to a stable
fingerprint. NVIDIA's own JSON files are read through :mod:`gpunet.nvidia`.

Vocabulary: specs keep NVIDIA's words, the reverse of timm's. A spec's ``head`` /
``head_large`` entry is the *stem* (``GPUNet.stem``) and its ``tail`` entry is the classifier
*head* (``GPUNet.conv_head`` + ``classifier``); ``NetworkSpec.stem`` / ``.tail`` name them.

This module is data and integer arithmetic only: it imports neither torch nor any other
gpunet module at import time, only the leaf :mod:`gpunet.errors` (:data:`LAYER_KINDS` is the one
table of block kinds; the search's block codes store indices into it, so its order is fixed).
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Tuple, Union

from .errors import BadInputError

__all__ = [
    "LayerSpec", "NetworkSpec", "SpecError", "load_spec", "save_spec", "parse_spec",
    "FAMILIES", "LAYER_KINDS", "BODY_KINDS", "KIND_FIELDS", "ACTIVATIONS", "SPEC_FORMAT", "BN_EPS", "conv_padding",
]

SPEC_FORMAT = "gpunet-spec/1"
FAMILIES = ("standard", "distill")
LAYER_KINDS = ("head", "head_large", "conv", "fused_irb", "irb", "tail")
BODY_KINDS = ("conv", "fused_irb", "irb")
ACTIVATIONS = ("relu", "swish")
#: The fields each layer kind uses (besides ``type``); any other field must be left out.
KIND_FIELDS = {
    "head": frozenset({"in_channels", "out_channels", "stride", "act", "stage"}),
    "head_large": frozenset({"in_channels", "out_channels", "stride", "act", "stage"}),
    "conv": frozenset({"in_channels", "out_channels", "stride", "kernel_size", "act", "stage"}),
    "fused_irb": frozenset({"in_channels", "out_channels", "stride", "kernel_size", "expansion", "se", "act",
                            "stage"}),
    "irb": frozenset({"in_channels", "out_channels", "stride", "kernel_size", "expansion", "se", "act", "stage"}),
    "tail": frozenset({"in_channels", "out_channels", "pre_logits_channels"}),
}
#: BatchNorm eps per module family (NVIDIA's standard builder uses TF-style 1e-3).
BN_EPS = {"standard": 1e-3, "distill": 1e-5}


def conv_padding(kind: str, kernel_size: int, stride: int, family: str) -> int:
    """Padding NVIDIA's builders use: ``k // 2`` except stride-2 Fused-IRB convs in the
    standard family, which are unpadded (GPUNet-0: 160 -> 79 -> 39). ``kernel_size`` may be an
    integer array (the search space prices millions of networks at once)."""
    if family == "standard" and kind == "fused_irb" and stride == 2:
        return 0
    return ((stride - 1) + (kernel_size - 1)) // 2


class SpecError(BadInputError, ValueError):
    """A spec (file or object) is malformed; the message names where and what was expected."""

    def __init__(self, message: str, *, source: Optional[str] = None, index: Optional[int] = None,
                 field: Optional[str] = None):
        where = []
        if source:
            where.append(str(source))
        if index is not None:
            where.append(f"entry {index}")
        if field:
            where.append(f"field '{field}'")
        self.source, self.index, self.field, self.message = source, index, field, message
        super().__init__((": ".join([", ".join(where), message])) if where else message)


@dataclass(frozen=True)
class LayerSpec:
    """One entry of a network: the stem, a body block, or the tail.

    ``expansion`` is the IRB / Fused-IRB expansion ratio (may be fractional in the
    standard family). ``stage`` is the search-space stage the block belongs to (Table 1).
    For the tail, ``out_channels`` is the width of the 1x1 feature conv and
    ``pre_logits_channels`` the width of the extra 1x1 conv after pooling (distill family).
    """

    kind: str
    in_channels: int
    out_channels: int
    stride: int = 1
    kernel_size: int = 3
    expansion: float = 1.0
    act: Optional[str] = None
    se: bool = False
    stage: Optional[int] = None
    pre_logits_channels: Optional[int] = None

    def to_dict(self) -> Dict[str, Any]:
        d: Dict[str, Any] = {"type": self.kind, "in_channels": self.in_channels,
                             "out_channels": self.out_channels}
        if self.kind in BODY_KINDS:
            d["stride"] = self.stride
            d["kernel_size"] = self.kernel_size
        elif self.kind in ("head", "head_large"):
            d["stride"] = self.stride
        if self.kind in ("fused_irb", "irb"):
            d["expansion"] = _plain_number(self.expansion)
            d["se"] = self.se
        if self.act is not None:
            d["act"] = self.act
        if self.stage is not None:
            d["stage"] = self.stage
        if self.pre_logits_channels is not None:
            d["pre_logits_channels"] = self.pre_logits_channels
        return d


@dataclass(frozen=True)
class NetworkSpec:
    """A whole network: resolution, family, layers (stem first, tail last), class count."""

    layers: Tuple[LayerSpec, ...]
    resolution: int = 224
    family: str = "standard"
    num_classes: int = 1000
    name: Optional[str] = None

    def __post_init__(self):
        object.__setattr__(self, "layers", tuple(self.layers))

    # -- structure ---------------------------------------------------------------------
    @property
    def stem(self) -> LayerSpec:
        return self.layers[0]

    @property
    def tail(self) -> LayerSpec:
        return self.layers[-1]

    @property
    def body(self) -> Tuple[LayerSpec, ...]:
        return self.layers[1:-1]

    @property
    def in_channels(self) -> int:
        return self.stem.in_channels

    def stages(self) -> List[Tuple[Optional[int], List[int]]]:
        """Group consecutive body blocks by their ``stage`` field.

        Returns ``[(stage_id, [layer indices into self.layers]), ...]`` in network order.
        """
        groups: List[Tuple[Optional[int], List[int]]] = []
        for i, layer in enumerate(self.layers[1:-1], start=1):
            if groups and groups[-1][0] == layer.stage:
                groups[-1][1].append(i)
            else:
                groups.append((layer.stage, [i]))
        return groups

    def spatial_sizes(self, resolution: Optional[int] = None) -> List[int]:
        """Output height/width after the stem and after every body block (square input)."""
        size = resolution or self.resolution
        sizes = []
        stem = self.stem
        convs = 3 if stem.kind == "head_large" else 1
        for j in range(convs):
            s = 2 if j == 0 else 1
            size = _conv_out(size, 3, s, conv_padding("head", 3, s, self.family))
        sizes.append(size)
        for layer in self.body:
            size = _conv_out(size, layer.kernel_size, layer.stride,
                             conv_padding(layer.kind, layer.kernel_size, layer.stride, self.family))
            sizes.append(size)
        return sizes

    # -- (de)serialisation ---------------------------------------------------------------
    def to_dict(self) -> Dict[str, Any]:
        d: Dict[str, Any] = {"format": SPEC_FORMAT}
        if self.name:
            d["name"] = self.name
        d.update({"resolution": self.resolution, "family": self.family,
                  "num_classes": self.num_classes,
                  "layers": [layer.to_dict() for layer in self.layers]})
        return d

    def to_json(self, indent: Optional[int] = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent) + ("\n" if indent else "")

    @classmethod
    def from_dict(cls, data: Any, source: Optional[str] = None) -> "NetworkSpec":
        return parse_spec(data, source=source)

    def fingerprint(self) -> str:
        """sha256 of the architecture (name excluded): identifies what weights fit."""
        d = self.to_dict()
        d.pop("name", None)
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()

    def replace(self, **changes) -> "NetworkSpec":
        return dataclasses.replace(self, **changes)

    # -- validation ----------------------------------------------------------------------
    def validate(self, source: Optional[str] = None) -> "NetworkSpec":
        """Check the spec is buildable as written; raise :class:`SpecError` naming entry and field.

        Every field is type-checked (``"se": "no"`` is an error, not a truthy SE), a field the
        layer's kind does not use must keep its default (the stem is always 3x3, the tail has
        no activation or stage), and a distill network ends in a tail with pre-logits.
        """
        def err(msg, index=None, fld=None):
            return SpecError(msg, source=source, index=index, field=fld)

        if self.name is not None and not isinstance(self.name, str):
            raise err(f"expected a string, got {self.name!r}", fld="name")
        if not isinstance(self.family, str) or self.family not in FAMILIES:
            raise err(f"unknown family {self.family!r}; expected one of {FAMILIES}", fld="family")
        _check_int(self.resolution, "resolution", source, minimum=8)
        _check_int(self.num_classes, "num_classes", source, minimum=0)
        if len(self.layers) < 2:
            raise err("a network needs at least a stem (head) and a tail", fld="layers")
        for i, layer in enumerate(self.layers):
            if not isinstance(layer, LayerSpec):
                raise err(f"expected a LayerSpec, got {type(layer).__name__}", i)
            if not isinstance(layer.kind, str) or layer.kind not in LAYER_KINDS:
                raise err(f"unknown layer type {layer.kind!r}; expected one of {LAYER_KINDS}", i, "type")
            if i == 0 and layer.kind not in ("head", "head_large"):
                raise err(f"the first layer must be 'head' or 'head_large', got {layer.kind!r}", i, "type")
            if i == len(self.layers) - 1 and layer.kind != "tail":
                raise err(f"the last layer must be 'tail', got {layer.kind!r}", i, "type")
            if 0 < i < len(self.layers) - 1 and layer.kind not in BODY_KINDS:
                raise err(f"'{layer.kind}' may only appear at the {'start' if 'head' in layer.kind else 'end'}",
                          i, "type")
            for fld in ("in_channels", "out_channels"):
                v = getattr(layer, fld)
                if not _is_int(v) or v < 1:
                    raise err(f"expected a positive integer, got {v!r}", i, fld)
            if i > 0 and layer.in_channels != self.layers[i - 1].out_channels:
                raise err(f"in_channels {layer.in_channels} does not match the previous layer's "
                          f"out_channels {self.layers[i - 1].out_channels}", i, "in_channels")
            used = KIND_FIELDS[layer.kind]
            for fld, default in _LAYER_DEFAULTS.items():
                v = getattr(layer, fld)
                if fld not in used and not (v == default and isinstance(v, bool) == isinstance(default, bool)):
                    why = " (the stem is always 3x3)" if fld == "kernel_size" and "head" in layer.kind else ""
                    raise err(f"a '{layer.kind}' layer does not use '{fld}'{why}; got {v!r}, leave it out", i, fld)
            if layer.kind in ("head", "head_large") and not (_is_int(layer.stride) and layer.stride == 2):
                raise err(f"the stem has stride 2, got {layer.stride!r}", i, "stride")
            if layer.kind in BODY_KINDS:
                if not _is_int(layer.stride) or layer.stride not in (1, 2):
                    raise err(f"stride must be 1 or 2, got {layer.stride!r}", i, "stride")
                k = layer.kernel_size
                if not _is_int(k) or k < 1 or k % 2 == 0:
                    raise err(f"kernel_size must be a positive odd integer, got {k!r}", i, "kernel_size")
            if layer.kind in ("fused_irb", "irb"):
                e = layer.expansion
                if not isinstance(e, (int, float)) or isinstance(e, bool) or not math.isfinite(e) or e <= 0:
                    raise err(f"expansion must be a positive number, got {e!r}", i, "expansion")
                if not isinstance(layer.se, bool):
                    raise err(f"se must be true or false, got {layer.se!r}", i, "se")
                if self.family == "distill":
                    if layer.kind != "irb":
                        raise err("the distill family only has 'irb' body blocks", i, "type")
                    if float(e) != int(e):
                        raise err(f"the distill family needs an integer expansion, got {e!r}", i, "expansion")
                    if layer.se:
                        raise err("the distill family has no squeeze-excitation", i, "se")
            if layer.act is not None and (not isinstance(layer.act, str) or layer.act not in ACTIVATIONS):
                raise err(f"unknown activation {layer.act!r}; expected one of {ACTIVATIONS}", i, "act")
            if layer.kind in BODY_KINDS and self.family == "standard" and layer.act is None:
                raise err("body blocks of the standard family need 'act'", i, "act")
            if layer.stage is not None and (not _is_int(layer.stage) or layer.stage < 0):
                raise err(f"stage must be a non-negative integer, got {layer.stage!r}", i, "stage")
            if layer.pre_logits_channels is not None:
                _check_int(layer.pre_logits_channels, "pre_logits_channels", source, minimum=1, index=i)
            elif layer.kind == "tail" and self.family == "distill":
                raise err("the distill family's tail needs 'pre_logits_channels' (the 1x1 conv after "
                          "pooling)", i, "pre_logits_channels")
        sizes = self.spatial_sizes()
        if min(sizes) < 1:
            i = sizes.index(min(sizes))
            raise err(f"resolution {self.resolution} is too small: the feature map vanishes at this "
                      f"layer", i, "stride" if i else "resolution")
        return self


# ----------------------------------------------------------------------------------------
# parsing


_LAYER_FIELDS = {f.name for f in dataclasses.fields(LayerSpec)} - {"kind"}
_LAYER_DEFAULTS = {f.name: f.default for f in dataclasses.fields(LayerSpec)
                   if f.default is not dataclasses.MISSING}


def parse_spec(data: Any, source: Optional[str] = None) -> NetworkSpec:
    """Build a validated :class:`NetworkSpec` from our JSON object (``gpunet-spec/1``).

    NVIDIA's list format is the loader's job: :func:`gpunet.load_spec` or
    :func:`gpunet.nvidia.parse_any` read both (so this module never imports the NVIDIA code).
    """
    if isinstance(data, list):
        raise SpecError("this is NVIDIA's list format; read it with gpunet.load_spec(path) or "
                        "gpunet.nvidia.spec_from_nvidia_config(data)", source=source)
    if not isinstance(data, dict):
        raise SpecError(f"expected a JSON object (gpunet spec) or list (NVIDIA config), got "
                        f"{type(data).__name__}", source=source)
    fmt = data.get("format", SPEC_FORMAT)
    if fmt != SPEC_FORMAT:
        raise SpecError(f"unsupported format {fmt!r}; expected {SPEC_FORMAT!r}", source=source, field="format")
    known = {"format", "name", "resolution", "family", "num_classes", "layers"}
    unknown = sorted(set(data) - known)
    if unknown:
        raise SpecError(f"unknown keys {unknown}; expected some of {sorted(known)}", source=source)
    raw_layers = data.get("layers")
    if not isinstance(raw_layers, list):
        raise SpecError("expected a list of layers", source=source, field="layers")
    layers = []
    for i, raw in enumerate(raw_layers):
        if not isinstance(raw, dict):
            raise SpecError(f"expected an object, got {type(raw).__name__}", source=source, index=i)
        raw = dict(raw)
        if "type" not in raw:
            raise SpecError("missing layer type", source=source, index=i, field="type")
        kind = raw.pop("type")
        if not isinstance(kind, str) or kind not in LAYER_KINDS:
            raise SpecError(f"unknown layer type {kind!r}; expected one of {LAYER_KINDS}",
                            source=source, index=i, field="type")
        bad = sorted(set(raw) - _LAYER_FIELDS)
        if bad:
            raise SpecError(f"unknown keys {bad}; expected some of {sorted(_LAYER_FIELDS)}",
                            source=source, index=i)
        ignored = sorted(set(raw) - KIND_FIELDS[kind])
        if ignored:
            raise SpecError(f"a '{kind}' layer does not use {ignored}; it takes "
                            f"{sorted(KIND_FIELDS[kind])}", source=source, index=i, field=ignored[0])
        for req in ("in_channels", "out_channels"):
            if req not in raw:
                raise SpecError("missing", source=source, index=i, field=req)
        if kind in ("head", "head_large"):
            raw.setdefault("stride", 2)
        layers.append(LayerSpec(kind=kind, **raw))
    try:
        spec = NetworkSpec(layers=tuple(layers), resolution=data.get("resolution", 224),
                           family=data.get("family", "standard"),
                           num_classes=data.get("num_classes", 1000), name=data.get("name"))
    except TypeError as e:  # pragma: no cover - dataclass signature errors
        raise SpecError(str(e), source=source) from e
    return spec.validate(source=source)


def load_spec(path: Union[str, os.PathLike]) -> NetworkSpec:
    """Read a spec file in our format (``gpunet.load_spec`` also reads NVIDIA's and hub names)."""
    return parse_spec(read_json(path), source=os.fspath(path))


def read_json(path: Union[str, os.PathLike]) -> Any:
    """A spec file's JSON, with errors naming the file (shared with the NVIDIA reader)."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"spec file not found: {path}")
    with open(path, "r", encoding="utf-8") as f:
        text = f.read()
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise SpecError(f"not valid JSON ({e.msg} at line {e.lineno}, column {e.colno})", source=path) from e
    return data


def save_spec(spec: NetworkSpec, path: Union[str, os.PathLike]) -> None:
    """Write ``spec`` in our JSON format atomically (temp file, then rename)."""
    from ._io import atomic_write_text

    atomic_write_text(path, spec.validate().to_json())


# ----------------------------------------------------------------------------------------
# helpers


def _conv_out(size: int, k: int, s: int, p: int) -> int:
    return (size + 2 * p - k) // s + 1


def _plain_number(x: float):
    return int(x) if float(x) == int(x) else float(x)


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _check_int(v, name, source, minimum=None, index=None):
    if not _is_int(v) or (minimum is not None and v < minimum):
        bound = f" >= {minimum}" if minimum is not None else ""
        raise SpecError(f"expected an integer{bound}, got {v!r}", source=source, index=index, field=name)
