"""The ask/tell contract every search algorithm shares (Optuna-sampler / Ray-Searcher sized).

An algorithm searches a fixed *pool*: an ``(N, width)`` array of candidate vectors (one latency
group of a Sobol pool, or a whole pool). Each pool row is in one of three states: *untold*,
*in flight* (asked, result not told yet: a parallel worker is evaluating it) or *told* (a value,
or a failure). ``ask`` only ever returns untold rows, so a row is never proposed twice; the state
dict records the in-flight rows so a resumed search can re-dispatch exactly those.

Subclasses implement one method, :meth:`SearchAlgorithm._propose`, which picks ``n`` pool row
indices among the untold ones; the bookkeeping, validation and (de)serialisation live here once.
"""
from __future__ import annotations

import hashlib
import math
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

from ...._checks import argument_error, positive_int
from ....errors import GPUNetError

__all__ = ["SearchAlgorithm", "SearchError", "SearchExhausted", "STATE_FORMAT", "POOL_WIDTH"]

STATE_FORMAT = "gpunet-search-state/1"
POOL_WIDTH = 41  # Table 2's encoding; other spaces pass ``width=space.num_genes``

_UNTOLD, _PENDING, _TOLD = 0, 1, 2


class SearchError(GPUNetError, ValueError):
    """Bad input to a search algorithm (pool, vector, value or state); the message says what."""


class SearchExhausted(SearchError):
    """More rows were asked for than the pool still has untold and not in flight."""


