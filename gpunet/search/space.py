"""The search space of the paper's Table 1, held as data, and its 41-integer encoding (Table 2).

A network is a vector of integers, one per *gene*. Genes hold values, not choice indices, so
a pooled vector reads as the network it encodes::

    [res, s0.filters, s1.kernel, s1.act, s1.layers,
     s2.filters, s2.kernel, s2.expansion, s2.se, s2.act, s2.layers, ... s7.layers]

``act`` is an index into :data:`gpunet.spec.ACTIVATIONS` (0 = relu, 1 = swish) and ``se`` is 0/1. A stage
field set to ``None`` in a :class:`StageSpace` is not a gene (it takes the stage's ``fixed``
value, or for ``filters`` the previous stage's width), which is how stage 0 has only a filters
gene and stage 1 shares stage 0's width. Users define their own spaces by building a
:class:`SearchSpace` (or loading one from JSON) with other stages and choices.
"""
from __future__ import annotations

import dataclasses
import json
import math
import warnings
from dataclasses import dataclass, field
from typing import Any, Dict, Iterator, List, Optional, Tuple

import numpy as np

from ..spec import ACTIVATIONS, LayerSpec, NetworkSpec, conv_padding
from .._checks import non_negative_int, positive_int
from ..errors import GPUNetError

__all__ = ["StageSpace", "SearchSpace", "Gene", "SPACE_FORMAT", "SearchSpaceError"]

SPACE_FORMAT = "gpunet-space/1"
_FIELDS = ("filters", "kernel", "expansion", "se", "act", "layers")  # Table 2's order within a stage
_DEFAULTS = {"kernel": 3, "expansion": 1, "se": 0, "act": "swish", "layers": 1}
_SAMPLE_CHUNK = 1 << 16
_MAP_ROWS = 1 << 13  # Sobol points drawn and mapped at a time (~3 MB, stays in cache)


class SearchSpaceError(GPUNetError, ValueError):
    """A vector or space definition is invalid; the message names the gene/field and the choices."""


