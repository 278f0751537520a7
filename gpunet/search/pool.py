"""The pool: what passes from the latency model (section 3.2) to the search (section 3.3).

A pool is Sobol-sampled networks of one :class:`~gpunet.search.space.SearchSpace` (their 41-int
vectors), each network's latency estimated from a lookup table, and the latency groups of the
paper's Fig. 2.A (edges in ms, a label per network)::

    pool = Pool.sample(SearchSpace(), 1_000_000, seed=0, lut="gv100.lut", groups=5)
    pool.save("pool.npz")
    g2 = Pool.load("pool.npz").group(2)            # a Pool too
    LaMCTS(g2.vectors, seed=0)                     # or: gpunet search run --pool pool.npz --group 2

File format (``.npz``, no pickles), :data:`POOL_FORMAT`:

=================  =========================  =====================================================
field              shape / type               meaning
=================  =========================  =====================================================
``format``         str                        ``gpunet-pool/1`` (files of gpunet 0.1 lack it)
``vectors``        (n, genes) int64           encoded networks, canonical, valid in the space
``latency_ms``     (n,) float64               estimate per network; NaN without a table / block
``labels``         (n,) int64                 latency group, -1 outside every group or no latency
``edges_ms``       (groups + 1,) float64      group ``i`` is ``edges[i] <= latency < edges[i+1]``;
                                              ``[0, inf]`` when the pool has no latencies
``space_json``     str                        the space (``SearchSpace.to_json``)
``seed``           int                        Sobol seed (-1 when unknown, e.g. a hand-made pool)
``table_sum_ms``,  (n,) float64 / int64 /     the estimate's parts (with a table only): raw block
``n_blocks``,      bool / bool                sum, block count, a block came from the cost model,
``estimated``,                                a block was missing
``missing``
``calibrated``,    scalars                    how the estimate was made (with a table only)
``lut_device_id``,
``lut_backend``,
``batch``,
``precision``,
``statistic``
=================  =========================  =====================================================

:meth:`Pool.load` checks every field (shape, type, vectors valid in the space) and names the file
and field; a pool written by ``gpunet sample`` of gpunet 0.1 (no ``format``) loads as it is.
"""
from __future__ import annotations

import json
import os
from dataclasses import InitVar, dataclass, field, replace
from typing import Any, Dict, List, Optional, Sequence, Union

import numpy as np

from .._checks import argument_error, positive_int
from ..errors import BadInputError
from .space import SearchSpace, SearchSpaceError
from .stratify import stratum_labels

__all__ = ["Pool", "PoolError", "POOL_FORMAT"]

POOL_FORMAT = "gpunet-pool/1"
_REQUIRED = ("vectors", "latency_ms", "labels", "edges_ms", "space_json")
_ESTIMATE_COLUMNS = {"table_sum_ms": np.float64, "n_blocks": np.int64, "estimated": bool, "missing": bool}
_SOURCE_FIELDS = {"calibrated": bool, "lut_device_id": str, "lut_backend": str, "batch": int, "precision": str,
                  "statistic": str}


class PoolError(BadInputError, ValueError):
    """A pool file (or arrays given as a pool) is malformed; the message names the file and field."""


