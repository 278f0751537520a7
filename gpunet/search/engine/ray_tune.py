"""The search on Ray Tune: a ``Searcher`` around the ask/tell algorithms, one trial per candidate.

- :class:`AskTellSearcher` adapts any :class:`~gpunet.search.engine.algorithms.SearchAlgorithm` to Ray
  Tune (``suggest`` = ``ask``, ``on_trial_complete`` = ``tell``, ``save`` / ``restore`` = the
  algorithm's JSON state dict plus the trials in flight); usable on its own with ``tune.Tuner``.
- :class:`JournalSearcher` is the searcher of a search run: candidates come from the
  :class:`~gpunet.search.engine.driver.SearchDriver`, results go to its journal.
- :func:`run_ray` runs a driver on it: the journal is written when a trial completes,
  ``ConcurrencyLimiter(max_concurrent=workers)``, ``tune.with_resources`` per trial,
  ``FailureConfig(max_failures)`` so a trial whose worker died is retried from the checkpoint it
  last passed to ``tune.report``, ``ASHAScheduler`` with ``scheduler="asha"``. Each trial trains
  on exactly the GPUs Ray assigned it (:func:`_placement`), or data-parallel on one Ray actor
  per rank in the trial's placement group (``workers_per_trial > 1``, :mod:`.data_parallel`).

This module imports Ray at its top: only ``driver.run_search(engine="ray")`` imports it (inside
the function), so ``import gpunet`` / ``gpunet.search`` / ``gpunet.search.engine`` stay free of Ray.
"""
from __future__ import annotations

import contextlib
import json
import math
import os
import time
from typing import Any, Dict, Optional

import numpy as np
import ray
from ray import tune
from ray.tune.schedulers import ASHAScheduler, TrialScheduler
from ray.tune.search import ConcurrencyLimiter, Searcher

from ..._io import atomic_write_text

__all__ = ["AskTellSearcher", "JournalSearcher", "run_ray", "make_searcher"]

# what a trial's final report may carry into the journal
_PLACEMENT_KEYS = ("node", "hostname", "gpu_ids", "started", "workers", "world_size", "retries")
_RESULT_KEYS = ("value", "error", "error_kind", "checkpoint", "best_epoch", "epochs", "stopped_early", "img_size",
                "num_classes", "crop_pct", "interpolation", "dataset", "data_dir", "train_seconds", "resumed_from",
                "retries", "world_size") + _PLACEMENT_KEYS


class AskTellSearcher(Searcher):
    """Ray Tune ``Searcher`` over an ask/tell algorithm; configs are ``{"vector": [41 ints]}``.

    A trial that errors (or ends without ``metric``) is told as a failure (``tell(x, None)``).
    ``mode="min"`` negates the metric, since the algorithms maximise.
    """

    def __init__(self, algorithm, metric: Optional[str] = "value", mode: Optional[str] = "max",
                 max_trials: Optional[int] = None):
        super().__init__(metric=metric, mode=mode)
        self.algorithm = algorithm
        self.max_trials = max_trials
        self.live: Dict[str, list] = {}
        self.suggested = 0

    def suggest(self, trial_id: str) -> Optional[Dict[str, Any]]:
        if self.max_trials is not None and self.suggested >= self.max_trials:
            return Searcher.FINISHED
        if self.algorithm.n_remaining == 0:
            return Searcher.FINISHED
        x = [int(a) for a in self.algorithm.ask()]
        self.live[trial_id] = x
        self.suggested += 1
        return {"vector": x}

    def on_trial_complete(self, trial_id: str, result: Optional[Dict] = None, error: bool = False) -> None:
        x = self.live.pop(trial_id, None)
        if x is not None:
            self.algorithm.tell(np.asarray(x), self._value(result, error))

    def _value(self, result: Optional[Dict], error: bool) -> Optional[float]:
        """The value to tell (maximised), or None for a failed trial."""
        value = None if error or not result else result.get(self.metric)
        if value is None or not math.isfinite(value):
            return None
        return -value if self.mode == "min" else value

    def get_state(self) -> Dict[str, Any]:
        return {"algorithm": self.algorithm.state_dict(), "live": self.live, "suggested": self.suggested,
                "max_trials": self.max_trials}

    def set_state(self, state: Dict[str, Any]) -> None:
        self.algorithm.load_state_dict(state["algorithm"])
        self.live, self.suggested = dict(state["live"]), int(state["suggested"])
        self.max_trials = state["max_trials"]

    def save(self, checkpoint_path: str) -> None:
        atomic_write_text(checkpoint_path, json.dumps(self.get_state()))

    def restore(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, encoding="utf-8") as f:
            self.set_state(json.load(f))


