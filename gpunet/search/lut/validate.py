"""How well the table predicts whole networks (the paper's Fig. 4), for ``gpunet lut validate``.

Samples networks from a space, fills the table with the blocks they need, measures each
network end to end with the same harness, backend and thread count, and compares: Spearman
rank correlation, mean error of the raw table sum, and the share within +-10 % after a
per-device :class:`~gpunet.search.estimate.Calibration` (scale of the table sum, weight
megabytes, offset). The share is computed leave-one-out (each network's calibrated estimate
comes from a calibration fitted without it), so it is what a new network can expect; the
calibration is fitted on these networks plus every network earlier validations measured with
this table (kept in its meta as vector and latency; busy runs left out) and saved in the table.
A calibration already in the table (fitted on other networks, e.g. another seed) is first scored
on these networks: a held-out check.

Timings from a busy machine are not silently mixed in: the load average is sampled while
blocks and networks are measured and the spread of each network's timed runs is kept; the
report (and the saved calibration) carry ``busy`` and the reasons. Nor can the load average see
other tenants of a shared last-level cache, which change what weight-heavy networks pay: the
cache share is probed (:func:`~gpunet.latency.cacheshare.cache_share`) around the passes, kept
with the networks and the calibration, and a move since the calibration was fitted is reported.
"""
from __future__ import annotations

import os
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Dict, List, Optional

import numpy as np

from .estimate import Calibration, LatencyEstimator
from ...latency.machine import busy_reasons, cache_notes, load_average
from .build import build_lut
from .codes import network_blocks
from .table import LatencyTable
from ..space import SearchSpace

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
    weight_mb: List[float] = field(default_factory=list)
    within_10pct_three_term: float = float("nan")  # LOO, the older calibration without the weight term
    within_10pct_stored: Optional[float] = None  # the table's earlier calibration on these networks
    mean_abs_error_stored: Optional[float] = None
    measured_median_ms: List[float] = field(default_factory=list)  # both statistics of the default harness
    measured_min_ms: List[float] = field(default_factory=list)
    load_avg: List[float] = field(default_factory=list)  # 1-min load: blocks (highest seen), networks, after
    run_spread: float = float("nan")  # median over networks of p90 / median - 1 of their timed runs
    busy: bool = False
    warnings: List[str] = field(default_factory=list)
    plot: Optional[str] = None
    precision: str = "fp32"
    passes: int = 1  # end-to-end passes over the networks; measured_ms is each network's median
    pass_spread: float = 0.0  # median over networks of (slowest - fastest pass) / median
    # last-level cache share (MB) probed before the passes and after each (our own measurements only)
    cache_share_mb: List[float] = field(default_factory=list)
    cache_notes: List[str] = field(default_factory=list)  # the share moved since the stored calibration

    def to_dict(self) -> Dict[str, Any]:
        return asdict(self)


def _loo_calibrated(sums: np.ndarray, nblocks: np.ndarray, measured: np.ndarray,
                    weight_mb: Optional[np.ndarray] = None, extra=None) -> np.ndarray:
    """Each network's calibrated estimate from a fit without it (``extra``: (sums, nblocks,
    measured, weight_mb) of earlier networks, always in the fit)."""
    out = np.empty_like(measured)
    idx = np.arange(len(measured))
    for i in idx:
        keep = idx != i
        parts = [sums[keep], nblocks[keep], measured[keep], weight_mb[keep] if weight_mb is not None else None]
        if extra is not None:
            parts = [np.concatenate([a, b]) if a is not None else None for a, b in zip(parts, extra)]
        cal = Calibration.fit(*parts)
        out[i] = cal.apply(sums[i], nblocks[i], 0.0 if weight_mb is None else weight_mb[i])
    return out


#: networks measured end to end are kept in the table (vector, latency) so each validation fits
#: its calibration on every network measured with this table so far, not only on its own N
MAX_KEPT_NETWORKS = 1000


def _earlier_networks(table, space, statistic, current: np.ndarray, precision: str = "fp32"):
    """(entries, (sums, nblocks, measured, weight_mb)) of networks earlier validations measured
    with this table on this space and statistic (not those measured now); None when there are none."""
    kept = table.get_meta("validation_networks") or []
    now = {tuple(int(x) for x in v) for v in current}
    rows = [e for e in kept if e.get("space") == space.name and e.get("statistic") == statistic and not e.get("busy")
            and e.get("precision", "fp32") == precision
            and len(e.get("vector", ())) == current.shape[1] and tuple(e["vector"]) not in now]
    if not rows:
        return kept, None
    vecs = np.array([e["vector"] for e in rows], dtype=np.int64)
    est = LatencyEstimator(table, space, precision=precision, fill="nan", calibration=False,
                           statistic=statistic).estimate(vecs)
    ok = ~est.missing
    if not ok.any():
        return kept, None
    measured = np.array([e["measured_ms"] for e in rows], dtype=np.float64)
    return kept, (est.table_sum_ms[ok], est.n_blocks[ok].astype(np.float64), measured[ok], est.weight_mb[ok])


