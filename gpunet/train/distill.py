"""Knowledge distillation: the teacher, and NVIDIA's loss (label-smoothed CE + soft-target CE).

    loss = CE_smooth(student, y) + w * T^2 * SoftTargetCE(student / T, softmax(teacher / T))

With ``w = 1, T = 1`` (the default) this is NVIDIA's GPUNet-D/P recipe, weight 1:1. The
teacher sees the same augmented batch as the student, resized to its own resolution and
re-normalised with its own statistics (NVIDIA's script meant to and fed the student's size).
"""
from __future__ import annotations

import os
from typing import Any, Dict, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["create_model", "load_teacher", "checkpoint_classes", "DistillationLoss", "TeacherAdapter",
           "soft_target_cross_entropy"]


def create_model(name: str, num_classes: Optional[int] = None, pretrained: bool = False,
                 checkpoint_path: Optional[str] = None, **kwargs: Any) -> nn.Module:
    """A hub GPUNet (name, spec file) through ``gpunet.get_model``, else a timm model by name."""
    from ..hub import get_model
    from ..registry import UnknownNameError

    extra = {"num_classes": num_classes} if num_classes is not None else {}
    try:
        return get_model(name, pretrained=pretrained, checkpoint_path=checkpoint_path, **extra, **kwargs)
    except UnknownNameError as hub_error:
        import timm

        if not timm.is_model(name):
            raise ValueError(f"{hub_error} (nor is {name!r} a timm model name)") from None
        timm_kw = {"drop_rate": kwargs.get("drop_rate", 0.0)}
        if "drop_path_rate" in kwargs:
            timm_kw["drop_path_rate"] = kwargs["drop_path_rate"]
        model = timm.create_model(name, pretrained=pretrained, **extra, **timm_kw)
        if checkpoint_path:
            from ..checkpoint import extract_state_dict, load_state_dict_checked, read_checkpoint

            sd = extract_state_dict(read_checkpoint(checkpoint_path), checkpoint_path)
            load_state_dict_checked(model, sd, source=checkpoint_path)
        return model


def _model_from_training_checkpoint(path: str, fallback_arch: Optional[str]) -> nn.Module:
    """Rebuild the architecture a checkpoint records (our trainer stores ``arch`` and ``spec``)."""
    from ..checkpoint import read_checkpoint

    obj = read_checkpoint(path)
    spec_dict = obj.get("spec") if isinstance(obj, dict) else None
    arch = (obj.get("arch") if isinstance(obj, dict) else None) or fallback_arch
    num_classes = obj.get("num_classes") if isinstance(obj, dict) else None
    if spec_dict:
        from ..spec import parse_spec

        spec = parse_spec(spec_dict)
        from ..hub import get_model

        return get_model(spec, checkpoint_path=path, num_classes=num_classes or spec.num_classes)
    if not arch:
        raise ValueError(f"teacher checkpoint {path} does not record its architecture; "
                         f"also pass teacher_model (--teacher-model NAME)")
    return create_model(arch, num_classes=num_classes, checkpoint_path=path)


def _input_config(model: nn.Module, name: Optional[str]) -> Dict[str, Any]:
    from .data import eval_data_config

    try:
        cfg = eval_data_config(model)
    except ValueError:
        cfg = eval_data_config(name) if name else {}
    return cfg


