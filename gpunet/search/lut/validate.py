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
report (and the saved calibration) carry ``busy`` and the reasons (the rules live in
:mod:`gpunet.latency.machine`). The local load judges only timings taken on this machine
(``measured_here``): a caller's ``measure_network`` may time a remote device or be a model, so
by default its runs are never left out as busy, though the load is still recorded. Nor can the load average see other tenants of a shared
last-level cache, which change what weight-heavy networks pay: the cache share is probed
(:func:`~gpunet.latency.cacheshare.cache_share`) around the passes, kept with the networks and
the calibration, and a move since the calibration was fitted is reported.

:func:`validate_lut` runs it as steps, one function each: sample the networks and fill their
blocks (:func:`_fill_blocks`) -> measure them end to end in passes (:func:`_measure_networks`,
into a :class:`_Measured`; then a sample of their blocks timed again for the report's noise floor,
:func:`_noise`) -> fit the calibration and store it with the networks
(:func:`_fit_and_store`, into a :class:`_Fit`) -> report (:func:`_report`).
"""
from __future__ import annotations

import os
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from ..._checks import non_negative_int, positive_int
from .estimate import Calibration, EstimateResult, LatencyEstimator
from ...latency.machine import busy_reasons, cache_notes, load_average
from .build import build_lut, measure_block
from .codes import network_blocks
from .noise import noise_floor
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
    measured_here: bool = True  # network timings taken on this machine (only then may its load mark them busy)
    plot: Optional[str] = None
    precision: str = "fp32"
    passes: int = 1  # end-to-end passes over the networks; measured_ms is each network's median
    pass_spread: float = 0.0  # median over networks of (slowest - fastest pass) / median
    # last-level cache share (MB) probed before the passes and after each (our own measurements only)
    cache_share_mb: List[float] = field(default_factory=list)
    cache_notes: List[str] = field(default_factory=list)  # the share moved since the stored calibration
    # per network this table had measured before (same space, statistic, precision; not busy):
    # its latency now / then - 1, how far a repeat moves on this machine (empty: none measured before)
    moved_since_last: List[float] = field(default_factory=list)
    # this run's measurement noise and the share within ±10 % it leaves a table without error
    # (:class:`~gpunet.search.lut.noise.NoiseFloor`; empty when the caller timed the networks)
    noise: Dict[str, Any] = field(default_factory=dict)

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


def _same_run(entry: Dict[str, Any], space: str, statistic: str, precision: str) -> bool:
    """Whether a kept network was measured for this space, statistic and precision."""
    return (entry.get("space") == space and entry.get("statistic") == statistic
            and entry.get("precision", "fp32") == precision)


def _earlier_networks(table, space, statistic, current: np.ndarray, precision: str = "fp32"):
    """(entries, (sums, nblocks, measured, weight_mb)) of networks earlier validations measured
    with this table on this space, statistic and precision (not those measured now); None when
    there are none."""
    kept = table.get_meta("validation_networks") or []
    now = {tuple(int(x) for x in v) for v in current}
    rows = [e for e in kept if _same_run(e, space.name, statistic, precision) and not e.get("busy")
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


#: networks a fit needs (these and earlier ones) before it takes the weight term: leave-one-out
#: then leaves enough of them to fit four terms
MIN_NETWORKS_WEIGHT_TERM = 5


@dataclass(frozen=True)
class _Harness:
    """How networks are timed: as the table's blocks were (backend, precision, runs, threads)."""

    backend: str
    precision: str
    statistic: str  # which of a timing's statistics is the network's latency: median or min
    iters: int
    warmup: int
    threads: Optional[int]


@dataclass
class _Measured:
    """The networks' end-to-end timings, carried from measuring to fitting, storing and reporting."""

    ms: np.ndarray  # per network: the median of its passes
    per_pass: np.ndarray  # passes x networks timings
    pass_spread: float  # median over networks of (slowest - fastest pass) / median
    run_spread: float  # median over networks of p90 / median - 1 of their timed runs (NaN: caller timed)
    median_ms: List[float]  # both statistics of the default harness (empty: the caller timed)
    min_ms: List[float]
    load_avg: List[float]  # 1-min load: blocks (highest seen), networks, after
    cache_share_mb: List[float]  # probed before each pass and after the last (our own timings only)
    warnings: List[str]  # why the machine counted as busy
    measured_here: bool = True  # the timings were taken on this machine (else the local load does not judge them)

    @property
    def busy(self) -> bool:
        return bool(self.warnings)


