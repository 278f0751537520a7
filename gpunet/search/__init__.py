"""The paper's NAS. Section 3.1's search space and its 41-integer encoding (``space``), the pool
that passes from the latency model to the search (``pool``: Sobol-sampled vectors, latency
estimates, latency groups), the latency model of section 3.2 (``lut/``: per-block table,
estimate, calibration, validation) and the search engine of section 3.3 (``engine/``: ask/tell
algorithms, the run on Ray Tune, its journal, winners into the hub).

    from gpunet.search import SearchSpace, Pool, LaMCTS
    space = SearchSpace()                                    # Table 1
    pool = Pool.sample(space, 1_000_000, seed=0, lut="gv100.lut", groups=5)
    pool.save("pool.npz"); group = Pool.load("pool.npz").group(2)
    algo = LaMCTS(group.vectors, seed=0); x = algo.ask(); algo.tell(x, 0.731); algo.best()

Heavy parts (onnxruntime, matplotlib, scikit-learn, optuna, ray) load inside the functions that need them.
"""
from __future__ import annotations

from .._lazy import lazy_getattr
from ..spec import ACTIVATIONS as ACT_CODES  # gene value i <-> activation name (gpunet.spec.ACTIVATIONS)
from .space import Gene, SearchSpace, SearchSpaceError, StageSpace
from .stratify import LatencyGroup, stratify, stratum_labels

_LAZY = {
    "Pool": ".pool", "PoolError": ".pool",
    # section 3.2: the latency model
    "BlockKey": ".lut", "LatencyTable": ".lut", "LUTError": ".lut", "LUTDeviceMismatch": ".lut",
    "network_blocks": ".lut", "build_lut": ".lut",
    "LatencyEstimator": ".lut", "estimate_latency": ".lut", "Calibration": ".lut",
    "RooflineModel": ".lut", "validate_lut": ".lut", "ValidationReport": ".lut",
    # section 3.3: ask/tell search algorithms (scikit-learn / optuna load on first use) and the run
    "LaMCTS": ".engine", "TPESearch": ".engine", "RandomSearch": ".engine",
    "SearchAlgorithm": ".engine", "SearchError": ".engine", "SearchExhausted": ".engine",
    "SearchSettings": ".engine", "run_search": ".engine", "search_status": ".engine", "SearchRunError": ".engine",
    "Journal": ".engine", "export_winners": ".engine",
}

__all__ = ["ACT_CODES", "Gene", "SearchSpace", "SearchSpaceError", "StageSpace", "LatencyGroup", "stratify",
           "stratum_labels", *_LAZY]


__getattr__ = lazy_getattr(__name__, _LAZY, globals())
