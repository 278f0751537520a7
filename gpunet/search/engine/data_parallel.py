"""One candidate trained data-parallel on N Ray actors, inside its Tune trial (``--workers-per-trial N``).

:func:`evaluate_data_parallel` is what the trial (the *coordinator*, 0 CPUs) runs instead of
``evaluator.evaluate``: it starts one actor per rank in the trial's own placement group (the N
worker bundles :func:`~gpunet.search.engine.ray_tune` asks Tune for, ``STRICT_PACK``: one node),
gives each the ``torch.distributed`` environment the trainer reads (``RANK``, ``WORLD_SIZE``,
``MASTER_ADDR`` = rank 0's node, a free ``MASTER_PORT``, ``LOCAL_RANK=0`` with
``CUDA_VISIBLE_DEVICES`` set to the GPUs Ray assigned that actor, none without GPUs), and runs
``evaluator.evaluate`` on every rank. The trainer then runs DDP: NCCL on GPUs, gloo on CPU, a
``DistributedSampler`` share of the data per rank, rank 0 writing the checkpoints.

- *Reports*: rank 0's per-epoch callback hands ``(metrics, checkpoint_dir)`` to the coordinator
  and blocks until the coordinator's ``report`` (``tune.report``, which must run in the trial
  process and copies the checkpoint into Tune's storage) has returned: the evaluator deletes that
  folder when its callback returns. The other ranks' callbacks do nothing.
- *Resume*: a retried trial's ``restore_dir`` goes to every rank. A training checkpoint in it is
  first copied (atomically) into the trial folder by the coordinator, where the evaluator would
  copy it, so N ranks never race on that copy and all resume from the same epoch.
- *Failures*: a rank that raises or dies (``RayActorError``) fails the trial, which Tune retries
  from its last checkpoint (an infrastructure failure). Rank 0's result is the evaluation's;
  another rank's candidate failure (its loss alone became NaN, it alone ran out of CUDA memory)
  is, when rank 0 is still waiting for it in a collective ``FINISH_GRACE_S`` later. The actors
  are always killed at the end, also when ``report`` raises (Tune stopping the trial, e.g.
  ASHA); a placement group this module made (outside Tune) is removed.
- *Result*: rank 0's record plus ``world_size``, ``workers`` (rank, node, hostname, ip, GPU ids,
  pid of each rank) and ``gpu_ids`` (all ranks'), also in every per-epoch report.
- An evaluator that does not use ``torch.distributed`` (``SyntheticEvaluator``) simply runs the
  same evaluation on every rank; only rank 0's reports and result count.

Why actors rather than Ray Train's ``TorchTrainer`` as the Tune trainable: in Ray 2.60 Train V2 is
the default, and a ``TorchTrainer`` run inside a Tune trial persists checkpoints to its own run
storage and passes Tune only their path in the metrics (``TuneReportCallback``), with its own
failure handling and restore. That is a second checkpoint and retry mechanism beside Tune's
(``tune.get_checkpoint`` on a retry, ``FailureConfig``, ASHA stopping via ``tune.report``), and a
Train controller actor per candidate. N plain actors keep one mechanism: the coordinator is an
ordinary Tune function trial. The trial folder must be visible to all ranks of a trial, which a
one-node (``STRICT_PACK``) group guarantees; the coordinator sits on that node too (Tune puts the
empty head bundle on bundle 0's node).

Imports Ray at its top; only :mod:`.ray_tune` imports this module (inside ``_trial``).
"""
from __future__ import annotations

import os
import queue
import shutil
import socket
import threading
import time
from typing import Any, Callable, Dict, List, Optional, Tuple

import ray
from ray.util.placement_group import get_current_placement_group, placement_group, remove_placement_group
from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

__all__ = ["evaluate_data_parallel", "worker_bundle", "STRATEGY"]

STRATEGY = "STRICT_PACK"    # every rank of a trial on one node: they share the trial folder
START_TIMEOUT_S = 600.0     # actors (and a placement group made here) must be up by then
POLL_S = 5.0                # how long one poll for rank 0's next report waits in the actor
FINISH_GRACE_S = 60.0       # how long ranks may return after one another

Report = Callable[[Dict[str, Any], Optional[str]], None]


def worker_bundle(cpus_per_worker: float, gpus_per_worker: float) -> Dict[str, float]:
    """The resources of one rank, as a placement-group bundle (zero amounts left out)."""
    bundle = {"CPU": float(cpus_per_worker), "GPU": float(gpus_per_worker)}
    return {k: v for k, v in bundle.items() if v > 0}


