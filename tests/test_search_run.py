"""The distributed search (issue 10): journal, resume, failures, Ray Tune engine, winners into the hub.

Ray runs for real (a local cluster per head, 2 CPUs, its temp dir under a short /tmp folder this
test owns); heads are subprocesses in their own process group so a test can SIGKILL a whole head
(driver + its local Ray) and stops only the groups it started.
"""
from __future__ import annotations

import glob
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest

from gpunet.search.engine.journal import Journal, candidate_id
from search_pools import grouped_pool, small_pool
from gpunet.search.engine.driver import SearchDriver, SearchRunError, SearchSettings, run_search, search_status

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def pool(tmp_path_factory) -> str:
    return small_pool(str(tmp_path_factory.mktemp("pool") / "pool.npz"), 64)


@pytest.fixture(scope="module")
def pool_lat(pool, tmp_path_factory) -> str:
    """The same pool with per-network latencies and two latency groups, as `gpunet sample --lut` writes them."""
    return grouped_pool(pool, str(tmp_path_factory.mktemp("pool_lat") / "pool_lat.npz"), 2)


def _env(**extra):
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONPATH=str(REPO), **extra)
    env.pop("WORLD_SIZE", None)
    return env


def _lines(out) -> list:
    return Journal(os.path.join(out, "results.jsonl")).records()


# ------------------------------------------------------------------------------ journal, driver

def test_journal_refuses_repeats_and_drops_a_torn_tail(tmp_path):
    j = Journal(tmp_path / "results.jsonl")
    v = list(range(41))
    assert j.append({"vector": v, "value": 1.0}) is True
    assert j.append({"vector": v, "value": 2.0}) is False  # same candidate: never a second line
    with open(j.path, "ab") as f:
        f.write(b'{"vector": [1, 2')  # a head killed mid-write
    assert [r["value"] for r in j.records()] == [1.0]
    assert j.append({"vector": [7] * 41, "value": None, "error": "x"}) is True
    text = Path(j.path).read_text()
    assert text.count("\n") == 2 and '"vector": [1, 2' not in text
    assert [r["candidate_id"] for r in j.records()] == [candidate_id(v), candidate_id([7] * 41)]


def test_resume_redispatches_only_what_was_in_flight(pool, tmp_path):
    s = SearchSettings(pool=pool, out=str(tmp_path / "s"), engine="local", budget=4, algorithm="random",
                       evaluator="synthetic")
    d = SearchDriver(s)
    a, b = d.next_candidate(), d.next_candidate()
    d.complete(a, {"value": 1.5}, "t-a", 0.1)
    del d  # the head dies with b in flight
    d2 = SearchDriver(s, resume=True)
    assert [candidate_id(v) for _, v in d2.redispatch] == [b.candidate_id]
    first = d2.next_candidate()
    assert first.candidate_id == b.candidate_id
    d2.complete(first, {"value": None, "error": "NaN loss"}, "t-b", 0.1)
    while (c := d2.next_candidate()) is not None:
        d2.complete(c, {"value": 0.5}, "t", 0.1)
    recs = _lines(s.out)
    ids = [r["candidate_id"] for r in recs]
    assert len(recs) == 4 and len(set(ids)) == 4 and ids[:2] == [a.candidate_id, b.candidate_id]
    assert recs[1]["value"] is None and recs[1]["error"] == "NaN loss"
    st = search_status(s.out)
    assert (st["completed"], st["failed"], st["finished"], st["running"]) == (4, 1, True, [])
    state = json.loads(Path(s.out, "state.json").read_text())["algorithm"]
    assert [t["value"] for t in state["told"]].count(None) == 1 and state["pending"] == []  # told as a failure
    with pytest.raises(SearchRunError, match="already holds a search"):
        SearchDriver(s)
    with pytest.raises(SearchRunError, match="budget was 4, now 5"):
        SearchDriver(SearchSettings(**{**s.__dict__, "budget": 5}), resume=True)