@dataclass(frozen=True, eq=False)
class Pool:
    """Networks of one space with their latency estimates and latency groups (see the module doc).

    ``estimate`` holds the estimate's per-network parts (``table_sum_ms``, ``n_blocks``,
    ``estimated``, ``missing``) and ``source`` how it was made (table device and backend, batch,
    precision, statistic, calibrated); both are empty for a pool sampled without a table.
    """

    space: SearchSpace
    vectors: np.ndarray
    latency_ms: np.ndarray
    labels: np.ndarray
    edges_ms: np.ndarray
    seed: Optional[int] = None
    estimate: Dict[str, np.ndarray] = field(default_factory=dict)
    source: Dict[str, Any] = field(default_factory=dict)
    origin: str = "pool"  # the file it came from, for messages
    check_vectors: InitVar[bool] = True  # False: the vectors are known valid (sampled, or rows of a pool)

    def __post_init__(self, check_vectors: bool):
        _check_arrays(self, check_vectors)

    # -- making one -------------------------------------------------------------------------
    @classmethod
    def sample(cls, space: SearchSpace, n: int, seed: int = 0, lut=None, groups: int = 5,
               edges_ms: Optional[Sequence[float]] = None, batch: int = 1, precision: str = "fp32",
               fill: str = "nan", calibration: bool = True, statistic: str = "median") -> "Pool":
        """``n`` Sobol-sampled networks; with ``lut`` (a table path or :class:`LatencyTable`) their
        latencies and ``groups`` equal-count latency groups, or the groups ``edges_ms`` gives.

        ``fill``, ``calibration`` and ``statistic`` are :class:`~gpunet.search.lut.LatencyEstimator`'s.
        """
        positive_int(n, "n")
        vectors = space.sample(n, seed=seed)
        latency, estimate, source = np.full(len(vectors), np.nan), {}, {}
        if lut is not None:
            latency, estimate, source = _estimate(space, vectors, lut, batch, precision, fill, calibration, statistic)
        edges = _group_edges(latency, groups, edges_ms)
        labels = stratum_labels(latency, edges) if np.isfinite(edges).all() else np.full(len(vectors), -1)
        return cls(space, vectors, latency, labels, edges, int(seed), estimate, source, check_vectors=False)

    # -- selecting ----------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.vectors)

    @property
    def has_latency(self) -> bool:
        return bool(np.isfinite(self.latency_ms).any())

    def group(self, label: int) -> "Pool":
        """The networks of latency group ``label`` (a pool with the same space and edges)."""
        self._need_latency("label")
        keep = self.labels == int(label)
        if not keep.any():
            present = sorted(set(self.labels.tolist()) - {-1})
            raise argument_error("label", f"label {label}: no network of {self.origin} is in that latency group "
                                          f"(groups present: {present})")
        return self._rows(keep)

    def latency_range(self, lo_ms: float, hi_ms: float) -> "Pool":
        """The networks with ``lo_ms <= latency < hi_ms``."""
        self._need_latency("lo_ms")
        keep = np.isfinite(self.latency_ms) & (self.latency_ms >= lo_ms) & (self.latency_ms < hi_ms)
        if not keep.any():
            raise argument_error("lo_ms", f"lo_ms {lo_ms}, hi_ms {hi_ms}: no network of {self.origin} has a "
                                          f"latency in that range")
        return self._rows(keep)

    def group_counts(self) -> List[Dict[str, Any]]:
        """``[{label, lo_ms, hi_ms, count}]`` per latency group; empty without latencies."""
        if not np.isfinite(self.edges_ms).all():
            return []
        return [{"label": i, "lo_ms": float(self.edges_ms[i]), "hi_ms": float(self.edges_ms[i + 1]),
                 "count": int((self.labels == i).sum())} for i in range(len(self.edges_ms) - 1)]

    def summary(self) -> Dict[str, Any]:
        """Size, space, seed, networks with a latency, groups (without labels) and, with a table,
        how many networks lack a block (``missing_blocks``) or use the cost model for one."""
        out = {"n": len(self), "space": self.space.name, "seed": self.seed,
               "with_latency": int(np.isfinite(self.latency_ms).sum()),
               "groups": [{k: g[k] for k in ("lo_ms", "hi_ms", "count")} for g in self.group_counts()]}
        if self.estimate:
            out["estimated_by_costmodel"] = int(self.estimate["estimated"].sum())
            out["missing_blocks"] = int(self.estimate["missing"].sum())
        return out

    def _need_latency(self, argument: str) -> None:
        if not self.has_latency:
            raise argument_error(argument, f"{argument}: {self.origin} has no latencies (sampled without a latency "
                                           f"table), so it has no latency groups; the whole pool is the candidate set")

    def _rows(self, keep: np.ndarray) -> "Pool":
        return replace(self, vectors=self.vectors[keep], latency_ms=self.latency_ms[keep], labels=self.labels[keep],
                       estimate={k: v[keep] for k, v in self.estimate.items()}, check_vectors=False)

    # -- files --------------------------------------------------------------------------------
    def save(self, path) -> str:
        """Write the pool as ``.npz`` (:data:`POOL_FORMAT`), atomically; returns the path."""
        from .._io import atomic_path

        data = {"format": np.array(POOL_FORMAT), "vectors": self.vectors, "latency_ms": self.latency_ms,
                "labels": self.labels, "edges_ms": self.edges_ms, "space_json": np.array(self.space.to_json()),
                "seed": np.array(-1 if self.seed is None else self.seed), **self.estimate,
                **{k: np.array(v) for k, v in self.source.items()}}
        with atomic_path(path, suffix=".npz") as tmp, open(tmp, "wb") as f:
            np.savez_compressed(f, **data)
        return str(path)

    @classmethod
    def load(cls, path) -> "Pool":
        """Read and check a pool file (ours, or one ``gpunet sample`` of gpunet 0.1 wrote)."""
        fields = _read_npz(str(path))
        space = _space_of(fields, str(path))
        seed = int(fields["seed"]) if "seed" in fields and int(fields["seed"]) >= 0 else None
        estimate = {k: fields[k] for k in _ESTIMATE_COLUMNS if k in fields}
        source = {k: kind(fields[k].item()) for k, kind in _SOURCE_FIELDS.items() if k in fields}
        return cls(space, fields["vectors"], fields["latency_ms"], fields["labels"], fields["edges_ms"], seed,
                   estimate, source, origin=str(path))


