"""gpunet deploy (issue 23): the decision on a hand-built ladder of measured paths (pure, no timing),
then one real deploy on ONNX Runtime (fp32 + INT8 calibrated on digits, gated on digits), the
no-fit exit, and load_deployed: same top-1 as PyTorch, tampered files refused, other machines warned."""
from __future__ import annotations

import json
import shutil
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from gpunet.deploy import (INT8_MIN_SPEEDUP, RANK_REGISTRY, RANK_VAL_DIR, ArtifactError, MeasuredPath, NoFitError,
                           choose)

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_train import make_digits  # noqa: E402

RES = 64  # small input: the export and timing take seconds


def path(model, backend, precision, p50, top1_reg, **kw):
    kw.setdefault("verified", precision != "int8")
    return MeasuredPath(model, backend, precision, registry_top1=top1_reg, p50_ms=p50, p90_ms=p50 * 1.1, **kw)


def ladder():
    """Three models: small (fast, least accurate), mid, big (slow, most accurate)."""
    return [path("small", "onnxruntime", "fp32", 4.0, 70.0), path("small", "openvino", "fp32", 3.5, 70.0),
            path("mid", "onnxruntime", "fp32", 9.0, 75.0), path("mid", "openvino", "bf16", 7.0, 75.0),
            path("big", "onnxruntime", "fp32", 20.0, 80.0), path("big", "openvino", "fp32", 18.0, 80.0)]


# ----------------------------------------------------------------------------------------- decision (pure)

@pytest.mark.parametrize("budget, model, backend", [(3.6, "small", "openvino"), (8.0, "mid", "openvino"),
                                                    (18.0, "big", "openvino"), (100.0, "big", "openvino")])
def test_the_most_accurate_model_that_fits_on_its_fastest_path(budget, model, backend):
    d = choose(ladder(), budget)
    assert (d.chosen.model, d.chosen.backend) == (model, backend)
    assert d.chosen.p50_ms <= budget and d.chosen.chosen
    fits = [p for p in ladder() if p.p50_ms <= budget]
    assert d.chosen.registry_top1 == max(p.registry_top1 for p in fits)
    assert sum(p.chosen for p in d.paths) == 1
    assert all(p.reason for p in d.paths if not p.chosen)


def test_ties_in_accuracy_go_to_the_faster_model():
    paths = [path("a", "onnxruntime", "fp32", 5.0, 75.0), path("b", "onnxruntime", "fp32", 4.0, 75.0)]
    assert choose(paths, 10).chosen.model == "b"


def test_models_the_registry_does_not_know_rank_by_their_measured_top1():
    """Fine-tuned folders have no registry top-1: the PyTorch fp32 top-1 measured on --val-dir ranks
    them (the slower, more accurate one wins when both fit); a registry figure still comes first."""
    slow_good = path("local-dir:a", "onnxruntime", "fp32", 6.0, None, top1_fp32=91.0, top1=91.0)
    fast_worse = path("local-dir:b", "onnxruntime", "fp32", 3.0, None, top1_fp32=84.0, top1=84.0)
    d = choose([fast_worse, slow_good], 10)
    assert d.chosen.model == "local-dir:a" and "ranks higher (fp32 top-1 on val_dir 91% vs 84%)" in fast_worse.reason
    assert d.ranked_by == RANK_VAL_DIR and d.to_dict()["ranked_by"] == RANK_VAL_DIR
    assert choose([fast_worse, slow_good], 5).chosen.model == "local-dir:b"  # only it fits
    unknown = path("local-dir:c", "onnxruntime", "fp32", 2.0, None)  # no --val-dir: ranked last, ties by speed
    assert choose([unknown, slow_good], 10).chosen.model == "local-dir:a"


