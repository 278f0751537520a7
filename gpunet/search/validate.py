"""How well the table predicts whole networks (the paper's Fig. 4), for ``gpunet lut validate``.

Samples networks from a space, fills the table with the blocks they need, measures each
network end to end with the same harness, backend and thread count, and compares: Spearman
rank correlation, mean error of the raw table sum, and the share within +-10 % after a
per-device :class:`~gpunet.search.estimate.Calibration`. The share is computed leave-one-out
(each network's calibrated estimate comes from a calibration fitted without it), so it is
what a new network can expect; the calibration fitted on all networks is saved in the table.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Dict, List, Optional

import numpy as np

from .estimate import Calibration, LatencyEstimator
from .lut import LatencyTable, build_lut, network_blocks
from .space import SearchSpace

__all__ = ["ValidationReport", "validate_lut", "plot_validation"]


@dataclass
class ValidationReport:
    lut: str
    backend: str
    device_id: str
    space: str
    n: int
    seed: int
    statistic: str
    spearman_table_sum: float
    spearman_calibrated: float
    mean_error_table_sum: float  # mean of (table_sum - measured) / measured
    mean_abs_error_calibrated: float  # leave-one-out
    within_10pct_calibrated: float  # leave-one-out share with |error| <= 10 %
    within_10pct_in_sample: float
    calibration: Dict[str, Any]
    blocks_measured: int
    seconds: float
    measured_ms: List[float] = field(default_factory=list)
    table_sum_ms: List[float] = field(default_factory=list)
    calibrated_ms: List[float] = field(default_factory=list)
    n_blocks: List[int] = field(default_factory=list)
    resolutions: List[int] = field(default_factory=list)
    plot: Optional[str] = None

    def to_dict(self) -> Dict[str, Any]:
        return asdict(self)


def _loo_calibrated(sums: np.ndarray, nblocks: np.ndarray, measured: np.ndarray) -> np.ndarray:
    out = np.empty_like(measured)
    idx = np.arange(len(measured))
    for i in idx:
        cal = Calibration.fit(sums[idx != i], nblocks[idx != i], measured[idx != i])
        out[i] = cal.apply(sums[i], nblocks[i])
    return out


def validate_lut(lut_path: str, backend: str = "onnxruntime", n: int = 50, space: Optional[SearchSpace] = None,
                 seed: int = 0, iters: int = 30, warmup: int = 5, threads: Optional[int] = None,
                 build_missing: bool = True, save_calibration: bool = True, plot: Optional[str] = None,
                 progress: Optional[bool] = None, statistic: str = "median", refresh_blocks: bool = False,
                 measure_network: Optional[Callable[[Any], float]] = None) -> ValidationReport:
    """Measure ``n`` sampled networks end to end and compare with the table's estimate."""
    from ..model import build_model
    from ..latency import benchmark, device_fingerprint

    if n < 4:
        raise ValueError(f"validation needs n >= 4 networks (calibration is leave-one-out), got {n}")
    start = time.time()
    space = space or SearchSpace.small()
    vectors = space.sample(n, seed=seed)
    measured_blocks = 0
    if build_missing:
        counts = build_lut(lut_path, network_blocks(space, vectors), backend, iters=iters, warmup=warmup,
                           threads=threads, progress=progress, refresh=refresh_blocks)
        measured_blocks = counts["measured"]
    with LatencyTable(lut_path, backend=backend, fingerprint=device_fingerprint(backend)) as table:
        threads = table.get_meta("threads", threads)
        est = LatencyEstimator(table, space, fill="error", calibration=False, statistic=statistic).estimate(vectors)

        if measure_network is None:
            def measure_network(spec):
                result = benchmark(build_model(spec), backend=backend, input_shape=(1, 3, spec.resolution,
                                                                                    spec.resolution),
                                   iters=iters, warmup=warmup, threads=threads)
                return result.min_ms if statistic == "min" else result.median_ms

        from tqdm.auto import tqdm

        measured = np.array([measure_network(space.decode(v)) for v in
                             tqdm(vectors, desc="end-to-end", unit="net", disable=(not progress)
                                  if progress is not None else None)])
        sums, nblocks = est.table_sum_ms, est.n_blocks.astype(np.float64)
        calibration = Calibration.fit(sums, nblocks, measured)
        loo = _loo_calibrated(sums, nblocks, measured)
        if save_calibration:
            table.set_meta("calibration", {**calibration.to_dict(), "space": space.name, "statistic": statistic,
                                           "fitted_at": time.time()})
        device_id = table.device_id

    from scipy.stats import spearmanr

    rel_loo = (loo - measured) / measured
    rel_in = (calibration.apply(sums, nblocks) - measured) / measured
    report = ValidationReport(
        lut=lut_path, backend=backend, device_id=device_id, space=space.name, n=n, seed=seed, statistic=statistic,
        spearman_table_sum=float(spearmanr(sums, measured)[0]),
        spearman_calibrated=float(spearmanr(loo, measured)[0]),
        mean_error_table_sum=float(np.mean((sums - measured) / measured)),
        mean_abs_error_calibrated=float(np.mean(np.abs(rel_loo))),
        within_10pct_calibrated=float(np.mean(np.abs(rel_loo) <= 0.10)),
        within_10pct_in_sample=float(np.mean(np.abs(rel_in) <= 0.10)),
        calibration=calibration.to_dict(), blocks_measured=measured_blocks, seconds=time.time() - start,
        measured_ms=measured.tolist(), table_sum_ms=sums.tolist(), calibrated_ms=loo.tolist(),
        n_blocks=est.n_blocks.tolist(), resolutions=space.resolution(vectors).tolist())
    if plot:
        plot_validation(report, plot)
        report.plot = plot
    return report


def plot_validation(report: ValidationReport, path: str) -> str:
    """Scatter of measured vs table estimate (raw sum and calibrated), with the +-10 % band."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .._io import atomic_path

    m = np.asarray(report.measured_ms)
    fig, ax = plt.subplots(figsize=(5.2, 5), dpi=120)
    ax.scatter(m, report.table_sum_ms, s=16, alpha=0.6, label=f"table sum (Spearman {report.spearman_table_sum:.3f})")
    ax.scatter(m, report.calibrated_ms, s=16, alpha=0.8, marker="x",
               label=f"calibrated, leave-one-out ({report.within_10pct_calibrated:.0%} within ±10%)")
    lo = 0.9 * min(m.min(), min(report.calibrated_ms))
    hi = 1.1 * max(m.max(), max(report.table_sum_ms))
    xs = np.linspace(lo, hi, 50)
    ax.plot(xs, xs, "k-", lw=0.8)
    ax.fill_between(xs, 0.9 * xs, 1.1 * xs, color="gray", alpha=0.2, label="±10%")
    ax.set_xlabel(f"measured end-to-end latency (ms, {report.backend})")
    ax.set_ylabel("estimated latency (ms)")
    ax.set_title(f"Latency table vs measurement, {report.n} networks ({report.space})", fontsize=9)
    ax.legend(fontsize=7, loc="upper left")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    return path