class JournalSearcher(AskTellSearcher):
    """The search run's searcher: candidates come from the driver (re-dispatch first, budget per
    group), results go to its journal before the algorithm hears them.

    How a trial ends decides what is written: a final report is an evaluation (a value, or the
    candidate's own failure); a trial the scheduler stopped is an evaluation at the epochs it ran
    (``stopped_early``); a trial that errored after its retries was lost to infrastructure (the
    evaluators return a candidate's failures, they never raise them) and its row is released.
    """

    def __init__(self, driver, evaluator, stopped: Optional[set] = None):
        # no Tune metric: Tune would demand it in every report, and a failed candidate has none
        super().__init__(None, metric=None, mode=None, max_trials=None)
        self.driver, self.evaluator = driver, evaluator
        self.stopped = stopped if stopped is not None else set()   # trial ids the scheduler stopped
        self.candidates: Dict[str, Any] = {}
        self.started: Dict[str, float] = {}

    def suggest(self, trial_id: str) -> Optional[Dict[str, Any]]:
        c = self.driver.next_candidate()
        if c is None:
            # trials in flight may still give their rows back (infrastructure): wait for them
            return None if self.driver.in_flight and not self.driver.exhausted() else Searcher.FINISHED
        self.candidates[trial_id] = c
        self.started[trial_id] = time.time()
        return {"vector": c.vector, "candidate_id": c.candidate_id, "workdir": self.driver.trial_dir(c)}

    def on_trial_complete(self, trial_id: str, result: Optional[Dict] = None, error: bool = False) -> None:
        c = self.candidates.pop(trial_id, None)
        if c is None:
            return
        seconds = time.time() - self.started.pop(trial_id, time.time())
        if error:
            self.driver.release(c, self._lost(result), trial_id, seconds)
        elif result and result.get("final"):
            self.driver.complete(c, {k: v for k, v in result.items() if k in _RESULT_KEYS}, trial_id, seconds)
        elif result and trial_id in self.stopped:
            record = self.evaluator.stopped_record(self.driver.trial_dir(c), result)
            placement = {k: v for k, v in result.items() if k in _PLACEMENT_KEYS}
            self.driver.complete(c, {**placement, **record}, trial_id, seconds)
        else:  # ended with no verdict (the run was stopped): the row goes back, nothing is recorded
            self.driver.release_quietly(c)

    def _lost(self, result: Optional[Dict]) -> Dict[str, Any]:
        placement = {k: v for k, v in (result or {}).items() if k in _PLACEMENT_KEYS}
        return {**placement, "error": f"trial failed {self.driver.settings.max_retries + 1} time(s) (worker, node "
                                      f"or storage lost); retries exhausted", "retries": self.driver.settings.max_retries}

    def save(self, checkpoint_path: str) -> None:
        self.driver._save_state()
        atomic_write_text(checkpoint_path, json.dumps({"out": self.driver.out}))

    def restore(self, checkpoint_path: str) -> None:
        raise NotImplementedError("resume a search with `gpunet search run ... --resume` (the journal "
                                  "and DIR/state.json are its state), not Tuner.restore")


def make_searcher(algorithm, metric: str = "value", mode: str = "max",
                  max_trials: Optional[int] = None) -> AskTellSearcher:
    """A Ray Tune ``Searcher`` over ``algorithm``."""
    return AskTellSearcher(algorithm, metric=metric, mode=mode, max_trials=max_trials)