@dataclass
class _Fit:
    """The calibration fitted on these networks (and the earlier ones the table keeps), and each
    network's leave-one-out estimate with it and with the older three-term form."""

    calibration: Calibration
    loo_ms: np.ndarray
    loo_three_term_ms: np.ndarray


def _check_counts(n: int, passes: int) -> None:
    if n < 4:
        raise ValueError(f"validation needs n >= 4 networks (calibration is leave-one-out), got {n}")
    positive_int(passes, "passes")


def _fill_blocks(lut_path: str, space: SearchSpace, vectors: np.ndarray, backend: str, precision: str,
                 build: bool, **build_args) -> Tuple[int, float]:
    """Step 1 (after sampling): fill the table with the blocks these networks need (when ``build``);
    (blocks measured now, the highest 1-minute load average seen meanwhile)."""
    load = load_average()
    if not build:
        return 0, load
    counts = build_lut(lut_path, network_blocks(space, vectors, precision=precision), backend, **build_args)
    return counts["measured"], max(load, *counts["load_avg"])


def _stored_calibration(table: LatencyTable, statistic: str,
                        precision: str) -> Tuple[Optional[Calibration], Optional[float]]:
    """The table's earlier calibration for this statistic and precision (None when it has none)
    and the cache share (MB) it was fitted under."""
    meta = table.get_meta("calibration")
    if not (meta and meta.get("statistic", "median") == statistic and meta.get("precision", "fp32") == precision):
        return None, None
    return Calibration.from_dict(meta), meta.get("cache_share_mb")


class _NetworkTimer:
    """Times networks end to end with the harness, keeping each timing's run spread and both
    statistics. On ONNX Runtime / OpenVINO each network is exported once into a scratch folder
    (removed on exit) and every pass times that graph in a fresh session."""

    def __init__(self, harness: _Harness):
        self.harness = harness
        self.spreads: List[float] = []
        self.both: List[Tuple[float, float]] = []  # (median, min) of each timing
        self._exported: Dict[int, str] = {}  # id(spec) -> its ONNX file, exported once for all passes
        self._folder = ""

    def __enter__(self) -> "_NetworkTimer":
        self._folder = tempfile.mkdtemp(prefix="gpunet-validate-")
        return self

    def __exit__(self, *exc) -> None:
        shutil.rmtree(self._folder, ignore_errors=True)

    def __call__(self, spec) -> float:
        from ...latency import benchmark
        from ...model import build_model

        h = self.harness
        model, shape = build_model(spec), (1, 3, spec.resolution, spec.resolution)
        result = benchmark(model, backend=h.backend, input_shape=shape, iters=h.iters, warmup=h.warmup,
                           threads=h.threads, precision=h.precision, onnx_graph=self._graph(spec, model, shape))
        self.spreads.append(result.p90_ms / result.median_ms - 1.0)
        self.both.append((result.median_ms, result.min_ms))
        return result.min_ms if h.statistic == "min" else result.median_ms

    def _graph(self, spec, model, shape):
        """The network's ONNX graph where the backend runs one (exported on first use; at int8 its
        QDQ graph, quantized once for all passes like the blocks' are), else None."""
        if self.harness.backend not in ("onnxruntime", "openvino"):
            return None
        import onnx

        from ...export.onnx import export_onnx_proto
        from ...export.quantize import int8_graph

        if id(spec) not in self._exported:
            path = os.path.join(self._folder, f"{len(self._exported)}.onnx")
            graph = int8_graph(model, shape)[0] if self.harness.precision == "int8" else export_onnx_proto(model, shape)
            onnx.save(graph, path)
            self._exported[id(spec)] = path
        return onnx.load(self._exported[id(spec)])


