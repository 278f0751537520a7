"""A search's winners into the hub, saying what they are (issue 21): every latency group's best
(``--pareto``), trained as a proxy and said so, top-1 on a split the search never selected on
(``--test-dir``), weights exported beside the user registry as a timm model folder (issue 22), the
table's device checked, and the front drawn next to the hub (``gpunet plot --search``)."""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from gpunet.cli import main
from gpunet.search.engine.journal import Journal
from search_pools import grouped_pool

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    from test_train import make_digits

    return make_digits(tmp_path_factory.mktemp("digits"), n_train=20, n_val=8, n_test=6)


@pytest.fixture(scope="module")
def searched(tmp_path_factory, digits) -> str:
    """A training search of both latency groups of a pool whose table is this machine's (onnxruntime)."""
    from gpunet.latency import device_fingerprint

    tmp = tmp_path_factory.mktemp("searched")
    assert main(["sample", "--space", "small", "--n", "32", "--out", str(tmp / "pool.npz"), "--json"]) == 0
    source = {"lut_device_id": device_fingerprint("onnxruntime")["id"], "lut_backend": "onnxruntime", "batch": 1,
              "precision": "fp32", "statistic": "median", "calibrated": False}
    pool = grouped_pool(str(tmp / "pool.npz"), str(tmp / "groups.npz"), 2, source)
    cfg = tmp / "fast.yaml"
    cfg.write_text("batch_size: 16\nworkers: 0\naa: ''\nhflip: 0.0\nreprob: 0.0\ncolor_jitter: 0.0\n"
                   "scale: [0.6, 1.0]\nlr: 0.003\nrecipe: finetune\nmodel_ema: false\n")
    out = str(tmp / "search")
    assert main(["search", "run", "--pool", pool, "--group", "all", "--budget", "2", "--engine", "local",
                 "--evaluator", "train", "--algorithm", "random", "--data-dir", str(digits), "--epochs", "1",
                 "--img-size", "32", "--train-config", str(cfg), "--out", out, "--quiet", "--json"]) == 0
    return out


