"""Data-parallel candidates (issue 21): ``gpunet search run --engine ray --workers-per-trial 2`` trains
each candidate with torch DDP (gloo on CPU) on two Ray actors, and a retried trial resumes from
the engine's checkpoint on both ranks.

Ray runs for real: a local Ray of 2 CPUs (one per rank), its temp dir under a short /tmp folder.
"""
from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest

from search_pools import small_pool

REPO = Path(__file__).resolve().parents[1]
N_TRAIN, N_VAL, BATCH = 16, 4, 16  # per class: 160 training images, 80 per rank
FAST = ("batch_size: 16\nworkers: 0\naa: ''\nhflip: 0.0\nreprob: 0.0\ncolor_jitter: 0.0\n"
        "scale: [0.6, 1.0]\nlr: 0.003\nrecipe: finetune\nmodel_ema: false\n")

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def pool(tmp_path_factory) -> str:
    return small_pool(str(tmp_path_factory.mktemp("pool") / "pool.npz"), 32)


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    pytest.importorskip("sklearn")
    from test_train import make_digits

    return make_digits(tmp_path_factory.mktemp("digits"), n_train=N_TRAIN, n_val=N_VAL)


@pytest.fixture
def ray_env(monkeypatch):
    """What the Ray workers need: the repo importable, no inherited DDP environment, a short temp dir."""
    pytest.importorskip("ray")
    ray_tmp = tempfile.mkdtemp(prefix="gd", dir="/tmp")  # Ray's socket paths must fit 107 bytes
    monkeypatch.setenv("RAY_TMPDIR", ray_tmp)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    for name in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(name, raising=False)
    yield ray_tmp
    shutil.rmtree(ray_tmp, ignore_errors=True)


def _last_checkpoint(workdir) -> dict:
    import torch

    return torch.load(os.path.join(workdir, "train", "last.pth.tar"), map_location="cpu", weights_only=False)


def _check_two_ranks(ck: dict, epochs: int) -> None:
    """The trainer ran on two processes, each on its DistributedSampler half of the data."""
    assert ck["world_size"] == 2 and len(ck["rng"]) == 2
    per_rank = math.ceil(10 * N_TRAIN / 2)
    assert ck["num_updates"] == epochs * (per_rank // BATCH)  # one process would make twice as many
    assert all(h["val_images"] == 10 * N_VAL for h in ck["history"])  # both ranks' shares, summed


def test_data_parallel_search_trains_each_candidate_on_two_gloo_workers(pool, digits, tmp_path, ray_env):
    import ray

    from gpunet.cli import main
    from gpunet.search.engine.journal import Journal

    cfg = tmp_path / "fast.yaml"
    cfg.write_text(FAST)
    out = tmp_path / "dp-search"
    code = main(["search", "run", "--pool", pool, "--evaluator", "train", "--algorithm", "random", "--budget", "2",
                 "--workers", "1", "--workers-per-trial", "2", "--cpus-per-trial", "1", "--engine", "ray",
                 "--data-dir", str(digits), "--epochs", "2", "--img-size", "32", "--train-config", str(cfg),
                 "--out", str(out), "--json", "--quiet"])
    assert code == 0 and not ray.is_initialized()  # the search stopped the Ray it started
    recs = Journal(str(out / "results.jsonl")).records()
    assert len(recs) == 2 and len({r["candidate_id"] for r in recs}) == 2
    for r in recs:
        assert r["value"] is not None and "error" not in r, r
        assert r["epochs"] == 2 and r["num_classes"] == 10 and os.path.exists(r["checkpoint"])
        assert r["world_size"] == 2 and [w["rank"] for w in r["workers"]] == [0, 1]
        assert len({w["pid"] for w in r["workers"]}) == 2 and all(w["gpu_ids"] == [] for w in r["workers"])
        assert all(w["node"] == r["node"] for w in r["workers"]) and r["gpu_ids"] == []  # STRICT_PACK: one node
        workdir = out / "trials" / r["candidate_id"]
        _check_two_ranks(_last_checkpoint(workdir), epochs=2)
        assert json.loads((workdir / "train" / "config.json").read_text())["epochs"] == 2


def _wait(cond, timeout, what):
    end = time.time() + timeout
    while time.time() < end:
        if cond():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


class _Preempted(BaseException):
    """Stands in for Tune stopping the trial inside ``tune.report`` (SystemExit there)."""


def test_data_parallel_resumes_both_ranks_from_the_engine_checkpoint(pool, digits, tmp_path, ray_env):
    import ray

    from gpunet.search.engine.data_parallel import evaluate_data_parallel
    from gpunet.search.engine.evaluators import TrainEvaluator

    cfg = tmp_path / "fast.yaml"
    cfg.write_text(FAST)
    with np.load(pool) as z:
        space_json, vector = str(z["space_json"]), [int(a) for a in z["vectors"][0]]
    ev = TrainEvaluator(str(digits), epochs=2, space_json=space_json, img_size=32, train_config=str(cfg))
    work, engine_ckpt = tmp_path / "trial", tmp_path / "engine_ckpt"
    reported = []

    def preempt_in_epoch_2(metrics, ckpt_dir):
        reported.append((metrics["epoch"], metrics["world_size"], sorted(os.listdir(ckpt_dir)) if ckpt_dir else None))
        if metrics["epoch"] == 2:  # what Tune keeps: a copy of epoch 1's last.pth.tar
            shutil.copytree(ckpt_dir, engine_ckpt)
            raise _Preempted()

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    try:
        with pytest.raises(_Preempted):
            evaluate_data_parallel(ev, vector, str(work), preempt_in_epoch_2, None, num_workers=2, use_gpu=False,
                                   cpus_per_worker=1, gpus_per_worker=0)
        assert reported == [(1, 2, None), (2, 2, ["last.pth.tar"])]
        # the trial folder lost its last.pth.tar (a new node, say): the coordinator stages the engine's
        # for both ranks (best.pth.tar stays: without it, an epoch 2 that does not improve is no result)
        os.unlink(work / "train" / "last.pth.tar")
        again = []
        res = evaluate_data_parallel(ev, vector, str(work), lambda m, c: again.append(m["epoch"]), str(engine_ckpt),
                                     num_workers=2, use_gpu=False, cpus_per_worker=1, gpus_per_worker=0)
        assert again == [2], res  # epoch 2 only: both ranks continued, neither restarted
        assert res["resumed_from"] == 1 and res["epochs"] == 2 and res["value"] is not None
        assert res["world_size"] == 2 and len(res["workers"]) == 2
        ck = _last_checkpoint(work)
        assert ck["epoch"] == 1 and ck["world_size"] == 2 and len(ck["history"]) == 2
        assert ck["num_updates"] == 2 * (math.ceil(10 * N_TRAIN / 2) // BATCH)
        _wait(lambda: ray.available_resources().get("CPU", 0) == 2, 120, "the actors and placement group to go")
    finally:
        ray.shutdown()
