"""Datasets, transforms and loaders for training and evaluation, all from timm's parts.

Training: ``create_transform(is_training=True)`` (RandomResizedCrop, flip, RandAugment,
RandomErasing), Mixup/CutMix on the batch. Evaluation: the model card's transform (bicubic,
``crop_pct`` from the registry or the timm ``pretrained_cfg``). Loader order depends only on
(seed, epoch, rank), so a resumed run sees the same batches as an uninterrupted one.
"""
from __future__ import annotations

import os
import random
from typing import Any, Dict, Optional, Tuple

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Subset

from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD, Mixup, create_dataset, create_transform

__all__ = ["create_datasets", "open_dataset", "train_transform", "eval_transform", "eval_data_config",
           "train_loader", "eval_loader", "create_mixup", "num_classes_of"]

_TRAIN_DIRS = ("train", "training")
_VAL_DIRS = ("val", "validation", "valid", "test", "eval", "evaluation")


def _folder_split(root: str, split: str, synonyms: Tuple[str, ...]) -> str:
    for name in (split, *[s for s in synonyms if s != split]):
        path = os.path.join(root, name)
        if os.path.isdir(path):
            return path
    raise FileNotFoundError(f"data dir {root}: no '{split}' folder (looked for {', '.join((split, *synonyms))}); "
                            f"expected an ImageFolder layout {root}/{split}/<class>/<image>")


def open_dataset(data_dir: str, split: str, dataset: str = "", class_map: Optional[Dict[str, int]] = None,
                 is_training: bool = False, allow_root: bool = False, **kwargs: Any) -> Dataset:
    """An ImageFolder split (``data_dir/split/<class>/*``) or a timm dataset (``"torch/cifar10"``).

    ``allow_root``: for evaluation, ``data_dir`` may itself hold the class folders.
    """
    if not dataset:
        if not os.path.isdir(data_dir):
            raise FileNotFoundError(f"data dir not found: {data_dir}")
        try:
            root = _folder_split(data_dir, split, _TRAIN_DIRS if split in _TRAIN_DIRS else _VAL_DIRS)
        except FileNotFoundError:
            if not allow_root:
                raise
            root = data_dir
        ds = create_dataset("", root=root, split=split, search_split=False, class_map=class_map or "",
                            is_training=is_training, **kwargs)
        if len(ds) == 0:
            raise ValueError(f"{root}: no images found (expected <class>/<image> sub-folders)")
        return ds
    return create_dataset(dataset, root=data_dir, split=split, class_map=class_map or "",
                          is_training=is_training, **kwargs)


def num_classes_of(ds: Dataset) -> Optional[int]:
    reader = getattr(ds, "reader", None)
    mapping = getattr(reader, "class_to_idx", None)
    if mapping:
        return len(mapping)
    for attr in ("classes",):
        inner = getattr(reader, "dataset", None) or getattr(ds, "dataset", None) or ds
        if getattr(inner, attr, None):
            return len(getattr(inner, attr))
    return None


def _class_map(ds: Dataset) -> Optional[Dict[str, int]]:
    return dict(getattr(getattr(ds, "reader", None), "class_to_idx", None) or {}) or None


def create_datasets(data_dir: str, dataset: str = "", train_split: str = "train",
                    val_split: Optional[str] = "val") -> Tuple[Dataset, Optional[Dataset]]:
    """Train and (optional) validation datasets sharing one class-index map."""
    train = open_dataset(data_dir, train_split, dataset, is_training=True)
    val = None
    if val_split:
        try:
            val = open_dataset(data_dir, val_split, dataset, class_map=_class_map(train) if not dataset else None)
        except FileNotFoundError as e:
            raise FileNotFoundError(f"{e}; to train without validation pass val_split='' (--val-split '')") from None
    return train, val


def train_transform(img_size: int, cfg: Any, mean=IMAGENET_DEFAULT_MEAN, std=IMAGENET_DEFAULT_STD):
    """timm's training transform with the recipe's augmentations."""
    return create_transform(
        img_size, is_training=True, scale=tuple(cfg.scale), hflip=cfg.hflip, color_jitter=cfg.color_jitter,
        auto_augment=cfg.aa or None, interpolation=cfg.train_interpolation, mean=mean, std=std,
        re_prob=cfg.reprob, re_mode=cfg.remode, re_count=cfg.recount)


