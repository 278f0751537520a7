"""The training loop, assembled from timm's parts: ``create_optimizer_v2``,
``create_scheduler_v2``, ``ModelEmaV3``, ``create_transform``, ``Mixup``, timm's losses.

One process per device; under ``torchrun`` it runs DDP (NCCL on GPU, gloo on CPU). Every epoch
ends with an atomic ``last.pth.tar`` holding everything needed to continue bit-for-bit
(weights, EMA, optimizer, scheduler, AMP scaler, epoch, every rank's RNG states); ``resume``
picks it up. A per-epoch callback receives validation top-1 and may stop the run (the NAS
evaluator's early stopping), as may ``early_stop_patience``.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import random
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Tuple, Union

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from .recipes import TrainConfig, resolve_config

__all__ = ["Trainer", "train", "EpochStats", "TrainResult", "TrainingDiverged", "LAST_CHECKPOINT", "BEST_CHECKPOINT"]

logger = logging.getLogger(__name__)

LAST_CHECKPOINT = "last.pth.tar"
BEST_CHECKPOINT = "best.pth.tar"
CHECKPOINT_VERSION = 1


@dataclass
class EpochStats:
    """What the per-epoch callback sees. ``metric`` is the score that ranks epochs: EMA top-1
    when EMA is on, else top-1 (``None`` without a validation set)."""

    epoch: int
    epochs: int
    train_loss: float
    lr: float
    top1: Optional[float] = None
    top5: Optional[float] = None
    val_loss: Optional[float] = None
    val_images: int = 0
    ema_top1: Optional[float] = None
    ema_top5: Optional[float] = None
    metric: Optional[float] = None
    best_metric: Optional[float] = None
    best_epoch: Optional[int] = None
    seconds: float = 0.0
    images_per_second: float = 0.0

    def to_dict(self) -> Dict[str, Any]:
        return dataclasses.asdict(self)


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite: a property of the network and recipe, not of the machine."""


@dataclass
class TrainResult:
    output: str
    epochs_run: int
    last_epoch: int
    best_metric: Optional[float]
    best_epoch: Optional[int]
    stopped_early: bool
    world_size: int
    history: List[Dict[str, Any]] = field(default_factory=list)
    checkpoint: Optional[str] = None
    best_checkpoint: Optional[str] = None

    def to_dict(self) -> Dict[str, Any]:
        return dataclasses.asdict(self)


Callback = Callable[[EpochStats], Optional[bool]]


# ---------------------------------------------------------------------------------------------- RNG

def _rng_state(device: torch.device) -> Dict[str, Any]:
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    state = {
        "torch": torch.get_rng_state(),
        "numpy_keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)),
        "numpy_pos": int(pos), "numpy_has_gauss": int(has_gauss), "numpy_gauss": float(gauss),
        "python": random.getstate(),
    }
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def _set_rng_state(state: Dict[str, Any], device: torch.device) -> None:
    torch.set_rng_state(state["torch"])
    keys = state["numpy_keys"].numpy().astype(np.uint32)
    np.random.set_state(("MT19937", keys, state["numpy_pos"], state["numpy_has_gauss"], state["numpy_gauss"]))
    version, internal, gauss_next = state["python"]
    random.setstate((version, tuple(internal), gauss_next))
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2 ** 32)
    torch.manual_seed(seed)


# ------------------------------------------------------------------------------------------- Trainer

