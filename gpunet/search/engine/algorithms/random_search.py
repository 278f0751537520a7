"""Random search: uniform draws without replacement from the untold rows (the baseline)."""
from __future__ import annotations

import numpy as np

from .base import SearchAlgorithm

__all__ = ["RandomSearch"]


class RandomSearch(SearchAlgorithm):
    """Each ask draws uniformly, without replacement, among the untold, not-in-flight pool rows."""

    def _propose(self, n: int, available: np.ndarray) -> np.ndarray:
        return self.rng.choice(available, size=n, replace=False)
