"""Per-block latency lookup table (the paper's section 3.2), stored in SQLite.

Runtimes fuse the ops inside a block, so the table is keyed by whole blocks (stem, conv,
Fused-IRB, IRB, tail) plus the input shape, batch and precision: a :class:`BlockKey`. One
table file holds one device + backend; its fingerprint is recorded at creation and a table
refuses to be filled (or merged) from another device.

Filling is incremental (only missing keys are measured), resumable (every measurement is
committed as it lands) and parallel-safe on one host: processes claim a key in the ``claims``
table inside an ``IMMEDIATE`` transaction, so several worker processes can fill one table
without measuring a key twice. Claims of dead processes (checked by pid, so on this host only)
or older than ``claim_timeout`` are taken over.

Supported: one file per host, any number of processes on that host, on a local disk. SQLite's
WAL mode needs shared memory, so one file must *not* be shared by several hosts (NFS and other
network file systems break its locking). To measure on many hosts of the same device model,
fill one table per host and :meth:`LatencyTable.merge` them (same device, backend and thread
count, or :class:`LUTDeviceMismatch`).

Every write path (``put``, ``put_many``, ``fill``, ``merge``) checks that the table was
opened with the measuring device's fingerprint and that thread counts agree.
"""
from __future__ import annotations

import contextlib
import csv
import json
import logging
import os
import socket
import sqlite3
import time
import uuid
from typing import Any, Callable, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple

import numpy as np

from ...errors import GPUNetError
from ...spec import ACTIVATIONS, LAYER_KINDS
from .codes import BlockKey

__all__ = ["LatencyTable", "LUTError", "LUTDeviceMismatch", "LUT_FORMAT", "STATISTICS", "BLOCK_TIMINGS", "default_block_timing"]

log = logging.getLogger(__name__)

LUT_FORMAT = "gpunet-lut/1"
_KEY_COLUMNS = ("kind", "family", "in_channels", "out_channels", "kernel_size", "stride", "expansion", "se",
                "act", "height", "width", "batch", "precision", "classes")