def test_hub_models_next_to_folders_rank_on_the_val_dir_like_the_folders():
    """A registry figure (ImageNet) and a folder's (the user's images) do not compare: with a folder
    among the fitting models, every model ranks by its fp32 top-1 on --val-dir; hub models alone keep
    the registry's figure (50,000 images), whatever a small val_dir says."""
    hub = path("gpunet-1", "onnxruntime", "fp32", 3.0, 80.5, top1_fp32=61.0, top1=61.0)
    folder = path("local-dir:ft", "onnxruntime", "fp32", 6.0, None, top1_fp32=88.0, top1=88.0)
    d = choose([hub, folder], 10)
    assert (d.chosen.model, d.ranked_by) == ("local-dir:ft", RANK_VAL_DIR)
    assert "ranks higher (fp32 top-1 on val_dir 88% vs 61%)" in hub.reason
    other = path("gpunet-0", "onnxruntime", "fp32", 2.0, 78.9, top1_fp32=64.5, top1=64.5)
    d = choose([hub, other], 10)
    assert (d.chosen.model, d.ranked_by) == ("gpunet-1", RANK_REGISTRY)
    assert "ranks higher (registry top-1 80.5% vs 78.9%)" in other.reason
    proxy = path("winner", "onnxruntime", "fp32", 2.0, 90.0, top1_fp32=70.0, top1=70.0, proxy_top1=True)
    assert choose([proxy, hub], 10).chosen.model == "gpunet-1"  # a proxy figure ranks after a full training's
    assert choose([proxy, hub, folder], 10).chosen.model == "local-dir:ft"  # same images: no proxy penalty
    assert choose([proxy, hub, replace(folder, top1_fp32=65.0)], 10).chosen.model == "winner"


def test_unverified_and_unmeasured_paths_are_never_chosen():
    paths = [path("big", "openvino", "fp16", 2.0, 80.0, verified=False),
             MeasuredPath("big", "openvino", "bf16", registry_top1=80.0, status="skipped", reason="not native"),
             path("big", "onnxruntime", "fp32", 6.0, 80.0)]
    d = choose(paths, 10)
    assert (d.chosen.backend, d.chosen.precision) == ("onnxruntime", "fp32")
    assert "did not match PyTorch" in paths[0].reason and paths[1].reason == "not native"


def test_an_impossible_budget_names_the_fastest_candidate():
    with pytest.raises(NoFitError, match=r"max_latency_ms 1: .*fastest measured is small on openvino fp32 at 3.50 ms"
                       ) as e:
        choose(ladder(), 1.0)
    assert e.value.exit_code == 2 and e.value.argument == "max_latency_ms"
    assert (e.value.fastest.model, e.value.fastest.p50_ms) == ("small", 3.5)
    assert len(e.value.paths) == 6


def int8(p50, calibration="images", top1=79.5, top1_fp32=80.0):
    return path("big", "openvino", "int8", p50, 80.0, calibration=calibration, top1=top1, top1_fp32=top1_fp32)


def test_int8_is_chosen_when_calibrated_within_max_drop_and_fast_enough():
    paths = ladder() + [int8(18.0 / INT8_MIN_SPEEDUP - 0.01)]
    d = choose(paths, 16.0, max_drop=1.0)
    assert (d.chosen.model, d.chosen.precision) == ("big", "int8")


@pytest.mark.parametrize("case, reason", [
    (dict(p50=10.0, calibration="random"), "random inputs"),
    (dict(p50=10.0, top1=None), "accuracy not checked"),
    (dict(p50=10.0, top1=78.0), "drop 2.00 points > max_drop 1"),
    (dict(p50=17.0), "only 1.06x faster"),
])
def test_int8_is_not_chosen_otherwise_and_the_table_says_why(case, reason):
    p = int8(**case)
    d = choose(ladder() + [p], 19.0, max_drop=1.0)
    assert (d.chosen.model, d.chosen.backend, d.chosen.precision) == ("big", "openvino", "fp32")
    assert reason in p.reason and not p.chosen


def test_a_random_calibration_int8_figure_is_not_the_fastest_named_on_no_fit():
    with pytest.raises(NoFitError, match="small on openvino fp32") as e:
        choose(ladder() + [int8(0.5, calibration="random")], 1.0)
    assert e.value.fastest.precision == "fp32"