class SearchAlgorithm:
    """Base class: pool bookkeeping, ``ask`` / ``tell`` / ``best`` and a JSON state dict.

    ``pool``: ``(N, width)`` array (int or float; duplicate rows are merged, first one kept), or
    anything with such a ``vectors`` attribute (a :class:`~gpunet.search.pool.Pool`).
    ``seed``: seeds the algorithm's one random stream (a NumPy ``Generator`` saved in the state).
    Values are maximised; ``tell(x, None)`` records a failed evaluation.
    """

    #: option name -> default; subclasses extend. Options are saved in the state dict.
    defaults: Dict[str, Any] = {}

    def __init__(self, pool, seed: int = 0, *, width: int = POOL_WIDTH, **opts):
        unknown = sorted(set(opts) - set(self.defaults))
        if unknown:
            raise TypeError(f"{type(self).__name__}: unknown option(s) {unknown}; "
                            f"known: {sorted(self.defaults)}")
        self.options: Dict[str, Any] = {**self.defaults, **opts}
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
            raise argument_error("seed", f"seed must be an int, got {seed!r}", SearchError)
        self.seed = int(seed)
        self.width = int(width)
        self.pool = self._check_pool(getattr(pool, "vectors", pool))
        n = len(self.pool)
        # Genes scaled to [0, 1] by the pool's own range (constant genes dropped): what models see.
        lo, hi = self.pool.min(axis=0).astype(float), self.pool.max(axis=0).astype(float)
        live = hi > lo
        self.unit = ((self.pool[:, live] - lo[live]) / (hi[live] - lo[live])).astype(np.float64)
        self._index = {self._key(r): i for i, r in enumerate(self.pool)}
        self._status = np.zeros(n, dtype=np.int8)
        self._told: List[Tuple[int, Optional[float]]] = []   # (row, value or None) in tell order
        self._pending: List[int] = []                         # rows in flight, in ask order
        self._value = np.full(n, np.nan)                      # told values (NaN: untold or failed)
        self.rng = np.random.default_rng(self.seed)
        self.n_asks = 0

    # -- pool ---------------------------------------------------------------------------------
    def _check_pool(self, pool) -> np.ndarray:
        name = type(self).__name__
        arr = np.asarray(pool)
        if arr.ndim != 2 or arr.shape[1] != self.width:
            raise SearchError(f"{name}: pool must be an (N, {self.width}) array of candidate vectors, "
                              f"got shape {arr.shape}")
        if arr.dtype.kind not in "iuf":
            raise SearchError(f"{name}: pool must hold numbers, got dtype {arr.dtype}")
        if len(arr) == 0:
            raise SearchError(f"{name}: pool is empty")
        if arr.dtype.kind == "f" and not np.all(np.isfinite(arr)):
            row = int(np.argwhere(~np.isfinite(arr))[0, 0])
            raise SearchError(f"{name}: pool row {row} holds NaN or infinity")
        _, first = np.unique(arr, axis=0, return_index=True)
        if len(first) < len(arr):
            arr = arr[np.sort(first)]
        arr = arr.copy()
        arr.flags.writeable = False
        return arr

    def _key(self, row: np.ndarray) -> bytes:
        return (np.asarray(row, dtype=np.float64) + 0.0).tobytes()  # +0.0 folds -0.0 into 0.0

    def row_index(self, x) -> int:
        """The pool row index of vector ``x``; :class:`SearchError` if it is not in the pool."""
        v = np.asarray(x)
        if v.ndim != 1 or v.shape[0] != self.width:
            raise SearchError(f"{type(self).__name__}: expected one vector of length {self.width}, "
                              f"got shape {v.shape}")
        if v.dtype.kind not in "iufb":
            raise SearchError(f"{type(self).__name__}: vector must hold numbers, got dtype {v.dtype}")
        i = self._index.get(self._key(v))
        if i is None:
            shown = v.tolist() if v.dtype.kind == "f" else [int(a) for a in v]
            raise SearchError(f"{type(self).__name__}: vector {shown} is not a row of the pool "
                              f"({len(self.pool)} rows); only pool rows can be told")
        return i

    # -- counts -------------------------------------------------------------------------------
    @property
    def n_told(self) -> int:
        """Rows told so far (successes and failures)."""
        return len(self._told)

    @property
    def n_failed(self) -> int:
        return sum(v is None for _, v in self._told)

    @property
    def n_pending(self) -> int:
        """Rows asked and not told yet (in flight)."""
        return len(self._pending)

    @property
    def n_remaining(self) -> int:
        """Rows that ``ask`` can still return (untold and not in flight)."""
        return len(self.pool) - self.n_told - self.n_pending

    def pending(self) -> np.ndarray:
        """``(k, width)`` rows in flight, in ask order (re-dispatch these after a resume)."""
        return self.pool[np.asarray(self._pending, dtype=np.int64)]

    def told(self) -> Tuple[np.ndarray, np.ndarray]:
        """``(X, values)`` in tell order; a failed evaluation has value NaN."""
        idx = np.asarray([i for i, _ in self._told], dtype=np.int64)
        vals = np.asarray([np.nan if v is None else v for _, v in self._told], dtype=np.float64)
        return self.pool[idx], vals

    def best(self) -> Optional[Tuple[np.ndarray, float]]:
        """``(vector, value)`` of the highest value told (first one on ties); None before any success."""
        ok = [(v, -k, i) for k, (i, v) in enumerate(self._told) if v is not None]
        if not ok:
            return None
        v, _, i = max(ok)
        return self.pool[i].copy(), float(v)

    # -- ask / tell ---------------------------------------------------------------------------
    def ask(self, n: Optional[int] = None) -> np.ndarray:
        """One untold row (1-D) for ``n=None``, else an ``(n, width)`` array of distinct untold rows.

        The rows are in flight until told (or :meth:`release`\\ d); they are never proposed again.
        """
        k = 1 if n is None else positive_int(n, "n", SearchError)
        if k > self.n_remaining:
            raise SearchExhausted(
                f"{type(self).__name__}.ask({k}): only {self.n_remaining} of {len(self.pool)} pool rows "
                f"are left ({self.n_told} told, {self.n_pending} in flight)")
        available = np.flatnonzero(self._status == _UNTOLD)
        rows = np.asarray(self._propose(k, available), dtype=np.int64)
        if rows.shape != (k,) or len(np.unique(rows)) != k or np.any(self._status[rows] != _UNTOLD):
            raise RuntimeError(f"{type(self).__name__}._propose broke the contract: {rows!r}")
        self._status[rows] = _PENDING
        self._pending.extend(int(r) for r in rows)
        self.n_asks += 1
        out = self.pool[rows].copy()
        return out[0] if n is None else out

    def tell(self, x, value: Optional[float]) -> None:
        """Record ``value`` (higher is better) for pool row ``x``; ``None`` records a failure.

        Rows may be told without being asked (warm start from a journal). A failure is never
        proposed again and never counts as best; models treat it as described by the subclass.
        """
        i = self.row_index(x)
        if value is not None:
            if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
                raise SearchError(f"{type(self).__name__}.tell: value must be a number or None (failure), "
                                  f"got {value!r}")
            value = float(value)
            if not math.isfinite(value):
                raise SearchError(f"{type(self).__name__}.tell: value is {value}; tell a failed "
                                  f"evaluation with value=None")
        if self._status[i] == _TOLD:
            raise SearchError(f"{type(self).__name__}.tell: pool row {i} was already told "
                              f"(value {self._value[i]})")
        if self._status[i] == _PENDING:
            self._pending.remove(i)
        self._status[i] = _TOLD
        self._told.append((i, value))
        if value is not None:
            self._value[i] = value

    def release(self, x) -> None:
        """Return an in-flight row to the untold set (its trial was cancelled, not evaluated)."""
        i = self.row_index(x)
        if self._status[i] != _PENDING:
            raise SearchError(f"{type(self).__name__}.release: pool row {i} is not in flight")
        self._pending.remove(i)
        self._status[i] = _UNTOLD

    # -- subclass hook ------------------------------------------------------------------------
    def _propose(self, n: int, available: np.ndarray) -> np.ndarray:
        """Return ``n`` distinct row indices taken from ``available`` (sorted untold indices)."""
        raise NotImplementedError

    # -- state --------------------------------------------------------------------------------
    def _pool_digest(self) -> str:
        return hashlib.sha256(np.ascontiguousarray(self.pool, dtype=np.float64).tobytes()).hexdigest()

    def state_dict(self) -> Dict[str, Any]:
        """JSON-serialisable state: options, told rows and values, in-flight rows, random stream.

        Vectors are stored (not row numbers), so the state is readable on its own; loading it into
        an algorithm over the same pool gives the same next ``ask()``.
        """
        as_list = (lambda r: [int(a) for a in r]) if self.pool.dtype.kind in "iu" else (lambda r: r.tolist())
        return {
            "format": STATE_FORMAT,
            "algorithm": type(self).__name__,
            "seed": self.seed,
            "options": dict(self.options),
            "pool": {"rows": len(self.pool), "width": self.width, "sha256": self._pool_digest()},
            "told": [{"vector": as_list(self.pool[i]), "value": v} for i, v in self._told],
            "pending": [as_list(self.pool[i]) for i in self._pending],
            "rng": self.rng.bit_generator.state,
            "n_asks": self.n_asks,
        }

    def load_state_dict(self, state: Dict[str, Any], strict: bool = True) -> None:
        """Restore :meth:`state_dict` output. ``strict`` also requires the identical pool."""
        name = type(self).__name__

        def bad(msg):
            return SearchError(f"{name}.load_state_dict: {msg}")

        if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
            raise bad(f"not a {STATE_FORMAT!r} state (format {state.get('format') if isinstance(state, dict) else type(state).__name__!r})")
        for key in ("algorithm", "seed", "options", "pool", "told", "pending", "rng", "n_asks"):
            if key not in state:
                raise bad(f"field {key!r} is missing")
        if state["algorithm"] != name:
            raise bad(f"state is of {state['algorithm']!r}, not {name!r}")
        if state["options"] != self.options:
            raise bad(f"options {state['options']} differ from this instance's {self.options}")
        if strict and state["pool"].get("sha256") != self._pool_digest():
            raise bad(f"state was saved over another pool ({state['pool'].get('rows')} rows, sha256 "
                      f"{str(state['pool'].get('sha256'))[:12]}...) than this one ({len(self.pool)} rows, "
                      f"{self._pool_digest()[:12]}...); pass strict=False to load over a pool that "
                      f"holds every told and in-flight vector")
        fresh = type(self)(self.pool, seed=state["seed"], width=self.width, **self.options)
        try:
            for k, item in enumerate(state["told"]):
                if not isinstance(item, dict) or "vector" not in item or "value" not in item:
                    raise bad(f"told[{k}] must be {{'vector': [...], 'value': number or null}}")
                fresh.tell(np.asarray(item["vector"]), item["value"])
            for k, vec in enumerate(state["pending"]):
                i = fresh.row_index(np.asarray(vec))
                if fresh._status[i] != _UNTOLD:
                    raise bad(f"pending[{k}] is also told or listed twice")
                fresh._status[i] = _PENDING
                fresh._pending.append(i)
        except SearchError as e:
            if str(e).startswith(f"{name}.load_state_dict"):
                raise
            raise bad(str(e)) from None
        rng = np.random.default_rng()
        try:
            rng.bit_generator.state = state["rng"]
        except (TypeError, ValueError, KeyError) as e:
            raise bad(f"field 'rng' is not a NumPy PCG64 state ({e})") from None
        self.seed = fresh.seed
        self._status, self._told, self._pending, self._value = fresh._status, fresh._told, fresh._pending, fresh._value
        self.rng = rng
        self.n_asks = int(state["n_asks"])
        self._after_load()

    def _after_load(self) -> None:
        """Rebuild derived model state after :meth:`load_state_dict` (subclasses)."""

    def __repr__(self) -> str:
        b = self.best()
        return (f"{type(self).__name__}(pool={len(self.pool)} rows, told={self.n_told}, "
                f"in_flight={self.n_pending}, best={None if b is None else b[1]})")