class Trainer:
    """``Trainer(cfg).fit()``. ``train_dataset`` / ``val_dataset`` replace ``cfg.data_dir``
    (datasets whose ``transform`` attribute the trainer sets, e.g. timm's ``ImageDataset``)."""

    def __init__(self, cfg: TrainConfig, callback: Optional[Callback] = None, train_dataset=None,
                 val_dataset=None):
        self.cfg = cfg
        self.callback = callback
        self._train_ds, self._val_ds = train_dataset, val_dataset
        self._own_pg = False
        self._setup_done = False

    # ------------------------------------------------------------------ setup
    def _init_distributed(self) -> None:
        world = int(os.environ.get("WORLD_SIZE", "1"))
        cuda = torch.cuda.is_available()
        if world > 1:
            self.rank = int(os.environ["RANK"])
            self.local_rank = int(os.environ.get("LOCAL_RANK", "0"))
            if cuda:
                self.device = torch.device("cuda", self.local_rank)
                torch.cuda.set_device(self.device)
            else:
                self.device = torch.device("cpu")
            if not dist.is_initialized():
                dist.init_process_group(backend="nccl" if cuda else "gloo")
                self._own_pg = True
            self.world_size = dist.get_world_size()
        else:
            self.rank, self.local_rank, self.world_size = 0, 0, 1
            self.device = torch.device("cuda" if cuda else "cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def setup(self) -> "Trainer":
        """Build what ``fit`` needs. The order is part of the contract (it fixes which RNG draws
        each part makes): processes and device, output folder, seeds, data, model, optimisation,
        loss and teacher, DDP wrapper, then the run's state (resumed, or a fresh ``config.json``)."""
        self._init_distributed()
        resume_path = self._prepare_output()
        _seed_everything(self.cfg.seed + self.rank)
        self._setup_data()
        mean, std = self._setup_model()
        self._setup_optimization()
        self._setup_loss(mean, std)
        self._wrap_model()
        self._setup_run_state(resume_path)
        self._setup_done = True
        return self

    def _prepare_output(self) -> Optional[str]:
        """The checkpoint to resume from (``None``: a fresh run); rank 0 creates the output folder
        and refuses to start a fresh run over an existing one."""
        self.output = os.path.abspath(self.cfg.output)
        resume_path = self._resume_path()
        if self.is_main:
            os.makedirs(self.output, exist_ok=True)
            last = os.path.join(self.output, LAST_CHECKPOINT)
            if resume_path is None and os.path.exists(last):
                raise ValueError(f"{last} exists: pass resume (--resume {self.output}) to continue that "
                                      f"run, or choose another output folder")
        return resume_path

    def _setup_data(self) -> None:
        """The datasets (from ``cfg.data_dir`` unless given) and the class count."""
        from . import data as D

        cfg = self.cfg
        if self._train_ds is None:
            if not cfg.data_dir:
                raise ValueError("training config: data_dir is required (an ImageFolder with train/ and val/)")
            self._train_ds, self._val_ds = D.create_datasets(cfg.data_dir, cfg.dataset, cfg.train_split,
                                                             cfg.val_split)
        num_classes = cfg.num_classes or D.num_classes_of(self._train_ds)
        if not num_classes:
            raise ValueError("cannot tell the number of classes from the dataset; set num_classes")
        self.num_classes = int(num_classes)

    def _setup_model(self) -> Tuple[Tuple[float, ...], Tuple[float, ...]]:
        """The student, its resolution and the data transforms it implies, on the device; returns
        the (mean, std) its inputs are normalised with."""
        from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD

        from .distill import create_model

        cfg = self.cfg
        self.model = create_model(cfg.model, num_classes=self.num_classes, pretrained=cfg.pretrained,
                                  checkpoint_path=cfg.checkpoint, drop_rate=cfg.drop, drop_path_rate=cfg.drop_path)
        spec = getattr(self.model, "spec", None)
        pcfg = getattr(self.model, "pretrained_cfg", None) or {}
        self.img_size = int(cfg.img_size or (spec.resolution if spec is not None else
                                             (pcfg.get("input_size") or (3, 224, 224))[-1]))
        mean = tuple(pcfg.get("mean") or IMAGENET_DEFAULT_MEAN)
        std = tuple(pcfg.get("std") or IMAGENET_DEFAULT_STD)
        self._set_transforms(mean, std)
        self._place_model()
        return mean, std

    def _set_transforms(self, mean: Tuple[float, ...], std: Tuple[float, ...]) -> None:
        """Training augmentation, and the model card's eval transform for validation."""
        from . import data as D

        cfg = self.cfg
        self._train_ds.transform = D.train_transform(self.img_size, cfg, mean, std)
        self.eval_cfg = D.eval_data_config(self.model, img_size=self.img_size, crop_pct=cfg.crop_pct,
                                           interpolation=cfg.interpolation)
        if self._val_ds is not None:
            self._val_ds.transform = D.eval_transform(self.eval_cfg)

    def _place_model(self) -> None:
        """SyncBN under DDP, the device, the memory format, and whether AMP is on."""
        cfg = self.cfg
        if cfg.sync_bn and self.world_size > 1:
            self.model = nn.SyncBatchNorm.convert_sync_batchnorm(self.model)
        self.model.to(self.device)
        if cfg.channels_last:
            self.model.to(memory_format=torch.channels_last)
        self.amp = bool(cfg.amp and self.device.type == "cuda")
        if cfg.amp and not self.amp:
            logger.info("AMP requested but running on %s: training in float32", self.device.type)

    def _setup_optimization(self) -> None:
        """EMA, optimizer (at the world-size-scaled lr), per-update scheduler and AMP scaler."""
        from timm.optim import create_optimizer_v2
        from timm.scheduler import create_scheduler_v2
        from timm.utils import ModelEmaV3

        cfg = self.cfg
        self.ema = (ModelEmaV3(self.model, decay=cfg.model_ema_decay, use_warmup=cfg.model_ema_warmup)
                    if cfg.model_ema else None)
        self.lr = cfg.global_lr(self.world_size)
        opt_kwargs = {"eps": cfg.opt_eps} if cfg.opt_eps is not None else {}
        self.optimizer = create_optimizer_v2(self.model, opt=cfg.opt, lr=self.lr, weight_decay=cfg.weight_decay,
                                             momentum=cfg.momentum, **opt_kwargs)
        per_rank = math.ceil(len(self._train_ds) / self.world_size)
        self.updates_per_epoch = per_rank // cfg.batch_size
        if self.updates_per_epoch == 0:
            raise ValueError(f"training set too small: {len(self._train_ds)} images over {self.world_size} "
                             f"process(es) is less than one batch of {cfg.batch_size}")
        self.scheduler, _ = create_scheduler_v2(
            self.optimizer, sched=cfg.sched, num_epochs=cfg.epochs, decay_epochs=cfg.decay_epochs,
            decay_rate=cfg.decay_rate, min_lr=cfg.min_lr, warmup_lr=cfg.warmup_lr, warmup_epochs=cfg.warmup_epochs,
            updates_per_epoch=self.updates_per_epoch)
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp)

    def _setup_loss(self, mean: Tuple[float, ...], std: Tuple[float, ...]) -> None:
        """Mixup / CutMix, the classification loss, and with a teacher the distillation loss
        (the teacher re-normalises the student's ``mean`` / ``std`` inputs to its own)."""
        from .distill import DistillationLoss, TeacherAdapter, load_teacher

        cfg = self.cfg
        base = self._classification_loss()
        self.teacher = None
        if cfg.teacher:
            teacher, t_size, t_mean, t_std = load_teacher(cfg.teacher, self.num_classes, cfg.teacher_model,
                                                          cfg.teacher_pretrained, cfg.teacher_img_size)
            self.teacher = TeacherAdapter(teacher, t_size, t_mean, t_std, mean, std).to(self.device)
            self.loss_fn = DistillationLoss(base, cfg.distill_weight, cfg.distill_temperature)
        else:
            self.loss_fn = base
        self.loss_fn.to(self.device)

    def _classification_loss(self) -> nn.Module:
        """Sets ``self.mixup``; soft-target CE under Mixup, else label-smoothed or plain CE."""
        from timm.loss import LabelSmoothingCrossEntropy, SoftTargetCrossEntropy

        from . import data as D

        cfg = self.cfg
        self.mixup = D.create_mixup(cfg, self.num_classes)
        if self.mixup is not None and cfg.batch_size % 2:
            raise ValueError(f"Mixup/CutMix needs an even batch_size, got {cfg.batch_size}")
        if self.mixup is not None:
            return SoftTargetCrossEntropy()
        if cfg.smoothing > 0:
            return LabelSmoothingCrossEntropy(smoothing=cfg.smoothing)
        return nn.CrossEntropyLoss()

    def _wrap_model(self) -> None:
        """``self.net``: what the training step calls, the model itself or its DDP wrapper."""
        self.net = self.model
        if self.world_size > 1:
            from torch.nn.parallel import DistributedDataParallel

            self.net = DistributedDataParallel(self.model, device_ids=[self.device.index] if
                                               self.device.type == "cuda" else None)

    def _setup_run_state(self, resume_path: Optional[str]) -> None:
        """Epoch counters and best-so-far; then resume them from ``resume_path``, or (rank 0)
        record a fresh run's ``config.json``."""
        self.start_epoch, self.num_updates = 0, 0
        self.best_metric: Optional[float] = None
        self.best_epoch: Optional[int] = None
        self.bad_epochs = 0
        self.stopped_early = False
        self.history: List[Dict[str, Any]] = []
        if resume_path is not None:
            if self.is_main:
                self._remove_partial_writes()
            self._load_resume(resume_path)
        elif self.is_main:
            from .._io import atomic_write_text

            atomic_write_text(os.path.join(self.output, "config.json"),
                              json.dumps(self.cfg.to_dict(), indent=2, default=list) + "\n")

    # ------------------------------------------------------------------ checkpoints
    def _resume_path(self) -> Optional[str]:
        r = self.cfg.resume
        if not r:
            return None
        if r == "auto":
            path = os.path.join(self.cfg.output, LAST_CHECKPOINT)
            return path if os.path.exists(path) else None
        path = os.path.join(r, LAST_CHECKPOINT) if os.path.isdir(r) else r
        if not os.path.exists(path):
            raise FileNotFoundError(f"resume: checkpoint not found: {path}")
        return path

    def _remove_partial_writes(self) -> None:
        """Temp files a killed run left mid-write (the checkpoint itself is always whole)."""
        import glob

        for name in (LAST_CHECKPOINT, BEST_CHECKPOINT):
            for tmp in glob.glob(os.path.join(self.output, f".{name}.*.tmp")):
                os.unlink(tmp)

    def _checkpoint(self, epoch: int, rng: List[Dict[str, Any]]) -> Dict[str, Any]:
        spec = getattr(self.model, "spec", None)
        return {
            "version": CHECKPOINT_VERSION, "arch": self.cfg.model,
            "spec": spec.to_dict() if spec is not None else None,
            "num_classes": self.num_classes, "img_size": self.img_size,
            "epoch": epoch, "num_updates": self.num_updates, "world_size": self.world_size,
            "state_dict": self.model.state_dict(),
            "state_dict_ema": self.ema.module.state_dict() if self.ema is not None else None,
            "optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(), "rng": rng,
            "best_metric": self.best_metric, "best_epoch": self.best_epoch, "bad_epochs": self.bad_epochs,
            "stopped_early": self.stopped_early, "history": self.history,
            "config": json.loads(json.dumps(self.cfg.to_dict(), default=list)),
        }

    @staticmethod
    def _save(obj: Dict[str, Any], path: str) -> None:
        from .._io import atomic_path

        obj = {k: v for k, v in obj.items() if v is not None or k in ("best_metric", "best_epoch")}
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as f:
                torch.save(obj, f)
                f.flush()
                os.fsync(f.fileno())

    def _load_resume(self, path: str) -> None:
        from ..checkpoint import read_checkpoint

        ckpt = read_checkpoint(path)
        if not isinstance(ckpt, dict) or ckpt.get("version") != CHECKPOINT_VERSION or "optimizer" not in ckpt:
            raise ValueError(f"resume: {path} is not a gpunet training checkpoint (use checkpoint= to start "
                             f"from its weights instead)")
        if ckpt.get("num_classes") != self.num_classes:
            raise ValueError(f"resume: {path} has {ckpt.get('num_classes')} classes, this run "
                             f"{self.num_classes}")
        self.model.load_state_dict(ckpt["state_dict"])
        if self.ema is not None:
            if "state_dict_ema" not in ckpt:
                raise ValueError(f"resume: {path} has no EMA weights but model_ema is on")
            self.ema.module.load_state_dict(ckpt["state_dict_ema"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        old_epochs = (ckpt.get("config") or {}).get("epochs")
        if old_epochs in (None, self.cfg.epochs):
            self.scheduler.load_state_dict(ckpt["scheduler"])
        else:  # timm schedules are functions of (config, t): recomputed for the new length
            logger.info("resume: epochs changed from %s to %d; learning-rate schedule recomputed",
                        old_epochs, self.cfg.epochs)
        self.scaler.load_state_dict(ckpt["scaler"])
        self.start_epoch = int(ckpt["epoch"]) + 1
        self.num_updates = int(ckpt["num_updates"])
        self.best_metric, self.best_epoch = ckpt.get("best_metric"), ckpt.get("best_epoch")
        self.bad_epochs = int(ckpt.get("bad_epochs", 0))
        self.stopped_early = bool(ckpt.get("stopped_early", False))
        self.history = list(ckpt.get("history", []))
        rng = ckpt.get("rng") or []
        if len(rng) == self.world_size:
            _set_rng_state(rng[self.rank], self.device)
        else:
            logger.warning("resume: checkpoint was written by %d process(es), this run has %d; RNG streams "
                           "are re-seeded, so augmentation differs from an uninterrupted run",
                           len(rng), self.world_size)
            _seed_everything(self.cfg.seed + self.rank + 7919 * self.start_epoch)
        self.scheduler.step(self.start_epoch)
        logger.info("resumed from %s at epoch %d", path, self.start_epoch)

    # ------------------------------------------------------------------ loop
    def _autocast(self):
        if self.amp:
            return torch.autocast("cuda", dtype=torch.float16)
        return torch.autocast(self.device.type, enabled=False)

    def train_step(self, images: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """One optimisation step on a batch; returns the (detached) loss."""
        if self.mixup is not None:
            images, target = self.mixup(images, target)
        if self.cfg.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        with self._autocast():
            output = self.net(images)
            if self.teacher is not None:
                loss = self.loss_fn(output, target, self.teacher(images))
            else:
                loss = self.loss_fn(output, target)
        if not torch.isfinite(loss):
            raise TrainingDiverged(f"training loss is {loss.item()} at update {self.num_updates}; "
                                   f"lower the learning rate (lr={self.lr:g})")
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        if self.cfg.clip_grad:
            self.scaler.unscale_(self.optimizer)
            nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.clip_grad)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.num_updates += 1
        if self.ema is not None:
            self.ema.update(self.model, step=self.num_updates)
        self.scheduler.step_update(num_updates=self.num_updates)
        return loss.detach()

    def train_one_epoch(self, epoch: int) -> Dict[str, float]:
        from . import data as D

        loader = D.train_loader(self._train_ds, self.cfg.batch_size, self.cfg.workers, self.cfg.seed, epoch,
                                self.rank, self.world_size, pin_memory=self.device.type == "cuda")
        self.net.train()
        if self.teacher is not None:
            self.teacher.eval()
        loss_sum = torch.zeros((), device=self.device)
        steps = seen = 0
        start = time.perf_counter()
        for i, (images, target) in enumerate(loader):
            images = images.to(self.device, non_blocking=True)
            target = target.to(self.device, non_blocking=True)
            loss_sum += self.train_step(images, target)
            steps += 1
            seen += images.shape[0]
            if self.is_main and self.cfg.log_interval and (i + 1) % self.cfg.log_interval == 0:
                logger.info("epoch %d [%d/%d] loss %.4f lr %.3g", epoch, i + 1, len(loader),
                            float(loss_sum) / steps, self.optimizer.param_groups[0]["lr"])
        seconds = time.perf_counter() - start
        totals = torch.tensor([float(loss_sum), steps, seen], dtype=torch.float64)
        if self.world_size > 1:
            totals = totals.to(self.device)
            dist.all_reduce(totals)
            totals = totals.cpu()
        return {"train_loss": float(totals[0] / max(totals[1], 1)), "seconds": seconds,
                "images_per_second": float(totals[2]) / seconds if seconds > 0 else 0.0}

    def validate(self, model: nn.Module) -> Optional[Dict[str, float]]:
        from . import data as D
        from .evaluate import accuracy_counts

        if self._val_ds is None:
            return None
        loader = D.eval_loader(self._val_ds, self.cfg.batch_size, self.cfg.workers, self.rank, self.world_size,
                               pin_memory=self.device.type == "cuda")
        c = accuracy_counts(model, loader, self.device, amp=self.amp)
        totals = torch.tensor([c["correct1"], c["correctk"], c["n"], c["loss_sum"]], dtype=torch.float64)
        if self.world_size > 1:
            totals = totals.to(self.device)
            dist.all_reduce(totals)
            totals = totals.cpu()
        n = max(float(totals[2]), 1.0)
        return {"top1": 100.0 * float(totals[0]) / n, "top5": 100.0 * float(totals[1]) / n,
                "loss": float(totals[3]) / n, "images": int(totals[2])}

    def _gather_rng(self) -> List[Dict[str, Any]]:
        state = _rng_state(self.device)
        if self.world_size == 1:
            return [state]
        gathered: List[Any] = [None] * self.world_size
        dist.all_gather_object(gathered, state)
        return gathered

    def _broadcast_flag(self, flag: bool) -> bool:
        if self.world_size == 1:
            return flag
        t = torch.tensor([1 if flag else 0], device=self.device)
        dist.broadcast(t, src=0)
        return bool(t.item())

    def fit(self) -> TrainResult:
        """Train from ``start_epoch`` to ``cfg.epochs``; returns the run's summary."""
        try:
            if not self._setup_done:
                self.setup()
            return self._fit()
        finally:
            if self._own_pg and dist.is_initialized():
                dist.destroy_process_group()
                self._own_pg = False

    def _fit(self) -> TrainResult:
        cfg = self.cfg
        last_path = os.path.join(self.output, LAST_CHECKPOINT)
        best_path = os.path.join(self.output, BEST_CHECKPOINT)
        epoch = self.start_epoch - 1
        epochs_run = 0
        if not self.stopped_early:
            for epoch in range(self.start_epoch, cfg.epochs):
                train_stats = self.train_one_epoch(epoch)
                lr = self.optimizer.param_groups[0]["lr"]
                self.scheduler.step(epoch + 1)
                val = self.validate(self.model)
                ema_val = self.validate(self.ema.module) if self.ema is not None else None
                metric = (ema_val or val or {}).get("top1")
                improved = metric is not None and (self.best_metric is None or metric > self.best_metric)
                if improved:
                    self.best_metric, self.best_epoch, self.bad_epochs = metric, epoch, 0
                elif metric is not None:
                    self.bad_epochs += 1
                stats = EpochStats(
                    epoch=epoch, epochs=cfg.epochs, train_loss=train_stats["train_loss"], lr=lr,
                    top1=val and val["top1"], top5=val and val["top5"], val_loss=val and val["loss"],
                    val_images=(val or {}).get("images", 0),
                    ema_top1=ema_val and ema_val["top1"], ema_top5=ema_val and ema_val["top5"], metric=metric,
                    best_metric=self.best_metric, best_epoch=self.best_epoch, seconds=train_stats["seconds"],
                    images_per_second=train_stats["images_per_second"])
                self.history.append(stats.to_dict())
                epochs_run += 1
                stop = bool(cfg.early_stop_patience and self.bad_epochs >= cfg.early_stop_patience)
                if self.is_main and self.callback is not None:
                    stop = bool(self.callback(stats)) or stop
                stop = self._broadcast_flag(stop)
                self.stopped_early = stop and epoch + 1 < cfg.epochs
                rng = self._gather_rng()
                if self.is_main:
                    ckpt = self._checkpoint(epoch, rng)
                    self._save(ckpt, last_path)
                    if improved:
                        self._save({k: ckpt[k] for k in ("version", "arch", "spec", "num_classes", "img_size",
                                                         "epoch", "state_dict", "state_dict_ema", "best_metric",
                                                         "config") if k in ckpt}, best_path)
                if stop:
                    break
        return TrainResult(
            output=self.output, epochs_run=epochs_run, last_epoch=epoch, best_metric=self.best_metric,
            best_epoch=self.best_epoch, stopped_early=self.stopped_early, world_size=self.world_size,
            history=list(self.history), checkpoint=last_path if os.path.exists(last_path) else None,
            best_checkpoint=best_path if os.path.exists(best_path) else None)


def train(cfg: Optional[Union[TrainConfig, Dict[str, Any]]] = None, *, callback: Optional[Callback] = None,
          recipe: Optional[str] = None, config_file: Optional[str] = None, train_dataset=None, val_dataset=None,
          **overrides: Any) -> TrainResult:
    """Train a model; run it under ``torchrun`` for DDP.

        gpunet.train(model="gpunet-0", data_dir="data/", recipe="finetune", pretrained=True, epochs=10)

    ``callback(stats: EpochStats)`` runs on rank 0 after each epoch's validation; returning
    ``True`` stops the run (after that epoch's checkpoint).
    """
    if isinstance(cfg, TrainConfig):
        if recipe or config_file:
            raise ValueError("pass recipe / config_file without a TrainConfig (it already holds every value)")
        cfg = dataclasses.replace(cfg, **overrides) if overrides else cfg
    else:
        cfg = resolve_config(recipe, config_file, {**(cfg or {}), **overrides})
    return Trainer(cfg, callback=callback, train_dataset=train_dataset, val_dataset=val_dataset).fit()
