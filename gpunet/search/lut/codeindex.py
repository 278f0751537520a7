"""A hash index from int64 block codes to rows of float values, looked up for millions of codes at once.

The estimator looks up ~16 block codes per network; a binary search over a few hundred thousand
sorted codes costs ~18 dependent cache misses per code, a hash probe about one. The index is
open addressing with linear probing in one ``(capacity, 1 + width)`` int64 array (the key, then
the values' float64 bits), so a probe fetches the key and its values in one gather. Capacity is
a power of two at least three times the number of codes, so most codes are found at the first
slot and a missing one ends on an empty slot after about one more. Empty slots hold key ``-1``
(codes are non-negative) and NaN values, so a missing code reads NaN with no extra step.
"""
from __future__ import annotations

from typing import Tuple

import numpy as np

__all__ = ["CodeIndex"]

_EMPTY = -1
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)  # Fibonacci hashing: the top bits of code * 2^64 / phi


class CodeIndex:
    """``CodeIndex(codes, values)``: distinct non-negative ``codes`` (n,) and their ``values`` (n, width).

    :meth:`lookup` returns, per query code, whether it is present and its values (NaN where not),
    the very float64 values given (stored as their bits, so nothing is rounded).
    """

    def __init__(self, codes: np.ndarray, values: np.ndarray):
        codes = np.asarray(codes, dtype=np.int64)
        values = np.asarray(values, dtype=np.float64)
        values = values[:, None] if values.ndim == 1 else values
        if values.ndim != 2 or len(values) != len(codes):
            raise ValueError(f"CodeIndex: values must be (n,) or (n, width) for {len(codes)} codes, "
                             f"got shape {values.shape}")
        if codes.size and codes.min() < 0:
            raise ValueError("CodeIndex: codes must be non-negative (-1 marks an empty slot)")
        if np.unique(codes).size != codes.size:
            raise ValueError("CodeIndex: codes must be distinct")
        self.width = values.shape[1]
        self._bits = max(4, int(np.ceil(np.log2(3 * max(1, len(codes))))))
        self._mask = (1 << self._bits) - 1
        self._rows = np.full((1 << self._bits, 1 + self.width), _EMPTY, dtype=np.int64)
        self._rows.view(np.float64)[:, 1:] = np.nan
        self._insert(codes, values)

    def __len__(self) -> int:
        return int((self._rows[:, 0] != _EMPTY).sum())

    @property
    def nbytes(self) -> int:
        return int(self._rows.nbytes)

    def _home(self, codes: np.ndarray) -> np.ndarray:
        return ((codes.astype(np.uint64) * _GOLDEN) >> np.uint64(64 - self._bits)).astype(np.int64)

    def _insert(self, codes: np.ndarray, values: np.ndarray) -> None:
        """Place every code at the first free slot from its home; of several codes wanting one free
        slot the first wins and the others move on, so every slot a lookup walks past is taken."""
        pos = self._home(codes)
        todo = np.arange(len(codes))
        floats = self._rows.view(np.float64)
        while todo.size:
            free = np.flatnonzero(self._rows[pos[todo], 0] == _EMPTY)
            _, first = np.unique(pos[todo[free]], return_index=True)
            won = free[first]
            slot = pos[todo[won]]
            self._rows[slot, 0] = codes[todo[won]]
            floats[slot, 1:] = values[todo[won]]
            keep = np.ones(todo.size, dtype=bool)
            keep[won] = False
            todo = todo[keep]
            pos[todo] = (pos[todo] + 1) & self._mask

    def lookup(self, codes: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        """``(found (n,) bool, values (n, width) float64)`` for query codes (any int64 values)."""
        codes = np.asarray(codes, dtype=np.int64)
        pos = self._home(codes)
        got = self._rows.take(pos, axis=0)
        key = got[:, 0]
        found = key == codes
        todo = np.flatnonzero(~found & (key != _EMPTY))
        while todo.size:  # linear probing: walk on until the code or an empty slot
            pos[todo] = (pos[todo] + 1) & self._mask
            step = self._rows.take(pos[todo], axis=0)
            got[todo] = step
            hit = step[:, 0] == codes[todo]
            found[todo] = hit
            todo = todo[~hit & (step[:, 0] != _EMPTY)]
        values = got.view(np.float64)[:, 1:]
        no_code = codes == _EMPTY  # -1 is no code, though it matched the first empty slot on its way
        if no_code.any():
            found[no_code] = False
            values[no_code] = np.nan
        return found, values