def _run_passes(specs: Sequence[Any], time_network: Callable[[Any], float], passes: int, progress: Optional[bool],
                probe: bool) -> Tuple[np.ndarray, List[float]]:
    """Whole passes over the networks, so drift over minutes touches every network alike:
    (passes x networks timings, the cache share probed before each pass and after the last)."""
    from tqdm.auto import tqdm

    from ...latency.cacheshare import cache_share

    bar = tqdm(total=len(specs) * passes, desc="end-to-end", unit="net",
               disable=(not progress) if progress is not None else None)
    per_pass, shares = [], []
    try:
        for _ in range(passes):
            if probe:
                shares.append(cache_share().mb)
            row = []
            for spec in specs:
                row.append(time_network(spec))
                bar.update(1)
            per_pass.append(row)
        if probe:
            shares.append(cache_share().mb)
    finally:
        bar.close()
    return np.array(per_pass, dtype=np.float64), shares


def _both_statistics(both: List[Tuple[float, float]], passes: int, n: int) -> Tuple[List[float], List[float]]:
    """Per network: the median of its passes' medians and the min of all its runs ([] when unknown)."""
    if not both or len(both) != passes * n:
        return [], []
    runs = np.array(both, dtype=np.float64).reshape(passes, n, 2)
    return np.median(runs[:, :, 0], axis=0).tolist(), runs[:, :, 1].min(axis=0).tolist()


def _measure_networks(specs: List[Any], harness: _Harness, measure_network: Optional[Callable[[Any], float]],
                      passes: int, progress: Optional[bool], block_load: float, here: bool) -> _Measured:
    """Step 2: time every network end to end in ``passes`` (with the caller's ``measure_network``
    if given, else with the harness, probing the CPU cache our own timings run in). The load is
    recorded either way; it makes the run busy only when the timings were taken ``here``."""
    loads = [block_load, load_average()]
    if measure_network is not None:  # the caller's timings: this machine's cache says nothing about them
        per_pass, shares = _run_passes(specs, measure_network, passes, progress, probe=False)
        spreads, both = [], []
    else:
        with _NetworkTimer(harness) as timer:
            per_pass, shares = _run_passes(specs, timer, passes, progress, probe=harness.backend != "tensorrt")
        spreads, both = timer.spreads, timer.both
    loads.append(load_average())
    measured = np.median(per_pass, axis=0)
    pass_spread = float(np.median((per_pass.max(0) - per_pass.min(0)) / measured)) if passes > 1 else 0.0
    run_spread = float(np.median(spreads)) if spreads else float("nan")
    median_ms, min_ms = _both_statistics(both, passes, len(specs))
    return _Measured(ms=measured, per_pass=per_pass, pass_spread=pass_spread, run_spread=run_spread,
                     median_ms=median_ms, min_ms=min_ms, load_avg=loads, cache_share_mb=shares, measured_here=here,
                     warnings=busy_reasons(loads if here else [], run_spread, harness.threads))


#: blocks a validation times again for its noise floor (``recheck_blocks``): ~1 s each on a CPU
RECHECK_BLOCKS = 24


def _recheck_blocks(table: LatencyTable, space: SearchSpace, vectors: np.ndarray, harness: _Harness, count: int,
                    seed: int) -> Tuple[np.ndarray, np.ndarray]:
    """Step 2b: ``count`` of these networks' blocks (a sample fixed by ``seed``) timed again as the
    table timed them, each in a fresh session: (the table's timings, now's); the table is unchanged."""
    keys = network_blocks(space, vectors, precision=harness.precision)
    pick = np.sort(np.random.default_rng(seed).choice(len(keys), size=min(count, len(keys)), replace=False))
    first, again = [], []
    for i in pick:
        result = measure_block(keys[i], harness.backend, iters=harness.iters, warmup=harness.warmup,
                               threads=harness.threads, timing=table.block_timing or "wall")
        stored = table.get(keys[i], harness.statistic)
        first.append(float("nan") if stored is None else stored)
        again.append(result.min_ms if harness.statistic == "min" else result.median_ms)
    return np.array(first, dtype=np.float64), np.array(again, dtype=np.float64)