def load_teacher(teacher: str, num_classes: int, teacher_model: Optional[str] = None, pretrained: bool = True,
                 img_size: Optional[int] = None) -> Tuple[nn.Module, int, Tuple[float, ...], Tuple[float, ...]]:
    """(teacher in eval mode with frozen weights, its input size, its mean, its std).

    ``teacher``: a checkpoint path (our training checkpoint, or any with ``teacher_model``), or
    a gpunet / timm name loaded pretrained (random weights would make distillation meaningless).
    """
    if os.path.isfile(teacher):
        if teacher_model and not _records_arch(teacher):
            model = create_model(teacher_model, checkpoint_path=teacher,
                                 num_classes=checkpoint_classes(teacher) or num_classes)
        else:
            model = _model_from_training_checkpoint(teacher, teacher_model)
        label = teacher
    else:
        if os.sep in teacher or teacher.endswith((".pth", ".tar", ".safetensors", ".pt")):
            raise FileNotFoundError(f"teacher checkpoint not found: {teacher}")
        if not pretrained:
            import warnings

            warnings.warn(f"teacher {teacher!r} without pretrained weights: distilling from random outputs")
        model = create_model(teacher, pretrained=pretrained)
        label = teacher
    out = getattr(model, "num_classes", None)
    if out is not None and out != num_classes:
        raise ValueError(f"teacher {label} predicts {out} classes but the dataset has {num_classes}; "
                         f"fine-tune the teacher on this dataset first and pass its checkpoint")
    cfg = _input_config(model, teacher if not os.path.isfile(teacher) else teacher_model)
    size = img_size or (cfg.get("input_size") or (3, 224, 224))[-1]
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model, int(size), tuple(cfg.get("mean")), tuple(cfg.get("std"))


def _records_arch(path: str) -> bool:
    from ..checkpoint import read_checkpoint

    obj = read_checkpoint(path)
    return isinstance(obj, dict) and bool(obj.get("spec") or obj.get("arch"))


def checkpoint_classes(path: str) -> Optional[int]:
    """The class count a checkpoint's classifier weights imply (``None`` without a known head)."""
    from ..checkpoint import extract_state_dict, read_checkpoint

    sd = extract_state_dict(read_checkpoint(path), path)
    for key in ("classifier.weight", "fc.weight", "head.fc.weight", "head.weight"):
        if key in sd:
            return int(sd[key].shape[0])
    return None


class TeacherAdapter(nn.Module):
    """Feeds the student's (normalised) batch to the teacher at the teacher's resolution and statistics."""

    def __init__(self, teacher: nn.Module, img_size: int, mean, std, student_mean, student_std):
        super().__init__()
        self.teacher = teacher
        self.img_size = int(img_size)
        same = tuple(mean) == tuple(student_mean) and tuple(std) == tuple(student_std)
        self.renorm = not same
        self.register_buffer("scale", (torch.tensor(student_std) / torch.tensor(std)).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("shift", ((torch.tensor(student_mean) - torch.tensor(mean)) / torch.tensor(std))
                             .view(1, 3, 1, 1), persistent=False)

    def train(self, mode: bool = True) -> "TeacherAdapter":
        super().train(False)  # the teacher always runs in eval mode (BN statistics, no dropout)
        return self

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.renorm:
            x = x * self.scale + self.shift
        if x.shape[-1] != self.img_size or x.shape[-2] != self.img_size:
            x = F.interpolate(x, size=(self.img_size, self.img_size), mode="bicubic", align_corners=False,
                              antialias=x.shape[-1] > self.img_size)
        return self.teacher(x)


def soft_target_cross_entropy(logits: torch.Tensor, target_probs: torch.Tensor) -> torch.Tensor:
    return torch.sum(-target_probs * F.log_softmax(logits, dim=-1), dim=-1).mean()


class DistillationLoss(nn.Module):
    """``base(student, target) + weight * T^2 * SoftTargetCE(student/T, softmax(teacher/T))``.

    ``base`` is the run's classification loss: label-smoothed CE, or soft-target CE under Mixup.
    """

    def __init__(self, base: nn.Module, weight: float = 1.0, temperature: float = 1.0):
        super().__init__()
        self.base, self.weight, self.temperature = base, float(weight), float(temperature)

    def forward(self, student_logits: torch.Tensor, target: torch.Tensor,
                teacher_logits: torch.Tensor) -> torch.Tensor:
        t = self.temperature
        soft = F.softmax(teacher_logits.float() / t, dim=-1)
        kd = soft_target_cross_entropy(student_logits.float() / t, soft) * (t * t)
        return self.base(student_logits, target) + self.weight * kd
