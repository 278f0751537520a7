"""Training on a real (small) dataset: scikit-learn's digits as an ImageFolder at 32 px.

Covers: GPUNet-0 learns (clearly above 10 % chance), SIGKILL + resume continues bit-for-bit,
distillation (loss == formula, teacher at its own resolution), 2-process DDP on gloo via
torchrun, the early-stopping callback, recipes and YAML overrides.
"""
from __future__ import annotations

import json
import math
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from gpunet.train import Trainer, get_recipe, resolve_config, train
from gpunet.train.distill import DistillationLoss, soft_target_cross_entropy

REPO = Path(__file__).resolve().parents[1]

# Small and quick: no flips (digits are not symmetric), no RandAugment, fixed lr.
FAST = dict(model="gpunet-0", img_size=32, batch_size=16, workers=0, aa="", hflip=0.0, reprob=0.0,
            color_jitter=0.0, scale=(0.6, 1.0), lr=3e-3, recipe="finetune", log_interval=0)
FAST_FLAGS = ["--model", "gpunet-0", "--img-size", "32", "-b", "16", "-j", "0", "--aa", "", "--hflip", "0",
              "--reprob", "0", "--color-jitter", "0", "--scale", "0.6", "1.0", "--lr", "3e-3",
              "--recipe", "finetune", "--log-interval", "0"]


def make_digits(root: Path, n_train: int, n_val: int, size: int = 32, n_test: int = 0) -> Path:
    """digits (8x8, 16 grey levels) upscaled to ``size`` px RGB PNGs in train/ and val/ folders
    (and ``n_test`` per class in test/, images neither of the others holds)."""
    import numpy as np
    from PIL import Image

    # only the tests that train on digits need scikit-learn; recipe/config tests run without it
    load_digits = pytest.importorskip("sklearn.datasets").load_digits

    d = load_digits()
    counts = {}
    for j in range(len(d.images)):
        c = int(d.target[j])
        k = counts[c] = counts.get(c, 0) + 1
        if k > n_train + n_val + n_test:
            continue
        split = "train" if k <= n_train else "val" if k <= n_train + n_val else "test"
        img = Image.fromarray((d.images[j] / 16.0 * 255).astype(np.uint8)).resize((size, size), Image.BICUBIC)
        folder = root / split / str(c)
        folder.mkdir(parents=True, exist_ok=True)
        img.convert("RGB").save(folder / f"{j}.png")
    return root


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    return make_digits(tmp_path_factory.mktemp("digits"), n_train=40, n_val=10)


@pytest.fixture(scope="module")
def tiny_digits(tmp_path_factory):
    return make_digits(tmp_path_factory.mktemp("tiny_digits"), n_train=8, n_val=2)


pytestmark = pytest.mark.usefixtures("one_thread")


def _env():
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONPATH=str(REPO))
    env.pop("WORLD_SIZE", None)
    return env


def _ckpt(path):
    return torch.load(path, map_location="cpu", weights_only=True)