# ------------------------------------------------------------------------------------ trainable

def _placement() -> Dict[str, Any]:
    """Where this trial runs, and CUDA limited to the GPUs Ray assigned it (none: CUDA hidden).

    Ray 2.60 no longer hides ``CUDA_VISIBLE_DEVICES`` from a task that asked for no GPU, and the
    trainer takes ``cuda`` when it sees one: without this every trial of a node trains on GPU 0.
    """
    import socket
    import sys

    gpu_ids = [int(g) if str(g).isdigit() else str(g) for g in ray.get_gpu_ids()]
    visible = ",".join(str(g) for g in gpu_ids)
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_initialized() and os.environ.get("CUDA_VISIBLE_DEVICES") != visible:
        raise RuntimeError(f"CUDA was initialised in this worker for GPUs {os.environ.get('CUDA_VISIBLE_DEVICES')!r}, "
                           f"but Ray assigned {visible!r} to this trial")
    os.environ["CUDA_VISIBLE_DEVICES"] = visible
    return {"node": ray.get_runtime_context().get_node_id(), "hostname": socket.gethostname(), "gpu_ids": gpu_ids,
            "started": round(time.time(), 3)}


def _epoch_reporter(placement: Dict[str, Any]):
    """The evaluator's per-epoch callback: an intermediate report, with the epoch's checkpoint."""

    def report(metrics: Dict[str, Any], checkpoint_dir: Optional[str]) -> None:
        metrics = {**placement, **{k: v for k, v in metrics.items() if v is not None}, "final": False}
        tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(checkpoint_dir) if checkpoint_dir else None)

    return report


def _count_attempt(workdir: str) -> int:
    """Record one more start of this candidate's trial; the total, across kills of its workers and heads."""
    os.makedirs(workdir, exist_ok=True)
    path = os.path.join(workdir, "attempts")
    with open(path, "a") as f:
        f.write("1")
    with open(path) as f:
        return len(f.read())


def _trial(config: Dict[str, Any], evaluator=None, parallel: Optional[Dict[str, Any]] = None) -> None:
    """The Tune trainable: evaluate one candidate, reporting (and checkpointing) every epoch.

    ``parallel`` (``num_workers``, ``use_gpu``, per-worker resources): the candidate trains
    data-parallel on one Ray actor per rank started from here, in this trial's placement group
    (:mod:`.data_parallel`); this process only coordinates them and reports.
    """
    placement = {**_placement(), "retries": _count_attempt(config["workdir"]) - 1}
    report = _epoch_reporter(placement)
    ckpt = tune.get_checkpoint()
    ctx = ckpt.as_directory() if ckpt is not None else contextlib.nullcontext(None)
    with ctx as restore_dir:
        if parallel:
            from .data_parallel import evaluate_data_parallel

            out = evaluate_data_parallel(evaluator, config["vector"], config["workdir"], report, restore_dir,
                                         **parallel)
        else:
            out = evaluator.evaluate(config["vector"], config["workdir"], report, restore_dir)
    out = {**placement, **{k: v for k, v in out.items() if v is not None}, "final": True}
    tune.report(out)


# ------------------------------------------------------------------------------------ the run

def _init_ray(settings) -> bool:
    """Start a local Ray (or join ``settings.address``) unless one is up; True if this call started it."""
    if ray.is_initialized():
        return False
    kw: Dict[str, Any] = dict(include_dashboard=False, log_to_driver=False, configure_logging=False)
    if settings.address:
        ray.init(address=settings.address, **kw)
    else:
        cpus = settings.workers * settings.cpus_per_trial * max(1, settings.workers_per_trial)
        ray.init(num_cpus=max(1, math.ceil(cpus)), **kw)
    return True