def _export(capsys, *argv):
    capsys.readouterr()
    code = main(["search", "export", *argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_the_front_is_each_groups_best_measured_on_a_held_out_split(searched, digits, capsys, tmp_path):
    import gpunet
    from gpunet.cards import render_card
    from gpunet.train.evaluate import evaluate

    recs = Journal(os.path.join(searched, "results.jsonl")).records()
    assert sorted(r["group"] for r in recs) == [0, 0, 1, 1]
    code, out, err = _export(capsys, searched, "--pareto", "--gpu", "test-cpu", "--iters", "3",
                             "--test-dir", str(digits / "test"), "--json")
    assert code == 0, err
    rows = json.loads(out)["models"]
    assert [r["group"] for r in rows] == [0, 1]
    for row in rows:
        best = max((r for r in recs if r["group"] == row["group"]), key=lambda r: r["value"])
        assert row["candidate_id"] == best["candidate_id"] and row["val_top1"] == pytest.approx(best["value"])
        assert row["top1_split"].startswith("test (60 images")
        model = gpunet.get_model(row["name"])  # the copy beside the registry
        assert Path(gpunet.registry.get_registry().models[row["name"]]["checkpoint"]).is_relative_to(
            os.environ["GPUNET_HOME"])
        again = evaluate(model, str(digits / "test"), img_size=32, workers=0, progress=False)
        assert row["top1"] == pytest.approx(again["top1"], abs=1e-3)
        lo, hi = row["group_range_ms"]
        assert row["in_group"] == (lo <= row["latency_ms"] < hi)
        assert (f"{row['name']} (group {row['group']}) measures" in err) == (not row["in_group"])
        assert row["proxy"] and "| proxy | yes |" in render_card(row["name"])
        assert "| trained | 32 px, 1 epochs (recipe finetune: 20 epochs) |" in render_card(row["name"])
    assert gpunet.query(gpu="test-cpu") == []
    assert {c.name for c in gpunet.query(gpu="test-cpu", include_proxy=True)} == {r["name"] for r in rows}
    from gpunet.plot import plot_pareto

    png = plot_pareto(["test-cpu"], tmp_path / "front.png", search=True)
    assert Path(png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ValueError, match="no models with latency"):
        plot_pareto(["test-cpu"], tmp_path / "hub-only.png")  # the hub has no model tiered on test-cpu


def test_export_refuses_a_device_other_than_the_tables_unless_forced(searched, capsys, tmp_path):
    other = str(tmp_path / "from-another-machine")
    shutil.copytree(searched, other)
    facts_path = Path(other, "pool.json")
    facts = json.loads(facts_path.read_text())
    facts["source"]["lut_device_id"] = "0123456789ab"  # the table was measured on another machine
    facts_path.write_text(json.dumps(facts))
    code, _, err = _export(capsys, other, "--gpu", "test-cpu", "--iters", "3")
    assert code == 2 and "--gpu: the pool's latencies" in err and "0123456789ab" in err
    code, out, err = _export(capsys, other, "--gpu", "test-cpu", "--iters", "3", "--force", "--json")
    assert code == 0, err
    assert json.loads(out)["models"][0]["latency_kind"] == "measured"


def test_a_search_not_run_by_groups_has_no_front(searched, capsys, tmp_path):
    other = str(tmp_path / "one-group")
    shutil.copytree(searched, other)
    lines = [json.loads(x) for x in Path(other, "results.jsonl").read_text().splitlines()]
    Path(other, "results.jsonl").write_text("".join(json.dumps({k: v for k, v in r.items() if k != "group"}) + "\n"
                                                    for r in lines))
    code, _, err = _export(capsys, other, "--pareto", "--gpu", "test-cpu", "--no-measure")
    assert code == 1 and "not searched by latency groups" in err


def test_a_winner_travels_as_a_timm_folder(searched, capsys, tmp_path):
    """Exported under $GPUNET_HOME/models/<name>/ as a timm folder: gpunet, timm's local-dir:, the
    registered timm name (in this process and after a fresh import) and a moved copy give the same logits."""
    import subprocess
    import sys

    import timm
    import torch

    import gpunet
    from gpunet.timm_models import timm_name

    code, out, err = _export(capsys, searched, "--gpu", "test-cpu", "--no-measure", "--json")
    assert code == 0, err
    row = json.loads(out)["models"][0]
    folder = Path(os.environ["GPUNET_HOME"], "models", row["name"])
    assert sorted(p.name for p in folder.iterdir()) == ["README.md", "config.json", "model.safetensors"]
    entry = gpunet.registry.get_registry().models[row["name"]]
    assert entry["folder"] == str(folder) and entry["checkpoint"] == str(folder / "model.safetensors")
    readme = (folder / "README.md").read_text()
    assert "library_name: timm" in readme and f"value: {row['top1']}" in readme
    assert "top-1 accuracy (proxy training)" in readme and f"search winner `{row['name']}`" in readme

    name = timm_name(row["name"])
    assert name == "gpunet_" + row["name"].replace("-", "_") and name.startswith("gpunet_search_")
    assert name in timm.list_models("gpunet*", pretrained=True)
    moved = tmp_path / "elsewhere"
    shutil.copytree(folder, moved)
    models = [gpunet.get_model(row["name"]), timm.create_model(f"local-dir:{folder}", pretrained=True),
              timm.create_model(name, pretrained=True), gpunet.get_model(str(moved))]
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        logits = [m.eval()(x) for m in models]
    for other in logits[1:]:
        assert torch.equal(logits[0], other)
    cfgs = [timm.data.resolve_model_data_config(m) for m in models]
    assert all(c == cfgs[0] for c in cfgs) and cfgs[0]["crop_pct"] == entry["crop_pct"]
    assert models[2].hub_weights == row["name"]

    torch.save(x, tmp_path / "x.pt")
    torch.save(logits[0], tmp_path / "want.pt")
    script = (f"import torch, timm, gpunet\nm = timm.create_model({name!r}, pretrained=True).eval()\n"
              f"x = torch.load({str(tmp_path / 'x.pt')!r})\n"
              f"assert torch.allclose(m(x), torch.load({str(tmp_path / 'want.pt')!r}), atol=1e-6), 'logits differ'\n")
    done = subprocess.run([sys.executable, "-c", "import torch\ntorch.set_grad_enabled(False)\n" + script],
                          capture_output=True, text=True, env=dict(os.environ), timeout=600)
    assert done.returncode == 0, done.stderr
