"""The search of the paper's section 3.3: ask/tell ``algorithms`` over a pool, the run's
``driver`` (settings, candidate set, resume), its ``journal``, the ``evaluators`` that score a
candidate, the Ray Tune engine (``ray_tune``) and the ``winners`` written into the hub.

    from gpunet.search.engine import SearchSettings, run_search

It reads a :class:`~gpunet.search.pool.Pool` and the space; it never imports the latency model
(:mod:`gpunet.search.lut`). Ray, scikit-learn and Optuna load on first use.
"""
from __future__ import annotations

from ..._lazy import lazy_getattr

_LAZY = {
    "LaMCTS": ".algorithms", "TPESearch": ".algorithms", "RandomSearch": ".algorithms",
    "SearchAlgorithm": ".algorithms", "SearchError": ".algorithms", "SearchExhausted": ".algorithms",
    "SearchSettings": ".driver", "SearchDriver": ".driver", "run_search": ".driver", "search_status": ".driver",
    "SearchRunError": ".driver",
    "Journal": ".journal", "export_winners": ".winners",
}

__all__ = [*_LAZY]


__getattr__ = lazy_getattr(__name__, _LAZY, globals())