class _Rank:
    """One rank: its ``torch.distributed`` environment, its evaluation, and (rank 0) its reports.

    A threaded actor (two at once): ``run`` evaluates while the coordinator polls ``next_report``.
    """

    def __init__(self, rank: int, world_size: int):
        self.rank, self.world_size = rank, world_size
        self.events: "queue.Queue[Tuple[Dict[str, Any], Optional[str]]]" = queue.Queue()
        self.consumed = threading.Semaphore(0)
        self.handed_out = False

    def address(self) -> Tuple[str, int]:
        """Rank 0: its node's address and a free port, where the others rendezvous."""
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind(("", 0))
            port = s.getsockname()[1]
        return ray.util.get_node_ip_address(), int(port)

    def setup(self, master_addr: str, master_port: int) -> Dict[str, Any]:
        """Set the environment the trainer reads; where this rank runs."""
        gpu_ids = [int(g) if str(g).isdigit() else str(g) for g in ray.get_gpu_ids()]
        # one process, its own GPUs (none: CUDA hidden, so the trainer takes the CPU and gloo)
        os.environ.update(RANK=str(self.rank), WORLD_SIZE=str(self.world_size), LOCAL_RANK="0",
                          MASTER_ADDR=master_addr, MASTER_PORT=str(master_port),
                          CUDA_VISIBLE_DEVICES=",".join(str(g) for g in gpu_ids))
        return {"rank": self.rank, "node": ray.get_runtime_context().get_node_id(),
                "hostname": socket.gethostname(), "ip": ray.util.get_node_ip_address(), "gpu_ids": gpu_ids,
                "pid": os.getpid()}

    def run(self, evaluator, vector, workdir: str, restore_dir: Optional[str]) -> Dict[str, Any]:
        report = self._hand_over if self.rank == 0 else _ignore
        return evaluator.evaluate(vector, workdir, report, restore_dir)

    def _hand_over(self, metrics: Dict[str, Any], checkpoint_dir: Optional[str]) -> None:
        """Rank 0's per-epoch callback: wait until the coordinator has reported it (and copied the folder)."""
        self.events.put((dict(metrics), checkpoint_dir))
        self.consumed.acquire()

    def next_report(self, timeout: float):
        """The coordinator's poll: release the report it had (it has been reported), wait for the next."""
        if self.handed_out:
            self.handed_out = False
            self.consumed.release()
        try:
            event = self.events.get(timeout=timeout)
        except queue.Empty:
            return None
        self.handed_out = True
        return event


def _ignore(metrics: Dict[str, Any], checkpoint_dir: Optional[str]) -> None:
    return None


_RankActor = ray.remote(_Rank)


# ------------------------------------------------------------------------------------ placement

def _fits(need: Dict[str, float], bundle: Dict[str, float]) -> bool:
    return all(bundle.get(k, 0.0) >= v for k, v in need.items())


def _placement_group(num_workers: int, bundle: Dict[str, float]):
    """``(group, first bundle index, made here)``: the trial's own group when its last N bundles fit
    a rank (Tune reserved them), else a new ``STRICT_PACK`` group (called outside Tune)."""
    pg = get_current_placement_group()
    if pg is not None:
        specs = pg.bundle_specs
        if len(specs) >= num_workers and all(_fits(bundle, b) for b in specs[len(specs) - num_workers:]):
            return pg, len(specs) - num_workers, False
    pg = placement_group([dict(bundle)] * num_workers, strategy=STRATEGY)
    if not pg.wait(START_TIMEOUT_S):
        remove_placement_group(pg)
        raise RuntimeError(f"data-parallel: {num_workers} x {bundle} on one node were not available within "
                           f"{START_TIMEOUT_S:.0f} s")
    return pg, 0, True


def _start_ranks(pg, first: int, num_workers: int, bundle: Dict[str, float]) -> List[Any]:
    return [_RankActor.options(
        num_cpus=bundle.get("CPU", 0.0), num_gpus=bundle.get("GPU", 0.0), max_concurrency=2, max_restarts=0,
        scheduling_strategy=PlacementGroupSchedulingStrategy(
            placement_group=pg, placement_group_bundle_index=first + rank,
            placement_group_capture_child_tasks=False),
    ).remote(rank, num_workers) for rank in range(num_workers)]


def _connect(actors: List[Any]) -> List[Dict[str, Any]]:
    """Rendezvous at rank 0's node; every rank's placement, in rank order."""
    addr, port = ray.get(actors[0].address.remote(), timeout=START_TIMEOUT_S)
    return ray.get([a.setup.remote(addr, port) for a in actors], timeout=START_TIMEOUT_S)


