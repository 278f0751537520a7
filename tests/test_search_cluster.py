"""The search on a multi-node Ray cluster (issue 21): a head and two worker nodes on this machine
(``ray.cluster_utils.Cluster``), each declaring two GPUs so Ray assigns GPU ids (no physical GPU is
needed for the assignment). The search runs as users run it: ``gpunet search run --address``.

Checked: a search of every latency group (``--group all``) ends with exactly ``--budget`` lines
per group; every trial got exactly one GPU id of its node and concurrent trials on one node got
disjoint ids; a worker node removed mid-search costs nothing: exactly the budget in journal lines,
no candidate twice, nothing ran on the removed node afterwards.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from gpunet.search.engine.journal import Journal
from search_pools import grouped_pool, small_pool

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


@pytest.fixture
def cluster(monkeypatch):
    """Head + 2 worker nodes, 2 CPUs and 2 (declared) GPUs each, under a short temp dir this test owns."""
    from ray.cluster_utils import Cluster

    tmp = tempfile.mkdtemp(prefix="gc", dir="/tmp")  # Ray's socket paths must fit 107 bytes
    monkeypatch.setenv("RAY_TMPDIR", tmp)
    c = Cluster(initialize_head=True, head_node_args={"num_cpus": 2, "num_gpus": 2, "include_dashboard": False},
                shutdown_at_exit=False)
    workers = [c.add_node(num_cpus=2, num_gpus=2) for _ in range(2)]
    c.wait_for_nodes()
    c.tmp = tmp
    c.worker_nodes = workers
    try:
        yield c
    finally:
        c.shutdown()
        shutil.rmtree(tmp, ignore_errors=True)


@pytest.fixture(scope="module")
def pool(tmp_path_factory) -> str:
    """64 networks in two latency groups."""
    path = tmp_path_factory.mktemp("pool") / "pool.npz"
    small_pool(str(path), 64)
    return grouped_pool(str(path), str(path.parent / "groups.npz"), 2)


def _lines(out):
    return Journal(os.path.join(out, "results.jsonl")).records()


def _overlap(a, b) -> bool:
    return a["started"] < b["ended"] and b["started"] < a["ended"]


def test_every_group_on_a_cluster_trials_use_their_own_gpus_and_a_lost_node_costs_nothing(cluster, pool, tmp_path):
    out = str(tmp_path / "search")
    log = open(tmp_path / "head.log", "w+")
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO), RAY_TMPDIR=cluster.tmp)
    head = subprocess.Popen(
        [sys.executable, "-m", "gpunet", "search", "run", "--pool", pool, "--evaluator", "synthetic",
         "--algorithm", "random", "--group", "all", "--budget", "6", "--workers", "4", "--gpus-per-trial", "1",
         "--eval-seconds", "3", "--max-retries", "3", "--address", cluster.address, "--out", out, "--json"],
        env=env, stdout=subprocess.PIPE, stderr=log, text=True, start_new_session=True)
    try:
        lost = cluster.worker_nodes[1]
        deadline = time.time() + 300
        while len(_lines(out)) < 3:
            assert time.time() < deadline and head.poll() is None, Path(log.name).read_text()[-3000:]
            time.sleep(0.2)
        removed_at = time.time()
        cluster.remove_node(lost, allow_graceful=False)
        stdout, _ = head.communicate(timeout=400)
        assert head.returncode == 0, Path(log.name).read_text()[-3000:]
    finally:
        if head.poll() is None:
            os.killpg(head.pid, signal.SIGKILL)
            head.wait()
    status = json.loads(stdout)
    recs = _lines(out)
    ids = [r["candidate_id"] for r in recs]
    assert len(recs) == 12 == status["completed"] and len(set(ids)) == 12
    assert sorted(r["group"] for r in recs) == [0] * 6 + [1] * 6  # --budget per group
    nodes = {r["node"] for r in recs}
    assert len(nodes) >= 2
    for r in recs:
        assert len(r["gpu_ids"]) == 1 and r["gpu_ids"][0] in (0, 1) and r["value"] is not None
    for i, a in enumerate(recs):
        for b in recs[i + 1:]:
            if a["node"] == b["node"] and _overlap(a, b):
                assert a["gpu_ids"] != b["gpu_ids"], (a, b)
    assert not [r for r in recs if r["node"] == lost.node_id and r["started"] > removed_at + 1]
