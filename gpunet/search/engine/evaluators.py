"""What a search trial does with one candidate vector: train it, or score it synthetically.

An evaluator is engine-agnostic: ``evaluate(vector, workdir, report, restore_dir)`` runs in a Ray
worker or in-process, calls ``report(metrics, checkpoint_dir)`` after every epoch (the Ray engine
turns that into ``tune.report(..., checkpoint=...)``; a retried trial gets the last one back as
``restore_dir``) and returns the final record: ``value`` (higher is better) or ``value: None``
with ``error`` and ``error_kind: "candidate"`` when the candidate itself failed.

Two kinds of failure, told apart here once:

- *candidate*: the network does not build or does not fit the input, its loss becomes NaN/inf
  (:class:`~gpunet.train.TrainingDiverged`), CUDA runs out of memory at the configured batch.
  Returned, never raised: the engine journals it and the algorithm learns the row is bad.
- *infrastructure*: anything else (a lost worker or node, ``OSError`` from storage, a killed
  DataLoader worker, Ray errors). Raised, so the engine retries the trial from its checkpoint;
  after the retries it is journaled apart and the row goes back to the pool (see the driver).

Evaluators are plain data (a dict of options) so they travel to workers by value.
"""
from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
import time
from typing import Any, Callable, Dict, List, Optional

from ..._checks import argument_error, non_negative, one_of, positive_int

__all__ = ["make_evaluator", "SyntheticEvaluator", "TrainEvaluator", "synthetic_value", "candidate_failure",
           "EVALUATORS"]

Report = Callable[[Dict[str, Any], Optional[str]], None]
PID_FILE = "worker.pid"


def _write_pid(workdir: str) -> None:
    """The worker's pid in the trial folder: ``gpunet search status`` and the kill tests read it."""
    from ..._io import atomic_write_text

    atomic_write_text(os.path.join(workdir, PID_FILE), f"{os.getpid()}\n")


def candidate_failure(error: str, **facts) -> Dict[str, Any]:
    """The result of a candidate that failed by itself (told to the algorithm as a bad row)."""
    return {"value": None, "error": error[:500], "error_kind": "candidate", **facts}


def _one_line(e: BaseException) -> str:
    msg = str(e).splitlines()[0] if str(e) else ""
    return f"{type(e).__name__}: {msg}"


def _hashed_share(vector, salt: str) -> float:
    """A number in [0, 1] fixed by the vector (and ``salt``): which candidates a rate picks."""
    from .journal import candidate_id

    return int(candidate_id([*vector, *salt.encode()])[:8], 16) / 0xFFFFFFFF


def synthetic_value(vector) -> float:
    """A deterministic stand-in for top-1 (percent), for demos and tests of the engine.

    ``s = mean(log1p(|v_i|))`` over the 41 genes and ``r = sin(sum((i + 1) * v_i))``;
    ``value = 100 * (1 - exp(-s / 3)) + 2 * r``: rises with width, depth and resolution with
    diminishing returns, plus a small ripple so near neighbours differ.
    """
    v = [float(a) for a in vector]
    s = sum(math.log1p(abs(a)) for a in v) / len(v)
    r = math.sin(sum((i + 1) * a for i, a in enumerate(v)))
    return round(100.0 * (1.0 - math.exp(-s / 3.0)) + 2.0 * r, 6)


