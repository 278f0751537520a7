"""Evaluation: exact top-1 / top-5 on a model whose predictions are known, the model card's
transform, and ``gpunet eval --json`` on a checkpoint."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from gpunet.train import evaluate
from gpunet.train.data import eval_data_config

REPO = Path(__file__).resolve().parents[1]
LEVELS = [10 + 25 * k for k in range(10)]  # class k: a uniform image of grey level LEVELS[k]


def make_uniform_folder(root: Path, per_class: int = 3, size: int = 40) -> Path:
    from PIL import Image

    for k, level in enumerate(LEVELS):
        folder = root / "val" / f"class_{k}"
        folder.mkdir(parents=True)
        for i in range(per_class):
            Image.new("RGB", (size + 3 * i, size), (level, level, level)).save(folder / f"{i}.png")
    return root


class GreyLevelModel(nn.Module):
    """Ranks classes by how close the image's grey level is to each class's level, except
    that classes 0 and 1 are swapped: 80 % top-1 and 100 % top-5 on the folder above."""

    def __init__(self, swap=(0, 1)):
        super().__init__()
        from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD

        self.register_buffer("mean", torch.tensor(IMAGENET_DEFAULT_MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(IMAGENET_DEFAULT_STD).view(1, 3, 1, 1))
        levels = torch.tensor(LEVELS, dtype=torch.float32)
        a, b = swap
        levels[[a, b]] = levels[[b, a]]
        self.register_buffer("levels", levels)
        self.pretrained_cfg = {"input_size": (3, 24, 24), "crop_pct": 0.875, "interpolation": "bicubic"}
        self.shapes = []

    def forward(self, x):
        self.shapes.append(tuple(x.shape[-2:]))
        grey = (x * self.std + self.mean).mean(dim=(1, 2, 3)) * 255
        return -(grey[:, None] - self.levels[None]).abs()


def test_top1_top5_on_controlled_predictions(tmp_path):
    data = make_uniform_folder(tmp_path / "data")
    model = GreyLevelModel()
    r = evaluate(model, str(data), batch_size=7, workers=0, device="cpu")
    assert r["images"] == 30
    assert r["top1"] == pytest.approx(80.0)   # 6 of 30 images (classes 0 and 1) are wrong
    assert r["top5"] == pytest.approx(100.0)  # ... but their class is the runner-up
    assert set(model.shapes) == {(24, 24)}    # the model's own pretrained_cfg size
    assert (r["crop_pct"], r["interpolation"]) == (0.875, "bicubic")
    # Swapping classes 0 and 9 (levels far apart): the true class falls out of the top 5.
    r = evaluate(GreyLevelModel(swap=(0, 9)), str(data / "val"), workers=0, device="cpu", img_size=16)
    assert r["top1"] == pytest.approx(80.0) and r["top5"] == pytest.approx(80.0) and r["img_size"] == 16


def test_eval_transform_follows_the_model_card():
    p0 = eval_data_config("gpunet-p0")
    assert (p0["input_size"], p0["crop_pct"], p0["interpolation"]) == ((3, 224, 224), 0.875, "bicubic")
    g0 = eval_data_config("gpunet-0")
    assert (g0["input_size"], g0["crop_pct"]) == ((3, 320, 320), 1.0)
    import gpunet

    model = gpunet.get_model("gpunet-p1", num_classes=3)  # built from the hub: no timm pretrained_cfg
    cfg = eval_data_config(model, img_size=64)
    assert (cfg["input_size"], cfg["crop_pct"], cfg["interpolation"]) == ((3, 64, 64), 0.875, "bicubic")


def test_labels_beyond_the_model_outputs_are_an_error(tmp_path):
    data = make_uniform_folder(tmp_path / "data", per_class=1)
    tiny = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(3, 4))
    with pytest.raises(ValueError, match="out of range for a model with 4 outputs"):
        evaluate(tiny, str(data), workers=0, img_size=16, device="cpu")
    with pytest.raises(FileNotFoundError, match="data dir not found"):
        evaluate(tiny, str(tmp_path / "nope"), workers=0, img_size=16)


def test_cli_eval_json_on_a_checkpoint(tmp_path):
    import gpunet

    torch.manual_seed(0)
    data = make_uniform_folder(tmp_path / "data", per_class=2)
    model = gpunet.get_model("gpunet-0", num_classes=10).eval()
    ckpt = tmp_path / "model.pth"
    torch.save({"num_classes": 10, "state_dict": model.state_dict()}, ckpt)
    expected = evaluate(model, str(data), img_size=32, workers=0, device="cpu")
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, "-m", "gpunet", "eval", "--model", "gpunet-0", "--checkpoint", str(ckpt),
                           "--data-dir", str(data), "--img-size", "32", "-j", "0", "--device", "cpu", "--json"],
                          capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    got = json.loads(proc.stdout)
    assert got["images"] == 20 and got["model"] == "gpunet-0" and got["crop_pct"] == 1.0
    assert got["top1"] == pytest.approx(expected["top1"]) and got["top5"] == pytest.approx(expected["top5"])
    assert got["loss"] == pytest.approx(expected["loss"], rel=1e-4)
    bad = subprocess.run([sys.executable, "-m", "gpunet", "eval", "--model", "gpunet-0", "--checkpoint",
                          str(tmp_path / "missing.pth"), "--data-dir", str(data)],
                         capture_output=True, text=True, env=env, timeout=120)
    assert bad.returncode == 1 and "checkpoint not found" in bad.stderr