_VALUE_COLUMNS = ("median_ms", "mean_ms", "std_ms", "min_ms", "p90_ms", "iters", "source", "measured_at")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS blocks (
    key TEXT PRIMARY KEY,
    kind TEXT NOT NULL, family TEXT NOT NULL,
    in_channels INTEGER NOT NULL, out_channels INTEGER NOT NULL,
    kernel_size INTEGER NOT NULL, stride INTEGER NOT NULL, expansion REAL NOT NULL,
    se INTEGER NOT NULL, act TEXT NOT NULL,
    height INTEGER NOT NULL, width INTEGER NOT NULL, batch INTEGER NOT NULL,
    precision TEXT NOT NULL, classes INTEGER NOT NULL,
    median_ms REAL NOT NULL, mean_ms REAL, std_ms REAL, min_ms REAL, p90_ms REAL,
    iters INTEGER, source TEXT NOT NULL, measured_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS claims (
    key TEXT PRIMARY KEY, owner TEXT NOT NULL, host TEXT NOT NULL, pid INTEGER NOT NULL,
    claimed_at REAL NOT NULL
);
"""


#: how a table's blocks are timed: ``wall`` (host wall clock of the block run alone, any backend)
#: or ``kernels`` (OpenVINO's per-node performance counters, the block's edge nodes and the infer
#: call left out: :mod:`gpunet.latency.ovkernels`). One table holds one kind: they do not add up alike.
BLOCK_TIMINGS = ("wall", "kernels")


def default_block_timing(backend: str, precisions: Iterable[str] = ()) -> str:
    """A new table's block timing: ``kernels`` on OpenVINO (its wall-clock sums pay each block's
    edge reorders and infer call; held out, kernels put 95-100 % of networks within +-10 %, wall
    80-85 %: docs/results/latency-table.md) unless its blocks are INT8 (``precisions``: ``wall`` until
    a quiet validation of ``kernels`` on NNCF's graphs; neither has passed one), ``wall`` on every
    other backend."""
    return "kernels" if backend == "openvino" and "int8" not in set(precisions) else "wall"


#: what a block's latency is read as: the median of its timed runs (default), or the minimum,
#: which is steadier on a shared, busy CPU (other processes only ever add time).
STATISTICS = ("median", "min")


def _stat_column(statistic: str) -> str:
    if statistic == "median":
        return "median_ms"
    if statistic == "min":
        return "COALESCE(min_ms, median_ms)"
    raise ValueError(f"statistic must be one of {STATISTICS}, got {statistic!r}")


class LUTError(GPUNetError, RuntimeError):
    """A lookup-table file is missing, corrupt, of another format, or misused."""


class LUTDeviceMismatch(LUTError):
    """The table was measured on another device/backend than the one asked for."""


def _result_row(result) -> Dict[str, Any]:
    get = lambda name: (float(getattr(result, name)) if getattr(result, name, None) is not None else None)  # noqa
    median = get("median_ms")
    if median is None or not np.isfinite(median) or median < 0:
        raise LUTError(f"benchmark returned an unusable median latency {median!r}")
    return {"median_ms": median, "mean_ms": get("mean_ms"), "std_ms": get("std_ms"), "min_ms": get("min_ms"),
            "p90_ms": get("p90_ms"), "iters": getattr(result, "iters", None)}


# ----------------------------------------------------------------------------------------
# the table


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class LatencyTable:
    """A SQLite (WAL) block-latency table for one device + backend.

    Open an existing file to read it (any machine may estimate from it); pass ``backend`` and
    ``fingerprint`` (as :func:`gpunet.latency.device_fingerprint` returns) to create one or to
    add measurements, which checks the file was measured on the same device.
    """

    def __init__(self, path: str, backend: Optional[str] = None, fingerprint: Optional[Dict[str, Any]] = None,
                 create: bool = False, timeout: float = 60.0):
        self.path = os.fspath(path)
        exists = os.path.exists(self.path) and (os.path.isdir(self.path) or os.path.getsize(self.path) > 0)
        if not exists and not create:
            raise LUTError(f"latency table {self.path} does not exist (build one with `gpunet lut build`)")
        if not exists and (backend is None or fingerprint is None):
            raise LUTError(f"creating latency table {self.path} needs backend and device fingerprint")
        if exists and os.path.isdir(self.path):
            raise LUTError(f"latency table {self.path} is a directory, expected an SQLite file")
        deadline = time.monotonic() + timeout
        while True:
            try:
                self._open(exists, create, backend, fingerprint, timeout)
                break
            except sqlite3.DatabaseError as e:
                with contextlib.suppress(Exception):
                    self._conn.close()
                # switching a file to WAL while another process creates it fails at once with
                # "locked" (SQLite's busy handler does not cover it): open again until the timeout
                if "locked" in str(e) and time.monotonic() < deadline:
                    time.sleep(0.05)
                    exists = os.path.exists(self.path) and os.path.getsize(self.path) > 0
                    continue
                raise LUTError(f"latency table {self.path} is not a readable gpunet lookup table "
                               f"(SQLite: {e}); delete it or rebuild it with `gpunet lut build`") from None
        self.meta = self._read_meta()
        if backend is not None and backend != self.backend:
            raise LUTDeviceMismatch(f"latency table {self.path} holds {self.backend!r} latencies, not {backend!r}")
        self._writable = False  # set once a fingerprint proved this is the table's device
        if fingerprint is not None:
            self.check_device(fingerprint)
            self._writable = True

    # -- creation / checks ---------------------------------------------------------------------
    def _open(self, exists: bool, create: bool, backend: Optional[str], fingerprint: Optional[Dict[str, Any]],
              timeout: float) -> None:
        self._conn = sqlite3.connect(self.path, timeout=timeout, isolation_level=None)
        self._conn.execute("PRAGMA busy_timeout = %d" % int(timeout * 1000))
        # A file without tables is one another process is creating right now (its WAL header
        # lands before its schema): with create=True finish it; the schema is idempotent.
        empty = exists and self._check_file(allow_empty=create and backend is not None and fingerprint is not None)
        self._conn.execute("PRAGMA journal_mode = WAL")
        self._conn.execute("PRAGMA synchronous = NORMAL")
        if not exists or empty:
            self._create(backend, fingerprint)

    def _create(self, backend: str, fingerprint: Dict[str, Any]) -> None:
        with self._transaction():
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    self._conn.execute(statement)
            meta = {"format": LUT_FORMAT, "backend": backend, "device_id": str(fingerprint.get("id", "")),
                    "fingerprint": json.dumps(fingerprint, sort_keys=True), "created": str(time.time())}
            self._conn.executemany("INSERT OR IGNORE INTO meta(name, value) VALUES (?, ?)", list(meta.items()))

    def _check_file(self, allow_empty: bool = False) -> bool:
        """Raise unless the file is a latency table; True for a table-less file when ``allow_empty``."""
        ok = self._conn.execute("PRAGMA quick_check").fetchone()[0]
        if ok != "ok":
            raise LUTError(f"latency table {self.path} is corrupt (SQLite quick_check: {ok})")
        tables = {r[0] for r in self._conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        if allow_empty and not tables:
            return True
        if not {"meta", "blocks", "claims"} <= tables:
            raise LUTError(f"{self.path} is an SQLite file but not a gpunet latency table "
                           f"(tables {sorted(tables)}; expected meta, blocks, claims)")
        return False

    def _read_meta(self) -> Dict[str, str]:
        meta = dict(self._conn.execute("SELECT name, value FROM meta").fetchall())
        if meta.get("format") != LUT_FORMAT:
            raise LUTError(f"{self.path}: unsupported table format {meta.get('format')!r}; expected {LUT_FORMAT!r}")
        for name in ("backend", "fingerprint", "device_id"):
            if name not in meta:
                raise LUTError(f"{self.path}: table metadata lacks {name!r} (file damaged?)")
        return meta

    @property
    def backend(self) -> str:
        return self.meta["backend"]

    @property
    def fingerprint(self) -> Dict[str, Any]:
        return json.loads(self.meta["fingerprint"])

    @property
    def device_id(self) -> str:
        return self.meta["device_id"]

    def check_device(self, fingerprint: Dict[str, Any]) -> None:
        """Raise :class:`LUTDeviceMismatch` unless ``fingerprint`` is the table's device + backend."""
        theirs = str(fingerprint.get("id", ""))
        if theirs != self.device_id or fingerprint.get("backend", self.backend) != self.backend:
            mine = self.fingerprint
            diff = sorted(k for k in set(mine) | set(fingerprint)
                          if k not in ("id", "torch_threads", "cpu_usable") and mine.get(k) != fingerprint.get(k))
            raise LUTDeviceMismatch(
                f"latency table {self.path} was measured on device {self.device_id} ({mine.get('cpu')}, "
                f"{mine.get('gpu') or 'no GPU'}, backend {self.backend}); this device is {theirs or '?'} "
                f"({fingerprint.get('cpu')}, {fingerprint.get('gpu') or 'no GPU'}, backend "
                f"{fingerprint.get('backend')}); differing fields: {', '.join(diff) or 'id'}. "
                f"Use a separate table per device.")

    def _check_writable(self) -> None:
        """Every write path stores latencies of *this* device: the table must have been opened
        (or :meth:`fill` called) with the measuring device's fingerprint."""
        if not self._writable:
            raise LUTDeviceMismatch(
                f"latency table {self.path} was opened without a device fingerprint (read-only use); "
                f"to add measurements open it with fingerprint=device_fingerprint({self.backend!r}) "
                f"of the device they come from")

    def _check_threads(self, threads: Any, what: str) -> None:
        have = self.get_meta("threads")
        if threads is not None and have is not None and int(threads) != int(have):
            raise LUTDeviceMismatch(f"latency table {self.path} was measured with {have} threads; "
                                    f"refusing {what} taken with {threads}")

    @contextlib.contextmanager
    def _transaction(self, mode: str = "IMMEDIATE") -> Iterator[sqlite3.Connection]:
        self._conn.execute(f"BEGIN {mode}")
        try:
            yield self._conn
        except BaseException:
            self._conn.execute("ROLLBACK")
            raise
        self._conn.execute("COMMIT")

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> "LatencyTable":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def resolve_threads(self, threads: Optional[int]) -> Optional[int]:
        """The thread count measurements use: the table's, set on first use; a different one raises."""
        have = self.get_meta("threads")
        if have is None:
            if threads is None and self.backend != "tensorrt":
                try:
                    threads = len(os.sched_getaffinity(0))
                except AttributeError:
                    threads = os.cpu_count() or 1
            with self._transaction():
                self._conn.execute("INSERT OR IGNORE INTO meta(name, value) VALUES ('threads', ?)",
                                   (json.dumps(threads),))
            have = self.get_meta("threads")
        self._check_threads(threads, "measurements")
        return have

    def block_timing(self) -> Optional[str]:
        """How this table's blocks were timed (:data:`BLOCK_TIMINGS`); None for an empty table
        not yet given one. A table filled before timings were recorded was timed ``wall``."""
        return self.get_meta("block_timing") or ("wall" if len(self) else None)

    def resolve_block_timing(self, timing: Optional[str] = None, precisions: Iterable[str] = ()) -> str:
        """The block timing measurements use: the table's, set on first use (``timing``, default
        :func:`default_block_timing` of the backend and the ``precisions`` of the blocks to measure);
        asking for another than the table's raises :class:`LUTDeviceMismatch`."""
        if timing is not None and timing not in BLOCK_TIMINGS:
            raise ValueError(f"block timing must be one of {', '.join(BLOCK_TIMINGS)}, got {timing!r}")
        if timing == "kernels" and self.backend != "openvino":
            raise ValueError(f"block timing 'kernels' is OpenVINO's per-node counters; this table is {self.backend!r}")
        have = self.block_timing()
        if self.get_meta("block_timing") is None:
            with self._transaction():
                self._conn.execute("INSERT OR IGNORE INTO meta(name, value) VALUES ('block_timing', ?)",
                                   (have or timing or default_block_timing(self.backend, precisions),))
            have = self.get_meta("block_timing")
        if timing is not None and timing != have:
            raise LUTDeviceMismatch(f"latency table {self.path} times its blocks {have!r}; refusing blocks timed "
                                    f"{timing!r} (they do not add up alike: start another table)")
        return have

    # -- metadata --------------------------------------------------------------------------------
    def set_meta(self, name: str, value: Any) -> None:
        text = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
        with self._transaction():
            self._conn.execute("INSERT OR REPLACE INTO meta(name, value) VALUES (?, ?)", (name, text))
        self.meta[name] = text

    def get_meta(self, name: str, default: Any = None) -> Any:
        self.meta = dict(self._conn.execute("SELECT name, value FROM meta").fetchall())
        if name not in self.meta:
            return default
        try:
            return json.loads(self.meta[name])
        except json.JSONDecodeError:
            return self.meta[name]

    # -- reading -----------------------------------------------------------------------------------
    def __len__(self) -> int:
        return self._conn.execute("SELECT COUNT(*) FROM blocks").fetchone()[0]

    def __contains__(self, key: BlockKey) -> bool:
        return self._conn.execute("SELECT 1 FROM blocks WHERE key = ?", (key.key,)).fetchone() is not None

    def get(self, key: BlockKey, statistic: str = "median") -> Optional[float]:
        """Latency (ms) of a block, or ``None`` if not measured."""
        row = self._conn.execute(f"SELECT {_stat_column(statistic)} FROM blocks WHERE key = ?", (key.key,)).fetchone()
        return None if row is None else float(row[0])

    def lookup(self, keys: Sequence[BlockKey], statistic: str = "median") -> np.ndarray:
        """Latencies (ms) for many keys; NaN where missing."""
        have = self.medians({k.key for k in keys}, statistic)
        return np.array([have.get(k.key, np.nan) for k in keys], dtype=np.float64)

    def medians(self, keys: Optional[Iterable[str]] = None, statistic: str = "median") -> Dict[str, float]:
        column = _stat_column(statistic)
        if keys is None:
            return dict(self._conn.execute(f"SELECT key, {column} FROM blocks").fetchall())
        keys = list(keys)
        out: Dict[str, float] = {}
        for i in range(0, len(keys), 500):
            part = keys[i:i + 500]
            q = f"SELECT key, {column} FROM blocks WHERE key IN (%s)" % ",".join("?" * len(part))
            out.update(self._conn.execute(q, part).fetchall())
        return out

    def missing(self, keys: Iterable[BlockKey]) -> List[BlockKey]:
        unique = {k.key: k for k in keys}
        have = self.medians(unique)
        return [k for s, k in unique.items() if s not in have]

    def rows(self) -> List[Dict[str, Any]]:
        cur = self._conn.execute("SELECT * FROM blocks ORDER BY kind, key")
        names = [d[0] for d in cur.description]
        return [dict(zip(names, r)) for r in cur.fetchall()]

    def columns(self) -> Dict[str, np.ndarray]:
        """Whole table as column arrays (for vectorised estimation)."""
        cols = ("kind", "family", "in_channels", "out_channels", "kernel_size", "stride", "expansion", "se",
                "act", "height", "width", "batch", "precision", "classes", "median_ms", "source")
        data = self._conn.execute(f"SELECT {', '.join(cols)} FROM blocks").fetchall()
        out = {}
        for i, c in enumerate(cols):
            values = [r[i] for r in data]
            out[c] = np.array(values, dtype=object if c in ("kind", "family", "act", "precision", "source")
                              else (np.float64 if c in ("expansion", "median_ms") else np.int64))
        return out

    def block_arrays(self, family: str, batch: int, precision: str, classes: int,
                     statistic: str = "median") -> Dict[str, np.ndarray]:
        """Numeric columns of the rows that apply to one family / batch / precision / class count
        (``kind`` and ``act`` as indices into :data:`gpunet.spec.LAYER_KINDS` and the activation names);
        ``ms`` is the block's median or minimum latency (see :data:`STATISTICS`)."""
        column = _stat_column(statistic)
        kind_case = " ".join(f"WHEN '{k}' THEN {i}" for i, k in enumerate(LAYER_KINDS))
        act_case = " ".join(f"WHEN '{a}' THEN {i}" for i, a in enumerate(ACTIVATIONS))
        rows = self._conn.execute(
            f"SELECT CASE kind {kind_case} ELSE -1 END, in_channels, out_channels, kernel_size, stride, expansion, "
            f"se, CASE act {act_case} ELSE -1 END, height, {column} FROM blocks WHERE family = ? AND batch = ? "
            f"AND precision = ? AND height = width AND (kind != 'tail' OR classes = ?)",
            (family, batch, precision, classes)).fetchall()
        a = np.array(rows, dtype=np.float64).reshape(-1, 10)
        names = ("kind", "cin", "cout", "k", "stride", "e", "se", "act", "h", "ms")
        out = {n: (a[:, i] if n in ("e", "ms") else a[:, i].astype(np.int64)) for i, n in enumerate(names)}
        if (out["kind"] < 0).any() or (out["act"] < 0).any():
            raise LUTError(f"{self.path}: rows with unknown block kind or activation (file from a newer version?)")
        return out

    # -- writing -----------------------------------------------------------------------------------
    def put(self, key: BlockKey, result: Any, source: str = "measured", keep_lower: bool = False) -> None:
        """Record one measurement (a ``BenchmarkResult`` or a dict with ``median_ms``).

        ``keep_lower``: when the key is already there, keep whichever median is lower (and the
        lower minimum): repeated measurements on a busy machine converge on the undisturbed time.
        """
        self._check_writable()
        values = dict(result) if isinstance(result, dict) else _result_row(result)
        self._check_threads(values.get("threads"), "a measurement")
        values.setdefault("iters", None)
        row = key.to_row()
        row.update({c: values.get(c) for c in ("median_ms", "mean_ms", "std_ms", "min_ms", "p90_ms", "iters")})
        row.update(key=key.key, source=source, measured_at=time.time())
        names = list(row)
        with self._transaction():
            old = self._conn.execute("SELECT median_ms, min_ms FROM blocks WHERE key = ?", (key.key,)).fetchone() \
                if keep_lower else None
            if old is not None:
                mins = [m for m in (old[1], row["min_ms"]) if m is not None]
                if old[0] <= row["median_ms"]:
                    self._conn.execute("UPDATE blocks SET min_ms = ? WHERE key = ?", (min(mins) if mins else None,
                                                                                     key.key))
                    self._conn.execute("DELETE FROM claims WHERE key = ?", (key.key,))
                    return
                row["min_ms"] = min(mins) if mins else None
            self._conn.execute(f"INSERT OR REPLACE INTO blocks({', '.join(names)}) VALUES "
                               f"({', '.join('?' * len(names))})", [row[n] for n in names])
            self._conn.execute("DELETE FROM claims WHERE key = ?", (key.key,))

    def put_many(self, items: Iterable[Tuple[BlockKey, Any]], source: str = "measured") -> int:
        """Record many (key, result) pairs in one transaction (imports, merges, synthetic tables)."""
        self._check_writable()
        rows = []
        now = time.time()
        for key, result in items:
            values = dict(result) if isinstance(result, dict) else _result_row(result)
            self._check_threads(values.get("threads"), f"measurement {key.key}")
            row = key.to_row()
            row.update({c: values.get(c) for c in ("median_ms", "mean_ms", "std_ms", "min_ms", "p90_ms", "iters")})
            if row["median_ms"] is None:
                raise LUTError(f"block {key.key}: a latency needs 'median_ms'")
            row.update(key=key.key, source=source, measured_at=now)
            rows.append(row)
        if rows:
            names = list(rows[0])
            with self._transaction():
                self._conn.executemany(f"INSERT OR REPLACE INTO blocks({', '.join(names)}) VALUES "
                                       f"({', '.join('?' * len(names))})", [[r[n] for n in names] for r in rows])
        return len(rows)

    def _claim(self, key: BlockKey, owner: str, claim_timeout: float, refresh: bool = False) -> str:
        """'done' (already measured), 'busy' (a live worker has it) or 'mine' (claimed now)."""
        host, now = socket.gethostname(), time.time()
        with self._transaction():
            if not refresh and self._conn.execute("SELECT 1 FROM blocks WHERE key = ?", (key.key,)).fetchone():
                return "done"
            row = self._conn.execute("SELECT owner, host, pid, claimed_at FROM claims WHERE key = ?",
                                     (key.key,)).fetchone()
            if row is not None and row[0] != owner:
                stale = now - row[3] > claim_timeout or (row[1] == host and not _pid_alive(row[2]))
                if not stale:
                    return "busy"
            self._conn.execute("INSERT OR REPLACE INTO claims(key, owner, host, pid, claimed_at) VALUES (?,?,?,?,?)",
                               (key.key, owner, host, os.getpid(), now))
        return "mine"

    def _release(self, key: BlockKey, owner: str) -> None:
        with self._transaction():
            self._conn.execute("DELETE FROM claims WHERE key = ? AND owner = ?", (key.key, owner))

    def fill(self, keys: Iterable[BlockKey], measure: Callable[[BlockKey], Any], progress: Optional[bool] = None,
             claim_timeout: float = 900.0, poll: float = 0.5, fingerprint: Optional[Dict[str, Any]] = None,
             refresh: bool = False) -> Dict[str, int]:
        """Measure every key not yet in the table; returns counts (measured / present / by others).

        ``measure(key)`` returns a ``BenchmarkResult`` (see :func:`~gpunet.search.lut.build.measure_block`). Safe to run in
        several processes at once and to interrupt: finished keys stay, claims are released.
        ``refresh=True`` measures present keys again and keeps the lower latency (see :meth:`put`).
        """
        from tqdm.auto import tqdm

        if fingerprint is not None:
            self.check_device(fingerprint)
            self._writable = True
        self._check_writable()
        keys = list(keys)
        todo = list({k.key: k for k in keys}.values()) if refresh else self.missing(keys)
        owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        counts = {"requested": len({k.key for k in keys}), "measured": 0, "by_others": 0}
        bar = tqdm(total=len(todo), unit="block", desc=f"lut {self.backend}", disable=(not progress) if
                   progress is not None else None, dynamic_ncols=True)
        try:
            while todo:
                waiting = []
                for key in todo:
                    state = self._claim(key, owner, claim_timeout, refresh)
                    if state == "busy":
                        waiting.append(key)
                        continue
                    if state == "done":
                        counts["by_others"] += 1
                        bar.update(1)
                        continue
                    try:
                        result = measure(key)
                        self.put(key, result, keep_lower=refresh)
                    except BaseException:
                        self._release(key, owner)
                        raise
                    counts["measured"] += 1
                    bar.update(1)
                    bar.set_postfix_str(key.kind, refresh=False)
                if waiting and len(waiting) == len(todo):
                    time.sleep(poll)  # everything left is being measured elsewhere
                todo = waiting
        finally:
            bar.close()
        counts["present"] = 0 if refresh else counts["requested"] - counts["measured"] - counts["by_others"]
        return counts

    def merge(self, other: "LatencyTable") -> int:
        """Copy measurements another table (same device, backend and thread count) has and this
        one lacks. This is how tables filled on several hosts are combined (see the module doc)."""
        self._check_writable()
        if other.device_id != self.device_id or other.backend != self.backend:
            raise LUTDeviceMismatch(f"cannot merge {other.path} (device {other.device_id}, {other.backend}) into "
                                    f"{self.path} (device {self.device_id}, {self.backend})")
        theirs = other.get_meta("threads")
        self._check_threads(theirs, f"the measurements of {other.path}")
        if theirs is not None and self.get_meta("threads") is None:
            with self._transaction():
                self._conn.execute("INSERT OR IGNORE INTO meta(name, value) VALUES ('threads', ?)",
                                   (json.dumps(theirs),))
        mine, theirs_timing = self.block_timing(), other.block_timing()
        if mine and theirs_timing and mine != theirs_timing:
            raise LUTDeviceMismatch(f"cannot merge {other.path} (blocks timed {theirs_timing!r}) into {self.path} "
                                    f"(blocks timed {mine!r}): the two do not add up alike")
        if theirs_timing and not mine:
            self.set_meta("block_timing", theirs_timing)
        rows = other.rows()
        have = set(self.medians({r["key"] for r in rows}))
        new = [r for r in rows if r["key"] not in have]
        if new:
            names = list(new[0])
            with self._transaction():
                self._conn.executemany(f"INSERT OR IGNORE INTO blocks({', '.join(names)}) VALUES "
                                       f"({', '.join('?' * len(names))})", [[r[n] for n in names] for r in new])
        return len(new)

    # -- export ---------------------------------------------------------------------------------------
    def export(self, path: str, fmt: Optional[str] = None) -> int:
        """Write the table as CSV or JSON (by ``fmt`` or the file suffix); returns the row count."""
        from ..._io import atomic_path

        fmt = (fmt or os.path.splitext(path)[1].lstrip(".")).lower()
        if fmt not in ("csv", "json"):
            raise ValueError(f"export format must be 'csv' or 'json' (fmt, or the suffix of path), got {fmt!r}")
        rows = self.rows()
        with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8", newline="") as f:
            if fmt == "csv":
                names = ["key", *_KEY_COLUMNS, *_VALUE_COLUMNS]
                writer = csv.DictWriter(f, fieldnames=names)
                writer.writeheader()
                writer.writerows(rows)
            else:
                json.dump({"format": LUT_FORMAT, "backend": self.backend, "device_id": self.device_id,
                           "fingerprint": self.fingerprint, "calibration": self.get_meta("calibration"),
                           "blocks": rows}, f, indent=1)
                f.write("\n")
        return len(rows)
