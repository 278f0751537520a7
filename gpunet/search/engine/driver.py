"""One search run: settings, candidate set, the bookkeeping shared by both engines, resume.

``run_search(settings)`` owns ``DIR`` (one process at a time: :mod:`~gpunet.search.engine.lock`)::

    DIR/search.json          the settings (a resumed run must match them)
    DIR/space.json           the search space of the pool (decoding and export need it)
    DIR/results.jsonl        the journal: the truth (see :mod:`gpunet.search.engine.journal`)
    DIR/infrastructure.jsonl trials lost to the machines (not evaluations; the row went back)
    DIR/state.json           the algorithms' state dicts (told rows, rows in flight, random streams)
    DIR/trials/<id>/         one folder per candidate: its checkpoints, spec, worker pid

A run has one *lane* per latency group it searches (``group=None`` or one label: one lane;
``group="all"`` or a list: one algorithm and ``budget`` evaluations per group, one journal whose
lines name their ``group``).

Order of writes when a trial ends: journal line first, then ``tell`` and the state file. A head
killed between the two loses nothing: on resume every journal line the state lacks is told, and
rows in flight in the state without a journal line are dispatched again (into the same trial
folder, so a training candidate resumes from its last epoch). A trial lost to infrastructure
after its retries is written to ``infrastructure.jsonl`` and its row is released: it is not told,
costs no budget, and may be proposed again.
"""
from __future__ import annotations

import dataclasses
import json
import os
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Tuple, Union

import numpy as np

from ..._checks import ArgumentError, argument_error, non_negative_int, one_of, positive_int
from ..._io import sha256_file
from ...errors import GPUNetError
from ..pool import Pool
from .journal import INFRA_NAME, JOURNAL_NAME, Journal, candidate_id

__all__ = ["SearchSettings", "SearchRunError", "SearchInterrupted", "SearchDriver", "Candidate", "load_candidates",
           "candidate_groups", "read_settings", "read_pool_facts", "run_search", "search_status", "ALGORITHMS", "SCHEDULERS"]

ALGORITHMS = {"lamcts": "LaMCTS", "tpe": "TPESearch", "random": "RandomSearch"}
SCHEDULERS = ("asha",)
SETTINGS_NAME, STATE_NAME, SPACE_NAME = "search.json", "state.json", "space.json"
POOL_FACTS_NAME = "pool.json"  # how the pool's latencies were made, and its groups: what export checks
# settings that define the search: a resume must repeat them
_IDENTITY = ("pool_sha256", "group", "latency_ms", "evaluator", "evaluator_options", "algorithm", "budget", "seed",
             "scheduler")

Group = Union[None, int, str, List[int]]


class SearchRunError(GPUNetError, ValueError):
    """Bad search arguments, or a resume whose arguments differ from the original run."""


class SearchInterrupted(GPUNetError):
    """The search was stopped (Ctrl-C) before its budget; the folder resumes with ``--resume``."""

    exit_code = 130


@dataclass
class SearchSettings:
    pool: str
    out: str
    evaluator: str = "synthetic"
    algorithm: str = "lamcts"
    budget: int = 10
    workers: int = 1
    group: Group = None
    latency_ms: Optional[Tuple[float, float]] = None
    gpus_per_trial: Optional[float] = None   # None: 1 when the cluster has GPUs, else 0
    cpus_per_trial: float = 1.0
    workers_per_trial: int = 1
    engine: str = "ray"
    address: Optional[str] = None
    seed: int = 0
    max_retries: int = 3
    max_infra_failures: int = 20
    scheduler: Optional[str] = None
    grace_epochs: int = 1
    reduction_factor: int = 2
    evaluator_options: Dict[str, Any] = field(default_factory=dict)
    pool_sha256: str = ""

    def to_dict(self) -> Dict[str, Any]:
        d = dataclasses.asdict(self)
        d["latency_ms"] = list(self.latency_ms) if self.latency_ms else None
        return d

    @property
    def by_groups(self) -> bool:
        """True when the run searches several latency groups (``"all"`` or a list), one lane each."""
        return isinstance(self.group, (str, list, tuple))