# ---------------------------------------------------------------------------------- helpers

def _estimate(space, vectors, lut, batch, precision, fill, calibration, statistic):
    from .lut.estimate import LatencyEstimator

    lut = os.fspath(lut) if isinstance(lut, os.PathLike) else lut
    est = LatencyEstimator(lut, space, batch=batch, precision=precision, fill=fill, calibration=calibration,
                           statistic=statistic)
    res = est.estimate(vectors, check=False)
    estimate = {"table_sum_ms": res.table_sum_ms, "n_blocks": res.n_blocks, "estimated": res.estimated,
                "missing": res.missing}
    source = {"calibrated": bool(res.calibrated), "lut_device_id": est.device_id, "lut_backend": est.backend,
              "batch": int(batch), "precision": precision, "statistic": statistic}
    return res.latency_ms, estimate, source


def _group_edges(latency: np.ndarray, groups: int, edges_ms: Optional[Sequence[float]]) -> np.ndarray:
    """``edges_ms`` as given, else ``groups`` equal-count groups of the finite latencies, else [0, inf]."""
    if edges_ms is not None:
        return np.asarray(edges_ms, dtype=np.float64)
    positive_int(groups, "groups")
    finite = latency[np.isfinite(latency)]
    if finite.size < 2:
        return np.array([0.0, np.inf])
    edges = np.unique(np.quantile(finite, np.linspace(0, 1, groups + 1)))
    edges[-1] = np.nextafter(edges[-1], np.inf)
    return edges


def _read_npz(path: str) -> Dict[str, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as z:
            fields = {k: z[k] for k in z.files}
    except FileNotFoundError:
        raise
    except (OSError, ValueError, EOFError) as e:
        raise PoolError(f"{path}: not a pool .npz ({e}); write one with `gpunet sample` or Pool.save") from None
    if "format" in fields and str(fields["format"]) != POOL_FORMAT:
        raise PoolError(f"{path}: pool format {str(fields['format'])!r}, this gpunet reads {POOL_FORMAT!r} "
                        f"(written by a newer gpunet?)")
    missing = [k for k in _REQUIRED if k not in fields]
    if missing:
        raise PoolError(f"{path}: not a gpunet pool, field {missing[0]!r} is missing (a pool holds "
                        f"{', '.join(_REQUIRED)}); write it again with `gpunet sample`")
    return fields


def _space_of(fields: Dict[str, np.ndarray], path: str) -> SearchSpace:
    try:
        return SearchSpace.from_dict(json.loads(str(fields["space_json"])), source=f"{path} field 'space_json'")
    except json.JSONDecodeError as e:
        raise PoolError(f"{path}: field 'space_json' is not JSON ({e})") from None
    except SearchSpaceError as e:
        raise PoolError(str(e)) from None


def _check_arrays(pool: Pool, check_vectors: bool) -> None:
    """Raise :class:`PoolError` naming the field unless the arrays form a pool of ``pool.space``."""
    where = pool.origin
    v = np.asarray(pool.vectors)
    if v.ndim != 2 or v.dtype.kind not in "iu" or v.shape[1] != pool.space.num_genes:
        raise PoolError(f"{where}: field 'vectors' must be an (n, {pool.space.num_genes}) integer array for space "
                        f"{pool.space.name!r}, got {v.dtype} {v.shape}")
    try:
        if check_vectors:
            pool.space.check(v)
    except SearchSpaceError as e:
        raise PoolError(f"{where}: field 'vectors': {e}") from None
    n = len(v)
    _check_column(where, "latency_ms", pool.latency_ms, n, "f")
    _check_column(where, "labels", pool.labels, n, "iu")
    for name, values in pool.estimate.items():
        if name not in _ESTIMATE_COLUMNS:
            raise PoolError(f"{where}: unknown estimate field {name!r} (expected {', '.join(_ESTIMATE_COLUMNS)})")
        _check_column(where, name, values, n, "fiub")
    edges = np.asarray(pool.edges_ms)
    if edges.ndim != 1 or len(edges) < 2 or edges.dtype.kind not in "fiu" or np.any(np.diff(edges) <= 0):
        raise PoolError(f"{where}: field 'edges_ms' must hold at least two increasing latencies (ms), got "
                        f"{edges.tolist()}")
    object.__setattr__(pool, "vectors", v.astype(np.int64, copy=False))
    object.__setattr__(pool, "edges_ms", edges.astype(np.float64, copy=False))


def _check_column(where: str, name: str, values: Union[np.ndarray, Any], n: int, kinds: str) -> None:
    a = np.asarray(values)
    if a.shape != (n,) or a.dtype.kind not in kinds:
        raise PoolError(f"{where}: field {name!r} must be one value per network ({n},), got {a.dtype} {a.shape}")