def gpus_per_trial(settings) -> float:
    """``settings.gpus_per_trial``, or by default 1 when the cluster has GPUs (else 0)."""
    if settings.gpus_per_trial is not None:
        return float(settings.gpus_per_trial)
    return 1.0 if ray.cluster_resources().get("GPU", 0) > 0 else 0.0


def _run_name(storage: str) -> str:
    """``run-N``: one Tune experiment folder per (re)start of the search under ``DIR/ray``."""
    return f"run-{len([d for d in os.listdir(storage) if d.startswith('run-')]) + 1}"


class _NotingASHA(ASHAScheduler):
    """Tune's ASHA, noting the trials it stops: the searcher journals those as results, not failures."""

    def __init__(self, stopped: set, **kw):
        super().__init__(**kw)
        self.stopped = stopped

    def on_trial_result(self, tune_controller, trial, result: Dict) -> str:
        action = super().on_trial_result(tune_controller, trial, result)
        if action == TrialScheduler.STOP:
            self.stopped.add(trial.trial_id)
        return action


def _scheduler(settings, evaluator, stopped: set):
    """ASHA on the per-epoch validation top-1 (``--scheduler asha``), or Tune's FIFO."""
    if settings.scheduler is None:
        return None
    # a failed candidate's final report has no top-1; ASHA skips such results itself
    os.environ.setdefault("TUNE_DISABLE_STRICT_METRIC_CHECKING", "1")
    return _NotingASHA(stopped, time_attr="epoch", metric="top1", mode="max", max_t=evaluator.max_epochs,
                       grace_period=min(settings.grace_epochs, evaluator.max_epochs),
                       reduction_factor=settings.reduction_factor,
                       stop_last_trials=False)  # a candidate at max_t ends by itself, with its final report


def _resources(settings, gpus: float):
    """What Tune reserves per trial: the trial itself, or (data-parallel) a placement group of an
    empty bundle for the coordinator and one bundle per worker, all on one node; and the options
    of :func:`~gpunet.search.engine.data_parallel.evaluate_data_parallel` (None: not data-parallel)."""
    if settings.workers_per_trial <= 1:
        return {"cpu": settings.cpus_per_trial, "gpu": gpus}, None
    from .data_parallel import STRATEGY, worker_bundle

    parallel = {"num_workers": settings.workers_per_trial, "use_gpu": gpus > 0,
                "cpus_per_worker": settings.cpus_per_trial, "gpus_per_worker": gpus}
    bundle = worker_bundle(settings.cpus_per_trial, gpus)
    return tune.PlacementGroupFactory([{}] + [bundle] * settings.workers_per_trial, strategy=STRATEGY), parallel


def _make_tuner(driver, evaluator) -> tune.Tuner:
    s = driver.settings
    storage = os.path.join(driver.out, "ray")
    os.makedirs(storage, exist_ok=True)
    resources, parallel = _resources(s, gpus_per_trial(s))
    trainable = tune.with_resources(tune.with_parameters(_trial, evaluator=evaluator, parallel=parallel), resources)
    stopped: set = set()
    searcher = JournalSearcher(driver, evaluator, stopped)
    return tune.Tuner(
        trainable,
        tune_config=tune.TuneConfig(search_alg=ConcurrencyLimiter(searcher, max_concurrent=s.workers),
                                    scheduler=_scheduler(s, evaluator, stopped), num_samples=-1,
                                    reuse_actors=True),
        run_config=tune.RunConfig(
            name=_run_name(storage), storage_path=storage, verbose=0,
            failure_config=tune.FailureConfig(max_failures=s.max_retries),
            checkpoint_config=tune.CheckpointConfig(num_to_keep=2)))


def run_ray(driver, evaluator) -> None:
    """Evaluate the driver's remaining budget on Ray Tune (starting a local Ray, or joining ``address``)."""
    started = _init_ray(driver.settings)
    try:
        if driver.remaining() <= 0:
            return
        # checkpoints every epoch are the point; Tune's warning about frequent snapshots is noise here
        os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
        _make_tuner(driver, evaluator).fit()
    finally:
        if started:
            ray.shutdown()
