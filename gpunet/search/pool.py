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
import shutil
import tempfile
from dataclasses import InitVar, dataclass, field, replace
from typing import Any, Dict, List, Optional, Sequence, Union

import numpy as np

from .._checks import argument_error, positive_int
from ..errors import BadInputError
from .poolstream import ESTIMATE_COLUMNS, read_rows, sample_columns, write_npz
from .space import SearchSpace, SearchSpaceError
from .stratify import stratum_labels

__all__ = ["Pool", "PoolError", "POOL_FORMAT"]

POOL_FORMAT = "gpunet-pool/1"
_REQUIRED = ("vectors", "latency_ms", "labels", "edges_ms", "space_json")
_ROW_FIELDS = ("vectors", "latency_ms", "table_sum_ms", "n_blocks", "estimated", "missing")  # + labels
_ESTIMATE_COLUMNS = {k: dtype for k, (_, dtype) in ESTIMATE_COLUMNS.items() if k != "latency_ms"}  # pool.estimate
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

    @classmethod
    def sample_to(cls, path, space: SearchSpace, n: int, seed: int = 0, lut=None, groups: int = 5,
                  edges_ms: Optional[Sequence[float]] = None, batch: int = 1, precision: str = "fp32",
                  fill: str = "nan", calibration: bool = True, statistic: str = "median",
                  chunk: int = 1 << 20) -> Dict[str, Any]:
        """:meth:`sample` then :meth:`save`, for pools larger than memory: networks are sampled and
        estimated ``chunk`` at a time, appended to one ``.npy`` file per column in a temporary folder
        beside ``path`` and copied into the file (the same file :meth:`sample` + :meth:`save` writes).
        Resident memory is a chunk plus 18 bytes a network (latency, label and two flags, for the
        groups and the summary). Returns the :meth:`summary`. Read a group back with
        ``Pool.load(path, group=g)``."""
        positive_int(n, "n")
        positive_int(chunk, "chunk")
        est, source = (None, {}) if lut is None else _estimator(space, lut, batch, precision, fill, calibration,
                                                                statistic)
        parent = os.path.dirname(os.path.abspath(path))
        if not os.path.isdir(parent):
            raise FileNotFoundError(f"cannot write {path}: directory {parent} does not exist")
        directory = tempfile.mkdtemp(prefix=".gpunet-pool-", dir=parent)
        try:
            files = sample_columns(directory, space, n, seed, est, chunk)
            latency = np.load(files.pop("latency_ms")) if est is not None else np.full(n, np.nan)
            edges = _group_edges(latency, groups, edges_ms)
            labels = stratum_labels(latency, edges) if np.isfinite(edges).all() else np.full(n, -1)
            estimate = {k: np.load(files[k]) for k in ("estimated", "missing") if k in files}  # 1 byte a network
            _save(path, {**_pool_fields(space, int(seed), latency, labels, edges, {}, source), **files})
            return _summary(space, int(seed), latency, labels, edges, estimate)
        finally:
            shutil.rmtree(directory, ignore_errors=True)

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
        return _group_counts(self.edges_ms, self.labels)

    @staticmethod
    def read_group_counts(path) -> List[Dict[str, Any]]:
        """:meth:`group_counts` of the pool file at ``path``, reading its labels and edges only."""
        fields = _read_npz(str(path), skip=_ROW_FIELDS)
        return _group_counts(np.asarray(fields["edges_ms"], dtype=np.float64), np.asarray(fields["labels"]))

    def summary(self) -> Dict[str, Any]:
        """Size, space, seed, networks with a latency, groups (without labels) and, with a table,
        how many networks lack a block (``missing_blocks``) or use the cost model for one."""
        return _summary(self.space, self.seed, self.latency_ms, self.labels, self.edges_ms, self.estimate)

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
        return _save(path, {**_pool_fields(self.space, self.seed, self.latency_ms, self.labels, self.edges_ms,
                                           self.estimate, self.source), "vectors": self.vectors})

    @classmethod
    def load(cls, path, group: Optional[int] = None) -> "Pool":
        """Read and check a pool file (ours, or one ``gpunet sample`` of gpunet 0.1 wrote).

        ``group``: only the networks of that latency group, read a chunk at a time (equal to
        ``Pool.load(path).group(group)``, in the memory of the group alone: for pools larger than memory).
        """
        if group is not None:
            return _load_group(str(path), int(group))
        fields = _read_npz(str(path))
        space = _space_of(fields, str(path))
        seed = int(fields["seed"]) if "seed" in fields and int(fields["seed"]) >= 0 else None
        estimate = {k: fields[k] for k in _ESTIMATE_COLUMNS if k in fields}
        source = {k: kind(fields[k].item()) for k, kind in _SOURCE_FIELDS.items() if k in fields}
        return cls(space, fields["vectors"], fields["latency_ms"], fields["labels"], fields["edges_ms"], seed,
                   estimate, source, origin=str(path))


