"""Network latency from the lookup table, vectorised over millions of encoded networks.

A network's latency is the sum of its blocks' latencies (the paper's section 3.2), optionally
passed through a per-device :class:`Calibration` fitted against end-to-end measurements
(``gpunet lut validate``). Layers in a stage share their configuration, so a stage is its
first block plus ``layers - 1`` copies of one repeated block: each network is 2 blocks per
stage plus stem and tail, whatever its depth. Every block is packed into one int64 code and
looked up in a hash index of the table's codes (:class:`~.codeindex.CodeIndex`); no Python loop
over networks. Networks go through in chunks small enough for their columns to stay in cache.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple, Union

import numpy as np

from .calibration import Calibration
from .codeindex import CodeIndex
from .codes import CODE_LAYOUT, BlockKey, block_slots, pack_codes, unpack_codes, unpack_fields
from .costmodel import RooflineModel, block_weight_bytes
from .table import LatencyTable, LUTError
from ...spec import LAYER_KINDS
from ..space import SearchSpace

__all__ = ["LatencyEstimator", "EstimateResult", "estimate_latency", "estimate_spec", "spec_weight_mb"]

_CHUNK = 1 << 14  # networks per step: ~16 slots x 16k codes stay in the caches


@dataclass
class EstimateResult:
    """Per network: ``latency_ms`` (calibrated when a calibration is used), the raw table sum,
    the block count, the weight megabytes, ``estimated (some block came from the cost model, not a measurement) and
    ``missing`` (some block had no latency at all: ``latency_ms`` is NaN)."""

    latency_ms: np.ndarray
    table_sum_ms: np.ndarray
    n_blocks: np.ndarray
    estimated: np.ndarray
    missing: np.ndarray
    calibrated: bool
    weight_mb: Optional[np.ndarray] = None


class LatencyEstimator:
    """Sorted block codes + latencies of one table for one space, batch and precision.

    ``fill``: what to do with blocks the table lacks: ``'nan'`` (network latency NaN, flagged
    missing), ``'costmodel'`` (a :class:`~gpunet.search.lut.costmodel.RooflineModel` fitted to the
    table's measurements fills them; flagged estimated) or ``'error'`` (raise, listing a few).
    """

    def __init__(self, table: Union[LatencyTable, str], space: Optional[SearchSpace] = None, batch: int = 1,
                 precision: str = "fp32", fill: str = "nan", calibration: Union[Calibration, bool, None] = True,
                 cost_model: Optional[RooflineModel] = None, statistic: str = "median"):
        if fill not in ("nan", "costmodel", "error"):
            raise ValueError(f"fill must be 'nan', 'costmodel' or 'error', got {fill!r}")
        self.space = space or SearchSpace()
        self.batch, self.precision, self.fill, self.statistic = batch, precision, fill, statistic
        own = isinstance(table, str)
        table = LatencyTable(table) if own else table
        try:
            self.table_path, self.device_id, self.backend = table.path, table.device_id, table.backend
            cols = table.block_arrays(self.space.family, batch, precision, self.space.num_classes, statistic)
            if calibration is True:
                cal = table.get_meta("calibration")
                # a calibration is only valid for the statistic, precision and space (resolutions) it was fitted on
                calibration = Calibration.from_dict(cal) if cal and cal.get("statistic", "median") == statistic \
                    and cal.get("precision", "fp32") == precision \
                    and cal.get("space", self.space.name) == self.space.name else None
            elif calibration is False:
                calibration = None
        finally:
            if own:
                table.close()
        self.calibration: Optional[Calibration] = calibration
        e100 = np.rint(cols["e"] * 100).astype(np.int64)
        fits = np.ones(len(e100), dtype=bool)  # rows no space could use (e.g. 4096 px) are skipped
        for name, value in (("cin", cols["cin"]), ("cout", cols["cout"]), ("k", cols["k"]), ("e100", e100),
                            ("h", cols["h"]), ("stride", cols["stride"])):
            fits &= (value >= 0) & (value < (1 << CODE_LAYOUT[name][1]))
        cols = {k: v[fits] for k, v in cols.items()}
        codes = pack_codes(cols["kind"], cols["cin"], cols["cout"], cols["k"], cols["stride"], cols["e"], cols["se"],
                           cols["act"], cols["h"], check=False)
        order = np.argsort(codes, kind="stable")
        self._codes = codes[order]
        self._ms = cols["ms"][order]
        # per table code its latency and weight bytes (computed once), one gather away
        self._index = CodeIndex(self._codes, np.stack([self._ms, block_weight_bytes(self._fields(self._codes))], 1))
        self.cost_model = cost_model
        if fill == "costmodel" and cost_model is None:
            model = RooflineModel()
            if len(self._codes) >= 3:
                model.fit(self._fields(self._codes), self._ms)
            self.cost_model = model

    def __len__(self) -> int:
        return len(self._codes)

    def _fields(self, codes: np.ndarray) -> Dict[str, np.ndarray]:
        f = unpack_fields(codes)
        return {"kind": f["kind"], "cin": f["cin"], "cout": f["cout"], "k": f["k"], "stride": f["stride"],
                "e": f["e100"] / 100.0, "se": f["se"], "h": f["h"], "batch": self.batch,
                "classes": self.space.num_classes, "distill": self.space.family == "distill"}

    def lookup_codes(self, codes: np.ndarray):
        """Latency per code (NaN where missing) and a found mask."""
        ms, found, _ = self._lookup(codes)
        return ms, found

    def _lookup(self, codes: np.ndarray):
        """(latency or NaN, found, weight bytes) per code; a code the table lacks gets its weight
        bytes computed from its fields (the same function, so the same value)."""
        if len(self._codes) == 0:
            return np.full(codes.shape, np.nan), np.zeros(codes.shape, dtype=bool), \
                block_weight_bytes(self._fields(codes))
        found, values = self._index.lookup(codes)
        ms, weight = values[:, 0], values[:, 1]  # NaN where not found
        if not found.all():
            weight = weight.copy()
            weight[~found] = block_weight_bytes(self._fields(codes[~found]))
        return ms, found, weight

    def missing_keys(self, vectors, limit: Optional[int] = None) -> List[BlockKey]:
        """Blocks these networks need that the table lacks."""
        missing = set()
        for slot in block_slots(self.space, self.space.check(vectors)):
            _, found = self.lookup_codes(slot.codes)
            missing.update(np.unique(slot.codes[(~found) & (slot.counts > 0)]).tolist())
        codes = np.array(sorted(missing)[:limit] if limit else sorted(missing), dtype=np.int64)
        return unpack_codes(codes, self.space.family, self.batch, self.precision, self.space.num_classes)

    def block_times(self, vectors) -> Tuple[np.ndarray, np.ndarray]:
        """Per network (rows) and block slot (stem, each stage's first and repeated block, tail): the
        table's latency of the slot's block (NaN where it lacks it) and how often the network runs it."""
        slots = block_slots(self.space, self.space.check(vectors))
        ms = np.stack([self.lookup_codes(slot.codes)[0] for slot in slots], axis=1)
        return ms, np.stack([slot.counts for slot in slots], axis=1)

    def estimate(self, vectors, calibrate: bool = True, check: bool = True) -> EstimateResult:
        """Latency of encoded networks; ``check=False`` for vectors known valid (sampled, pool rows)."""
        arr = self.space.as_array(vectors)
        parts = [self._estimate_chunk(self._chunk(arr, i, check)) for i in range(0, len(arr), _CHUNK)] or \
            [self._estimate_chunk(arr[:0])]
        total, nblocks, estimated, missing, weight_mb = (np.concatenate([p[j] for p in parts]) for j in range(5))
        use_cal = calibrate and self.calibration is not None
        latency = self.calibration.apply(total, nblocks, weight_mb) if use_cal else total.copy()
        return EstimateResult(latency, total, nblocks, estimated, missing, use_cal, weight_mb)

    def _chunk(self, arr: np.ndarray, start: int, check: bool) -> np.ndarray:
        """Rows ``start:start + _CHUNK``, column-major (each gene's values contiguous); checked
        chunk by chunk, and on a bad value the whole array, so the error names its row."""
        chunk = np.asfortranarray(arr[start:start + _CHUNK])
        if check and self.space.invalid_mask(chunk).any():
            self.space.check(arr)
        return chunk

    def _estimate_chunk(self, arr: np.ndarray):
        n = len(arr)
        total = np.zeros(n)
        nblocks = np.zeros(n, dtype=np.int64)
        estimated = np.zeros(n, dtype=bool)
        missing = np.zeros(n, dtype=bool)
        weight_mb = np.zeros(n)
        for slot in block_slots(self.space, arr):
            ms, found, weight = self._lookup(slot.codes)
            used = slot.counts > 0
            weight_mb += weight * 1e-6 * slot.counts
            gap = used & ~found
            if gap.any():
                if self.fill == "error":
                    keys = unpack_codes(np.unique(slot.codes[gap])[:3], self.space.family, self.batch,
                                        self.precision, self.space.num_classes)
                    raise LUTError(f"table {self.table_path} lacks {int(np.unique(slot.codes[gap]).size)} "
                                   f"{slot.name} block(s), e.g. {[k.key for k in keys]}; run `gpunet lut build` "
                                   f"for these networks or estimate with fill='costmodel'")
                if self.fill == "costmodel":
                    uniq, inv = np.unique(slot.codes[gap], return_inverse=True)
                    ms = ms.copy()
                    ms[gap] = self.cost_model.predict(self._fields(uniq))[inv]
                    estimated |= gap
                else:
                    missing |= gap
            total += np.where(used, np.nan_to_num(ms, nan=0.0) * slot.counts, 0.0)
            nblocks += slot.counts
        total[missing] = np.nan
        return total, nblocks, estimated, missing, weight_mb


def estimate_latency(vectors, table: Union[LatencyTable, str], space: Optional[SearchSpace] = None,
                     batch: int = 1, precision: str = "fp32", fill: str = "nan",
                     calibrate: bool = True, statistic: str = "median") -> EstimateResult:
    """Latency of encoded networks from a lookup table (see :class:`LatencyEstimator`)."""
    return LatencyEstimator(table, space, batch, precision, fill, statistic=statistic).estimate(
        vectors, calibrate=calibrate)


def spec_weight_mb(keys: List[BlockKey]) -> float:
    """Weight megabytes of a network given as its block keys (the calibration's weight term)."""
    if not keys:
        return 0.0
    f = {"kind": np.array([LAYER_KINDS.index(k.kind) for k in keys]),
         **{n: np.array([getattr(k, a) for k in keys], dtype=np.float64) for n, a in
            (("cin", "in_channels"), ("cout", "out_channels"), ("k", "kernel_size"), ("e", "expansion"),
             ("se", "se"), ("classes", "classes"))}, "distill": keys[0].family == "distill"}
    return float(np.sum(block_weight_bytes(f)) * 1e-6)


def estimate_spec(spec, table: LatencyTable, batch: int = 1, precision: str = "fp32",
                  statistic: str = "median", calibrate: bool = False) -> float:
    """Latency of any :class:`~gpunet.spec.NetworkSpec` (hub models, distill tails included):
    the table sum, or with ``calibrate=True`` the table's calibration for ``statistic`` applied
    (the plain sum when the table has none; ``ValueError`` when the spec's resolution lies outside
    the resolutions it was fitted on). NaN if a block is missing."""
    from .codes import spec_blocks

    keys = spec_blocks(spec, batch, precision)
    total = float(np.sum(table.lookup(keys, statistic)))
    cal = table.get_meta("calibration") if calibrate else None
    if cal and cal.get("statistic", "median") == statistic and cal.get("precision", "fp32") == precision:
        lo, hi = cal.get("resolutions", (0, float("inf")))
        res = spec.resolution
        if not lo <= res <= hi:
            raise ValueError(f"{getattr(table, 'path', 'table')}: its calibration was fitted on {lo}-{hi} px networks "
                             f"(space {cal.get('space')!r}); {spec.name or 'this spec'} runs at {res} px, where it "
                             f"does not hold; use calibrate=False or validate networks of that size "
                             f"(`gpunet lut validate --space ...`)")
        return float(Calibration.from_dict(cal).apply(total, len(keys), spec_weight_mb(keys)))
    return total