def load_candidates(settings: SearchSettings) -> Pool:
    """The part of the pool a one-lane run selects (``group`` or ``latency_ms``, else all of it)."""
    if settings.by_groups:
        raise argument_error("group", f"group {settings.group!r} selects several groups: use candidate_groups",
                             SearchRunError)
    return candidate_groups(settings)[settings.group]


def candidate_groups(settings: SearchSettings) -> Dict[Optional[int], Pool]:
    """The candidates of every lane: ``{group label or None: pool rows}`` in group order. Lanes of
    latency groups read only their own rows of the pool file (``Pool.load(path, group=g)``)."""
    if settings.group is not None and settings.latency_ms is not None:
        raise argument_error("group", "group and latency_ms select the candidates two ways: pass one",
                             SearchRunError)
    if settings.latency_ms is not None:
        lo, hi = settings.latency_ms
        pool = Pool.load(settings.pool)
        return {None: _selected(lambda: pool.latency_range(lo, hi), "latency_ms", f"latency_ms {lo}:{hi}")}
    if settings.group is None:
        return {None: Pool.load(settings.pool)}
    counts = Pool.read_group_counts(settings.pool)
    labels = _group_labels(settings.group, counts, settings.pool)
    if not counts:  # no latencies: the whole pool's own error says so
        pool = Pool.load(settings.pool)
        return {g: _selected(lambda g=g: pool.group(g), "group", f"group {g}") for g in labels}
    return {g: _selected(lambda g=g: Pool.load(settings.pool, group=g), "group", f"group {g}") for g in labels}


def _group_labels(group: Group, counts: List[Dict[str, Any]], path: str) -> List[int]:
    """The labels ``group`` names: one label, ``"all"`` (every non-empty group of ``counts``), a list."""
    if group == "all":
        labels = [g["label"] for g in counts if g["count"]]
        if not labels:
            raise argument_error("group", f"group 'all': {path} has no latency groups (sampled "
                                          f"without a latency table)", SearchRunError)
        return labels
    if isinstance(group, str):
        raise argument_error("group", f"group must be a label, a list of labels or 'all', got {group!r}",
                             SearchRunError)
    labels = [int(g) for g in group] if isinstance(group, (list, tuple)) else [int(group)]
    if len(set(labels)) != len(labels) or not labels:
        raise argument_error("group", f"group: labels must be distinct and at least one, got {group!r}",
                             SearchRunError)
    return labels


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
    group: Optional[int] = None


@dataclass
class Lane:
    """One latency group's search: its candidates, its algorithm, its share of the journal."""

    group: Optional[int]
    pool: Pool
    algo: Any
    completed: int = 0
    in_flight: int = 0


def check_settings(settings: SearchSettings) -> None:
    """Arguments that need no pool: counts, names, the scheduler, the Ray address."""
    one_of(settings.engine, ("ray", "local"), "engine", SearchRunError)
    positive_int(settings.workers, "workers", SearchRunError)
    positive_int(settings.workers_per_trial, "workers_per_trial", SearchRunError)
    non_negative_int(settings.max_retries, "max_retries", SearchRunError)
    non_negative_int(settings.max_infra_failures, "max_infra_failures", SearchRunError)
    if settings.scheduler is not None:
        one_of(settings.scheduler, SCHEDULERS, "scheduler", SearchRunError)
        positive_int(settings.grace_epochs, "grace_epochs", SearchRunError)
        if isinstance(settings.reduction_factor, bool) or not isinstance(settings.reduction_factor, int) \
                or settings.reduction_factor < 2:
            raise argument_error("reduction_factor", f"reduction_factor must be an int >= 2, got "
                                                     f"{settings.reduction_factor!r}", SearchRunError)
    gpus = settings.gpus_per_trial
    if gpus is not None and gpus < 0:
        raise argument_error("gpus_per_trial", f"gpus_per_trial must be >= 0, got {gpus}", SearchRunError)
    if gpus is not None and settings.workers_per_trial > 1 and gpus != int(gpus):
        raise argument_error("gpus_per_trial", f"gpus_per_trial {gpus:g} with workers_per_trial "
                                               f"{settings.workers_per_trial}: each data-parallel worker needs whole "
                                               f"GPUs of its own (NCCL), e.g. 1", SearchRunError)
    if settings.address and settings.address.startswith("ray://"):
        raise argument_error("address", f"address {settings.address}: Ray Client (ray://) is not supported: the "
                                        f"search's driver writes its journal where the command runs, so run "
                                        f"`gpunet search run` on the head node (or any node of the cluster) "
                                        f"with --address auto or HOST:6379", SearchRunError)


