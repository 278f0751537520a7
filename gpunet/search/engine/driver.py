"""One search run: settings, candidate set, the bookkeeping shared by both engines, resume.

``run_search(settings)`` owns ``DIR``::

    DIR/search.json          the settings (a resumed run must match them)
    DIR/space.json           the search space of the pool (decoding and export need it)
    DIR/results.jsonl        the journal: the truth (see :mod:`gpunet.search.engine.journal`)
    DIR/state.json           the algorithm's state dict (told rows, rows in flight, random stream)
    DIR/trials/<id>/         one folder per candidate: its checkpoints, spec, worker pid

Order of writes when a trial ends: journal line first, then ``tell`` and the state file. A head
killed between the two loses nothing: on resume every journal line the state lacks is told, and
rows in flight in the state without a journal line are dispatched again (into the same trial
folder, so a training candidate resumes from its last epoch).
"""
from __future__ import annotations

import dataclasses
import json
import os
import time
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

from ..._checks import ArgumentError, argument_error, one_of, positive_int
from ...errors import GPUNetError
from ..pool import Pool
from .journal import JOURNAL_NAME, Journal, candidate_id

__all__ = ["SearchSettings", "SearchRunError", "SearchDriver", "load_candidates", "read_settings", "run_search",
           "search_status", "ALGORITHMS"]

ALGORITHMS = {"lamcts": "LaMCTS", "tpe": "TPESearch", "random": "RandomSearch"}
SETTINGS_NAME, STATE_NAME, SPACE_NAME = "search.json", "state.json", "space.json"
# settings that define the search: a resume must repeat them
_IDENTITY = ("pool_sha256", "group", "latency_ms", "evaluator", "evaluator_options", "algorithm", "budget", "seed")


class SearchRunError(GPUNetError, ValueError):
    """Bad search arguments, or a resume whose arguments differ from the original run."""


@dataclass
class SearchSettings:
    pool: str
    out: str
    evaluator: str = "synthetic"
    algorithm: str = "random"
    budget: int = 10
    workers: int = 1
    group: Optional[int] = None
    latency_ms: Optional[Tuple[float, float]] = None
    gpus_per_trial: float = 0.0
    cpus_per_trial: float = 1.0
    engine: str = "ray"
    address: Optional[str] = None
    seed: int = 0
    max_retries: int = 3
    evaluator_options: Dict[str, Any] = field(default_factory=dict)
    pool_sha256: str = ""

    def to_dict(self) -> Dict[str, Any]:
        d = dataclasses.asdict(self)
        d["latency_ms"] = list(self.latency_ms) if self.latency_ms else None
        return d


def _sha256(path: str) -> str:
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def load_candidates(settings: SearchSettings) -> Pool:
    """The part of the pool the settings select (``group`` or ``latency_ms``, else all of it)."""
    pool = Pool.load(settings.pool)
    if settings.group is not None and settings.latency_ms is not None:
        raise argument_error("group", "group and latency_ms select the candidates two ways: pass one",
                             SearchRunError)
    if settings.group is not None:
        return _selected(lambda: pool.group(settings.group), "group", f"group {settings.group}")
    if settings.latency_ms is not None:
        lo, hi = settings.latency_ms
        return _selected(lambda: pool.latency_range(lo, hi), "latency_ms", f"latency_ms {lo}:{hi}")
    return pool


def _selected(select, argument: str, what: str) -> Pool:
    """``select()``, its error restated for the search's own argument (``group``, ``latency_ms``)."""
    try:
        return select()
    except ArgumentError as e:
        reason = str(e).split(": ", 1)[-1]
        raise argument_error(argument, f"{what}: {reason}", SearchRunError) from None


def _make_algorithm(name: str, vectors: np.ndarray, seed: int, width: int):
    from . import algorithms

    one_of(name, ALGORITHMS, "algorithm", SearchRunError)
    try:
        cls = getattr(algorithms, ALGORITHMS[name])
    except (AttributeError, ImportError) as e:
        raise argument_error("algorithm", f"algorithm {name}: not available in this installation ({e})",
                             SearchRunError) from None
    return cls(vectors, seed=seed, width=width)


