"""What a search trial does with one candidate vector: train it, or score it synthetically.

An evaluator is engine-agnostic: ``evaluate(vector, workdir, report, restore_dir)`` runs in a Ray
worker or in-process, calls ``report(metrics, checkpoint_dir)`` after every epoch (the Ray engine
turns that into ``tune.report(..., checkpoint=...)``; a retried trial gets the last one back as
``restore_dir``) and returns the final record: ``value`` (higher is better) or ``value: None``
with ``error`` when the candidate itself failed (NaN loss, out of memory). Failures of the
candidate are returned, not raised, so the engine never retries them; only a lost worker is retried.

Evaluators are plain data (a dict of options) so they travel to workers by value.
"""
from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
import time
from typing import Any, Callable, Dict, Optional

from ..._checks import argument_error, non_negative, one_of, positive_int

__all__ = ["make_evaluator", "SyntheticEvaluator", "TrainEvaluator", "synthetic_value", "EVALUATORS"]

Report = Callable[[Dict[str, Any], Optional[str]], None]
PID_FILE = "worker.pid"


def _write_pid(workdir: str) -> None:
    """The worker's pid in the trial folder: ``gpunet search status`` and the kill tests read it."""
    from ..._io import atomic_write_text

    atomic_write_text(os.path.join(workdir, PID_FILE), f"{os.getpid()}\n")


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

    ``fail_rate`` (default 0) makes that share of candidates (chosen by a hash of the vector,
    deterministic) fail with an error, to exercise failure accounting end to end.
    """

    name = "synthetic"

    def __init__(self, eval_seconds: float = 0.0, steps: int = 4, fail_rate: float = 0.0):
        non_negative(eval_seconds, "eval_seconds")
        if not 0.0 <= fail_rate <= 1.0:
            raise argument_error("fail_rate", f"fail_rate must be in [0, 1], got {fail_rate}")
        self.eval_seconds, self.fail_rate = float(eval_seconds), float(fail_rate)
        self.steps = positive_int(steps, "steps")

    def options(self) -> Dict[str, Any]:
        return {"eval_seconds": self.eval_seconds, "steps": self.steps, "fail_rate": self.fail_rate}

    def fails(self, vector) -> bool:
        from .journal import candidate_id

        return int(candidate_id(vector)[:8], 16) / 0xFFFFFFFF < self.fail_rate

    def evaluate(self, vector, workdir: str, report: Report, restore_dir: Optional[str] = None) -> Dict[str, Any]:
        os.makedirs(workdir, exist_ok=True)
        _write_pid(workdir)
        start = 0
        if restore_dir and os.path.exists(os.path.join(restore_dir, "step.json")):
            with open(os.path.join(restore_dir, "step.json")) as f:
                start = int(json.load(f)["step"])
        value = synthetic_value(vector)
        for step in range(start, self.steps):
            time.sleep(self.eval_seconds / self.steps)
            with tempfile.TemporaryDirectory(dir=workdir) as ck:
                with open(os.path.join(ck, "step.json"), "w") as f:
                    json.dump({"step": step + 1}, f)
                partial = value * (step + 1) / self.steps
                report({"epoch": step + 1, "value": partial}, ck)
        if self.fails(vector):
            return {"value": None, "error": "synthetic failure (fail_rate)", "resumed_from": start}
        return {"value": value, "resumed_from": start, "epochs": self.steps}


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
        from ..._io import atomic_write_text
        from ...train import train
        from ...train.trainer import BEST_CHECKPOINT, LAST_CHECKPOINT
        from ..space import SearchSpace

        os.makedirs(workdir, exist_ok=True)
        _write_pid(workdir)
        out = os.path.join(workdir, "train")
        os.makedirs(out, exist_ok=True)
        last = os.path.join(out, LAST_CHECKPOINT)
        resumed_from = None
        if restore_dir and not os.path.exists(last):  # storage not shared: the engine kept the epoch
            for name in (LAST_CHECKPOINT, BEST_CHECKPOINT):
                if os.path.exists(os.path.join(restore_dir, name)):
                    shutil.copy2(os.path.join(restore_dir, name), os.path.join(out, name))
        if os.path.exists(last):
            from ...checkpoint import read_checkpoint

            resumed_from = int(read_checkpoint(last)["epoch"]) + 1
        spec = SearchSpace.from_dict(json.loads(self.space_json)).decode(vector)
        spec_path = os.path.join(workdir, "spec.json")
        atomic_write_text(spec_path, json.dumps(spec.to_dict(), indent=1) + "\n")
        cfg = self.config(out, spec_path)
        t0 = time.time()

        def per_epoch(stats) -> bool:
            # last.pth.tar still holds the previous epoch here; it is the point a retry resumes from
            ck = None
            if os.path.exists(last):
                ck = tempfile.mkdtemp(dir=workdir, prefix=".report-")
                shutil.copy2(last, os.path.join(ck, LAST_CHECKPOINT))
            try:
                report({"epoch": stats.epoch + 1, "top1": stats.metric, "value": stats.best_metric}, ck)
            finally:
                if ck:
                    shutil.rmtree(ck, ignore_errors=True)
            return False

        try:
            result = train(cfg, callback=per_epoch)
        except Exception as e:  # the candidate's own failure (NaN loss, OOM, bad shape): told, not retried
            msg = str(e).splitlines()[0] if str(e) else ""
            return {"value": None, "error": f"{type(e).__name__}: {msg}"[:500], "resumed_from": resumed_from}
        best = result.best_checkpoint
        if result.best_metric is None or best is None:
            return {"value": None, "error": "training produced no validation top-1 (no val split?)",
                    "resumed_from": resumed_from}
        from ...checkpoint import read_checkpoint

        ck = read_checkpoint(best)
        return {"value": float(result.best_metric), "checkpoint": os.path.abspath(best),
                "best_epoch": result.best_epoch, "epochs": result.epochs_run + (resumed_from or 0),
                "stopped_early": result.stopped_early, "img_size": ck.get("img_size"),
                "num_classes": ck.get("num_classes"), "crop_pct": cfg.crop_pct, "interpolation": cfg.interpolation,
                "dataset": os.path.basename(self.data_dir.rstrip(os.sep)), "data_dir": self.data_dir,
                "train_seconds": round(time.time() - t0, 3), "resumed_from": resumed_from}


EVALUATORS = ("train", "synthetic")


def make_evaluator(kind: str, options: Dict[str, Any], space_json: Optional[str] = None):
    """An evaluator from its name and options (as saved in the search's settings)."""
    if kind == "synthetic":
        return SyntheticEvaluator(**options)
    if kind == "train":
        return TrainEvaluator(space_json=space_json, **options)
    one_of(kind, EVALUATORS, "evaluator")