def _noise(table: LatencyTable, space: SearchSpace, vectors: np.ndarray, nets: _Measured, harness: _Harness,
           count: int, seed: int) -> Dict[str, Any]:
    """This run's :class:`~gpunet.search.lut.noise.NoiseFloor` (as a dict): the networks' passes and
    ``count`` blocks timed again; empty when the caller timed the networks (their noise is not ours)."""
    if not nets.measured_here or not len(nets.median_ms):
        return {}
    first, again = _recheck_blocks(table, space, vectors, harness, count, seed) if count > 0 else ((), ())
    block_ms, counts = LatencyEstimator(table, space, precision=harness.precision, calibration=False,
                                        statistic=harness.statistic).block_times(vectors)
    return noise_floor(nets.per_pass, block_ms, counts, np.asarray(first), np.asarray(again)).to_dict()


def _fit(est: EstimateResult, measured: np.ndarray, earlier) -> _Fit:
    """The calibration on these networks plus ``earlier`` ones (see :func:`_earlier_networks`) and the
    leave-one-out estimates; the weight term (and the earlier networks) only once leave-one-out
    leaves enough networks to fit four terms."""
    sums, nblocks = est.table_sum_ms, est.n_blocks.astype(np.float64)
    n_fit = len(measured) + (0 if earlier is None else len(earlier[0]))
    wmb = est.weight_mb if n_fit >= MIN_NETWORKS_WEIGHT_TERM else None
    extra = earlier if wmb is not None else None
    parts = [sums, nblocks, measured, wmb]
    if extra is not None:
        parts = [np.concatenate([a, b]) for a, b in zip(parts, extra)]
    return _Fit(calibration=Calibration.fit(*parts),
                loo_ms=_loo_calibrated(sums, nblocks, measured, wmb, extra=extra),
                loo_three_term_ms=_loo_calibrated(sums, nblocks, measured))


def _keep_networks(kept: List[Dict[str, Any]], vectors: np.ndarray, nets: _Measured, space: SearchSpace,
                   harness: _Harness, seed: int) -> List[Dict[str, Any]]:
    """The table's kept networks with these added (replacing an earlier measurement of the same
    network, space, statistic and precision), the newest :data:`MAX_KEPT_NETWORKS`."""
    share = {"cache_share_mb": float(np.median(nets.cache_share_mb))} if nets.cache_share_mb else {}
    new = [{"vector": [int(x) for x in v], "measured_ms": float(m), "space": space.name,
            "statistic": harness.statistic, "precision": harness.precision, "seed": seed, "busy": nets.busy, **share}
           for v, m in zip(vectors, nets.ms)]
    now = {tuple(e["vector"]) for e in new}
    older = [e for e in kept if not (tuple(e.get("vector", ())) in now
                                     and _same_run(e, space.name, harness.statistic, harness.precision))]
    return (older + new)[-MAX_KEPT_NETWORKS:]


def _calibration_meta(calibration: Calibration, kept: List[Dict[str, Any]], nets: _Measured, space: SearchSpace,
                      harness: _Harness, seed: int) -> Dict[str, Any]:
    """The calibration as stored in the table's meta, with what it was fitted on and under; its
    cache share is over the kept networks it holds for (busy runs left out)."""
    shares = [e["cache_share_mb"] for e in kept if "cache_share_mb" in e and not e.get("busy")
              and _same_run(e, space.name, harness.statistic, harness.precision)]
    return {**calibration.to_dict(), "space": space.name, "statistic": harness.statistic,
            "precision": harness.precision, "seed": seed, "fitted_at": time.time(), "busy": nets.busy,
            "resolutions": [int(min(space.resolutions)), int(max(space.resolutions))],
            "warnings": nets.warnings, "load_avg": nets.load_avg, "measured_here": nets.measured_here,
            "cache_share_mb": float(np.median(shares)) if shares else None}