@dataclass
class Candidate:
    vector: List[int]
    candidate_id: str
    latency_ms: Optional[float]


class SearchDriver:
    """Engine-agnostic bookkeeping: what to evaluate next, and recording what finished."""

    def __init__(self, settings: SearchSettings, resume: bool = False):
        self.settings = settings
        self.out = os.path.abspath(settings.out)
        self.pool = load_candidates(settings)
        self.vectors, self.space_json = self.pool.vectors, self.pool.space.to_json().rstrip("\n")
        self.latency = {candidate_id(v): (float(lt) if np.isfinite(lt) else None)
                        for v, lt in zip(self.vectors, self.pool.latency_ms)}
        if not 1 <= settings.budget <= len(self.vectors):
            raise argument_error("budget", f"budget must be between 1 and the {len(self.vectors)} candidates, "
                                           f"got {settings.budget}", SearchRunError)
        positive_int(settings.workers, "workers", SearchRunError)
        self.algo = _make_algorithm(settings.algorithm, self.vectors, settings.seed, self.vectors.shape[1])
        self.journal = Journal(os.path.join(self.out, JOURNAL_NAME))
        self.redispatch: List[np.ndarray] = []
        self.in_flight: Dict[str, Candidate] = {}
        self._prepare(resume)

    # -- setup / resume -----------------------------------------------------------------------
    def _prepare(self, resume: bool) -> None:
        from ..._io import atomic_write_text

        settings_path = os.path.join(self.out, SETTINGS_NAME)
        exists = os.path.exists(settings_path) or os.path.exists(self.journal.path)
        if exists and not resume:
            raise argument_error("out", f"out: {self.out} already holds a search; resume it, or choose another "
                                        f"folder", SearchRunError)
        if resume and not exists:
            raise argument_error("resume", f"resume: {self.out} holds no search ({SETTINGS_NAME} not found)",
                                 SearchRunError)
        if resume:
            with open(settings_path, encoding="utf-8") as f:
                old = json.load(f)
            new = self.settings.to_dict()
            diff = [k for k in _IDENTITY if old.get(k) != new.get(k)]
            if diff:
                raise argument_error("resume", f"resume: arguments differ from the run in {self.out}: " + "; ".join(
                    f"{k} was {old.get(k)!r}, now {new.get(k)!r}" for k in diff), SearchRunError)
        os.makedirs(os.path.join(self.out, "trials"), exist_ok=True)
        atomic_write_text(settings_path, json.dumps(self.settings.to_dict(), indent=1) + "\n")
        atomic_write_text(os.path.join(self.out, SPACE_NAME), self.space_json + "\n")
        state_path = os.path.join(self.out, STATE_NAME)
        if resume and os.path.exists(state_path):
            with open(state_path, encoding="utf-8") as f:
                self.algo.load_state_dict(json.load(f)["algorithm"])
        told = {candidate_id(v) for v in self.algo.told()[0]}
        for rec in self.journal.records():  # the journal wins over a state file that lags it
            if rec["candidate_id"] not in told:
                self.algo.tell(np.asarray(rec["vector"]), rec.get("value"))
        self.redispatch = [np.asarray(v) for v in self.algo.pending()]
        self._completed = len(self.journal.records())
        self._save_state()

    def _save_state(self) -> None:
        from ..._io import atomic_write_text

        state = {"algorithm": self.algo.state_dict(), "saved": time.time()}
        atomic_write_text(os.path.join(self.out, STATE_NAME), json.dumps(state) + "\n")

    # -- dispatch / record --------------------------------------------------------------------
    @property
    def completed(self) -> int:
        return self._completed

    def remaining(self) -> int:
        """Evaluations still to dispatch: budget minus journal lines minus trials in flight."""
        return self.settings.budget - self.completed - len(self.in_flight)

    def next_candidate(self) -> Optional[Candidate]:
        if self.remaining() <= 0:
            return None
        if self.redispatch:
            v = self.redispatch.pop(0)
        else:
            v = self.algo.ask()
            self._save_state()  # the row is in flight: a resume re-dispatches it
        vec = [int(a) for a in v]
        cid = candidate_id(vec)
        c = Candidate(vec, cid, self.latency.get(cid))
        self.in_flight[cid] = c
        return c

    def trial_dir(self, c: Candidate) -> str:
        return os.path.join(self.out, "trials", c.candidate_id)

    def complete(self, c: Candidate, result: Dict[str, Any], trial_id: str, seconds: float) -> bool:
        """Journal the result (first), then tell the algorithm. False if it was already journaled."""
        self.in_flight.pop(c.candidate_id, None)
        value = result.get("value")
        rec = {"trial_id": trial_id, "candidate_id": c.candidate_id, "vector": c.vector,
               "value": None if value is None else float(value), "latency_ms": c.latency_ms,
               "seconds": round(float(seconds), 3)}
        if value is None:
            rec["error"] = str(result.get("error") or "evaluation failed")
        rec.update({k: v for k, v in result.items() if k not in rec and k != "error" and v is not None})
        rec["finished"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        written = self.journal.append(rec)
        if written:
            self._completed += 1
            self.algo.tell(np.asarray(c.vector), rec["value"])
            self._save_state()
        return written


def run_search(settings: SearchSettings, resume: bool = False) -> Dict[str, Any]:
    """Run (or resume) a search to its budget; returns :func:`search_status` of the finished run."""
    from .evaluators import make_evaluator

    one_of(settings.engine, ("ray", "local"), "engine", SearchRunError)
    settings.pool_sha256 = _sha256(settings.pool)
    driver = SearchDriver(settings, resume=resume)
    evaluator = make_evaluator(settings.evaluator, settings.evaluator_options, driver.space_json)
    if settings.engine == "local":
        _run_local(driver, evaluator)
    else:
        from .ray_tune import run_ray

        run_ray(driver, evaluator)
    return search_status(settings.out)


def _run_local(driver: SearchDriver, evaluator) -> None:
    """One candidate at a time in this process (no Ray): the reference the Ray engine must match."""
    while True:
        c = driver.next_candidate()
        if c is None:
            return
        t0 = time.time()
        result = evaluator.evaluate(c.vector, driver.trial_dir(c), lambda metrics, ckpt: None, None)
        driver.complete(c, result, f"local-{c.candidate_id}", time.time() - t0)


def read_settings(out: str) -> Dict[str, Any]:
    """The settings of the search in ``out`` (its ``search.json``), or :class:`SearchRunError`."""
    settings_path = os.path.join(out, SETTINGS_NAME)
    if not os.path.exists(settings_path):
        raise SearchRunError(f"{out}: not a search folder ({SETTINGS_NAME} not found)")
    with open(settings_path, encoding="utf-8") as f:
        return json.load(f)


def search_status(out: str) -> Dict[str, Any]:
    """Progress of the search in ``out`` (running or finished), from its files only."""
    settings = read_settings(out)
    recs = Journal(os.path.join(out, JOURNAL_NAME)).records()
    ok = [r for r in recs if r.get("value") is not None]
    best = max(ok, key=lambda r: r["value"]) if ok else None
    running = []
    state_path = os.path.join(out, STATE_NAME)
    if os.path.exists(state_path):
        with open(state_path, encoding="utf-8") as f:
            pending = json.load(f)["algorithm"]["pending"]
        done = {r["candidate_id"] for r in recs}
        for v in pending:
            cid = candidate_id(v)
            if cid in done:
                continue
            pid_file = os.path.join(out, "trials", cid, "worker.pid")
            pid = None
            if os.path.exists(pid_file):
                with open(pid_file) as f:
                    pid = int(f.read().strip() or 0) or None
            running.append({"candidate_id": cid, "vector": v, "worker_pid": pid})
    keep = ("trial_id", "candidate_id", "value", "latency_ms", "checkpoint", "vector")
    return {"out": os.path.abspath(out), "completed": len(recs), "budget": settings["budget"],
            "failed": sum(r.get("value") is None for r in recs), "running": running,
            "best": {k: best[k] for k in keep if k in best} if best else None,
            "evaluator": settings["evaluator"], "algorithm": settings["algorithm"],
            "finished": len(recs) >= settings["budget"]}
