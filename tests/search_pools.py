"""Pools for the search tests: a sampled pool given made-up per-network latencies and latency
groups, as ``gpunet sample --lut`` writes them (the numbers are a fixed function of the vector:
what the tests check is the selection, not the latency model)."""
from __future__ import annotations

from typing import Any, Dict, Optional

import numpy as np


def made_up_latency(vectors: np.ndarray) -> np.ndarray:
    return 0.5 + vectors[:, 0] / 64.0 + vectors.sum(axis=1) / 4000.0


def grouped_pool(src: str, dest: str, groups: int, source: Optional[Dict[str, Any]] = None) -> str:
    """Copy the pool file ``src`` to ``dest`` with latencies in ``groups`` equal-count groups;
    ``source`` adds the table facts (``lut_device_id``, ``batch``, ...) a ``--lut`` pool records."""
    with np.load(src) as z:
        data = {k: z[k] for k in z.files}
    lat = made_up_latency(data["vectors"])
    edges = np.quantile(lat, np.linspace(0.0, 1.0, groups + 1))
    edges[-1] = np.nextafter(edges[-1], np.inf)
    data.update(latency_ms=lat, labels=np.searchsorted(edges, lat, side="right") - 1, edges_ms=edges)
    data.update({k: np.array(v) for k, v in (source or {}).items()})
    np.savez_compressed(dest, **data)
    return dest


def small_pool(dest: str, n: int) -> str:
    """``gpunet sample --space small --n N --out dest``: a Sobol pool without latencies."""
    from gpunet.cli import main

    assert main(["sample", "--space", "small", "--n", str(n), "--out", dest, "--json"]) == 0
    return dest