class SyntheticEvaluator:
    """``synthetic_value`` after ``eval_seconds`` spent in ``steps`` checkpointed steps.

    Rates pick candidates by a hash of the vector (deterministic), to exercise the failure
    accounting end to end: ``fail_rate`` candidates fail by themselves (a candidate failure),
    ``infra_fail_rate`` ones raise ``OSError`` on every attempt (an infrastructure failure the
    engine retries, then gives back to the pool), ``flaky_rate`` ones raise ``OSError`` on their
    first attempt only (a retry succeeds).
    """

    name = "synthetic"

    def __init__(self, eval_seconds: float = 0.0, steps: int = 4, fail_rate: float = 0.0,
                 infra_fail_rate: float = 0.0, flaky_rate: float = 0.0):
        non_negative(eval_seconds, "eval_seconds")
        for name, rate in (("fail_rate", fail_rate), ("infra_fail_rate", infra_fail_rate),
                           ("flaky_rate", flaky_rate)):
            if not 0.0 <= rate <= 1.0:
                raise argument_error(name, f"{name} must be in [0, 1], got {rate}")
        self.eval_seconds, self.fail_rate = float(eval_seconds), float(fail_rate)
        self.infra_fail_rate, self.flaky_rate = float(infra_fail_rate), float(flaky_rate)
        self.steps = positive_int(steps, "steps")

    def options(self) -> Dict[str, Any]:
        opts = {"eval_seconds": self.eval_seconds, "steps": self.steps, "fail_rate": self.fail_rate}
        if self.infra_fail_rate or self.flaky_rate:  # older search.json files stay comparable
            opts.update(infra_fail_rate=self.infra_fail_rate, flaky_rate=self.flaky_rate)
        return opts

    def fails(self, vector) -> bool:
        from .journal import candidate_id

        return int(candidate_id(vector)[:8], 16) / 0xFFFFFFFF < self.fail_rate

    def _infrastructure(self, vector, workdir: str) -> None:
        """Raise the injected infrastructure failure of this candidate, if it has one."""
        if _hashed_share(vector, "infra") < self.infra_fail_rate:
            raise OSError(f"synthetic infrastructure failure (infra_fail_rate) in {workdir}")
        marker = os.path.join(workdir, "flaked")
        if _hashed_share(vector, "flaky") < self.flaky_rate and not os.path.exists(marker):
            open(marker, "w").close()
            raise OSError(f"synthetic transient failure (flaky_rate) in {workdir}")

    def evaluate(self, vector, workdir: str, report: Report, restore_dir: Optional[str] = None) -> Dict[str, Any]:
        os.makedirs(workdir, exist_ok=True)
        _write_pid(workdir)
        start = 0
        if restore_dir and os.path.exists(os.path.join(restore_dir, "step.json")):
            with open(os.path.join(restore_dir, "step.json")) as f:
                start = int(json.load(f)["step"])
        self._infrastructure(vector, workdir)
        value = synthetic_value(vector)
        for step in range(start, self.steps):
            time.sleep(self.eval_seconds / self.steps)
            with tempfile.TemporaryDirectory(dir=workdir) as ck:
                with open(os.path.join(ck, "step.json"), "w") as f:
                    json.dump({"step": step + 1}, f)
                partial = value * (step + 1) / self.steps
                report({"epoch": step + 1, "top1": partial, "value": partial}, ck)
        if self.fails(vector):
            return candidate_failure("synthetic failure (fail_rate)", resumed_from=start)
        return {"value": value, "resumed_from": start, "epochs": self.steps}

    @property
    def max_epochs(self) -> int:
        return self.steps

    def stopped_record(self, workdir: str, last: Dict[str, Any]) -> Dict[str, Any]:
        """The result of a candidate a scheduler stopped after ``last`` (its last epoch's report)."""
        return {"value": last.get("value"), "epochs": int(last["epoch"]), "stopped_early": True}