@dataclass(frozen=True)
class StageSpace:
    """One stage of the space: its block kind, stride and the choices for each searched field.

    A field given as a tuple is searched (one gene); ``None`` means fixed: ``fixed[field]`` if
    present, else the previous stage's width (``filters``) or a default (kernel 3, layers 1, ...).
    """

    kind: str
    stride: int
    filters: Optional[Tuple[int, ...]] = None
    kernel: Optional[Tuple[int, ...]] = None
    expansion: Optional[Tuple[int, ...]] = None
    se: Optional[Tuple[int, ...]] = None
    act: Optional[Tuple[str, ...]] = None
    layers: Optional[Tuple[int, ...]] = None
    fixed: Dict[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        for name in _FIELDS:
            v = getattr(self, name)
            if v is not None:
                object.__setattr__(self, name, tuple(v))
        object.__setattr__(self, "fixed", dict(self.fixed))

    def searched(self) -> List[str]:
        return [f for f in _FIELDS if getattr(self, f) is not None]

    def fixed_value(self, name: str) -> Any:
        return self.fixed.get(name, _DEFAULTS.get(name))

    def to_dict(self) -> Dict[str, Any]:
        d = {"kind": self.kind, "stride": self.stride}
        for name in _FIELDS:
            if getattr(self, name) is not None:
                d[name] = list(getattr(self, name))
        if self.fixed:
            d["fixed"] = dict(self.fixed)
        return d


@dataclass(frozen=True)
class Gene:
    """One position of the encoding: which stage/field it sets and the values it may take."""

    index: int
    stage: Optional[int]  # None for resolution
    field: str
    choices: Tuple[int, ...]

    @property
    def name(self) -> str:
        return self.field if self.stage is None else f"stage{self.stage}.{self.field}"


def _steps(lo: int, hi: int, step: int) -> Tuple[int, ...]:
    return tuple(range(lo, hi + 1, step))


_R = ("relu", "swish")


class _ValueTable:
    """Which values each gene may take, as one flat boolean table: a vector is checked with a
    subtraction, a range test and one gather over the whole array, not a test per choice per
    column. Genes whose values span more than ``_MAX_SPAN`` integers are tested with ``np.isin``."""

    _MAX_SPAN = 1 << 16

    def __init__(self, genes: Tuple[Gene, ...]):
        self.genes = genes
        self.lo = np.array([min(g.choices) for g in genes], dtype=np.int64)
        span = np.array([max(g.choices) - min(g.choices) + 1 for g in genes], dtype=np.int64)
        self.wide = [g for g in genes if span[g.index] > self._MAX_SPAN]
        span[[g.index for g in self.wide]] = 1
        self.span = span.astype(np.uint64)
        self.offset = np.concatenate([[0], np.cumsum(span)[:-1]]).astype(np.int64)
        self.table = np.zeros(int(span.sum()) + 1, dtype=bool)  # the last entry: any value out of range
        for g in genes:
            if g not in self.wide:
                self.table[self.offset[g.index] + np.asarray(g.choices, dtype=np.int64) - self.lo[g.index]] = True

    def invalid(self, arr: np.ndarray) -> np.ndarray:
        """Boolean like ``arr`` (n, genes): True where a value is not one of its gene's choices."""
        rel = arr - self.lo
        inside = rel.view(np.uint64) < self.span  # a value below its gene's lowest wraps to a huge one
        rel += self.offset
        rel[~inside] = len(self.table) - 1
        bad = ~self.table.take(rel)
        for g in self.wide:
            bad[:, g.index] = ~np.isin(arr[:, g.index], g.choices)
        return bad


@dataclass(frozen=True)
class SearchSpace:
    """Stages, resolutions and the fixed parts (stem activation, tail width) of a space.

    ``SearchSpace()`` is the paper's Table 1; :meth:`sample`, :meth:`decode`, :meth:`encode`
    and :meth:`check` work on (n, len(genes)) integer arrays.
    """

    stages: Tuple[StageSpace, ...] = (
        StageSpace("head", 2, filters=_steps(24, 32, 8), fixed={"kernel": 3, "act": "swish", "layers": 1}),
        StageSpace("conv", 1, kernel=(3, 5), act=_R, layers=_steps(1, 4, 1)),
        StageSpace("fused_irb", 2, _steps(32, 80, 16), (3, 5), _steps(2, 6, 1), (0, 1), _R, _steps(1, 8, 1)),
        StageSpace("fused_irb", 2, _steps(48, 112, 16), (3, 5), _steps(2, 6, 1), (0, 1), _R, _steps(1, 8, 1)),
        StageSpace("irb", 2, _steps(96, 192, 16), (3, 5), _steps(2, 6, 1), (0, 1), _R, _steps(1, 10, 1)),
        StageSpace("irb", 1, _steps(112, 224, 16), (3, 5), _steps(2, 6, 1), (0, 1), _R, _steps(0, 15, 1)),
        StageSpace("irb", 2, _steps(128, 416, 32), (3, 5), _steps(2, 6, 1), (0, 1), _R, _steps(1, 15, 1)),
        StageSpace("irb", 1, _steps(256, 832, 64), (3, 5), _steps(2, 6, 1), (0, 1), _R, _steps(0, 15, 1)),
    )
    resolutions: Tuple[int, ...] = _steps(224, 512, 32)
    tail_channels: int = 1792
    num_classes: int = 1000
    family: str = "standard"
    name: str = "gpunet-table1"

    def __post_init__(self):
        object.__setattr__(self, "stages", tuple(self.stages))
        object.__setattr__(self, "resolutions", tuple(self.resolutions))
        self._validate_definition()
        object.__setattr__(self, "_genes", self._make_genes())
        width = max(len(g.choices) for g in self._genes)
        table = np.zeros((len(self._genes), width), dtype=np.int64)
        for g in self._genes:
            table[g.index, :len(g.choices)] = g.choices
            table[g.index, len(g.choices):] = g.choices[-1]
        object.__setattr__(self, "_choice_table", table)
        object.__setattr__(self, "_n_choices", np.array([len(g.choices) for g in self._genes]))
        object.__setattr__(self, "_gene_at", {(g.stage, g.field): g.index for g in self._genes})
        object.__setattr__(self, "_valid_values", _ValueTable(self._genes))

    # -- definition --------------------------------------------------------------------
    def _validate_definition(self) -> None:
        def bad(msg):
            return SearchSpaceError(f"search space {self.name!r}: {msg}")

        if not self.stages or self.stages[0].kind != "head":
            raise bad("the first stage must be the stem (kind 'head')")
        if self.stages[0].filters is None and "filters" not in self.stages[0].fixed:
            raise bad("stage 0 needs filters (choices or fixed)")
        if self.family != "standard":
            raise bad(f"only the 'standard' family is searchable, got {self.family!r}")
        if not self.resolutions or any(int(r) != r or r < 8 for r in self.resolutions):
            raise bad(f"resolutions must be integers >= 8, got {self.resolutions}")
        for i, st in enumerate(self.stages):
            if i > 0 and st.kind not in ("conv", "fused_irb", "irb"):
                raise bad(f"stage {i}: kind must be conv, fused_irb or irb, got {st.kind!r}")
            if st.stride not in (1, 2):
                raise bad(f"stage {i}: stride must be 1 or 2, got {st.stride}")
            for name in ("filters", "kernel", "expansion", "se", "layers"):
                ch = getattr(st, name)
                if ch is not None and (not ch or any(not isinstance(c, (int, np.integer)) or isinstance(c, bool)
                                                     for c in ch)):
                    raise bad(f"stage {i} field {name!r}: expected a non-empty list of integers, got {ch}")
            if st.act is not None and (not st.act or any(a not in ACTIVATIONS for a in st.act)):
                raise bad(f"stage {i} field 'act': expected names from {ACTIVATIONS}, got {st.act}")
            if st.layers is not None and min(st.layers) < 0:
                raise bad(f"stage {i} field 'layers': counts must be >= 0")
            if st.kernel is not None and any(k < 1 or k % 2 == 0 for k in st.kernel):
                raise bad(f"stage {i} field 'kernel': kernels must be positive odd integers")
            if st.kind == "head" and (st.layers is not None or st.fixed_value("layers") != 1):
                raise bad("stage 0 (stem) has exactly one layer")
            if st.kind == "head" and st.stride != 2:
                raise bad("the stem (stage 0) has stride 2")
            if st.kind == "head" and st.fixed_value("kernel") != 3:
                raise bad("the stem is a 3x3 convolution (kernel must be fixed to 3)")
        if self.stages[-1].layers is not None and min(self.stages[-1].layers) == 0 and len(self.stages) < 2:
            raise bad("a network needs at least one body block")

    def _make_genes(self) -> Tuple[Gene, ...]:
        genes = [Gene(0, None, "resolution", tuple(int(r) for r in self.resolutions))]
        for s, st in enumerate(self.stages):
            for name in st.searched():
                ch = getattr(st, name)
                values = tuple(ACTIVATIONS.index(a) for a in ch) if name == "act" else tuple(int(c) for c in ch)
                genes.append(Gene(len(genes), s, name, values))
        return tuple(genes)

    @property
    def genes(self) -> Tuple[Gene, ...]:
        return self._genes

    @property
    def num_genes(self) -> int:
        return len(self._genes)

    def gene_index(self, stage: Optional[int], name: str) -> Optional[int]:
        return self._gene_at.get((stage, name))

    def size(self) -> int:
        """Number of distinct encodings (ignoring that empty stages' other genes are dead)."""
        return math.prod(len(g.choices) for g in self._genes)

    # -- (de)serialisation -----------------------------------------------------------------
    def to_dict(self) -> Dict[str, Any]:
        return {"format": SPACE_FORMAT, "name": self.name, "family": self.family,
                "resolutions": list(self.resolutions), "tail_channels": self.tail_channels,
                "num_classes": self.num_classes, "stages": [st.to_dict() for st in self.stages]}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2) + "\n"

    @classmethod
    def from_dict(cls, d: Dict[str, Any], source: str = "search space") -> "SearchSpace":
        if not isinstance(d, dict) or d.get("format", SPACE_FORMAT) != SPACE_FORMAT:
            raise SearchSpaceError(f"{source}: expected a JSON object with format {SPACE_FORMAT!r}")
        try:
            stages = []
            for i, st in enumerate(d["stages"]):
                unknown = set(st) - {"kind", "stride", "fixed", *_FIELDS}
                if unknown:
                    raise SearchSpaceError(f"{source}: stage {i}: unknown fields {sorted(unknown)}")
                stages.append(StageSpace(**st))
            kw = {k: d[k] for k in ("resolutions", "tail_channels", "num_classes", "family", "name") if k in d}
            return cls(stages=tuple(stages), **kw)
        except KeyError as e:
            raise SearchSpaceError(f"{source}: missing field {e.args[0]!r}") from None
        except TypeError as e:
            raise SearchSpaceError(f"{source}: {e}") from None

    @classmethod
    def load(cls, name_or_path: str) -> "SearchSpace":
        """``'paper'`` (Table 1), ``'small'`` (:meth:`small`) or a JSON file."""
        if name_or_path in ("paper", "table1", "default"):
            return cls()
        if name_or_path == "small":
            return cls.small()
        with open(name_or_path, encoding="utf-8") as f:
            try:
                data = json.load(f)
            except json.JSONDecodeError as e:
                raise SearchSpaceError(f"{name_or_path}: not valid JSON ({e})") from None
        return cls.from_dict(data, source=name_or_path)

    @classmethod
    def small(cls) -> "SearchSpace":
        """Table 1's structure at low resolution (64-128) and reduced depth: networks that a CPU
        times in milliseconds, for tests and for validating a lookup table quickly."""
        t1 = cls()
        stages = list(t1.stages)
        depth = {1: (1, 2), 2: (1, 2), 3: (1, 2, 3), 4: (1, 2, 3), 5: (0, 1, 2, 3), 6: (1, 2, 3, 4), 7: (0, 1, 2)}
        for s, layers in depth.items():
            stages[s] = dataclasses.replace(stages[s], layers=layers)
        return cls(stages=tuple(stages), resolutions=(64, 96, 128), tail_channels=t1.tail_channels,
                   num_classes=t1.num_classes, name="gpunet-table1-small")

    # -- sampling ---------------------------------------------------------------------------
    def iter_sample(self, n: int, seed: int = 0, chunk: int = _SAMPLE_CHUNK) -> Iterator[np.ndarray]:
        """Chunks of a scrambled Sobol sequence (seeded) mapped evenly onto each gene's choices."""
        non_negative_int(n, "n")
        positive_int(chunk, "chunk")
        engine = self._sobol(seed)
        for done in range(0, n, chunk):
            yield self._fill(engine, np.empty((min(chunk, n - done), self.num_genes), dtype=np.int64))

    def sample(self, n: int, seed: int = 0) -> np.ndarray:
        """``(n, num_genes)`` int64 array of valid, canonical encodings (the points :meth:`iter_sample` gives)."""
        non_negative_int(n, "n")
        return self._fill(self._sobol(seed), np.empty((n, self.num_genes), dtype=np.int64))

    def _sobol(self, seed: int):
        from scipy.stats import qmc

        return qmc.Sobol(d=self.num_genes, scramble=True, seed=seed)

    def _fill(self, engine, out: np.ndarray) -> np.ndarray:
        """``out`` filled with the engine's next points, drawn and mapped in cache-sized steps."""
        for i in range(0, len(out), _MAP_ROWS):
            out[i:i + _MAP_ROWS] = self._choices_at(engine, min(_MAP_ROWS, len(out) - i))
        return out

    def _choices_at(self, engine, m: int) -> np.ndarray:
        """The next ``m`` Sobol points, each coordinate mapped evenly onto its gene's choices."""
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # balance warning when m is not a power of two
            u = engine.random(m)
        idx = (u * self._n_choices).astype(np.int64)
        np.minimum(idx, self._n_choices - 1, out=idx)
        idx += np.arange(self.num_genes) * self._choice_table.shape[1]  # flat index into the choice table
        return self.canonicalize(self._choice_table.take(idx), check=False)

    # -- validation ----------------------------------------------------------------------------
    def as_array(self, vectors) -> np.ndarray:
        """Vectors as a 2-D int64 array of this space's width (shape and dtype checked, values not)."""
        return self._as_2d(vectors)[0]

    def _as_2d(self, vectors) -> Tuple[np.ndarray, bool]:
        arr = np.asarray(vectors)
        single = arr.ndim == 1
        arr = np.atleast_2d(arr)
        if arr.ndim != 2 or arr.shape[1] != self.num_genes:
            raise SearchSpaceError(f"expected vectors of length {self.num_genes} for space {self.name!r}, "
                                   f"got shape {np.shape(vectors)}")
        if arr.dtype.kind not in "iu":
            if arr.dtype.kind == "f" and np.all(np.isfinite(arr)) and np.all(arr == np.round(arr)):
                arr = arr.astype(np.int64)
            else:
                raise SearchSpaceError(f"vectors must hold integers, got dtype {arr.dtype}")
        return arr.astype(np.int64, copy=False), single

    def invalid_mask(self, vectors) -> np.ndarray:
        """Boolean ``(n, num_genes)``: True where a gene's value is not one of its choices."""
        return self._valid_values.invalid(self._as_2d(vectors)[0])

    def check(self, vectors) -> np.ndarray:
        """Return the vectors as a 2-D int64 array, or raise naming the first bad row and gene."""
        arr, _ = self._as_2d(vectors)
        bad = self.invalid_mask(arr)
        if bad.any():
            row, col = map(int, np.argwhere(bad)[0])
            g = self._genes[col]
            shown = [ACTIVATIONS[c] + f"={c}" for c in g.choices] if g.field == "act" else list(g.choices)
            raise SearchSpaceError(
                f"vector {row}: gene {col} ({g.name}) is {int(arr[row, col])}, expected one of {shown} "
                f"({int(bad.any(axis=1).sum())} of {len(arr)} vectors invalid)")
        return arr

    def is_valid(self, vectors) -> np.ndarray:
        """Boolean ``(n,)`` mask of valid vectors (never raises for values; shape must fit)."""
        return ~self.invalid_mask(vectors).any(axis=1)

    def canonicalize(self, vectors, check: bool = True) -> np.ndarray:
        """Set the dead genes of empty stages to their first choice, so each network has one vector."""
        single = np.ndim(vectors) == 1
        arr = self.check(vectors) if check else np.atleast_2d(np.asarray(vectors, dtype=np.int64))
        arr = arr.copy() if check else arr
        for s, st in enumerate(self.stages):
            li = self.gene_index(s, "layers")
            if li is None or min(st.layers) > 0:
                continue
            empty = arr[:, li] == 0
            if empty.any():
                for name in st.searched():
                    gi = self.gene_index(s, name)
                    if gi != li:
                        arr[empty, gi] = self._genes[gi].choices[0]
        return arr[0] if single else arr

    # -- per-network structure (vectorised) -------------------------------------------------
    def stage_config(self, vectors, stage: int) -> Dict[str, np.ndarray]:
        """Per-network arrays of a stage's filters, kernel, expansion, se, act (code) and layers.

        ``filters`` is the stage's own width (shared from the previous stage when not searched).
        """
        arr = np.atleast_2d(np.asarray(vectors, dtype=np.int64))
        n = len(arr)
        st = self.stages[stage]
        out = {}
        for name in _FIELDS:
            gi = self.gene_index(stage, name)
            if gi is not None:
                out[name] = arr[:, gi]
            elif name == "filters":
                if "filters" in st.fixed:
                    out[name] = np.full(n, int(st.fixed["filters"]), dtype=np.int64)
                else:
                    out[name] = self.stage_config(arr, stage - 1)["filters"]
            elif name == "act":
                out[name] = np.full(n, ACTIVATIONS.index(st.fixed_value("act")), dtype=np.int64)
            else:
                out[name] = np.full(n, int(st.fixed_value(name)), dtype=np.int64)
        return out

    def resolution(self, vectors) -> np.ndarray:
        return np.atleast_2d(np.asarray(vectors, dtype=np.int64))[:, 0]

    # -- decode / encode ----------------------------------------------------------------------
    def decode(self, vector, name: Optional[str] = None) -> NetworkSpec:
        """The :class:`~gpunet.spec.NetworkSpec` (family ``standard``) a vector encodes."""
        arr, _ = self._as_2d(vector)
        if len(arr) != 1:
            raise SearchSpaceError(f"decode takes one vector, got {len(arr)}; use decode_many")
        arr = self.check(arr)
        layers: List[LayerSpec] = []
        cin = 3
        for s, st in enumerate(self.stages):
            cfg = {k: int(v[0]) for k, v in self.stage_config(arr, s).items()}
            act = ACTIVATIONS[cfg["act"]]
            if st.kind == "head":
                layers.append(LayerSpec("head", cin, cfg["filters"], stride=st.stride, act=act, stage=s))
                cin = cfg["filters"]
                continue
            for j in range(cfg["layers"]):
                kw = dict(stride=st.stride if j == 0 else 1, kernel_size=cfg["kernel"], act=act, stage=s)
                if st.kind in ("fused_irb", "irb"):
                    kw.update(expansion=cfg["expansion"], se=bool(cfg["se"]))
                layers.append(LayerSpec(st.kind, cin, cfg["filters"], **kw))
                cin = cfg["filters"]
        layers.append(LayerSpec("tail", cin, self.tail_channels))
        spec = NetworkSpec(tuple(layers), resolution=int(arr[0, 0]), family=self.family,
                           num_classes=self.num_classes, name=name)
        return spec.validate()

    def decode_many(self, vectors) -> List[NetworkSpec]:
        return [self.decode(v) for v in self.check(vectors)]

    def encode(self, spec: NetworkSpec) -> np.ndarray:
        """The canonical vector of a spec from this space; raises naming what does not fit."""
        def bad(msg):
            return SearchSpaceError(f"spec {spec.name or ''!s}: {msg}".replace("spec : ", "spec: "))

        if spec.family != self.family:
            raise bad(f"family {spec.family!r} is not this space's {self.family!r}")
        if spec.tail.out_channels != self.tail_channels:
            raise bad(f"tail width {spec.tail.out_channels} is not this space's {self.tail_channels}")
        if spec.stem.kind != "head":
            raise bad(f"stem {spec.stem.kind!r} is not a single 'head' convolution")
        by_stage = self._layers_by_stage(spec, bad)
        vec = np.zeros(self.num_genes, dtype=np.int64)
        vec[0] = spec.resolution
        prev_filters = None
        for s, st in enumerate(self.stages):
            cfg = self._stem_fields(spec) if s == 0 else self._stage_fields(s, st, by_stage.get(s, []), bad)
            self._set_stage_genes(vec, s, st, cfg, prev_filters, bad)
            if cfg.get("filters") is not None:
                prev_filters = cfg["filters"]
        if vec[0] not in self.resolutions:
            raise bad(f"resolution {spec.resolution} is not among {self.resolutions}")
        return self.canonicalize(vec)

    def _layers_by_stage(self, spec: NetworkSpec, bad) -> Dict[int, List[LayerSpec]]:
        by_stage: Dict[int, List[LayerSpec]] = {}
        for layer in spec.body:
            if layer.stage is None or not 0 < layer.stage < len(self.stages):
                raise bad(f"body layer has stage {layer.stage!r}; expected 1..{len(self.stages) - 1}")
            by_stage.setdefault(layer.stage, []).append(layer)
        order = [l.stage for l in spec.body]
        if order != sorted(order):
            raise bad("body layers are not in stage order")
        return by_stage

    @staticmethod
    def _stem_fields(spec: NetworkSpec) -> Dict[str, Any]:
        return {"filters": spec.stem.out_channels, "act": ACTIVATIONS.index(spec.stem.act or "swish"),
                "kernel": 3, "layers": 1}

    @staticmethod
    def _stage_fields(s: int, st: StageSpace, lay: List[LayerSpec], bad) -> Dict[str, Any]:
        """A body stage's field values from its layers (only ``layers`` for an empty stage)."""
        cfg: Dict[str, Any] = {"layers": len(lay)}
        if not lay:
            return cfg
        first, rest = lay[0], lay[1:]
        if any(l.kind != st.kind for l in lay):
            raise bad(f"stage {s} must hold {st.kind!r} blocks")
        sig = lambda l: (l.out_channels, l.kernel_size, l.expansion, l.se, l.act)  # noqa: E731
        if any(sig(l) != sig(first) for l in rest):
            raise bad(f"stage {s}: layers of a stage must share their configuration")
        if first.stride != st.stride or any(l.stride != 1 for l in rest):
            raise bad(f"stage {s}: expected stride {st.stride} on the first layer and 1 after")
        e = first.expansion
        cfg.update(filters=first.out_channels, kernel=first.kernel_size,
                   expansion=int(e) if float(e) == int(e) else e, se=int(first.se), act=ACTIVATIONS.index(first.act))
        return cfg

    def _set_stage_genes(self, vec: np.ndarray, s: int, st: StageSpace, cfg: Dict[str, Any],
                         prev_filters: Optional[int], bad) -> None:
        """Write a stage's searched fields into ``vec``; fixed and shared fields must match the space."""
        for name in _FIELDS:
            gi = self.gene_index(s, name)
            if name not in cfg:
                if gi is not None:  # empty stage: canonical first choice
                    vec[gi] = self._genes[gi].choices[0]
                continue
            value = cfg[name]
            if gi is not None:
                vec[gi] = value if isinstance(value, (int, np.integer)) else -1
                if value not in self._genes[gi].choices:
                    shown = self._genes[gi].choices
                    raise bad(f"stage {s} {name} = {value!r} is not among this space's choices {shown}")
            elif name == "filters" and "filters" not in st.fixed:
                if value != prev_filters:
                    raise bad(f"stage {s} must share the previous stage's width {prev_filters}, got {value}")
            elif value != (ACTIVATIONS.index(st.fixed_value("act")) if name == "act" else st.fixed_value(name)):
                raise bad(f"stage {s} {name} = {value!r} but this space fixes it to {st.fixed_value(name)!r}")

    # -- geometry (vectorised) ----------------------------------------------------------------
    def stage_input_sizes(self, vectors) -> List[np.ndarray]:
        """Per stage, the (square) spatial size entering its first block; last entry: the tail's."""
        arr = np.atleast_2d(np.asarray(vectors, dtype=np.int64))
        size = arr[:, 0].copy()
        sizes = []
        for s, st in enumerate(self.stages):
            sizes.append(size.copy())
            cfg = self.stage_config(arr, s)
            kind = "head" if st.kind == "head" else st.kind
            k = cfg["kernel"]
            out = (size + 2 * conv_padding(kind, k, st.stride, self.family) - k) // st.stride + 1
            size = np.where(cfg["layers"] > 0, out, size)  # later layers are stride 1, 'same' padding
        sizes.append(size)
        return sizes

