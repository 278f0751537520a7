"""Training, distillation and evaluation of GPUNets on timm's library parts.

    from gpunet.train import train, evaluate
    train(model="gpunet-0", data_dir="data/", recipe="finetune", pretrained=True)
    evaluate("gpunet-0", "imagenet/", pretrained=True)   # {"top1": ..., "top5": ...}
"""
from .evaluate import evaluate
from .recipes import RECIPES, TrainConfig, get_recipe, resolve_config
from .trainer import EpochStats, Trainer, TrainingDiverged, TrainResult, train

__all__ = ["train", "evaluate", "Trainer", "TrainConfig", "TrainResult", "TrainingDiverged", "EpochStats", "RECIPES",
           "get_recipe", "resolve_config"]