class TrainEvaluator:
    """Decode the vector, train it with :func:`gpunet.train` on an ImageFolder, value = best val top-1.

    Each candidate trains in ``workdir/train`` (``last.pth.tar`` every epoch, ``best.pth.tar``
    holding the weights that scored ``value``); a retried trial resumes from its last epoch.
    """

    name = "train"

    def __init__(self, data_dir: str, epochs: int, space_json: str, img_size: Optional[int] = None,
                 train_config: Optional[str] = None, early_stop_patience: Optional[int] = None,
                 seed: int = 0):
        if not data_dir or not os.path.isdir(data_dir):
            raise argument_error("data_dir", f"data_dir: {data_dir!r} is not a folder (an ImageFolder with train/ "
                                             f"and val/)")
        positive_int(epochs, "epochs")
        self.data_dir = os.path.abspath(data_dir)
        self.epochs, self.img_size, self.seed = int(epochs), img_size, int(seed)
        self.train_config = os.path.abspath(train_config) if train_config else None
        self.early_stop_patience = early_stop_patience
        self.space_json = space_json
        self.config(os.path.join(tempfile.gettempdir(), "unused"), "spec.json")  # a bad YAML fails here, once

    def options(self) -> Dict[str, Any]:
        return {"data_dir": self.data_dir, "epochs": self.epochs, "img_size": self.img_size,
                "train_config": self.train_config, "early_stop_patience": self.early_stop_patience,
                "seed": self.seed}

    def config(self, output: str, spec_path: str):
        from ...train import resolve_config

        return resolve_config(config_file=self.train_config, overrides=dict(
            model=spec_path, data_dir=self.data_dir, epochs=self.epochs, img_size=self.img_size,
            early_stop_patience=self.early_stop_patience, output=output, resume="auto", seed=self.seed,
            log_interval=0))

    def evaluate(self, vector, workdir: str, report: Report, restore_dir: Optional[str] = None) -> Dict[str, Any]:
        from ...train import TrainingDiverged, train
        from ...train.trainer import LAST_CHECKPOINT

        os.makedirs(workdir, exist_ok=True)
        _write_pid(workdir)
        out = os.path.join(workdir, "train")
        resumed_from = _restore(out, restore_dir)
        spec_path, unfit = self._write_spec(vector, workdir)
        if unfit:
            return candidate_failure(unfit, resumed_from=resumed_from)
        cfg = self.config(out, spec_path)
        t0 = time.time()
        try:
            result = train(cfg, callback=_epoch_reporter(report, workdir, os.path.join(out, LAST_CHECKPOINT)))
        except TrainingDiverged as e:
            return candidate_failure(_one_line(e), resumed_from=resumed_from)
        except Exception as e:
            if _out_of_memory(e):
                return candidate_failure(f"{_one_line(e)} (at batch size {cfg.batch_size})",
                                         resumed_from=resumed_from)
            raise  # infrastructure: the engine retries from the last checkpoint
        if result.best_metric is None or result.best_checkpoint is None:
            return candidate_failure("training produced no validation top-1 (no val split?)",
                                     resumed_from=resumed_from)
        return self._record(result, cfg, resumed_from, time.time() - t0)

    @property
    def max_epochs(self) -> int:
        return self.epochs

    def stopped_record(self, workdir: str, last: Dict[str, Any]) -> Dict[str, Any]:
        """The result of a candidate a scheduler stopped after ``last`` (its last epoch's report):
        the best epoch's checkpoint so far, with the facts a finished training records."""
        from ...checkpoint import read_checkpoint
        from ...train.trainer import BEST_CHECKPOINT

        best = os.path.join(workdir, "train", BEST_CHECKPOINT)
        if not os.path.exists(best):
            return {"value": None, "error": f"stopped after epoch {last.get('epoch')} without a best checkpoint",
                    "error_kind": "candidate", "epochs": last.get("epoch"), "stopped_early": True}
        ck = read_checkpoint(best)
        cfg = self.config(os.path.join(workdir, "train"), os.path.join(workdir, "spec.json"))
        return {"value": float(ck["best_metric"]), "checkpoint": os.path.abspath(best),
                "best_epoch": ck.get("best_epoch"), "epochs": int(last["epoch"]), "stopped_early": True,
                "img_size": ck.get("img_size"), "num_classes": ck.get("num_classes"), "crop_pct": cfg.crop_pct,
                "interpolation": cfg.interpolation, "dataset": os.path.basename(self.data_dir.rstrip(os.sep)),
                "data_dir": self.data_dir}

    def _write_spec(self, vector, workdir: str):
        """``(spec.json path, None)``, or ``(None, why)`` when the network does not build or fit the input."""
        from ..._io import atomic_write_text
        from ..space import SearchSpace

        try:
            spec = SearchSpace.from_dict(json.loads(self.space_json)).decode(vector)
            _check_fits(spec, self.img_size or spec.resolution)
        except Exception as e:  # a bad network: no retry can fix it
            return None, f"the network does not build or does not fit the input: {_one_line(e)}"
        spec_path = os.path.join(workdir, "spec.json")
        atomic_write_text(spec_path, json.dumps(spec.to_dict(), indent=1) + "\n")
        return spec_path, None

    def _record(self, result, cfg, resumed_from: Optional[int], seconds: float) -> Dict[str, Any]:
        """The journal facts of a finished training (what the winners' export needs)."""
        from ...checkpoint import read_checkpoint

        best = result.best_checkpoint
        ck = read_checkpoint(best)
        return {"value": float(result.best_metric), "checkpoint": os.path.abspath(best),
                "best_epoch": result.best_epoch, "epochs": result.epochs_run + (resumed_from or 0),
                "stopped_early": result.stopped_early, "img_size": ck.get("img_size"),
                "num_classes": ck.get("num_classes"), "crop_pct": cfg.crop_pct, "interpolation": cfg.interpolation,
                "dataset": os.path.basename(self.data_dir.rstrip(os.sep)), "data_dir": self.data_dir,
                "recipe": cfg.recipe, "recipe_epochs": _recipe_epochs(cfg.recipe),
                "train_seconds": round(seconds, 3), "resumed_from": resumed_from}