# ---------------------------------------------------------------------------------- helpers

def _pool_fields(space, seed, latency, labels, edges, estimate, source) -> Dict[str, Any]:
    """The file's fields but ``vectors`` (see the module doc), in the order they are written."""
    return {"format": np.array(POOL_FORMAT), "vectors": None, "latency_ms": latency, "labels": labels,
            "edges_ms": edges, "space_json": np.array(space.to_json()), "seed": np.array(-1 if seed is None else seed),
            **estimate, **{k: np.array(v) for k, v in source.items()}}


def _group_counts(edges: np.ndarray, labels: np.ndarray) -> List[Dict[str, Any]]:
    if not np.isfinite(edges).all():
        return []
    counts = np.bincount(labels[labels >= 0], minlength=len(edges) - 1)
    return [{"label": i, "lo_ms": float(edges[i]), "hi_ms": float(edges[i + 1]), "count": int(counts[i])}
            for i in range(len(edges) - 1)]


def _summary(space, seed, latency, labels, edges, estimate) -> Dict[str, Any]:
    out = {"n": len(latency), "space": space.name, "seed": seed, "with_latency": int(np.isfinite(latency).sum()),
           "groups": [{k: g[k] for k in ("lo_ms", "hi_ms", "count")} for g in _group_counts(edges, labels)]}
    if estimate:
        out["estimated_by_costmodel"] = int(estimate["estimated"].sum())
        out["missing_blocks"] = int(estimate["missing"].sum())
    return out


def _save(path, fields: Dict[str, Any]) -> str:
    """Fields (arrays, or paths of ``.npy`` files to copy) as a pool ``.npz``, written atomically."""
    from .._io import atomic_path

    with atomic_path(path, suffix=".npz") as tmp:
        write_npz(tmp, fields)
    return str(path)


def _estimator(space, lut, batch, precision, fill, calibration, statistic):
    """The table's estimator and the pool's ``source`` fields for it."""
    from .lut.estimate import LatencyEstimator

    lut = os.fspath(lut) if isinstance(lut, os.PathLike) else lut
    est = LatencyEstimator(lut, space, batch=batch, precision=precision, fill=fill, calibration=calibration,
                           statistic=statistic)
    source = {"calibrated": est.calibration is not None, "lut_device_id": est.device_id, "lut_backend": est.backend,
              "batch": int(batch), "precision": precision, "statistic": statistic}
    return est, source


def _estimate(space, vectors, lut, batch, precision, fill, calibration, statistic):
    est, source = _estimator(space, lut, batch, precision, fill, calibration, statistic)
    res = est.estimate(vectors, check=False)
    return res.latency_ms, {k: getattr(res, ESTIMATE_COLUMNS[k][0]) for k in _ESTIMATE_COLUMNS}, source


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


def _load_group(path: str, label: int) -> Pool:
    """Pool.load(path).group(label) reading the per-network fields row chunk by row chunk."""
    fields = _read_npz(path, skip=_ROW_FIELDS)  # all but the per-network columns; labels are read whole
    whole = np.asarray(fields["labels"])
    if whole.ndim != 1 or whole.dtype.kind not in "iu":
        raise PoolError(f"{path}: field 'labels' must be one integer per network, got {whole.dtype} {whole.shape}")
    keep = whole == label
    if not keep.any() or not np.isfinite(np.asarray(fields["edges_ms"], dtype=np.float64)).all():
        present = sorted(set(np.unique(whole).tolist()) - {-1})
        raise argument_error("group", f"group {label}: no network of {path} is in that latency group "
                                      f"(groups present: {present})")
    try:
        rows = {k: read_rows(path, k, keep) for k in _ROW_FIELDS}
    except ValueError as e:
        raise PoolError(str(e)) from None
    space = _space_of(fields, path)
    seed = int(fields["seed"]) if "seed" in fields and int(fields["seed"]) >= 0 else None
    estimate = {k: rows[k] for k in _ESTIMATE_COLUMNS if rows.get(k) is not None}
    source = {k: kind(fields[k].item()) for k, kind in _SOURCE_FIELDS.items() if k in fields}
    return Pool(space, rows["vectors"], rows["latency_ms"], whole[keep], fields["edges_ms"], seed, estimate, source,
                origin=f"{path} (group {label})")


def _read_npz(path: str, skip: Sequence[str] = ()) -> Dict[str, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as z:
            names = z.files
            fields = {k: z[k] for k in names if k not in skip}
    except FileNotFoundError:
        raise
    except (OSError, ValueError, EOFError) as e:
        raise PoolError(f"{path}: not a pool .npz ({e}); write one with `gpunet sample` or Pool.save") from None
    if "format" in fields and str(fields["format"]) != POOL_FORMAT:
        raise PoolError(f"{path}: pool format {str(fields['format'])!r}, this gpunet reads {POOL_FORMAT!r} "
                        f"(written by a newer gpunet?)")
    missing = [k for k in _REQUIRED if k not in names]
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
