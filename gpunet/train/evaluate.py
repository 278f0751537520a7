"""Top-1 / top-5 on an image folder with the model card's eval transform."""
from __future__ import annotations

import sys
import time
from typing import Any, Dict, Optional, Tuple, Union

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["evaluate", "accuracy_counts", "checkpoint_facts"]


def _autocast(device: torch.device, amp: bool):
    if amp and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.float16)
    return torch.autocast(device.type, enabled=False)


@torch.no_grad()
def accuracy_counts(model: nn.Module, loader, device: torch.device, amp: bool = False, topk: int = 5,
                    progress: bool = False, desc: str = "eval") -> Dict[str, float]:
    """Summed counts (not ratios) so that ranks can all-reduce them: correct@1, correct@k, n, loss."""
    was_training = model.training
    model.eval()
    correct1 = correctk = n = 0
    loss_sum = 0.0
    k_used = None
    batches = loader
    if progress:
        from tqdm import tqdm

        batches = tqdm(loader, desc=desc, unit="batch", file=sys.stderr, leave=False)
    try:
        for images, target in batches:
            images = images.to(device, non_blocking=True)
            target = target.to(device, non_blocking=True)
            with _autocast(device, amp):
                logits = model(images)
            logits = logits.float()
            if target.numel() and int(target.max()) >= logits.shape[-1]:
                raise ValueError(f"dataset label {int(target.max())} is out of range for a model with "
                                 f"{logits.shape[-1]} outputs (check num_classes / class folders)")
            k = min(topk, logits.shape[-1])
            k_used = k
            pred = logits.topk(k, dim=-1).indices
            hit = pred.eq(target.view(-1, 1))
            correct1 += int(hit[:, 0].sum())
            correctk += int(hit.any(dim=-1).sum())
            n += int(target.numel())
            loss_sum += float(F.cross_entropy(logits, target, reduction="sum"))
    finally:
        model.train(was_training)
    return {"correct1": correct1, "correctk": correctk, "n": n, "loss_sum": loss_sum, "k": k_used or topk}


def checkpoint_facts(path: str) -> Tuple[Optional[int], Optional[int]]:
    """(class count, training resolution) that a checkpoint records or implies; either may be
    ``None`` (a plain state dict records no resolution, and an unknown head no class count)."""
    from ..checkpoint import read_checkpoint

    obj = read_checkpoint(path)
    size = obj.get("img_size") if isinstance(obj, dict) and isinstance(obj.get("img_size"), int) else None
    if isinstance(obj, dict) and isinstance(obj.get("num_classes"), int):
        return obj["num_classes"], size
    from .distill import checkpoint_classes

    return checkpoint_classes(path), size


def evaluate(model: Union[nn.Module, str], data_dir: str, *, split: str = "val", dataset: str = "",
             pretrained: bool = False, checkpoint: Optional[str] = None, batch_size: int = 64,
             workers: int = 2, img_size: Optional[int] = None, crop_pct: Optional[float] = None,
             interpolation: Optional[str] = None, device: Optional[Union[str, torch.device]] = None,
             amp: bool = False, progress: Optional[bool] = None) -> Dict[str, Any]:
    """Top-1 and top-5 accuracy (percent) of ``model`` on ``data_dir/split`` (or ``data_dir``
    itself when it holds the class folders).

    ``model``: an ``nn.Module`` or a hub / timm name (then ``pretrained`` or ``checkpoint``
    give its weights; a training checkpoint's recorded resolution is the default ``img_size``). The transform is the model card's: resize to ``img_size / crop_pct``,
    bicubic, center crop, ImageNet normalisation, unless overridden.
    """
    from .data import eval_data_config, eval_loader, eval_transform, open_dataset

    name = model if isinstance(model, str) else getattr(getattr(model, "spec", None), "name", None)
    if isinstance(model, str):
        from .distill import create_model

        classes, trained_size = checkpoint_facts(checkpoint) if checkpoint else (None, None)
        img_size = img_size or trained_size
        model = create_model(model, num_classes=classes, pretrained=pretrained, checkpoint_path=checkpoint)
    elif pretrained or checkpoint:
        raise ValueError("pretrained / checkpoint apply to a model name; load weights into a module yourself")
    data_cfg = eval_data_config(model, img_size=img_size, crop_pct=crop_pct, interpolation=interpolation)
    ds = open_dataset(data_dir, split, dataset, allow_root=True)
    ds.transform = eval_transform(data_cfg)
    dev = torch.device(device) if device is not None else torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model = model.to(dev)
    loader = eval_loader(ds, batch_size=batch_size, workers=workers, pin_memory=dev.type == "cuda")
    show = sys.stderr.isatty() if progress is None else progress
    start = time.perf_counter()
    c = accuracy_counts(model, loader, dev, amp=amp, progress=show)
    seconds = time.perf_counter() - start
    if c["n"] == 0:
        raise ValueError(f"{data_dir}: no images to evaluate")
    return {
        "top1": 100.0 * c["correct1"] / c["n"],
        "top5": 100.0 * c["correctk"] / c["n"],
        "topk": c["k"],
        "loss": c["loss_sum"] / c["n"],
        "images": c["n"],
        "model": name,
        "img_size": data_cfg["input_size"][-1],
        "crop_pct": data_cfg["crop_pct"],
        "interpolation": data_cfg["interpolation"],
        "seconds": seconds,
        "images_per_second": c["n"] / seconds if seconds > 0 else None,
    }