def _recipe_epochs(recipe: Optional[str]) -> int:
    """The full training's length: the named recipe's epochs, else the paper's (the hub's figures)."""
    from ...train.recipes import RECIPES

    return int(RECIPES[recipe or "paper"]["epochs"])


def _restore(out: str, restore_dir: Optional[str]) -> Optional[int]:
    """Bring the engine's checkpoint into ``out`` if storage is not shared; the epoch a resume starts at."""
    from ...train.trainer import BEST_CHECKPOINT, LAST_CHECKPOINT

    os.makedirs(out, exist_ok=True)
    last = os.path.join(out, LAST_CHECKPOINT)
    if restore_dir and not os.path.exists(last):
        for name in (LAST_CHECKPOINT, BEST_CHECKPOINT):
            if os.path.exists(os.path.join(restore_dir, name)):
                shutil.copy2(os.path.join(restore_dir, name), os.path.join(out, name))
    if not os.path.exists(last):
        return None
    from ...checkpoint import read_checkpoint

    return int(read_checkpoint(last)["epoch"]) + 1


def _check_fits(spec, img_size: int) -> None:
    """Build the network and run one image of ``img_size`` through it (on the CPU, no gradients)."""
    import torch

    from ...model import build_model

    model = build_model(spec).eval()
    with torch.no_grad():
        model(torch.zeros(1, 3, int(img_size), int(img_size)))


def _out_of_memory(e: BaseException) -> bool:
    """CUDA out of memory at the configured batch: the candidate is too big for the recipe."""
    import torch

    return isinstance(e, torch.OutOfMemoryError)


def _resume_files(last: str) -> List[str]:
    """``last.pth.tar``, plus ``best.pth.tar`` beside it when that is not newer than ``last``."""
    from ...train.trainer import BEST_CHECKPOINT

    best = os.path.join(os.path.dirname(last), BEST_CHECKPOINT)
    if os.path.exists(best) and os.stat(best).st_mtime_ns <= os.stat(last).st_mtime_ns:
        return [last, best]
    return [last]


def _epoch_reporter(report: Report, workdir: str, last: str):
    """The trainer's per-epoch callback: report top-1 with the checkpoint a retry resumes from."""

    def per_epoch(stats) -> bool:
        # last.pth.tar still holds the previous epoch here; it is the point a retry resumes from.
        # best.pth.tar travels with it when it is not newer (a retry on another node that never beats
        # it still has its weights; a best of this very epoch is rewritten by the retry's rerun)
        ck = None
        if os.path.exists(last):
            ck = tempfile.mkdtemp(dir=workdir, prefix=".report-")
            for path in _resume_files(last):
                shutil.copy2(path, os.path.join(ck, os.path.basename(path)))
        try:
            report({"epoch": stats.epoch + 1, "top1": stats.metric, "value": stats.best_metric}, ck)
        finally:
            if ck:
                shutil.rmtree(ck, ignore_errors=True)
        return False

    return per_epoch


EVALUATORS = ("train", "synthetic")


def make_evaluator(kind: str, options: Dict[str, Any], space_json: Optional[str] = None):
    """An evaluator from its name and options (as saved in the search's settings)."""
    if kind == "synthetic":
        return SyntheticEvaluator(**options)
    if kind == "train":
        return TrainEvaluator(space_json=space_json, **options)
    one_of(kind, EVALUATORS, "evaluator")