def _moved_since_last(table: LatencyTable, space: SearchSpace, vectors: np.ndarray, ms: np.ndarray,
                      harness: _Harness) -> List[float]:
    """Now / then - 1 for each network an earlier validation with this table measured on this space,
    statistic and precision (busy runs left out): the machine's own repeatability, which bounds
    the share any table can put within +-10 %."""
    then = {tuple(e["vector"]): e["measured_ms"] for e in table.get_meta("validation_networks") or []
            if _same_run(e, space.name, harness.statistic, harness.precision) and not e.get("busy")}
    old = [then.get(tuple(int(x) for x in v)) for v in vectors]
    return [float(m / o - 1.0) for m, o in zip(ms, old) if o]


def _fit_and_store(table: LatencyTable, space: SearchSpace, vectors: np.ndarray, est: EstimateResult,
                   nets: _Measured, harness: _Harness, seed: int, save: bool) -> _Fit:
    """Step 3: fit the calibration on these and every earlier network the table keeps; with ``save``
    keep these networks in the table and store the calibration."""
    kept, earlier = _earlier_networks(table, space, harness.statistic, vectors, harness.precision)
    fit = _fit(est, nets.ms, earlier)
    if save:
        kept = _keep_networks(kept, vectors, nets, space, harness, seed)
        table.set_meta("validation_networks", kept)
        table.set_meta("calibration", _calibration_meta(fit.calibration, kept, nets, space, harness, seed))
    return fit


def _within_10pct(rel: np.ndarray) -> float:
    return float(np.mean(np.abs(rel) <= 0.10))


def _scores(est: EstimateResult, measured: np.ndarray, fit: _Fit, stored: Optional[Calibration]) -> Dict[str, Any]:
    """The report's numbers: ranks and errors of the raw table sum, of the leave-one-out calibrated
    estimates (four-term and three-term), of the in-sample fit and of the stored calibration."""
    from scipy.stats import spearmanr

    sums, nblocks, weight_mb = est.table_sum_ms, est.n_blocks.astype(np.float64), est.weight_mb
    rel_loo = (fit.loo_ms - measured) / measured
    rel_in = (fit.calibration.apply(sums, nblocks, weight_mb) - measured) / measured
    rel_stored = None if stored is None else (stored.apply(sums, nblocks, weight_mb) - measured) / measured
    return dict(
        spearman_table_sum=float(spearmanr(sums, measured)[0]),
        spearman_calibrated=float(spearmanr(fit.loo_ms, measured)[0]),
        mean_error_table_sum=float(np.mean((sums - measured) / measured)),
        mean_abs_error_calibrated=float(np.mean(np.abs(rel_loo))),
        within_10pct_calibrated=_within_10pct(rel_loo), within_10pct_in_sample=_within_10pct(rel_in),
        within_10pct_three_term=_within_10pct((fit.loo_three_term_ms - measured) / measured),
        within_10pct_stored=None if rel_stored is None else _within_10pct(rel_stored),
        mean_abs_error_stored=None if rel_stored is None else float(np.mean(np.abs(rel_stored))))


def _report(header: Dict[str, Any], space: SearchSpace, vectors: np.ndarray, est: EstimateResult, nets: _Measured,
            fit: _Fit, stored: Optional[Calibration], stored_share: Optional[float], start: float) -> ValidationReport:
    """Step 4: the report; ``header``: what was validated, where and how (lut, backend, device_id,
    space, n, seed, statistic, precision, passes, blocks_measured, moved_since_last, noise)."""
    scores = _scores(est, nets.ms, fit, stored)
    notes = cache_notes(nets.cache_share_mb, stored_share, stored.cache_mb if stored is not None else None)
    return ValidationReport(
        **header, **scores, calibration=fit.calibration.to_dict(), seconds=time.time() - start,
        measured_ms=nets.ms.tolist(), table_sum_ms=est.table_sum_ms.tolist(), calibrated_ms=fit.loo_ms.tolist(),
        n_blocks=est.n_blocks.tolist(), resolutions=space.resolution(vectors).tolist(),
        weight_mb=est.weight_mb.tolist(), measured_median_ms=nets.median_ms, measured_min_ms=nets.min_ms,
        load_avg=nets.load_avg, run_spread=nets.run_spread, busy=nets.busy, warnings=nets.warnings,
        measured_here=nets.measured_here,
        pass_spread=nets.pass_spread, cache_share_mb=nets.cache_share_mb, cache_notes=notes)