MIN_NETWORKS_WEIGHT_TERM = 5


def validate_lut(lut_path: str, backend: str = "onnxruntime", n: int = 50, space: Optional[SearchSpace] = None,
                 seed: int = 0, iters: int = 30, warmup: int = 5, threads: Optional[int] = None,
                 build_missing: bool = True, save_calibration: bool = True, plot: Optional[str] = None,
                 progress: Optional[bool] = None, statistic: str = "median", refresh_blocks: bool = False,
                 measure_network: Optional[Callable[[Any], float]] = None,
                 precision: str = "fp32", passes: int = 5) -> ValidationReport:
    """Measure ``n`` sampled networks end to end and compare with the table's estimate.

    ``precision``: the backend precision blocks and networks run in (e.g. ``bf16`` on OpenVINO); a
    table's calibration (and the networks kept for it) belong to one precision.
    ``passes``: the networks are measured in this many passes over all of them and each keeps the
    median of its passes: a weight-heavy network's time moves by up to 15 % between runtime
    sessions minutes apart (which of its weights stay in a shared cache), which one pass would put
    into the calibration's error. On ONNX Runtime / OpenVINO each network is exported once and
    every pass times it in a fresh session (the export costs seconds, the timing a fraction).
    """
    from ...export.onnx import export_onnx_proto
    from ...model import build_model
    from ...latency import benchmark, device_fingerprint
    from ...latency.cacheshare import cache_share

    if n < 4:
        raise ValueError(f"validation needs n >= 4 networks (calibration is leave-one-out), got {n}")
    if isinstance(passes, bool) or not isinstance(passes, int) or passes < 1:
        raise ValueError(f"passes must be a positive integer, got {passes!r}")
    start = time.time()
    space = space or SearchSpace.small()
    vectors = space.sample(n, seed=seed)
    measured_blocks = 0
    load_avg = [load_average()]
    if build_missing:
        counts = build_lut(lut_path, network_blocks(space, vectors, precision=precision), backend, iters=iters,
                           warmup=warmup, threads=threads, progress=progress, refresh=refresh_blocks)
        measured_blocks = counts["measured"]
        load_avg[0] = max(load_avg[0], *counts["load_avg"])
    with LatencyTable(lut_path, backend=backend, fingerprint=device_fingerprint(backend)) as table:
        threads = table.get_meta("threads", threads)
        est = LatencyEstimator(table, space, precision=precision, fill="error", calibration=False,
                               statistic=statistic).estimate(vectors)
        stored_meta = table.get_meta("calibration")
        stored = Calibration.from_dict(stored_meta) if stored_meta and stored_meta.get("statistic", "median") == \
            statistic and stored_meta.get("precision", "fp32") == precision else None
        spreads, both = [], []

        exported: Dict[int, str] = {}  # id(spec) -> its ONNX file in `graphs`, exported once for all passes

        own_timing = measure_network is None
        if own_timing:
            def measure_network(spec):
                model, shape = build_model(spec), (1, 3, spec.resolution, spec.resolution)
                graph = None
                if backend in ("onnxruntime", "openvino") and precision != "int8":
                    import onnx

                    if id(spec) not in exported:
                        path = os.path.join(graphs, f"{len(exported)}.onnx")
                        onnx.save(export_onnx_proto(model, shape), path)
                        exported[id(spec)] = path
                    graph = onnx.load(exported[id(spec)])
                result = benchmark(model, backend=backend, input_shape=shape, iters=iters, warmup=warmup,
                                   threads=threads, precision=precision, onnx_graph=graph)
                spreads.append(result.p90_ms / result.median_ms - 1.0)
                both.append((result.median_ms, result.min_ms))
                return result.min_ms if statistic == "min" else result.median_ms

        from tqdm.auto import tqdm

        load_avg.append(load_average())
        specs = [space.decode(v) for v in vectors]
        bar = tqdm(total=n * passes, desc="end-to-end", unit="net",
                   disable=(not progress) if progress is not None else None)
        per_pass, shares = [], []
        probe = own_timing and backend != "tensorrt"  # the CPU cache our own timings ran in
        graphs = tempfile.mkdtemp(prefix="gpunet-validate-")
        try:
            for _ in range(passes):  # whole passes, so drift over minutes touches every network alike
                if probe:
                    shares.append(cache_share().mb)
                row = []
                for spec in specs:
                    row.append(measure_network(spec))
                    bar.update(1)
                per_pass.append(row)
            if probe:
                shares.append(cache_share().mb)
        finally:
            bar.close()
            shutil.rmtree(graphs, ignore_errors=True)
        per_pass = np.array(per_pass, dtype=np.float64)
        measured = np.median(per_pass, axis=0)
        pass_spread = float(np.median((per_pass.max(0) - per_pass.min(0)) / measured)) if passes > 1 else 0.0
        load_avg.append(load_average())
        spread = float(np.median(spreads)) if spreads else float("nan")
        reasons = busy_reasons(load_avg, spread, threads)
        notes = cache_notes(shares, stored_meta.get("cache_share_mb") if stored is not None else None,
                            stored.cache_mb if stored is not None else None)
        sums, nblocks, weight_mb = est.table_sum_ms, est.n_blocks.astype(np.float64), est.weight_mb
        # the weight term only once leave-one-out leaves enough networks to fit four terms
        kept, earlier = _earlier_networks(table, space, statistic, vectors, precision)
        n_fit = n + (0 if earlier is None else len(earlier[0]))
        wmb = weight_mb if n_fit >= MIN_NETWORKS_WEIGHT_TERM else None
        if wmb is None or earlier is None:
            earlier = None
        parts = [sums, nblocks, measured, wmb]
        if earlier is not None:
            parts = [np.concatenate([a, b]) for a, b in zip(parts, earlier)]
        calibration = Calibration.fit(*parts)
        loo = _loo_calibrated(sums, nblocks, measured, wmb, extra=earlier)
        loo3 = _loo_calibrated(sums, nblocks, measured)
        if save_calibration:
            new = [{"vector": [int(x) for x in v], "measured_ms": float(m), "space": space.name,
                    "statistic": statistic, "precision": precision, "seed": seed, "busy": bool(reasons),
                    **({"cache_share_mb": float(np.median(shares))} if shares else {})}
                   for v, m in zip(vectors, measured)]
            now = {tuple(e["vector"]) for e in new}
            kept = [e for e in kept if not (tuple(e.get("vector", ())) in now and e.get("space") == space.name
                                            and e.get("statistic") == statistic
                                            and e.get("precision", "fp32") == precision)] + new
            kept = kept[-MAX_KEPT_NETWORKS:]
            table.set_meta("validation_networks", kept)
            fitted_shares = [e["cache_share_mb"] for e in kept if "cache_share_mb" in e and not e.get("busy")
                             and e.get("space") == space.name and e.get("statistic") == statistic
                             and e.get("precision", "fp32") == precision]
            table.set_meta("calibration", {**calibration.to_dict(), "space": space.name, "statistic": statistic,
                                           "precision": precision,
                                           "seed": seed, "fitted_at": time.time(), "busy": bool(reasons),
                                           "resolutions": [int(min(space.resolutions)), int(max(space.resolutions))],
                                           "warnings": reasons, "load_avg": load_avg,
                                           "cache_share_mb": float(np.median(fitted_shares)) if fitted_shares
                                           else None})
        device_id = table.device_id

    from scipy.stats import spearmanr

    both_stats: List[List[float]] = [[], []]  # per network: median of its passes' medians, min of all runs
    if both and len(both) == passes * n:
        runs = np.array(both, dtype=np.float64).reshape(passes, n, 2)
        both_stats = [np.median(runs[:, :, 0], axis=0).tolist(), runs[:, :, 1].min(axis=0).tolist()]

    rel_loo = (loo - measured) / measured
    rel_in = (calibration.apply(sums, nblocks, weight_mb) - measured) / measured
    rel_stored = None if stored is None else (stored.apply(sums, nblocks, weight_mb) - measured) / measured
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
        n_blocks=est.n_blocks.tolist(), resolutions=space.resolution(vectors).tolist(),
        weight_mb=weight_mb.tolist(), within_10pct_three_term=float(np.mean(np.abs((loo3 - measured) / measured) <= 0.10)),
        within_10pct_stored=None if rel_stored is None else float(np.mean(np.abs(rel_stored) <= 0.10)),
        mean_abs_error_stored=None if rel_stored is None else float(np.mean(np.abs(rel_stored))),
        measured_median_ms=both_stats[0], measured_min_ms=both_stats[1],
        load_avg=load_avg, run_spread=spread, busy=bool(reasons), warnings=reasons, precision=precision,
        passes=passes, pass_spread=pass_spread, cache_share_mb=shares, cache_notes=notes)
    if plot:
        plot_validation(report, plot)
        report.plot = plot
    return report


def plot_validation(report: ValidationReport, path: str) -> str:
    """Scatter of measured vs table estimate (raw sum and calibrated), with the +-10 % band."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ..._io import atomic_path

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