def test_bad_decision_arguments_name_the_argument():
    with pytest.raises(ValueError, match="max_latency_ms must be a positive number"):
        choose(ladder(), 0)
    with pytest.raises(ValueError, match="max_drop must be a number >= 0"):
        choose(ladder(), 5, max_drop=-1)


# ----------------------------------------------------------------------------------------- real deploy (ONNX Runtime)

@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    return make_digits(tmp_path_factory.mktemp("digits"), n_train=2, n_val=3, size=32)


@pytest.fixture(scope="module")
def deployed(tmp_path_factory, digits):
    """One deploy of gpunet-0 at 64 px on ONNX Runtime fp32 + INT8 (calibrated and gated on digits),
    through the CLI with --json; the weights are seeded so the test can rebuild the same model."""
    import torch

    from gpunet.cli import main

    root = tmp_path_factory.mktemp("deploy")
    out = root / "out"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GPUNET_HOME", str(root / "home"))
        mp.setenv("GPUNET_LOAD_AVERAGE", "0")
        torch.manual_seed(1234)
        import io
        from contextlib import redirect_stdout

        buf = io.StringIO()
        with redirect_stdout(buf):
            code = main(["deploy", "--max-latency-ms", "10000", "--model", "gpunet-0", "--img-size", str(RES),
                         "--backends", "onnxruntime", "--precisions", "fp32,int8", "--calib-dir",
                         str(digits / "train"), "--calib-size", "10", "--val-dir", str(digits / "val"),
                         "--rounds", "2", "--block", "2", "--warmup", "1", "--pause", "0", "--threads", "2",
                         "--weights", "random", "--out", str(out), "--json"])
        registry = json.loads((root / "home" / "registry.json").read_text())
    assert code == 0
    return out, json.loads(buf.getvalue()), registry


def seeded_model():
    import torch

    import gpunet

    torch.manual_seed(1234)
    return gpunet.get_model("gpunet-0").eval()


def test_deploy_writes_the_folder_and_the_json_decision(deployed):
    out, doc, registry = deployed
    assert sorted(p.name for p in out.iterdir()) == ["README.md", "deploy.json", "model.onnx"]
    info = json.loads((out / "deploy.json").read_text())
    assert doc["decision"]["chosen"]["model"] == info["model"] == "gpunet-0"
    assert info["backend"] == "onnxruntime" and info["precision"] in ("fp32", "int8")
    assert info["input_shape"] == [1, 3, RES, RES] and info["batch_size"] == 1
    assert info["spec_sha256"] == seeded_model().spec.fingerprint()
    assert info["p50_ms"] <= info["max_latency_ms"] and info["p90_ms"] >= info["p50_ms"]
    assert info["runtime"]["onnxruntime"] and info["fingerprint"]["id"]
    assert info["weights"]["source"] == "random"
    assert info["ranked_by"] == doc["decision"]["ranked_by"] == RANK_REGISTRY  # a hub model only
    assert info["preprocessing"]["input_size"] == [3, RES, RES] and info["preprocessing"]["interpolation"]
    assert info["accuracy"]["val_images"] == 30 and info["accuracy"]["top1_fp32"] is not None
    import hashlib

    assert info["files"] == {"model.onnx": hashlib.sha256((out / "model.onnx").read_bytes()).hexdigest()}
    rows = {(p["backend"], p["precision"]): p for p in doc["decision"]["paths"]}
    assert set(rows) == {("onnxruntime", "fp32"), ("onnxruntime", "int8")}
    q = rows[("onnxruntime", "int8")]
    assert q["calibration"] == "images" and q["top1"] is not None and q["p50_ms"] > 0
    assert q["chosen"] or q["reason"]  # INT8 either won its gate or the table says why not
    readme = (out / "README.md").read_text()
    assert "Weights: **random initialisation**" in readme and f"ranked by {RANK_REGISTRY}." in readme
    assert "| gpunet-0 | onnxruntime | int8 |" in readme and "| gpunet-0 | onnxruntime | fp32 |" in readme
    tiers = registry["latency"][doc["device"]]["gpunet-0"]
    assert {t["precision"] for t in tiers} == {"fp32", "int8"} and all(t["kind"] == "measured" for t in tiers)