def _assert_same_tree(a, b, where="checkpoint"):
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b), where
    elif isinstance(a, dict):
        assert set(a) == set(b), f"{where}: keys differ"
        for k in a:
            _assert_same_tree(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            _assert_same_tree(x, y, f"{where}[{i}]")
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"


@pytest.mark.slow
def test_learns_digits_and_resume_after_kill_is_exact(digits, tmp_path):
    epochs = 4
    out_a = tmp_path / "a"

    def keep_epoch_1(stats):  # last.pth.tar holds the previous epoch while the callback runs
        if stats.epoch == 2:
            (out_a / "epoch1.pth.tar").write_bytes((out_a / "last.pth.tar").read_bytes())

    # Uninterrupted run.
    run_a = train(data_dir=str(digits), output=str(out_a), epochs=epochs, callback=keep_epoch_1, **FAST)
    assert run_a.epochs_run == epochs and not run_a.stopped_early
    final = run_a.history[-1]
    assert final["val_images"] == 100
    assert final["top1"] >= 50.0, f"GPUNet-0 should clearly beat 10% chance, got {final['top1']}"
    assert final["ema_top1"] is not None  # the finetune recipe keeps an EMA

    # Same run from the CLI, SIGKILLed as soon as its first checkpoint exists ...
    out_b = tmp_path / "b"
    proc = subprocess.Popen([sys.executable, "-m", "gpunet", "train", "--data-dir", str(digits), "--output",
                             str(out_b), "--epochs", str(epochs), *FAST_FLAGS], env=_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 240
    while not (out_b / "last.pth.tar").exists():
        if proc.poll() is not None:
            raise AssertionError(f"training exited early: {proc.stderr.read().decode()[-2000:]}")
        assert time.time() < deadline, "no checkpoint written"
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert _ckpt(out_b / "last.pth.tar")["epoch"] == 0

    # ... then resumed for one more epoch (the schedule still spans all 4 epochs).
    run_b = train(data_dir=str(digits), output=str(out_b), epochs=epochs, resume=str(out_b),
                  callback=lambda stats: stats.epoch == 1, **FAST)
    assert run_b.epochs_run == 1 and run_b.last_epoch == 1
    assert not list(out_b.glob(".*.tmp")), "a half-written checkpoint was left behind"
    a, b = _ckpt(out_a / "epoch1.pth.tar"), _ckpt(out_b / "last.pth.tar")
    assert a["epoch"] == b["epoch"] == 1
    for key in ("state_dict", "state_dict_ema", "optimizer", "scheduler", "scaler", "rng", "num_updates",
                "best_metric", "best_epoch"):
        _assert_same_tree(a[key], b[key], key)
    for ha, hb in zip(a["history"], b["history"], strict=True):  # timings differ; the model's figures not
        for k in ("train_loss", "lr", "top1", "top5", "val_loss", "ema_top1", "metric"):
            assert ha[k] == hb[k], (k, ha, hb)


def test_distillation_loss_is_the_formula_and_teacher_sees_its_resolution(tiny_digits, tmp_path):
    import timm

    # A timm teacher fine-tuned "elsewhere": a checkpoint that does not record its architecture.
    teacher = timm.create_model("resnet10t", num_classes=10)
    torch.save(teacher.state_dict(), tmp_path / "teacher.pth")
    cfg = resolve_config("finetune", overrides=dict(
        FAST, data_dir=str(tiny_digits), output=str(tmp_path / "run"), epochs=1, teacher=str(tmp_path / "teacher.pth"),
        teacher_model="resnet10t", teacher_img_size=48, distill_weight=0.5, distill_temperature=2.0, smoothing=0.1))
    trainer = Trainer(cfg).setup()
    seen = []
    trainer.teacher.teacher.register_forward_pre_hook(lambda m, inp: seen.append(tuple(inp[0].shape)))

    x = torch.randn(4, 3, 32, 32)
    y = torch.tensor([0, 3, 5, 9])
    trainer.model.eval()
    with torch.no_grad():
        s_logits = trainer.model(x)
        t_logits = trainer.teacher(x)
        got = trainer.loss_fn(s_logits, y, t_logits)
    assert seen[-1] == (4, 3, 48, 48)
    # By hand: label-smoothed CE + w * T^2 * cross-entropy against the teacher's softened distribution.
    eps, w, T = 0.1, 0.5, 2.0
    logp = F.log_softmax(s_logits, -1)
    ce = ((1 - eps) * -logp.gather(1, y[:, None]).squeeze(1) + eps * -logp.mean(-1)).mean()
    p_t = F.softmax(t_logits / T, -1)
    kd = (-(p_t * F.log_softmax(s_logits / T, -1)).sum(-1)).mean() * T * T
    torch.testing.assert_close(got, ce + w * kd, rtol=1e-6, atol=1e-6)
    # NVIDIA's default is the plain 1:1 sum.
    base = torch.nn.CrossEntropyLoss()
    torch.testing.assert_close(DistillationLoss(base)(s_logits, y, t_logits),
                               base(s_logits, y) + soft_target_cross_entropy(s_logits, F.softmax(t_logits, -1)))

    result = trainer.fit()  # and it trains end to end
    assert result.epochs_run == 1 and math.isfinite(result.history[0]["train_loss"])
    assert seen[-1][-1] == 48


def test_teacher_with_wrong_class_count_is_refused(tiny_digits, tmp_path):
    from gpunet.train.distill import load_teacher

    path = tmp_path / "t.pth"
    torch.save({"arch": "gpunet-0", "num_classes": 7,
                "state_dict": __import__("gpunet").get_model("gpunet-0", num_classes=7).state_dict()}, path)
    with pytest.raises(ValueError, match="predicts 7 classes"):
        load_teacher(str(path), num_classes=10)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_ddp_two_cpu_processes_gloo(tiny_digits, tmp_path):
    out = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
           "--master_port", str(_free_port()), "-m", "gpunet", "train", "--data-dir", str(tiny_digits),
           "--output", str(out), "--epochs", "2", "--json", *FAST_FLAGS[:4], "-b", "8", *FAST_FLAGS[6:]]
    proc = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads(proc.stdout)
    assert summary["world_size"] == 2 and summary["epochs_run"] == 2
    ckpt = _ckpt(out / "last.pth.tar")
    assert ckpt["world_size"] == 2
    # 80 images split over 2 ranks, 8 per batch: 5 optimizer steps per epoch on each rank.
    assert ckpt["num_updates"] == 2 * 5
    # Each rank keeps its own RNG stream, all saved; validation saw every image exactly once.
    assert len(ckpt["rng"]) == 2 and not torch.equal(ckpt["rng"][0]["torch"], ckpt["rng"][1]["torch"])
    assert ckpt["history"][-1]["val_images"] == 20
    assert all(math.isfinite(h["train_loss"]) for h in ckpt["history"])
    # The optimizer moved the weights from their (seeded) start.
    assert ckpt["optimizer"]["state"], "no optimizer state: nothing was trained"


def test_callback_stops_early_and_resume_of_finished_run(tiny_digits, tmp_path):
    seen = []

    def stop_at_first(stats):
        seen.append(stats)
        return True

    out = tmp_path / "cb"
    r = train(data_dir=str(tiny_digits), output=str(out), epochs=5, callback=stop_at_first, **FAST)
    assert len(seen) == 1 and r.epochs_run == 1 and r.stopped_early
    assert seen[0].top1 is not None and seen[0].val_images == 20 and seen[0].metric == seen[0].ema_top1
    assert (out / "best.pth.tar").exists() and (out / "config.json").exists()
    # An existing run is never overwritten by accident ...
    with pytest.raises(ValueError, match="exists"):
        train(data_dir=str(tiny_digits), output=str(out), epochs=5, **FAST)
    # ... and resuming a run that stopped early does not train again.
    again = train(data_dir=str(tiny_digits), output=str(out), epochs=5, resume="auto", **FAST)
    assert again.epochs_run == 0 and again.stopped_early and again.last_epoch == 0
    # The checkpoint evaluates like any other (EMA weights, class count recorded).
    from gpunet.train import evaluate

    res = evaluate("gpunet-0", str(tiny_digits), checkpoint=str(out / "last.pth.tar"), img_size=32, workers=0)
    assert res["images"] == 20 and res["top1"] == pytest.approx(seen[0].ema_top1)


def test_paper_recipe_matches_table_5():
    cfg = resolve_config("paper", overrides={"data_dir": "x"})
    assert (cfg.opt, cfg.opt_eps, cfg.weight_decay, cfg.sched) == ("rmsproptf", 1e-3, 1e-5, "step")
    assert (cfg.decay_epochs, cfg.decay_rate, cfg.warmup_epochs, cfg.warmup_lr) == (2.4, 0.97, 3, 1e-6)
    assert (cfg.model_ema, cfg.model_ema_decay, cfg.aa, cfg.reprob, cfg.remode) == (
        True, 0.9999, "rand-m9-mstd0.5", 0.2, "pixel")
    assert (cfg.drop, cfg.drop_path, cfg.amp, cfg.epochs, cfg.crop_pct) == (0.2, 0.2, True, 450, 1.0)
    # 0.06 per 192 x 8 images, linear in the global batch.
    assert cfg.global_lr(world_size=8) == pytest.approx(0.06)
    assert cfg.global_lr(world_size=2) == pytest.approx(0.015)
    assert resolve_config("paper", overrides={"lr": 0.1}).global_lr(8) == 0.1


def test_paper_recipe_is_wired_through_timm(tiny_digits, tmp_path):
    from timm.optim import RMSpropTF
    from timm.utils import ModelEmaV3

    cfg = resolve_config("paper", overrides=dict(data_dir=str(tiny_digits), output=str(tmp_path / "p"),
                                                 img_size=32, batch_size=16, workers=0))
    t = Trainer(cfg).setup()
    lr = 0.06 * 16 / 1536
    assert isinstance(t.optimizer, RMSpropTF) and t.optimizer.defaults["eps"] == 1e-3
    assert t.optimizer.param_groups[0]["lr"] == pytest.approx(1e-6)           # warm-up starts at 1e-6
    assert {g["weight_decay"] for g in t.optimizer.param_groups} == {0.0, 1e-5}  # no decay on BN / bias
    sched = t.scheduler
    assert sched._get_lr(1)[0] == pytest.approx(1e-6 + (lr - 1e-6) / 3)         # linear warm-up, 3 epochs
    for epoch in (3, 4.8, 7.2, 100):                                              # x0.97 every 2.4 epochs
        assert sched._get_lr(epoch)[0] == pytest.approx(lr * 0.97 ** math.floor(epoch / 2.4))
    assert isinstance(t.ema, ModelEmaV3) and t.ema.decay == 0.9999
    assert t.model.drop_rate == 0.2
    drop_path = [m.drop_prob for m in t.model.modules() if type(m).__name__ == "DropPath"]
    assert drop_path and max(drop_path) <= 0.2 and max(drop_path) > 0.15  # 0.2 scaled by depth
    assert t.eval_cfg["crop_pct"] == 1.0 and t.eval_cfg["interpolation"] == "bicubic"
    names = [type(x).__name__ for x in t._train_ds.transform.transforms]
    assert "RandAugment" in names and "RandomErasing" in names


def test_yaml_overrides_sit_between_recipe_and_flags(tmp_path):
    pytest.importorskip("yaml")
    path = tmp_path / "run.yaml"
    path.write_text("recipe: paper\nepochs: 10\nweight-decay: 2.0e-5\nlr: 1\nscale: [0.5, 1.0]\n")
    cfg = resolve_config(config_file=str(path), overrides={"epochs": 3, "batch_size": None})
    assert cfg.recipe == "paper" and cfg.opt == "rmsproptf"      # recipe from the file
    assert cfg.weight_decay == 2e-5 and cfg.lr == 1.0 and isinstance(cfg.lr, float)  # file over recipe
    assert cfg.epochs == 3 and cfg.batch_size == 192              # flag over file; None = not given
    assert cfg.scale == (0.5, 1.0)
    path.write_text("epoch: 3\n")
    with pytest.raises(ValueError, match=r"unknown training option 'epoch'.*epochs"):
        resolve_config(config_file=str(path))
    path.write_text("epochs: many\n")
    with pytest.raises(ValueError, match="'epochs' must be an integer"):
        resolve_config(config_file=str(path))
    with pytest.raises(ValueError, match="unknown recipe"):
        get_recipe("imagenet")
    with pytest.raises(ValueError, match="data_dir is required"):
        train(model="gpunet-0", output=str(tmp_path / "x"))


def test_missing_split_folder_is_named(tmp_path):
    (tmp_path / "data" / "training_images" / "a").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match="no 'train' folder"):
        train(data_dir=str(tmp_path / "data"), output=str(tmp_path / "o"), **FAST)
