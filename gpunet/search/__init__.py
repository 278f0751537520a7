"""The first half of the paper's NAS (sections 3.1-3.2): the search space, its 41-integer
encoding, Sobol-sampled pools, a per-block latency lookup table and stratification by latency.

    from gpunet.search import SearchSpace, LatencyTable, estimate_latency, stratify
    space = SearchSpace()                         # Table 1
    pool = space.sample(1_000_000, seed=0)        # (n, 41) int64
    spec = space.decode(pool[0])                  # NetworkSpec -> gpunet.build_model(spec)

Section 3.3's ask/tell algorithms search a pool (or one latency group of it):

    from gpunet.search import LaMCTS
    algo = LaMCTS(pool, seed=0); x = algo.ask(); algo.tell(x, 0.731); algo.best()

Heavy parts (onnxruntime, matplotlib, scikit-learn, optuna) load inside the functions that need them.
"""
from __future__ import annotations

from .._lazy import lazy_getattr
from .space import ACT_CODES, Gene, SearchSpace, SearchSpaceError, StageSpace
from .stratify import LatencyGroup, stratify, stratum_labels

_LAZY = {
    "BlockKey": ".lut", "LatencyTable": ".lut", "LUTError": ".lut", "LUTDeviceMismatch": ".lut",
    "network_blocks": ".lut", "build_lut": ".lut",
    "LatencyEstimator": ".estimate", "estimate_latency": ".estimate", "Calibration": ".estimate",
    "RooflineModel": ".costmodel",
    "validate_lut": ".validate", "ValidationReport": ".validate",
    # section 3.3: ask/tell search algorithms (scikit-learn / optuna load on first use)
    "LaMCTS": ".algorithms", "TPESearch": ".algorithms", "RandomSearch": ".algorithms",
    "SearchAlgorithm": ".algorithms", "SearchError": ".algorithms", "SearchExhausted": ".algorithms",
    # distributed runs (Ray loads only inside run_search with engine="ray")
    "SearchSettings": ".runner", "run_search": ".runner", "search_status": ".runner", "SearchRunError": ".runner",
    "Journal": ".journal", "export_winners": ".export_winners",
}

__all__ = ["ACT_CODES", "Gene", "SearchSpace", "SearchSpaceError", "StageSpace", "LatencyGroup", "stratify",
           "stratum_labels", *_LAZY]


__getattr__ = lazy_getattr(__name__, _LAZY, globals())
