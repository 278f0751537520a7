"""Engine-agnostic ask/tell search algorithms over a pool of candidate vectors (paper section 3.3).

``LaMCTS`` (LA-MCTS-guided Bayesian optimisation, scikit-learn), ``TPESearch`` (Optuna's TPE) and
``RandomSearch`` share :class:`~gpunet.search.algorithms.base.SearchAlgorithm`'s contract. The
scikit-learn / Optuna imports happen when an algorithm first needs them.
"""
from __future__ import annotations

import importlib
from typing import Any

from .base import POOL_WIDTH, STATE_FORMAT, SearchAlgorithm, SearchError, SearchExhausted
from .random_search import RandomSearch

_LAZY = {"LaMCTS": ".lamcts", "TPESearch": ".tpe"}

__all__ = ["SearchAlgorithm", "SearchError", "SearchExhausted", "STATE_FORMAT", "POOL_WIDTH",
           "RandomSearch", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name], __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'gpunet.search.algorithms' has no attribute {name!r}")