def test_load_deployed_gives_the_same_top1_as_pytorch_on_real_images(deployed, digits):
    import torch
    from PIL import Image

    import gpunet

    out, doc, _ = deployed
    model = gpunet.load_deployed(out)
    files = sorted((digits / "val").rglob("*.png"))
    images = [Image.open(f).convert("RGB") for f in files]
    logits = model(images)
    assert logits.shape == (len(files), 1000)
    x = torch.from_numpy(model.preprocess(images))
    with torch.inference_mode():
        ref = seeded_model()(x).numpy()
    if doc["decision"]["chosen"]["precision"] == "fp32":
        assert np.abs(logits - ref).max() <= 1e-3 * np.abs(ref).max()  # the same weights
        assert (logits.argmax(-1) == ref.argmax(-1)).all()
    else:  # INT8 was chosen: it passed the top-1 gate; the classes mostly agree
        assert (logits.argmax(-1) == ref.argmax(-1)).mean() >= 0.8
    # every input form gives the same logits
    arr = np.asarray(images[0])
    np.testing.assert_allclose(model(arr), logits[:1], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(model(x[0]), logits[:1], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(model(x[:2].numpy()), logits[:2], rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="CHW"):
        model(torch.zeros(3, 32, 32))


def test_a_tampered_artifact_is_refused(deployed, tmp_path):
    import gpunet

    copy = tmp_path / "copy"
    shutil.copytree(deployed[0], copy)
    data = bytearray((copy / "model.onnx").read_bytes())
    data[-10] ^= 0xFF
    (copy / "model.onnx").write_bytes(bytes(data))
    with pytest.raises(ArtifactError, match=r"model\.onnx: sha256 differs"):
        gpunet.load_deployed(copy)
    (copy / "model.onnx").unlink()
    with pytest.raises(ArtifactError, match=r"model\.onnx: missing"):
        gpunet.load_deployed(copy)


def test_another_machine_is_warned(deployed, tmp_path):
    import gpunet

    copy = tmp_path / "copy"
    shutil.copytree(deployed[0], copy)
    info = json.loads((copy / "deploy.json").read_text())
    info["fingerprint"]["id"] = "000000000000"
    (copy / "deploy.json").write_text(json.dumps(info))
    with pytest.warns(RuntimeWarning, match="fingerprint .* differs"):
        gpunet.load_deployed(copy)


def test_an_impossible_budget_exits_2_and_writes_nothing(tmp_path, capsys):
    from gpunet.cli import main

    out = tmp_path / "out"
    code = main(["deploy", "--max-latency-ms", "0.001", "--model", "gpunet-0", "--img-size", str(RES),
                 "--backends", "onnxruntime", "--precisions", "fp32", "--rounds", "1", "--block", "2",
                 "--warmup", "1", "--pause", "0", "--weights", "random", "--out", str(out), "--json"])
    captured = capsys.readouterr()
    err, doc = captured.err, json.loads(captured.out)
    assert code == 2 and not out.exists()
    assert doc["fastest"]["model"] == "gpunet-0" and doc["fastest"]["p50_ms"] > 0.001 and len(doc["paths"]) == 1
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out")]  # no temp folder left either
    assert "--max-latency-ms 0.001: no candidate fits; the fastest measured is gpunet-0 on onnxruntime fp32 at" in err


@pytest.mark.parametrize("argv, message", [
    (["--backends", "onnxruntime,cuda"], "--backends must be one of"),
    (["--precisions", "int8"], "--precisions int8 needs calib_dir"),
    (["--calib-dir", "/no/such/dir"], "--calib-dir: image folder not found"),
    (["--batch-size", "0"], "--batch-size must be a positive integer"),
    (["--model", "gpunet-99"], "gpunet-99"),
    (["--rounds", "0"], "--rounds must be a positive integer"),
])
def test_bad_arguments_name_the_flag(tmp_path, capsys, argv, message):
    from gpunet.cli import main

    code = main(["deploy", "--max-latency-ms", "5", "--out", str(tmp_path / "o")] + argv)
    assert code != 0 and message in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


# ----------------------------------------------------------------------------------------- candidates and plan

def test_candidates_leave_out_models_whose_known_figure_cannot_fit(tmp_path):
    from gpunet.deploy.pipeline import CANDIDATE_SLACK, candidate_models
    from gpunet.registry import update_user_registry

    def change(data):
        data["devices"]["cpu-test"] = {"name": "test cpu", "kind": "cpu", "engine": "onnxruntime", "source": "test"}
        data["latency"]["cpu-test"] = {
            "gpunet-1": [{"latency_ms": 100.0, "batch": 1, "precision": "fp32", "engine": "onnxruntime"}],
            "gpunet-0": [{"latency_ms": 10.0 * CANDIDATE_SLACK, "batch": 1, "precision": "fp32",
                          "engine": "onnxruntime"}]}

    update_user_registry(change)
    names, left_out = candidate_models(None, False, "cpu-test", 10.0, 1)
    assert "gpunet-1" not in names and "gpunet-0" in names and "gpunet-2" in names  # no figure: measured
    assert [p.model for p in left_out] == ["gpunet-1"] and "known figure 100.00 ms" in left_out[0].reason
    assert "gpunet-1" in candidate_models(None, True, "cpu-test", 10.0, 1)[0]  # --all
    assert candidate_models("gpunet-1,gpunet-0", False, "cpu-test", 10.0, 1) == (["gpunet-1", "gpunet-0"], [])
    from gpunet.deploy import deploy
    from gpunet.registry import list_models

    def all_slow(data):
        for i, n in enumerate(list_models()):
            data["latency"]["cpu-test"][n] = [{"latency_ms": 20.0 + i, "batch": 1, "precision": "fp32",
                                               "engine": "onnxruntime"}]

    update_user_registry(all_slow)
    with pytest.raises(NoFitError, match="no hub model could fit on cpu-test.*the fastest being gpunet-0 at 20.00 ms"):
        deploy(1.0, str(tmp_path / "o"), device="cpu-test")  # every model known too slow: nothing measured
    assert not (tmp_path / "o").exists()


def test_the_plan_keeps_what_this_machine_cannot_run_as_rows_saying_why():
    from gpunet.deploy.measure import plan_paths

    run, skipped = plan_paths(["onnxruntime", "tensorrt"], ["fp32", "bf16", "int8"], calib_dir=None)
    assert run == [("onnxruntime", "fp32")]
    reasons = {(b, p): why for b, p, why in skipped}
    assert "calib-dir" in reasons[("onnxruntime", "int8")]
    assert set(reasons) >= {("tensorrt", "fp32"), ("tensorrt", "bf16"), ("tensorrt", "int8")}
    assert all(reasons.values())
    assert ("onnxruntime", "bf16") not in reasons  # not a combination at all: no row


def test_an_openvino_deploy_writes_the_ir_pair_and_loads_it(tmp_path):
    import torch

    import gpunet
    from gpunet.deploy import Timing, deploy

    torch.manual_seed(99)
    result = deploy(10000, str(tmp_path / "ov"), models="gpunet-0", backends="openvino", precisions="fp32",
                    resolution=RES, threads=2, timing=Timing(rounds=1, block=2, warmup=1, warmup_s=0, pause=0),
                    weights="random")
    out = tmp_path / "ov"
    assert sorted(p.name for p in out.iterdir()) == ["README.md", "deploy.json", "model.bin", "model.xml"]
    assert set(result.info["files"]) == {"model.xml", "model.bin"} and result.info["runtime"]["openvino"]
    torch.manual_seed(99)
    ref_model = gpunet.get_model("gpunet-0").eval()
    model = gpunet.load_deployed(out)
    x = torch.randn(2, 3, RES, RES, generator=torch.Generator().manual_seed(5))
    with torch.inference_mode():
        ref = ref_model(x).numpy()
    assert np.abs(model(x) - ref).max() <= 1e-3 * np.abs(ref).max()
    (out / "model.bin").write_bytes(b"x" + (out / "model.bin").read_bytes()[1:])
    with pytest.raises(ArtifactError, match=r"model\.bin: sha256 differs"):
        gpunet.load_deployed(out)


def test_a_folder_that_is_not_a_deploy_is_never_replaced(tmp_path, capsys):
    """--out is replaced whole, so a folder holding other files (not an earlier deploy) is refused."""
    from gpunet.cli import main

    mine = tmp_path / "my-project"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    code = main(["deploy", "--max-latency-ms", "5", "--model", "gpunet-0", "--out", str(mine)])
    assert code == 2 and "is not a gpunet deploy folder (no deploy.json)" in capsys.readouterr().err
    assert [p.name for p in mine.iterdir()] == ["notes.txt"] and (mine / "notes.txt").read_text() == "keep me"


def _quick(**kw):
    from gpunet.deploy import Timing

    return dict(backends="onnxruntime", precisions="fp32", resolution=RES, threads=2,
                timing=Timing(rounds=1, block=2, warmup=1, warmup_s=0, pause=0), **kw)


def _same_outputs(out, ref_model):
    import torch

    import gpunet

    x = torch.randn(2, 3, RES, RES, generator=torch.Generator().manual_seed(5))
    with torch.inference_mode():
        ref = ref_model.eval()(x).numpy()
    return np.abs(gpunet.load_deployed(out)(x) - ref).max() <= 1e-3 * np.abs(ref).max()


def test_published_weights_are_what_is_deployed_and_recorded(tmp_path, monkeypatch):
    """By default a hub model carries its published weights (here imported into the cache, offline):
    the artifact computes what the pretrained model does, and deploy.json / the README name the file.
    Without them the model is a failed row saying why, and nothing is written."""
    import torch

    import gpunet
    from gpunet.deploy import deploy
    from gpunet.weights import import_weights
    from test_weights_support import nvidia_checkpoint_bytes

    monkeypatch.setenv("GPUNET_OFFLINE", "1")
    with pytest.raises(NoFitError, match=r"(?s)no candidate could be measured.*gpunet-0: WeightsNotCachedError: .*"
                                         r"weights='random' deploys for latency only"):
        deploy(10000, str(tmp_path / "none"), models="gpunet-0", **_quick())
    assert not (tmp_path / "none").exists()
    pth = tmp_path / "0.65ms.pth.tar"
    pth.write_bytes(nvidia_checkpoint_bytes("gpunet-0", seed=3)[1])
    import_weights("gpunet-0", str(pth))
    result = deploy(10000, str(tmp_path / "out"), models="gpunet-0", **_quick())
    w = result.info["weights"]
    assert (w["source"], w["variant"], w["file"]) == ("pretrained", "nvidia-ngc", "0.65ms.pth.tar")
    assert json.loads((tmp_path / "out" / "deploy.json").read_text())["weights"] == w
    assert "Weights: published, `nvidia-ngc` (0.65ms.pth.tar" in (tmp_path / "out" / "README.md").read_text()
    assert _same_outputs(tmp_path / "out", gpunet.get_model("gpunet-0", pretrained=True))
    torch.manual_seed(0)
    assert not _same_outputs(tmp_path / "out", gpunet.get_model("gpunet-0"))  # not a fresh initialisation


def test_a_model_folder_is_deployed_with_its_own_weights(tmp_path):
    """--model local-dir:DIR (a fine-tuned model, 10 classes): its own weights go into the artifact;
    its timings are not saved as tiers (a folder is not a hub name)."""
    import torch

    import gpunet
    from gpunet.deploy import deploy

    torch.manual_seed(7)
    tuned = gpunet.get_model("gpunet-0", num_classes=10)
    gpunet.save_pretrained(tuned, str(tmp_path / "tuned"))
    where = f"local-dir:{tmp_path / 'tuned'}"
    result = deploy(10000, str(tmp_path / "out"), models=where, **_quick())
    assert result.info["weights"] == {"source": "folder", "location": where}
    assert result.decision.chosen.model == where and result.saved == []
    assert _same_outputs(tmp_path / "out", tuned)