def _stage_training_checkpoint(workdir: str, restore_dir: Optional[str]) -> None:
    """Put the engine's training checkpoint where ``TrainEvaluator`` resumes from
    (``workdir/train``) unless one is there, atomically, before any rank starts: each rank would
    otherwise copy it itself, and one could read the file while another is still writing it."""
    if not restore_dir:
        return
    from ..._io import atomic_path
    from ...train.trainer import BEST_CHECKPOINT, LAST_CHECKPOINT

    out = os.path.join(workdir, "train")
    if not os.path.exists(os.path.join(restore_dir, LAST_CHECKPOINT)) or os.path.exists(
            os.path.join(out, LAST_CHECKPOINT)):
        return
    os.makedirs(out, exist_ok=True)
    for name in (BEST_CHECKPOINT, LAST_CHECKPOINT):  # last.pth.tar last: its presence means "staged"
        if os.path.exists(os.path.join(restore_dir, name)):
            with atomic_path(os.path.join(out, name)) as tmp:
                shutil.copy2(os.path.join(restore_dir, name), tmp)


# ------------------------------------------------------------------------------------ the run

def _candidate_failed(out: Dict[str, Any]) -> bool:
    return out.get("value") is None and out.get("error_kind") == "candidate"


def _without_rank0(early: Tuple[int, Dict[str, Any]]) -> Tuple[int, Dict[str, Any]]:
    """Rank 0 has not returned within ``FINISH_GRACE_S`` of another rank: it is waiting for that
    rank in a collective. The other rank's candidate failure is the result; else the trial failed."""
    rank, out = early
    if _candidate_failed(out):
        return rank, out
    raise RuntimeError(f"data-parallel: rank {rank} returned but rank 0 did not within {FINISH_GRACE_S:.0f} s")


def _drive(actors: List[Any], runs: List[Any], report: Report) -> Tuple[int, Dict[str, Any]]:
    """Forward rank 0's reports until rank 0 returns; ``(0, its result)``, or ``(rank, its
    candidate failure)`` when rank 0 is still stuck ``FINISH_GRACE_S`` after that rank returned
    (a NaN loss or an OOM on one rank only). A rank's exception (or death) is raised here.

    The other ranks' results are not used otherwise: a rank other than 0 may return before rank 0
    has written ``best.pth.tar`` and then judge the training as having produced nothing."""
    pending = dict(enumerate(runs))
    poll = actors[0].next_report.remote(POLL_S)
    early: Optional[Tuple[int, Dict[str, Any]]] = None
    deadline: Optional[float] = None
    while True:
        timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
        ready, _ = ray.wait(list(pending.values()) + [poll], num_returns=1, timeout=timeout)
        if not ready:
            return _without_rank0(early)
        if poll in ready:
            event = ray.get(poll)
            if event is not None:
                report(*event)
            poll = actors[0].next_report.remote(POLL_S)  # also releases rank 0 from the report
            continue
        rank = next(r for r, ref in pending.items() if ref in ready)
        out = ray.get(pending.pop(rank))
        if rank == 0:
            return rank, out
        if early is None:
            early, deadline = (rank, out), time.monotonic() + FINISH_GRACE_S


def _finish(others: List[Any]) -> None:
    """Rank 0 returned: let the other ranks return too; what they return or raise no longer matters."""
    if others:
        ray.wait(others, num_returns=len(others), timeout=FINISH_GRACE_S)


def _stop(actors: List[Any], pg, made_here: bool) -> None:
    for actor in actors:
        ray.kill(actor, no_restart=True)
    if made_here:
        remove_placement_group(pg)


def evaluate_data_parallel(evaluator, vector, workdir: str, report: Report, restore_dir: Optional[str],
                           num_workers: int, use_gpu: bool, cpus_per_worker: float,
                           gpus_per_worker: float) -> Dict[str, Any]:
    """``evaluator.evaluate(vector, workdir, report, restore_dir)`` on ``num_workers`` ranks
    (torch DDP); returns rank 0's record with ``world_size``, ``workers`` and ``gpu_ids``."""
    bundle = worker_bundle(cpus_per_worker, gpus_per_worker if use_gpu else 0.0)
    _stage_training_checkpoint(workdir, restore_dir)
    pg, first, made_here = _placement_group(num_workers, bundle)
    actors: List[Any] = []
    try:
        actors = _start_ranks(pg, first, num_workers, bundle)
        workers = _connect(actors)
        # the trial's GPUs are its ranks', in rank order (the coordinator has none)
        facts = {"world_size": num_workers, "workers": workers,
                 "gpu_ids": list(dict.fromkeys(g for w in workers for g in w["gpu_ids"]))}
        runs = [a.run.remote(evaluator, [int(v) for v in vector], workdir, restore_dir) for a in actors]
        rank, out = _drive(actors, runs, lambda metrics, ck: report({**metrics, **facts}, ck))
        if rank != 0:
            out = {**out, "error": f"{out.get('error')} (rank {rank} of {num_workers})"}
        else:
            _finish(runs[1:])
        return {**out, **facts}
    finally:
        _stop(actors, pg, made_here)
