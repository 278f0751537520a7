"""Engine-agnostic ask/tell search algorithms over a pool of candidate vectors (paper section 3.3).

``LaMCTS`` (LA-MCTS-guided Bayesian optimisation, scikit-learn), ``TPESearch`` (Optuna's TPE) and
``RandomSearch`` share :class:`~gpunet.search.engine.algorithms.base.SearchAlgorithm`'s contract. The
scikit-learn / Optuna imports happen when an algorithm first needs them.
"""
from __future__ import annotations

from ...._lazy import lazy_getattr
from .base import POOL_WIDTH, STATE_FORMAT, SearchAlgorithm, SearchError, SearchExhausted
from .random_search import RandomSearch

_LAZY = {"LaMCTS": ".lamcts", "TPESearch": ".tpe"}

__all__ = ["SearchAlgorithm", "SearchError", "SearchExhausted", "STATE_FORMAT", "POOL_WIDTH",
           "RandomSearch", *_LAZY]


__getattr__ = lazy_getattr(__name__, _LAZY, globals())
