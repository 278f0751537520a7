"""Block codes: what the lookup table and the estimator agree a block *is*.

:class:`BlockKey` describes one block at one input shape; :func:`spec_blocks` /
:func:`network_blocks` turn networks (specs, encoded vectors) into keys; :func:`pack_codes` /
:func:`block_slots` pack the blocks of millions of encoded networks into int64 codes whose
``kind`` field is an index into :data:`gpunet.spec.LAYER_KINDS` (the one table of block kinds).
Neither storage (:mod:`.table`) nor estimation (:mod:`.estimate`): both import this module.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

from ...spec import ACTIVATIONS, LAYER_KINDS, LayerSpec, NetworkSpec
from ..space import SearchSpace

__all__ = ["BlockKey", "spec_blocks", "network_blocks", "BlockSlot", "block_slots", "pack_codes",
           "unpack_codes", "unpack_fields", "check_space_fits", "CODE_LAYOUT"]


@dataclass(frozen=True)
class BlockKey:
    """What a block's latency depends on: its configuration and the shape it runs at."""

    kind: str
    family: str
    in_channels: int
    out_channels: int
    kernel_size: int
    stride: int
    expansion: float
    se: bool
    act: str
    height: int
    width: int
    batch: int = 1
    precision: str = "fp32"
    classes: int = 0  # classifier outputs, tail only

    @property
    def key(self) -> str:
        e = f"{float(self.expansion):g}"
        return (f"{self.kind}|{self.family}|c{self.in_channels}-{self.out_channels}|k{self.kernel_size}"
                f"|s{self.stride}|e{e}|se{int(self.se)}|{self.act}|{self.height}x{self.width}"
                f"|b{self.batch}|{self.precision}|n{self.classes}")

    @property
    def input_shape(self) -> Tuple[int, int, int, int]:
        return (self.batch, self.in_channels, self.height, self.width)

    @classmethod
    def from_layer(cls, layer: LayerSpec, family: str, height: int, width: Optional[int] = None,
                   batch: int = 1, precision: str = "fp32", num_classes: int = 1000) -> "BlockKey":
        """Normalised key: fields a block kind ignores take fixed values, so equal blocks share a key."""
        kind = layer.kind
        width = height if width is None else width
        if kind in ("head", "head_large"):
            return cls(kind, family, layer.in_channels, layer.out_channels, 3, 2, 1.0, False,
                       layer.act or ("swish" if family == "standard" else "relu"), height, width, batch, precision)
        if kind == "tail":
            return cls(kind, family, layer.in_channels, layer.out_channels, 1, 1, 1.0, False, "relu", height, width,
                       batch, precision, num_classes)
        if kind == "conv":
            return cls(kind, family, layer.in_channels, layer.out_channels, layer.kernel_size, layer.stride, 1.0,
                       False, layer.act or "relu", height, width, batch, precision)
        return cls(kind, family, layer.in_channels, layer.out_channels, layer.kernel_size, layer.stride,
                   float(layer.expansion), bool(layer.se), layer.act or "relu", height, width, batch, precision)

    def layer_spec(self) -> LayerSpec:
        return LayerSpec(self.kind, self.in_channels, self.out_channels, stride=self.stride,
                         kernel_size=self.kernel_size, expansion=self.expansion, act=self.act, se=self.se)

    def build_module(self):
        """The block as a standalone ``nn.Module`` (eval mode), exactly as the builder makes it."""
        from torch import nn

        from ...blocks import conv_norm_act
        from ...builder import Stem, build_block

        if self.kind in ("head", "head_large"):
            module = Stem(self.layer_spec(), self.family)
        elif self.kind == "tail":
            module = nn.Sequential(conv_norm_act(self.in_channels, self.out_channels, 1, 1, "relu", self.family),
                                   nn.AdaptiveAvgPool2d(1), nn.Flatten(1),
                                   *([nn.Linear(self.out_channels, self.classes)] if self.classes else []))
        else:
            module = build_block(self.layer_spec(), self.family)
        return module.eval().requires_grad_(False)

    def to_row(self) -> Dict[str, Any]:
        d = dataclasses.asdict(self)
        d["se"] = int(self.se)
        d["expansion"] = float(self.expansion)
        return d