def eval_data_config(model: Any = None, img_size: Optional[int] = None, crop_pct: Optional[float] = None,
                     interpolation: Optional[str] = None) -> Dict[str, Any]:
    """The eval transform's settings: explicit values, else the model's timm ``pretrained_cfg``,
    else the hub registry's card for its spec, else bicubic / crop 1.0 / ImageNet statistics.

    ``model`` may be an ``nn.Module`` or a hub / timm name.
    """
    cfg: Dict[str, Any] = dict(input_size=None, crop_pct=None, interpolation=None,
                               mean=IMAGENET_DEFAULT_MEAN, std=IMAGENET_DEFAULT_STD)
    if isinstance(model, str):
        cfg.update(_card_config(model))
    elif model is not None:
        pcfg = getattr(model, "pretrained_cfg", None) or {}
        for key in ("input_size", "crop_pct", "interpolation", "mean", "std"):
            if pcfg.get(key) is not None:
                cfg[key] = pcfg[key]
        spec = getattr(model, "spec", None)
        if spec is not None:
            card = _card_config(spec.name) if spec.name else {}
            for key, value in card.items():
                if cfg.get(key) is None or key == "crop_pct" and not pcfg:
                    cfg[key] = value
            if cfg["input_size"] is None:
                cfg["input_size"] = (3, spec.resolution, spec.resolution)
    if img_size is not None:
        cfg["input_size"] = (3, int(img_size), int(img_size))
    if crop_pct is not None:
        cfg["crop_pct"] = float(crop_pct)
    if interpolation is not None:
        cfg["interpolation"] = interpolation
    cfg["crop_pct"] = 1.0 if cfg["crop_pct"] is None else float(cfg["crop_pct"])
    cfg["interpolation"] = cfg["interpolation"] or "bicubic"
    if cfg["input_size"] is None:
        raise ValueError("eval transform: image size unknown for this model; pass img_size")
    cfg["mean"], cfg["std"] = tuple(cfg["mean"]), tuple(cfg["std"])
    return cfg


def _card_config(name: str) -> Dict[str, Any]:
    """crop_pct / resolution from the hub registry, or from timm's pretrained_cfg for timm names."""
    from ..registry import UnknownNameError, get_registry

    reg = get_registry()
    try:
        hub = reg.resolve_model(name)
    except UnknownNameError:
        try:
            import timm

            pcfg = timm.models.get_pretrained_cfg(name) or None
        except Exception:  # not a timm name either: nothing known
            pcfg = None
        if pcfg is None:
            return {}
        pcfg = pcfg.to_dict() if hasattr(pcfg, "to_dict") else dict(pcfg)
        return {k: pcfg[k] for k in ("input_size", "crop_pct", "interpolation", "mean", "std") if pcfg.get(k)}
    info, spec = reg.model_info(hub), reg.spec(hub)
    return dict(input_size=(3, spec.resolution, spec.resolution), crop_pct=info.get("crop_pct", 1.0),
                interpolation=info.get("interpolation", "bicubic"))


def eval_transform(data_config: Dict[str, Any]):
    return create_transform(data_config["input_size"], is_training=False, interpolation=data_config["interpolation"],
                            mean=data_config["mean"], std=data_config["std"], crop_pct=data_config["crop_pct"])


def _seed_worker(worker_id: int) -> None:
    seed = torch.initial_seed() % 2 ** 32
    np.random.seed(seed)
    random.seed(seed)


def train_loader(ds: Dataset, batch_size: int, workers: int, seed: int, epoch: int, rank: int = 0,
                 world_size: int = 1, pin_memory: bool = False) -> DataLoader:
    """One epoch's loader: shuffle order and worker seeds are functions of (seed, epoch, rank)."""
    sampler = DistributedSampler(ds, num_replicas=world_size, rank=rank, shuffle=True, seed=seed, drop_last=False)
    sampler.set_epoch(epoch)
    gen = torch.Generator()
    gen.manual_seed((seed * 1_000_003 + epoch * 9973 + rank) % 2 ** 63)
    if len(sampler) < batch_size:
        raise ValueError(f"training set too small: {len(ds)} images over {world_size} process(es) give "
                         f"{len(sampler)} per process, fewer than batch_size {batch_size}")
    return DataLoader(ds, batch_size=batch_size, sampler=sampler, num_workers=workers, drop_last=True,
                      pin_memory=pin_memory, worker_init_fn=_seed_worker, generator=gen,
                      persistent_workers=False)


def eval_loader(ds: Dataset, batch_size: int, workers: int, rank: int = 0, world_size: int = 1,
                pin_memory: bool = False) -> DataLoader:
    """Every image exactly once across ranks (no padding), so top-1 counts are exact."""
    if world_size > 1:
        ds = Subset(ds, range(rank, len(ds), world_size))
    return DataLoader(ds, batch_size=batch_size, shuffle=False, num_workers=workers, pin_memory=pin_memory)


def create_mixup(cfg: Any, num_classes: int) -> Optional[Mixup]:
    if not (cfg.mixup > 0 or cfg.cutmix > 0) or cfg.mixup_prob <= 0:
        return None
    return Mixup(mixup_alpha=cfg.mixup, cutmix_alpha=cfg.cutmix, prob=cfg.mixup_prob,
                 switch_prob=cfg.mixup_switch_prob, mode="batch", label_smoothing=cfg.smoothing,
                 num_classes=num_classes)
