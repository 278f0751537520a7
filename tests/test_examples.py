"""The examples in examples/ run (issue 24): each one as a user would, in a subprocess with tiny settings,
checked on what it prints and writes. The digits come from scikit-learn; nothing is downloaded."""
from __future__ import annotations

import ast
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples"
NEW = ("finetune_folder.py", "latency_table_and_pool.py", "local_search.py", "deploy_budget.py")


def run_example(name: str, *args: str, cwd: Path, timeout: int = 240) -> str:
    """stdout of ``python examples/<name> args`` (GPUNET_HOME / GPUNET_LOAD_AVERAGE from isolated_home)."""
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1",
               PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    env.pop("WORLD_SIZE", None)
    r = subprocess.run([sys.executable, str(EXAMPLES / name), *args], capture_output=True, text=True, cwd=cwd,
                       env=env, timeout=timeout)
    assert r.returncode == 0, f"{name} failed:\n{r.stdout[-2000:]}\n{r.stderr[-3000:]}"
    return r.stdout


@pytest.mark.parametrize("name", NEW)
def test_examples_say_how_to_run_them_and_use_only_public_names(name):
    source = (EXAMPLES / name).read_text()
    tree = ast.parse(source)
    assert f"python examples/{name}" in ast.get_docstring(tree)
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("gpunet"):
            assert not any(a.name.startswith("_") for a in node.names), ast.dump(node)
        if isinstance(node, ast.Import):
            assert not any("._" in a.name for a in node.names if a.name.startswith("gpunet")), ast.dump(node)
        if isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__"):
            raise AssertionError(f"{name}: private attribute {node.attr}")
    assert max(len(line) for line in source.splitlines()) <= 120


def test_finetune_on_made_digits_reports_top1_and_writes_a_checkpoint(tmp_path):
    out = run_example("finetune_folder.py", "--make-digits", "digits", "--digits-train", "4", "--digits-val", "2",
                      "--epochs", "1", "--img-size", "32", "--batch-size", "8", "--output", "run", cwd=tmp_path)
    for split, per_class in (("train", 4), ("val", 2)):
        classes = sorted(p.name for p in (tmp_path / "digits" / split).iterdir())
        assert classes == [str(d) for d in range(10)]
        assert all(len(list((tmp_path / "digits" / split / c).glob("*.png"))) == per_class for c in classes)
    epoch = re.search(r"epoch 1/1: train loss ([\d.]+)\s+top-1 ([\d.]+)%\s+EMA top-1 ([\d.]+)%\s+\(20 val images\)",
                      out)
    assert epoch, out
    assert 0.0 <= float(epoch.group(2)) <= 100.0
    ckpt = Path(re.search(r"^checkpoint: (.+)$", out, re.M).group(1))
    assert ckpt == tmp_path / "run" / "last.pth.tar" and ckpt.is_file()
    assert (tmp_path / "run" / "best.pth.tar").is_file()
    scores = re.search(r"evaluate gpunet-0 on digits/val: top-1 ([\d.]+)%.*\(20 images at 32 px\)", out)
    assert scores, out


def test_latency_table_then_pool_groups_then_search_one_group(tmp_path):
    from gpunet.search import LatencyTable, Pool, SearchSpace, network_blocks

    out = run_example("latency_table_and_pool.py", "--networks", "2", "--iters", "2", "--warmup", "1",
                      "--pool-size", "120", "--groups", "3", "--lut", "t.lut", "--out", "pool.npz", cwd=tmp_path)
    space = SearchSpace.small()
    n_blocks = len(network_blocks(space, space.sample(2, seed=0)))
    assert f"latency table t.lut: {n_blocks} blocks for 2 networks" in out and f"table holds {n_blocks} blocks" in out
    with LatencyTable(str(tmp_path / "t.lut")) as t:
        assert len(t) == n_blocks and t.backend == "torch"
    groups = re.findall(r"group (\d+):\s+(\d+) networks, ([\d.]+) - ([\d.]+) ms", out)
    assert [int(g[0]) for g in groups] == [0, 1, 2] and sum(int(g[1]) for g in groups) == 120, out
    assert all(float(lo) < float(hi) for _, _, lo, hi in groups)
    pool = Pool.load(tmp_path / "pool.npz")
    assert [g["count"] for g in pool.group_counts()] == [int(g[1]) for g in groups]

    # the pool feeds the search example: LA-MCTS over latency group 1 only
    out = run_example("local_search.py", "--pool", "pool.npz", "--group", "1", "--budget", "4", "--out", "s",
                      cwd=tmp_path)
    assert "lamcts evaluated 4 candidates (0 failed)" in out
    lo, hi = pool.edges_ms[1], pool.edges_ms[2]
    recs = [json.loads(line) for line in (tmp_path / "s" / "results.jsonl").read_text().splitlines()]
    assert len(recs) == 4 and all(lo <= r["latency_ms"] < hi for r in recs)


def test_local_search_synthetic_reports_the_best_of_exactly_the_budget(tmp_path):
    from gpunet.search import search_status

    out = run_example("local_search.py", "--pool-size", "48", "--budget", "5", "--out", "s", cwd=tmp_path)
    assert "stand-in" in out and "not accuracies" in out
    assert "lamcts evaluated 5 candidates (0 failed)" in out
    assert len(re.findall(r"^  evaluated \d/5", out, re.M)) == 5
    status = search_status(str(tmp_path / "s"))
    assert status["completed"] == status["budget"] == 5 and status["finished"]
    best_line = out.split("best 3 candidates:\n", 1)[1].splitlines()[0]
    assert best_line.split()[0] == status["best"]["candidate_id"]
    assert f"value {status['best']['value']:7.3f}" in best_line


def test_local_search_trains_candidates_on_digits(tmp_path):
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from test_train import make_digits

    make_digits(tmp_path / "digits", n_train=2, n_val=1, size=32)
    out = run_example("local_search.py", "--evaluator", "train", "--data-dir", "digits", "--epochs", "1",
                      "--img-size", "32", "--batch-size", "10", "--pool-size", "16", "--budget", "1", "--out", "s",
                      cwd=tmp_path)
    assert "lamcts evaluated 1 candidates (0 failed)" in out and "stand-in" not in out
    assert "(trained at 32 px)" in out
    ckpt = Path(re.search(r"^best checkpoint: (.+)$", out, re.M).group(1))
    assert ckpt.is_file() and ckpt.name == "best.pth.tar"


def test_deploy_budget_writes_a_folder_that_classifies_digits(tmp_path):
    out = run_example("deploy_budget.py", "--max-latency-ms", "100000", "--model", "gpunet-0",
                      "--precisions", "fp32", "--img-size", "64", "--threads", "1", "--rounds", "1", "--block", "2",
                      "--warmup-s", "0", "--images", "3", "--weights", "random", "--out", "dep", cwd=tmp_path)
    info = json.loads((tmp_path / "dep" / "deploy.json").read_text())
    assert info["model"] == "gpunet-0" and info["backend"] in ("onnxruntime", "openvino")
    assert info["precision"] == "fp32" and info["input_shape"] == [1, 3, 64, 64]
    assert info["weights"]["source"] == "random"
    assert f"gpunet-0 on {info['backend']} fp32, measured p50 {info['p50_ms']:.2f} ms" in out
    assert "3 digits images -> logits (3, 1000), predicted classes [" in out
    assert len(re.findall(r"^  gpunet-0\s+(onnxruntime|openvino)\s+fp32\s+[\d.]+ ms", out, re.M)) == 2