def spec_blocks(spec: NetworkSpec, batch: int = 1, precision: str = "fp32",
                resolution: Optional[int] = None) -> List[BlockKey]:
    """One key per layer of a network (repeated blocks repeat), in network order.

    The distill family's tail (head conv, pool, 1x1 ``conv_pre_logits`` + ReLU, classifier) is
    priced as two plain-tail keys: the head conv and pool without a classifier (``classes=0``),
    then a tail at 1x1 from the pooled width to ``pre_logits_channels`` with the classifier (its
    BatchNorm folds into the conv in every runtime, so it times as the bare 1x1 conv does).
    """
    res = resolution or spec.resolution
    sizes = [res] + spec.spatial_sizes(res)  # input of the stem, of each body block, of the tail
    keys = [BlockKey.from_layer(layer, spec.family, sizes[i], batch=batch, precision=precision,
                                num_classes=0 if layer.kind == "tail" and layer.pre_logits_channels
                                else spec.num_classes)
            for i, layer in enumerate(spec.layers)]
    tail = spec.tail
    if tail.pre_logits_channels:
        keys.append(BlockKey("tail", spec.family, tail.out_channels, int(tail.pre_logits_channels), 1, 1, 1.0, False,
                             "relu", 1, 1, batch, precision, spec.num_classes))
    return keys


def network_blocks(space, vectors, batch: int = 1, precision: str = "fp32") -> List[BlockKey]:
    """The distinct block keys a set of encoded networks needs (what a table build measures)."""
    keys = {}
    for slot in block_slots(space, space.check(vectors)):
        for code in np.unique(slot.codes[slot.counts > 0]):
            k = unpack_codes(np.array([code]), space.family, batch, precision, space.num_classes)[0]
            keys[k.key] = k
    return list(keys.values())


#: block-code field -> (shift, bits): 61 bits in all
CODE_LAYOUT = {"kind": (0, 3), "act": (3, 2), "se": (5, 1), "stride": (6, 2), "k": (8, 4), "e100": (12, 12),
           "cin": (24, 13), "cout": (37, 13), "h": (50, 11)}


def pack_codes(kind, cin, cout, k, stride, e, se, act, h, check: bool = True) -> np.ndarray:
    """One int64 per block from field arrays (``kind``/``act`` as indices, ``e`` as a float).

    ``check=False`` skips the range checks (callers that bounded the fields already, e.g.
    :func:`block_slots` via :func:`check_space_fits`).
    """
    e100 = np.rint(np.asarray(e, dtype=np.float64) * 100).astype(np.int64) if np.ndim(e) or not \
        isinstance(e, (int, np.integer)) else int(e) * 100
    fields = {"kind": kind, "act": act, "se": se, "stride": stride, "k": k, "e100": e100, "cin": cin,
              "cout": cout, "h": h}
    code = np.zeros(np.broadcast(*fields.values()).shape, dtype=np.int64)
    for name, value in fields.items():
        shift, bits = CODE_LAYOUT[name]
        v = np.asarray(value, dtype=np.int64)
        if check and v.size and (v.min() < 0 or v.max() >= (1 << bits)):
            raise ValueError(f"block field {name!r} out of range for the code layout (0..{(1 << bits) - 1})")
        if v.ndim == 0:
            code |= int(v) << shift
        else:
            code |= np.left_shift(v, shift)
    return code