def test_local_engine_counts_failures_against_the_budget(pool, tmp_path):
    s = SearchSettings(pool=pool, out=str(tmp_path / "s"), engine="local", budget=8, algorithm="random",
                       evaluator="synthetic", evaluator_options={"fail_rate": 0.4})
    st = run_search(s)
    recs = _lines(s.out)
    failed = [r for r in recs if r["value"] is None]
    assert st["completed"] == 8 == len(recs) and st["finished"] and st["failed"] == len(failed) >= 1
    assert all(r["error"].startswith("synthetic failure") for r in failed)
    from gpunet.search.engine.evaluators import synthetic_value

    ok = [r for r in recs if r["value"] is not None]
    assert all(r["value"] == synthetic_value(r["vector"]) for r in ok)
    assert st["best"]["value"] == max(r["value"] for r in ok)


def test_group_and_latency_range_select_candidates(pool_lat, tmp_path):
    with np.load(pool_lat) as z:
        lat, labels = z["latency_ms"], z["labels"]
    s = SearchSettings(pool=pool_lat, out=str(tmp_path / "g"), engine="local", budget=5, evaluator="synthetic",
                       group=1)
    st = run_search(s)
    in_group = {round(float(x), 9) for x in lat[labels == 1]}
    recs = _lines(s.out)
    assert st["completed"] == 5 and all(round(r["latency_ms"], 9) in in_group for r in recs)
    lo, hi = float(np.quantile(lat, 0.2)), float(np.quantile(lat, 0.4))
    d = SearchDriver(SearchSettings(pool=pool_lat, out=str(tmp_path / "r"), budget=3, latency_ms=(lo, hi)))
    assert len(d.vectors) == int(((lat >= lo) & (lat < hi)).sum())
    with pytest.raises(SearchRunError, match="group 7: no network of .* is in that latency group"):
        SearchDriver(SearchSettings(pool=pool_lat, out=str(tmp_path / "x"), budget=1, group=7))
    from gpunet.search import Pool
    from gpunet.search.engine.driver import candidate_groups

    lanes = candidate_groups(SearchSettings(pool=pool_lat, out=str(tmp_path / "c"), budget=1, group=[1, 0]))
    whole = Pool.load(pool_lat)
    assert list(lanes) == [1, 0] and [Pool.read_group_counts(pool_lat)] == [whole.group_counts()]
    for g, lane in lanes.items():  # each lane read only its own rows of the file, the same rows
        assert lane.origin.endswith(f"(group {g})") and np.array_equal(lane.vectors, whole.group(g).vectors)


def test_cli_errors_are_one_line(pool, tmp_path, capsys):
    from types import SimpleNamespace

    from gpunet.cli import main

    def run(*a):
        capsys.readouterr()
        code = main(["search", *a])
        return SimpleNamespace(returncode=code, stderr=capsys.readouterr().err)

    r = run("run", "--pool", pool, "--group", "0", "--evaluator", "synthetic", "--algorithm", "random",
            "--budget", "2", "--engine", "local", "--out", str(tmp_path / "g"))
    assert r.returncode == 2 and "has no latencies" in r.stderr and "Traceback" not in r.stderr
    r = run("run", "--pool", pool, "--evaluator", "synthetic", "--algorithm", "random", "--budget", "999",
            "--engine", "local", "--out", str(tmp_path / "b"))
    assert r.returncode == 2 and "--budget must be between 1 and the 64 candidates" in r.stderr
    r = run("status", str(tmp_path / "nothing"))
    assert r.returncode == 1 and "not a search folder" in r.stderr


def test_searcher_adapter_save_restore_gives_same_next_suggestion(pool, tmp_path):
    from gpunet.search.engine.algorithms import RandomSearch
    from gpunet.search.engine.ray_tune import make_searcher

    vectors = np.load(pool)["vectors"]
    s = make_searcher(RandomSearch(vectors, seed=3), max_trials=10)
    c1, c2 = s.suggest("t1"), s.suggest("t2")
    s.on_trial_complete("t1", {"value": 70.0})
    s.save(str(tmp_path / "searcher.json"))
    s2 = make_searcher(RandomSearch(vectors, seed=3))
    s2.restore(str(tmp_path / "searcher.json"))
    assert s2.live == {"t2": c2["vector"]}
    assert s2.suggest("t3") == s.suggest("t3")
    s2.on_trial_complete("t2", None, error=True)  # a trial that errored is told as a failure
    assert s2.algorithm.n_failed == 1 and s2.algorithm.best()[1] == 70.0
    assert c1 != c2


