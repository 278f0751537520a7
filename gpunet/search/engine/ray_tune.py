"""The search on Ray Tune: a ``Searcher`` around the ask/tell algorithms, one trial per candidate.

- :class:`AskTellSearcher` adapts any :class:`~gpunet.search.algorithms.SearchAlgorithm` to Ray
  Tune (``suggest`` = ``ask``, ``on_trial_complete`` = ``tell``, ``save`` / ``restore`` = the
  algorithm's JSON state dict plus the trials in flight); usable on its own with ``tune.Tuner``.
- :func:`run_ray` runs a :class:`~gpunet.search.runner.SearchDriver` on it: the journal is
  written when a trial completes, ``ConcurrencyLimiter(max_concurrent=workers)``,
  ``tune.with_resources`` per trial, ``FailureConfig(max_failures)`` so a trial whose worker died
  is retried from the checkpoint it last passed to ``tune.report``.

Ray is imported inside functions only.
"""
from __future__ import annotations

import json
import math
import os
import time
from typing import Any, Dict, Optional

import numpy as np

__all__ = ["AskTellSearcher", "run_ray", "make_searcher"]


def _searcher_base():
    from ray.tune.search import Searcher

    return Searcher


def make_searcher(algorithm, metric: str = "value", mode: str = "max", max_trials: Optional[int] = None):
    """A Ray Tune ``Searcher`` over ``algorithm`` (built lazily so Ray loads only when used)."""
    return _searcher_class()(algorithm, metric=metric, mode=mode, max_trials=max_trials)


_CLASSES: Dict[str, type] = {}


def _searcher_class():
    if "AskTellSearcher" in _CLASSES:
        return _CLASSES["AskTellSearcher"]
    Searcher = _searcher_base()

    class AskTellSearcher(Searcher):
        """Ray Tune ``Searcher`` over an ask/tell algorithm; configs are ``{"vector": [41 ints]}``.

        A trial that errors (or ends without ``metric``) is told as a failure (``tell(x, None)``).
        ``mode="min"`` negates the metric, since the algorithms maximise.
        """

        def __init__(self, algorithm, metric: str = "value", mode: str = "max", max_trials: Optional[int] = None):
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
            if x is None:
                return
            value = None if error or not result else result.get(self.metric)
            if value is not None and self.mode == "min":
                value = -value
            self.algorithm.tell(np.asarray(x), None if value is None or not math.isfinite(value) else value)

        def get_state(self) -> Dict[str, Any]:
            return {"algorithm": self.algorithm.state_dict(), "live": self.live, "suggested": self.suggested,
                    "max_trials": self.max_trials}

        def set_state(self, state: Dict[str, Any]) -> None:
            self.algorithm.load_state_dict(state["algorithm"])
            self.live, self.suggested = dict(state["live"]), int(state["suggested"])
            self.max_trials = state["max_trials"]

        def save(self, checkpoint_path: str) -> None:
            from ..._io import atomic_write_text

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
            if error:
                out = {"value": None, "error": f"trial failed {self.driver.settings.max_retries + 1} time(s) "
                                               f"(worker lost or crashed); retries exhausted"}
            elif not result or not result.get("final"):
                out = {"value": None, "error": "trial ended without a final result"}
            else:
                out = {k: v for k, v in result.items() if k in _RESULT_KEYS}
            self.driver.complete(c, out, trial_id, seconds)

        def save(self, checkpoint_path: str) -> None:
            from ..._io import atomic_write_text

            self.driver._save_state()
            atomic_write_text(checkpoint_path, json.dumps({"out": self.driver.out}))

        def restore(self, checkpoint_path: str) -> None:
            raise NotImplementedError("resume a search with `gpunet search run ... --resume` (the journal "
                                      "and DIR/state.json are its state), not Tuner.restore")

    _CLASSES["AskTellSearcher"] = AskTellSearcher
    _CLASSES["JournalSearcher"] = JournalSearcher
    return AskTellSearcher


def __getattr__(name: str):
    if name == "AskTellSearcher":
        return _searcher_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# what a trial's final report may carry into the journal
_RESULT_KEYS = ("value", "error", "checkpoint", "best_epoch", "epochs", "stopped_early", "img_size", "num_classes",
                "crop_pct", "interpolation", "dataset", "data_dir", "train_seconds", "resumed_from", "retries")


def _trial(config: Dict[str, Any], evaluator=None) -> None:
    """The Tune trainable: evaluate one candidate, reporting (and checkpointing) every epoch."""
    import contextlib

    from ray import tune

    ckpt = tune.get_checkpoint()
    ctx = ckpt.as_directory() if ckpt is not None else contextlib.nullcontext(None)

    def report(metrics: Dict[str, Any], checkpoint_dir: Optional[str]) -> None:
        metrics = {k: v for k, v in metrics.items() if v is not None}
        metrics["final"] = False
        tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(checkpoint_dir) if checkpoint_dir else None)

    with ctx as restore_dir:
        out = evaluator.evaluate(config["vector"], config["workdir"], report, restore_dir)
    out = {k: v for k, v in out.items() if v is not None}
    out["retries"] = 0 if restore_dir is None else 1
    if restore_dir is not None:  # count every restart, across kills of the retried worker too
        path = os.path.join(config["workdir"], "restarts")
        with open(path, "a") as f:
            f.write("1")
        with open(path) as f:
            out["retries"] = len(f.read())
    out["final"] = True
    tune.report(out)


def run_ray(driver, evaluator) -> None:
    """Evaluate the driver's remaining budget on Ray Tune (starting a local Ray, or joining ``address``)."""
    import ray
    from ray import tune
    from ray.tune.search import ConcurrencyLimiter

    s = driver.settings
    started = False
    if not ray.is_initialized():
        kw: Dict[str, Any] = dict(include_dashboard=False, log_to_driver=False, configure_logging=False)
        if s.address:
            ray.init(address=s.address, **kw)
        else:
            ray.init(num_cpus=max(1, math.ceil(s.workers * s.cpus_per_trial)), **kw)
        started = True
    try:
        remaining = driver.remaining()
        if remaining <= 0:
            return
        # checkpoints every epoch are the point; Tune's warning about frequent snapshots is noise here
        os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
        _searcher_class()
        searcher = _CLASSES["JournalSearcher"](driver)
        storage = os.path.join(driver.out, "ray")
        os.makedirs(storage, exist_ok=True)
        name = f"run-{len([d for d in os.listdir(storage) if d.startswith('run-')]) + 1}"
        resources = {"cpu": s.cpus_per_trial, "gpu": s.gpus_per_trial}
        trainable = tune.with_resources(tune.with_parameters(_trial, evaluator=evaluator), resources)
        tuner = tune.Tuner(
            trainable,
            tune_config=tune.TuneConfig(search_alg=ConcurrencyLimiter(searcher, max_concurrent=s.workers),
                                        num_samples=remaining, reuse_actors=True),
            run_config=tune.RunConfig(
                name=name, storage_path=storage, verbose=0,
                failure_config=tune.FailureConfig(max_failures=s.max_retries),
                checkpoint_config=tune.CheckpointConfig(num_to_keep=2)))
        tuner.fit()
    finally:
        if started:
            ray.shutdown()