def validate_lut(lut_path: str, backend: str = "onnxruntime", n: int = 50, space: Optional[SearchSpace] = None,
                 seed: int = 0, iters: int = 30, warmup: int = 5, threads: Optional[int] = None,
                 build_missing: bool = True, save_calibration: bool = True, plot: Optional[str] = None,
                 progress: Optional[bool] = None, statistic: str = "median", refresh_blocks: bool = False,
                 measure_network: Optional[Callable[[Any], float]] = None,
                 precision: str = "fp32", passes: int = 5, measured_here: Optional[bool] = None,
                 block_timing: Optional[str] = None, recheck_blocks: int = RECHECK_BLOCKS) -> ValidationReport:
    """Measure ``n`` sampled networks end to end and compare with the table's estimate.

    ``precision``: the backend precision blocks and networks run in (e.g. ``bf16`` on OpenVINO); a
    table's calibration (and the networks kept for it) belong to one precision.
    ``passes``: the networks are measured in this many passes over all of them and each keeps the
    median of its passes: a weight-heavy network's time moves by up to 15 % between runtime
    sessions minutes apart (which of its weights stay in a shared cache), which one pass would put
    into the calibration's error. On ONNX Runtime / OpenVINO each network is exported once and
    every pass times it in a fresh session (the export costs seconds, the timing a fraction).
    ``measure_network``: times one :class:`~gpunet.spec.NetworkSpec` instead of the harness (ms).
    ``measured_here``: whether the network timings are taken on this machine, so that its load
    average may mark the run busy (a busy run's networks are left out of later calibrations).
    Default: True for the harness, False for a ``measure_network`` (a remote device, a model);
    pass True for a caller's timer that runs on this machine.
    ``block_timing``: how missing blocks are timed (see :func:`~gpunet.search.lut.build.build_lut`;
    default: the table's); the networks are always timed end to end on the wall clock.
    ``recheck_blocks``: how many of the networks' blocks are timed again for the report's ``noise``
    (:mod:`gpunet.search.lut.noise`; 0: none, the floor then from the networks' passes alone).
    """
    from ...latency import device_fingerprint

    _check_counts(n, passes)
    non_negative_int(recheck_blocks, "recheck_blocks")
    start = time.time()
    space = space or SearchSpace.small()
    vectors = space.sample(n, seed=seed)
    blocks_measured, block_load = _fill_blocks(lut_path, space, vectors, backend, precision, build_missing,
                                               iters=iters, warmup=warmup, threads=threads, progress=progress,
                                               refresh=refresh_blocks, block_timing=block_timing)
    with LatencyTable(lut_path, backend=backend, fingerprint=device_fingerprint(backend)) as table:
        harness = _Harness(backend, precision, statistic, iters, warmup, table.get_meta("threads", threads))
        est = LatencyEstimator(table, space, precision=precision, fill="error", calibration=False,
                               statistic=statistic).estimate(vectors)
        stored, stored_share = _stored_calibration(table, statistic, precision)
        here = measure_network is None if measured_here is None else bool(measured_here)
        nets = _measure_networks([space.decode(v) for v in vectors], harness, measure_network, passes, progress,
                                 block_load, here)
        moved = _moved_since_last(table, space, vectors, nets.ms, harness)
        noise = _noise(table, space, vectors, nets, harness, recheck_blocks, seed)
        fit = _fit_and_store(table, space, vectors, est, nets, harness, seed, save_calibration)
        device_id = table.device_id
    header = dict(lut=lut_path, backend=backend, device_id=device_id, space=space.name, n=n, seed=seed,
                  statistic=statistic, precision=precision, passes=passes, blocks_measured=blocks_measured,
                  moved_since_last=moved, noise=noise)
    report = _report(header, space, vectors, est, nets, fit, stored, stored_share, start)
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