# ------------------------------------------------------------------------------ Ray: kills, resume

@pytest.fixture
def heads():
    """Start head processes in their own process group; SIGKILL any group still alive afterwards."""
    started = []
    ray_tmp = tempfile.mkdtemp(prefix="gr", dir="/tmp")  # short: Ray's socket paths must fit 107 bytes

    def start(args):
        log = tempfile.NamedTemporaryFile("w+", prefix="head-", suffix=".log", dir=ray_tmp, delete=False)
        res = tempfile.NamedTemporaryFile("w+", prefix="head-", suffix=".out", dir=ray_tmp, delete=False)
        p = subprocess.Popen([sys.executable, "-m", "gpunet", "search", "run", *args], env=_env(RAY_TMPDIR=ray_tmp),
                             stdout=res, stderr=log, text=True, start_new_session=True)  # files: never a full pipe
        p.log, p.res = log.name, res.name
        started.append(p)
        return p

    yield start
    for p in started:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()
    shutil.rmtree(ray_tmp, ignore_errors=True)


def _tail(proc) -> str:
    return Path(proc.log).read_text()[-3000:]


def _finish(proc, timeout):
    """Wait for a head; its last stdout line (the --json status)."""
    proc.wait(timeout=timeout)
    assert proc.returncode == 0, _tail(proc)
    return json.loads(Path(proc.res).read_text())


def _wait(cond, timeout, what, proc=None):
    end = time.time() + timeout
    while time.time() < end:
        got = cond()
        if got:
            return got
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"head exited ({proc.returncode}) before {what}: {_tail(proc)}")
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def _checkpointed_running_trial(out):
    """(candidate_id, worker pid) of a trial that passed tune.report a checkpoint and is not journaled."""
    done = {r["candidate_id"] for r in _lines(out)}
    for ck in glob.glob(os.path.join(out, "ray", "run-*", "*", "checkpoint_*")):
        params = os.path.join(os.path.dirname(ck), "params.json")
        if not os.path.exists(params):
            continue
        cid = json.loads(Path(params).read_text())["candidate_id"]
        pid_file = os.path.join(out, "trials", cid, "worker.pid")
        if cid not in done and os.path.exists(pid_file):
            return cid, int(Path(pid_file).read_text())
    return None


def _process_group_gone(pgid) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return True
    return False


