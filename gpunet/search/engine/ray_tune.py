"""The search on Ray Tune: a ``Searcher`` around the ask/tell algorithms, one trial per candidate.

- :class:`AskTellSearcher` adapts any :class:`~gpunet.search.engine.algorithms.SearchAlgorithm` to Ray
  Tune (``suggest`` = ``ask``, ``on_trial_complete`` = ``tell``, ``save`` / ``restore`` = the
  algorithm's JSON state dict plus the trials in flight); usable on its own with ``tune.Tuner``.
- :class:`JournalSearcher` is the searcher of a search run: candidates come from the
  :class:`~gpunet.search.engine.driver.SearchDriver`, results go to its journal.
- :func:`run_ray` runs a driver on it: the journal is written when a trial completes,
  ``ConcurrencyLimiter(max_concurrent=workers)``, ``tune.with_resources`` per trial,
  ``FailureConfig(max_failures)`` so a trial whose worker died is retried from the checkpoint it
  last passed to ``tune.report``.

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
from ray.tune.search import ConcurrencyLimiter, Searcher

from ..._io import atomic_write_text

__all__ = ["AskTellSearcher", "JournalSearcher", "run_ray", "make_searcher"]

# what a trial's final report may carry into the journal
_RESULT_KEYS = ("value", "error", "checkpoint", "best_epoch", "epochs", "stopped_early", "img_size", "num_classes",
                "crop_pct", "interpolation", "dataset", "data_dir", "train_seconds", "resumed_from", "retries")


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
    """The search run's searcher: candidates come from the driver (re-dispatch first, budget),
    results go to the journal before the algorithm hears them."""

    def __init__(self, driver):
        # no Tune metric: Tune would demand it in every report, and a failed candidate has none
        super().__init__(driver.algo, metric=None, mode=None, max_trials=driver.settings.budget)
        self.driver = driver
        self.candidates: Dict[str, Any] = {}
        self.started: Dict[str, float] = {}

    def suggest(self, trial_id: str) -> Optional[Dict[str, Any]]:
        c = self.driver.next_candidate()
        if c is None:
            return Searcher.FINISHED
        self.candidates[trial_id] = c
        self.started[trial_id] = time.time()
        return {"vector": c.vector, "candidate_id": c.candidate_id, "workdir": self.driver.trial_dir(c)}

    def on_trial_complete(self, trial_id: str, result: Optional[Dict] = None, error: bool = False) -> None:
        c = self.candidates.pop(trial_id, None)
        if c is None:
            return
        seconds = time.time() - self.started.pop(trial_id, time.time())
        self.driver.complete(c, self._outcome(result, error), trial_id, seconds)

    def _outcome(self, result: Optional[Dict], error: bool) -> Dict[str, Any]:
        """The journal fields of a finished trial: its final report, or why there is none."""
        if error:
            return {"value": None, "error": f"trial failed {self.driver.settings.max_retries + 1} time(s) "
                                            f"(worker lost or crashed); retries exhausted"}
        if not result or not result.get("final"):
            return {"value": None, "error": "trial ended without a final result"}
        return {k: v for k, v in result.items() if k in _RESULT_KEYS}

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

def _report_epoch(metrics: Dict[str, Any], checkpoint_dir: Optional[str]) -> None:
    """The evaluator's per-epoch callback: an intermediate report, with the epoch's checkpoint."""
    metrics = {k: v for k, v in metrics.items() if v is not None}
    metrics["final"] = False
    tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(checkpoint_dir) if checkpoint_dir else None)


def _count_restart(workdir: str) -> int:
    """Record one more restart of this trial; the total, across kills of the retried worker too."""
    path = os.path.join(workdir, "restarts")
    with open(path, "a") as f:
        f.write("1")
    with open(path) as f:
        return len(f.read())


def _trial(config: Dict[str, Any], evaluator=None) -> None:
    """The Tune trainable: evaluate one candidate, reporting (and checkpointing) every epoch."""
    ckpt = tune.get_checkpoint()
    ctx = ckpt.as_directory() if ckpt is not None else contextlib.nullcontext(None)
    with ctx as restore_dir:
        out = evaluator.evaluate(config["vector"], config["workdir"], _report_epoch, restore_dir)
    out = {k: v for k, v in out.items() if v is not None}
    out["retries"] = 0 if restore_dir is None else _count_restart(config["workdir"])
    out["final"] = True
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
        ray.init(num_cpus=max(1, math.ceil(settings.workers * settings.cpus_per_trial)), **kw)
    return True


def _run_name(storage: str) -> str:
    """``run-N``: one Tune experiment folder per (re)start of the search under ``DIR/ray``."""
    return f"run-{len([d for d in os.listdir(storage) if d.startswith('run-')]) + 1}"


def _make_tuner(driver, evaluator, num_samples: int) -> tune.Tuner:
    s = driver.settings
    storage = os.path.join(driver.out, "ray")
    os.makedirs(storage, exist_ok=True)
    resources = {"cpu": s.cpus_per_trial, "gpu": s.gpus_per_trial}
    trainable = tune.with_resources(tune.with_parameters(_trial, evaluator=evaluator), resources)
    return tune.Tuner(
        trainable,
        tune_config=tune.TuneConfig(search_alg=ConcurrencyLimiter(JournalSearcher(driver), max_concurrent=s.workers),
                                    num_samples=num_samples, reuse_actors=True),
        run_config=tune.RunConfig(
            name=_run_name(storage), storage_path=storage, verbose=0,
            failure_config=tune.FailureConfig(max_failures=s.max_retries),
            checkpoint_config=tune.CheckpointConfig(num_to_keep=2)))


def run_ray(driver, evaluator) -> None:
    """Evaluate the driver's remaining budget on Ray Tune (starting a local Ray, or joining ``address``)."""
    started = _init_ray(driver.settings)
    try:
        remaining = driver.remaining()
        if remaining <= 0:
            return
        # checkpoints every epoch are the point; Tune's warning about frequent snapshots is noise here
        os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
        _make_tuner(driver, evaluator, remaining).fit()
    finally:
        if started:
            ray.shutdown()