class SearchDriver:
    """Engine-agnostic bookkeeping: what to evaluate next, and recording what finished."""

    def __init__(self, settings: SearchSettings, resume: bool = False,
                 progress: Optional[Callable[[Dict[str, Any]], None]] = None):
        self.settings = settings
        settings.pool_sha256 = settings.pool_sha256 or sha256_file(settings.pool)
        self.out = os.path.abspath(settings.out)
        self.progress = progress
        groups = candidate_groups(settings)
        first = next(iter(groups.values()))
        self.space_json = first.space.to_json().rstrip("\n")
        self.lanes: Dict[Optional[int], Lane] = {}
        for g, pool in groups.items():
            self._check_budget(g, pool)
            algo = _make_algorithm(settings.algorithm, pool.vectors, settings.seed, pool.vectors.shape[1])
            self.lanes[g] = Lane(g, pool, algo)
        self.vectors = np.concatenate([lane.pool.vectors for lane in self.lanes.values()])
        self.latency = {candidate_id(v): (float(lt) if np.isfinite(lt) else None)
                        for lane in self.lanes.values() for v, lt in zip(lane.pool.vectors, lane.pool.latency_ms)}
        self.journal = Journal(os.path.join(self.out, JOURNAL_NAME))
        self.infra_journal = Journal(os.path.join(self.out, INFRA_NAME), unique=False)
        self.redispatch: List[Tuple[Optional[int], np.ndarray]] = []
        self.in_flight: Dict[str, Candidate] = {}
        self.infra_failures = 0
        self._prepare(resume)

    @property
    def algo(self):
        """The algorithm of a one-lane run (a run by groups has one per lane: ``lanes[g].algo``)."""
        if len(self.lanes) != 1:
            raise AttributeError("a search by groups has one algorithm per group: use driver.lanes[group].algo")
        return next(iter(self.lanes.values())).algo

    @property
    def budget_total(self) -> int:
        return self.settings.budget * len(self.lanes)

    def _check_budget(self, group: Optional[int], pool: Pool) -> None:
        where = "" if group is None else f" of group {group}"
        if isinstance(self.settings.budget, bool) or not isinstance(self.settings.budget, int) \
                or not 1 <= self.settings.budget <= len(pool):
            raise argument_error("budget", f"budget must be between 1 and the {len(pool)} candidates{where}, "
                                           f"got {self.settings.budget}", SearchRunError)

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
            self._check_same_run(settings_path)
        os.makedirs(os.path.join(self.out, "trials"), exist_ok=True)
        atomic_write_text(settings_path, json.dumps(self.settings.to_dict(), indent=1) + "\n")
        atomic_write_text(os.path.join(self.out, SPACE_NAME), self.space_json + "\n")
        atomic_write_text(os.path.join(self.out, POOL_FACTS_NAME), json.dumps(self._pool_facts(), indent=1) + "\n")
        if resume:
            self._load_state()
        self._replay_journal()
        self._save_state()

    def _pool_facts(self) -> Dict[str, Any]:
        """The table's device / backend / batch / precision and each searched group's latency range."""
        first = next(iter(self.lanes.values())).pool
        edges = first.edges_ms
        ranges = {str(g): [float(edges[g]), float(edges[g + 1])] for g in self.lanes
                  if g is not None and np.isfinite(edges).all()}
        source = {k: (v.item() if hasattr(v, "item") else v) for k, v in first.source.items()}
        return {"source": source, "edges_ms": [float(e) for e in edges], "group_ranges_ms": ranges,
                "latency_ms": self.settings.latency_ms}

    def _check_same_run(self, settings_path: str) -> None:
        with open(settings_path, encoding="utf-8") as f:
            old = json.load(f)
        new = self.settings.to_dict()
        diff = [k for k in _IDENTITY if old.get(k) != new.get(k)]
        if diff:
            raise argument_error("resume", f"resume: arguments differ from the run in {self.out}: " + "; ".join(
                f"{k} was {old.get(k)!r}, now {new.get(k)!r}" for k in diff), SearchRunError)

    def _load_state(self) -> None:
        state_path = os.path.join(self.out, STATE_NAME)
        if not os.path.exists(state_path):
            return
        with open(state_path, encoding="utf-8") as f:
            state = json.load(f)
        for g, lane_state in _lane_states(state).items():
            if g in self.lanes:
                self.lanes[g].algo.load_state_dict(lane_state)

    def _replay_journal(self) -> None:
        """Tell every journal line the state lacks (the journal wins); queue rows still in flight."""
        told = {g: {candidate_id(v) for v in lane.algo.told()[0]} for g, lane in self.lanes.items()}
        for rec in self.journal.records():
            g = rec.get("group") if self.settings.by_groups else self.settings.group
            lane = self.lanes.get(g)
            if lane is None:
                raise SearchRunError(f"{self.journal.path}: candidate {rec['candidate_id']} has group {g!r}, "
                                     f"which this search does not have")
            lane.completed += 1
            if rec["candidate_id"] not in told[g]:
                lane.algo.tell(np.asarray(rec["vector"]), rec.get("value"))
        self.redispatch = [(g, np.asarray(v)) for g, lane in self.lanes.items() for v in lane.algo.pending()]

    def _save_state(self) -> None:
        from ..._io import atomic_write_text

        if self.settings.by_groups:
            state = {"groups": {str(g): lane.algo.state_dict() for g, lane in self.lanes.items()}}
        else:
            state = {"algorithm": self.algo.state_dict()}
        state["saved"] = time.time()
        atomic_write_text(os.path.join(self.out, STATE_NAME), json.dumps(state) + "\n")

    # -- dispatch / record --------------------------------------------------------------------
    @property
    def completed(self) -> int:
        return sum(lane.completed for lane in self.lanes.values())

    def remaining(self) -> int:
        """Evaluations still to dispatch: budget minus journal lines minus trials in flight, all lanes."""
        return sum(self._lane_remaining(lane) for lane in self.lanes.values())

    def _lane_remaining(self, lane: Lane) -> int:
        return self.settings.budget - lane.completed - lane.in_flight

    def exhausted(self) -> bool:
        """True when more infrastructure failures happened than ``max_infra_failures`` allows."""
        return self.infra_failures > self.settings.max_infra_failures

    def next_candidate(self) -> Optional[Candidate]:
        """The next row to evaluate (re-dispatch first, then the lane with the most budget left)."""
        if self.exhausted():
            return None
        if self.redispatch:
            g, v = self.redispatch.pop(0)
            lane = self.lanes[g]
        else:
            lanes = [lane for lane in self.lanes.values() if self._lane_remaining(lane) > 0]
            if not lanes:
                return None
            lane = max(lanes, key=self._lane_remaining)  # first of the most behind on ties: group order
            v = lane.algo.ask()
            self._save_state()  # the row is in flight: a resume re-dispatches it
        vec = [int(a) for a in v]
        c = Candidate(vec, candidate_id(vec), self.latency.get(candidate_id(vec)), lane.group)
        lane.in_flight += 1
        self.in_flight[c.candidate_id] = c
        return c

    def trial_dir(self, c: Candidate) -> str:
        return os.path.join(self.out, "trials", c.candidate_id)

    def _leave(self, c: Candidate) -> Lane:
        lane = self.lanes[c.group]
        if self.in_flight.pop(c.candidate_id, None) is not None:
            lane.in_flight -= 1
        return lane

    def complete(self, c: Candidate, result: Dict[str, Any], trial_id: str, seconds: float) -> bool:
        """Journal the result (first), then tell the algorithm. False if it was already journaled."""
        lane = self._leave(c)
        rec = _journal_record(c, result, trial_id, seconds)
        written = self.journal.append(rec)
        if written:
            lane.completed += 1
            lane.algo.tell(np.asarray(c.vector), rec["value"])
            self._save_state()
            self._report_progress()
        return written

    def release(self, c: Candidate, result: Dict[str, Any], trial_id: str, seconds: float) -> None:
        """An infrastructure failure after its retries: noted apart, the row goes back to the pool."""
        lane = self._leave(c)
        rec = _journal_record(c, {**result, "value": None, "error_kind": "infrastructure"}, trial_id, seconds)
        self.infra_journal.append(rec)
        self.infra_failures += 1
        lane.algo.release(np.asarray(c.vector))
        self._save_state()
        self._report_progress()

    def release_quietly(self, c: Candidate) -> None:
        """A trial that ended with no verdict (the run was stopped under it): its row goes back."""
        lane = self._leave(c)
        lane.algo.release(np.asarray(c.vector))
        self._save_state()

    def _report_progress(self) -> None:
        if self.progress is None:
            return
        best = self.journal.best()
        self.progress({"completed": self.completed, "budget": self.budget_total, "running": len(self.in_flight),
                       "best": None if best is None else best["value"], "infrastructure_failures":
                       self.infra_failures})