@pytest.mark.slow
def test_ray_search_survives_killed_worker_and_killed_head(pool, tmp_path, heads):
    out = str(tmp_path / "search")
    args = ["--pool", pool, "--evaluator", "synthetic", "--algorithm", "random", "--budget", "8", "--workers", "2",
            "--eval-seconds", "3", "--fail-rate", "0.2", "--seed", "1", "--out", out, "--json"]
    head = heads(args)
    # 1. SIGKILL the worker of a running trial after its first checkpoint
    cid, pid = _wait(lambda: _checkpointed_running_trial(out), 240, "a checkpointed running trial", head)
    os.kill(pid, signal.SIGKILL)
    # 2. SIGKILL the whole head (driver + its local Ray) once the killed trial is journaled and more run
    _wait(lambda: cid in {r["candidate_id"] for r in _lines(out)} and len(_lines(out)) >= 3, 240,
          "the retried trial's journal line", head)
    os.killpg(head.pid, signal.SIGKILL)
    head.wait()
    _wait(lambda: _process_group_gone(head.pid), 90, "the head's process group to exit")
    before = Path(out, "results.jsonl").read_bytes()
    n_before = len(_lines(out))
    assert 3 <= n_before < 8
    # 3. resume: exactly the budget, no repeats, earlier lines unchanged
    status = _finish(heads(args + ["--resume"]), 400)
    recs = _lines(out)
    ids = [r["candidate_id"] for r in recs]
    assert len(recs) == 8 == status["completed"] == status["budget"] and len(set(ids)) == 8
    assert Path(out, "results.jsonl").read_bytes().startswith(before[:before.rfind(b"\n") + 1])
    killed = next(r for r in recs if r["candidate_id"] == cid)
    assert killed["retries"] >= 1 and killed["resumed_from"] >= 1  # restarted from its tune checkpoint
    from gpunet.search.engine.evaluators import SyntheticEvaluator, synthetic_value

    ev = SyntheticEvaluator(fail_rate=0.2)
    for r in recs:
        assert len(r["vector"]) == 41 and r["latency_ms"] is None and r["seconds"] > 0
        assert r["value"] == (None if ev.fails(r["vector"]) else synthetic_value(r["vector"]))
        assert (r["value"] is None) == ("error" in r)
    st = subprocess.run([sys.executable, "-m", "gpunet", "search", "status", out, "--json"], env=_env(),
                        capture_output=True, text=True, check=True)
    assert json.loads(st.stdout)["completed"] == 8


# ------------------------------------------------------------------------------ training search -> hub

@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    pytest.importorskip("sklearn")
    from test_train import make_digits

    return make_digits(tmp_path_factory.mktemp("digits"), n_train=30, n_val=10, n_test=6)


@pytest.mark.slow
def test_training_search_on_ray_exports_a_winner_that_reproduces_its_top1(pool_lat, digits, tmp_path, heads,
                                                                          isolated_home):
    cfg = tmp_path / "fast.yaml"
    cfg.write_text("batch_size: 16\nworkers: 0\naa: ''\nhflip: 0.0\nreprob: 0.0\ncolor_jitter: 0.0\n"
                   "scale: [0.6, 1.0]\nlr: 0.003\nrecipe: finetune\nmodel_ema: false\n")
    out = str(tmp_path / "train-search")
    head = heads(["--pool", pool_lat, "--group", "0", "--evaluator", "train", "--algorithm", "random", "--budget", "2", "--workers", "2",
                  "--data-dir", str(digits), "--epochs", "2", "--img-size", "32", "--train-config", str(cfg),
                  "--out", out, "--json"])
    assert _finish(head, 500)["completed"] == 2
    recs = _lines(out)
    assert len(recs) == 2 and all(r["value"] is not None and os.path.exists(r["checkpoint"]) for r in recs)
    assert all(r["epochs"] == 2 and r["img_size"] == 32 and r["num_classes"] == 10 for r in recs)
    best = max(recs, key=lambda r: r["value"])
    exp = subprocess.run([sys.executable, "-m", "gpunet", "search", "export", out, "--top", "1", "--gpu",
                          "test-cpu", "--iters", "5", "--json"], env=_env(), capture_output=True, text=True)
    assert exp.returncode == 0, exp.stderr[-3000:]
    row = json.loads(exp.stdout)["models"][0]
    import gpunet
    import torch

    assert gpunet.query(gpu="test-cpu") == []  # a 2-epoch, 32 px training is a proxy: not ranked by default
    cards = gpunet.query(gpu="test-cpu", include_proxy=True)
    assert [c.name for c in cards] == [row["name"]] and cards[0].top1 == pytest.approx(best["value"], abs=1e-4)
    from gpunet.search.space import SearchSpace

    searched = SearchSpace.from_dict(json.loads(Path(out, "space.json").read_text())).decode(
        best["vector"]).resolution
    assert cards[0].latency_kind == "measured" and cards[0].latency_ms > 0 and cards[0].resolution == searched
    assert cards[0].proxy and cards[0].training["img_size"] == 32 and cards[0].training["epochs"] == 2
    ck = torch.load(best["checkpoint"], map_location="cpu", weights_only=True)
    shutil.move(out, str(tmp_path / "moved"))  # the entry holds its own copy of the weights
    model = gpunet.get_model(row["name"])
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in ck["state_dict"].items())
    assert model.spec.resolution == searched
    ev = subprocess.run([sys.executable, "-m", "gpunet", "eval", "--model", row["name"], "--data-dir", str(digits),
                         "--img-size", "32", "-j", "0", "--json"], env=_env(), capture_output=True, text=True)
    assert ev.returncode == 0, ev.stderr[-3000:]
    assert json.loads(ev.stdout)["top1"] == pytest.approx(best["value"], abs=1e-6)
    shutil.move(str(tmp_path / "moved"), out)
    # --no-measure: the pool's table estimate, marked as such
    from gpunet.cli import main

    assert main(["search", "export", out, "--top", "2", "--gpu", "test-est", "--no-measure", "--json"]) == 0
    est = gpunet.query(gpu="test-est", include_proxy=True)
    assert len(est) == 2 and all(c.latency_kind == "estimated" for c in est)
    assert sorted(c.latency_ms for c in est) == pytest.approx(sorted(r["latency_ms"] for r in recs))
    assert main(["search", "export", out, "--gpu", "gv100"]) == 2  # published figures are not overwritten