def check_space_fits(space: SearchSpace) -> None:
    """Raise if a space's choices exceed the block-code layout (channels < 8192, sizes < 2048, ...)."""
    widths = [c for g in space.genes if g.field == "filters" for c in g.choices] + [space.tail_channels]
    widths += [int(st.fixed["filters"]) for st in space.stages if "filters" in st.fixed]
    limits = [("channels", max(widths), CODE_LAYOUT["cin"][1]),
              ("resolution", max(space.resolutions), CODE_LAYOUT["h"][1]),
              ("kernel", max([c for g in space.genes if g.field == "kernel" for c in g.choices] or [3]),
               CODE_LAYOUT["k"][1]),
              ("expansion x100", 100 * max([c for g in space.genes if g.field == "expansion" for c in g.choices]
                                           or [1]), CODE_LAYOUT["e100"][1])]
    for what, value, bits in limits:
        if value >= (1 << bits):
            raise ValueError(f"search space {space.name!r}: {what} {value} exceeds the lookup code layout "
                             f"(< {1 << bits})")


def unpack_fields(codes: np.ndarray) -> Dict[str, np.ndarray]:
    """Field arrays (see :data:`CODE_LAYOUT`) of packed block codes."""
    codes = np.asarray(codes, dtype=np.int64)
    return {name: (codes >> shift) & ((1 << bits) - 1) for name, (shift, bits) in CODE_LAYOUT.items()}


def unpack_codes(codes, family: str = "standard", batch: int = 1, precision: str = "fp32",
                 num_classes: int = 1000) -> List[BlockKey]:
    f = unpack_fields(codes)
    out = []
    for i in range(len(codes)):
        kind = LAYER_KINDS[int(f["kind"][i])]
        out.append(BlockKey(kind, family, int(f["cin"][i]), int(f["cout"][i]), int(f["k"][i]), int(f["stride"][i]),
                            int(f["e100"][i]) / 100.0, bool(f["se"][i]), ACTIVATIONS[int(f["act"][i])],
                            int(f["h"][i]), int(f["h"][i]), batch, precision, num_classes if kind == "tail" else 0))
    return out


@dataclass
class BlockSlot:
    """One block position shared by all networks: its code per network and how often it occurs."""

    name: str
    codes: np.ndarray
    counts: np.ndarray


def block_slots(space: SearchSpace, vectors: np.ndarray) -> List[BlockSlot]:
    """Stem, (first, repeated) per stage, tail: codes and counts for every network."""
    check_space_fits(space)
    arr = np.atleast_2d(np.asarray(vectors, dtype=np.int64))
    n = len(arr)
    sizes = space.stage_input_sizes(arr)
    ones = np.ones(n, dtype=np.int64)
    slots: List[BlockSlot] = []
    cur_c = np.full(n, 3, dtype=np.int64)
    relu = ACTIVATIONS.index("relu")
    for s, st in enumerate(space.stages):
        cfg = space.stage_config(arr, s)
        f = cfg["filters"]
        if st.kind == "head":
            slots.append(BlockSlot("stem", pack_codes(LAYER_KINDS.index("head"), cur_c, f, 3, 2, 1.0, 0, cfg["act"],
                                                      sizes[s], check=False), ones))
            cur_c = f
            continue
        kind = LAYER_KINDS.index(st.kind)
        has_e = st.kind in ("fused_irb", "irb")
        e = cfg["expansion"] if has_e else 1.0
        se = cfg["se"] if has_e else 0
        layers = cfg["layers"]
        first = pack_codes(kind, cur_c, f, cfg["kernel"], st.stride, e, se, cfg["act"], sizes[s], check=False)
        rest = pack_codes(kind, f, f, cfg["kernel"], 1, e, se, cfg["act"], sizes[s + 1], check=False)
        slots.append(BlockSlot(f"stage{s}.first", first, (layers > 0).astype(np.int64)))
        slots.append(BlockSlot(f"stage{s}.rest", rest, np.maximum(layers - 1, 0)))
        cur_c = np.where(layers > 0, f, cur_c)
    slots.append(BlockSlot("tail", pack_codes(LAYER_KINDS.index("tail"), cur_c, space.tail_channels, 1, 1, 1.0, 0, relu,
                                              sizes[-1], check=False), ones))
    return slots