def _journal_record(c: Candidate, result: Dict[str, Any], trial_id: str, seconds: float) -> Dict[str, Any]:
    """One journal line: the candidate, its value (or why none), where and when it ran, its facts."""
    value = result.get("value")
    rec = {"trial_id": trial_id, "candidate_id": c.candidate_id, "vector": c.vector,
           "value": None if value is None else float(value), "latency_ms": c.latency_ms,
           "seconds": round(float(seconds), 3)}
    if c.group is not None:  # every lane of a search by groups has one
        rec["group"] = c.group
    if value is None:
        rec["error"] = str(result.get("error") or "evaluation failed")
        rec["error_kind"] = result.get("error_kind") or "candidate"
    rec.update({k: v for k, v in result.items() if k not in rec and k != "error" and v is not None})
    rec.setdefault("ended", round(time.time(), 3))
    rec["finished"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    return rec


def _lane_states(state: Dict[str, Any]) -> Dict[Optional[int], Dict[str, Any]]:
    """``{group: algorithm state}`` from a state file of a one-lane run or of a run by groups."""
    if "groups" in state:
        return {int(g): st for g, st in state["groups"].items()}
    return {None: state["algorithm"]}


def run_search(settings: SearchSettings, resume: bool = False,
               progress: Optional[Callable[[Dict[str, Any]], None]] = None) -> Dict[str, Any]:
    """Run (or resume) a search to its budget; returns :func:`search_status` of the finished run.

    ``progress(status)`` is called after every finished trial (completed, budget, running, best).
    Raises :class:`SearchInterrupted` when stopped (Ctrl-C) before the budget, and
    :class:`SearchRunError` when more than ``max_infra_failures`` trials were lost to infrastructure.
    """
    from .evaluators import make_evaluator
    from .lock import SearchLock

    check_settings(settings)
    settings.pool_sha256 = sha256_file(settings.pool)
    os.makedirs(settings.out, exist_ok=True)
    with SearchLock(settings.out):
        driver = SearchDriver(settings, resume=resume, progress=progress)
        evaluator = make_evaluator(settings.evaluator, settings.evaluator_options, driver.space_json)
        try:
            if settings.engine == "local":
                _run_local(driver, evaluator)
            else:
                from .ray_tune import run_ray

                run_ray(driver, evaluator)
        except KeyboardInterrupt:
            raise SearchInterrupted(_interrupted(driver)) from None
        _check_ended(driver)
    return search_status(settings.out)


def _interrupted(driver: SearchDriver) -> str:
    return (f"search interrupted at {driver.completed}/{driver.budget_total} evaluations; continue it with "
            f"`gpunet search run ... --resume --out {driver.out}` (the same arguments)")


def _check_ended(driver: SearchDriver) -> None:
    """A run that returned before its budget was either stopped by a user or by infrastructure."""
    if driver.exhausted():
        raise SearchRunError(f"{driver.infra_failures} trials were lost to infrastructure (more than "
                             f"max_infra_failures={driver.settings.max_infra_failures}); see "
                             f"{driver.infra_journal.path}, fix the cluster, then resume the search")
    if driver.completed < driver.budget_total:
        raise SearchInterrupted(_interrupted(driver))


def _run_local(driver: SearchDriver, evaluator) -> None:
    """One candidate at a time in this process (no Ray): the reference the Ray engine must match.

    An exception from the evaluator is an infrastructure failure: retried ``max_retries`` times,
    then released, as the Ray engine does.
    """
    while True:
        c = driver.next_candidate()
        if c is None:
            return
        t0 = time.time()
        for attempt in range(driver.settings.max_retries + 1):
            try:
                result = evaluator.evaluate(c.vector, driver.trial_dir(c), lambda metrics, ckpt: None, None)
            except Exception as e:  # what the evaluator raises is the machine's (it returns its own failures)
                if attempt == driver.settings.max_retries:
                    driver.release(c, {"error": f"{type(e).__name__}: {e}"[:500], "retries": attempt},
                                   f"local-{c.candidate_id}", time.time() - t0)
                continue
            result = {**result, "retries": attempt, "started": round(t0, 3)}
            driver.complete(c, result, f"local-{c.candidate_id}", time.time() - t0)
            break


def read_pool_facts(out: str) -> Dict[str, Any]:
    """What the search in ``out`` recorded of its pool (``pool.json``; empty for runs made before it)."""
    path = os.path.join(out, POOL_FACTS_NAME)
    if not os.path.exists(path):
        return {}
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def read_settings(out: str) -> Dict[str, Any]:
    """The settings of the search in ``out`` (its ``search.json``), or :class:`SearchRunError`."""
    settings_path = os.path.join(out, SETTINGS_NAME)
    if not os.path.exists(settings_path):
        raise SearchRunError(f"{out}: not a search folder ({SETTINGS_NAME} not found)")
    with open(settings_path, encoding="utf-8") as f:
        return json.load(f)


def search_status(out: str) -> Dict[str, Any]:
    """Progress of the search in ``out`` (running or finished), from its files only."""
    from .lock import lock_holder

    settings = read_settings(out)
    recs = Journal(os.path.join(out, JOURNAL_NAME)).records()
    ok = [r for r in recs if r.get("value") is not None]
    best = max(ok, key=lambda r: r["value"]) if ok else None
    lanes = 1
    state_path = os.path.join(out, STATE_NAME)
    running = []
    if os.path.exists(state_path):
        with open(state_path, encoding="utf-8") as f:
            states = _lane_states(json.load(f))
        lanes = len(states)
        done = {r["candidate_id"] for r in recs}
        running = [_running(out, v) for st in states.values() for v in st["pending"] if candidate_id(v) not in done]
    budget = settings["budget"] * lanes
    keep = ("trial_id", "candidate_id", "value", "latency_ms", "checkpoint", "vector", "group")
    status = {"out": os.path.abspath(out), "completed": len(recs), "budget": budget,
              "failed": sum(r.get("value") is None for r in recs), "running": running,
              "best": {k: best[k] for k in keep if k in best} if best else None,
              "evaluator": settings["evaluator"], "algorithm": settings["algorithm"],
              "infrastructure_failures": len(Journal(os.path.join(out, INFRA_NAME), unique=False).records()),
              "holder": lock_holder(out), "finished": len(recs) >= budget}
    if settings.get("group") is not None and isinstance(settings["group"], (str, list)):
        status["groups"] = _group_status(recs)
    return status


def _running(out: str, vector) -> Dict[str, Any]:
    cid = candidate_id(vector)
    pid_file = os.path.join(out, "trials", cid, "worker.pid")
    pid = None
    if os.path.exists(pid_file):
        with open(pid_file) as f:
            pid = int(f.read().strip() or 0) or None
    return {"candidate_id": cid, "vector": vector, "worker_pid": pid}


def _group_status(recs: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
    """Per group of a run by groups: evaluations, failures and the best line."""
    out = []
    for g in sorted({r.get("group") for r in recs if r.get("group") is not None}):
        mine = [r for r in recs if r.get("group") == g]
        ok = [r for r in mine if r.get("value") is not None]
        best = max(ok, key=lambda r: r["value"]) if ok else None
        out.append({"group": g, "completed": len(mine), "failed": len(mine) - len(ok),
                    "best": None if best is None else {"candidate_id": best["candidate_id"], "value": best["value"],
                                                       "latency_ms": best.get("latency_ms")}})
    return out