class _Preempted(BaseException):
    """Stands in for a worker killed mid-training (not an Exception: the evaluator must not catch it)."""


def test_train_evaluator_resumes_from_the_engine_checkpoint_and_reports_nan_as_failure(pool, digits, tmp_path):
    import torch

    from gpunet.search.engine.evaluators import TrainEvaluator

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as a 1-CPU trial would; the machine is shared
    try:
        _check_train_evaluator(pool, digits, tmp_path, TrainEvaluator)
    finally:
        torch.set_num_threads(threads)


def _check_train_evaluator(pool, digits, tmp_path, TrainEvaluator):
    cfg = tmp_path / "fast.yaml"
    cfg.write_text("batch_size: 16\nworkers: 0\naa: ''\nhflip: 0.0\nreprob: 0.0\ncolor_jitter: 0.0\n"
                   "scale: [0.6, 1.0]\nlr: 0.003\nrecipe: finetune\nmodel_ema: false\n")
    with np.load(pool) as z:
        space_json, vector = str(z["space_json"]), [int(a) for a in z["vectors"][0]]
    ev = TrainEvaluator(str(digits), epochs=2, space_json=space_json, img_size=32, train_config=str(cfg))
    work = tmp_path / "trial"
    reported = []

    def preempt_in_epoch_2(metrics, ckpt_dir):
        reported.append((metrics["epoch"], sorted(os.listdir(ckpt_dir)) if ckpt_dir else None))
        if metrics["epoch"] == 2:  # what the engine keeps: a copy of epoch 1's last.pth.tar
            shutil.copytree(ckpt_dir, tmp_path / "engine_ckpt")
            raise _Preempted()

    with pytest.raises(_Preempted):
        ev.evaluate(vector, str(work), preempt_in_epoch_2)
    assert reported == [(1, None), (2, ["last.pth.tar"])]
    assert int(Path(work, "worker.pid").read_text()) == os.getpid()
    shutil.rmtree(work)  # a new node without the old trial folder: only the engine's checkpoint is left
    out = ev.evaluate(vector, str(work), lambda m, c: None, str(tmp_path / "engine_ckpt"))
    assert out["resumed_from"] == 1 and out["epochs"] == 2 and out["value"] is not None
    assert os.path.exists(out["checkpoint"]) and out["img_size"] == 32 and out["num_classes"] == 10

    cfg.write_text(cfg.read_text().replace("lr: 0.003", "lr: .inf\nopt: sgd\nwarmup_epochs: 0"))
    # an infinite step: the second update's loss is NaN
    bad = TrainEvaluator(str(digits), epochs=1, space_json=space_json, img_size=32, train_config=str(cfg))
    res = bad.evaluate(vector, str(tmp_path / "nan"), lambda m, c: None)
    assert res["value"] is None and "training loss is" in res["error"]
