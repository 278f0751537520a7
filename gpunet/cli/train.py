"""``gpunet train`` and ``gpunet eval``: flags named as in timm's ``train.py`` / ``validate.py``."""
from __future__ import annotations

import argparse
from typing import Any, Dict

from ._fmt import print_json


def _add_train_args(p: argparse.ArgumentParser) -> None:
    B = argparse.BooleanOptionalAction
    g = p.add_argument_group("model")
    g.add_argument("--model", help="hub name (gpunet-0 ...), spec JSON file, or timm model name")
    g.add_argument("--pretrained", action=B, default=None, help="start from published weights")
    g.add_argument("--checkpoint", help="start from the weights in this file (not a resume)")
    g.add_argument("--num-classes", type=int, help="default: number of class folders")
    g.add_argument("--img-size", type=int, help="training resolution (default: the model's)")
    g.add_argument("--drop", type=float, help="dropout before the classifier")
    g.add_argument("--drop-path", type=float, help="stochastic depth rate")
    g = p.add_argument_group("data")
    g.add_argument("--data-dir", help="ImageFolder root with train/ and val/ (or a timm dataset root)")
    g.add_argument("--dataset", help="timm dataset name, e.g. torch/cifar10 (default: ImageFolder)")
    g.add_argument("--train-split", help='name of the training split folder (default train)')
    g.add_argument("--val-split", help="'' for no validation")
    g.add_argument("-j", "--workers", type=int, help="data-loading processes per training process")
    g = p.add_argument_group("augmentation")
    g.add_argument("--aa", help="RandAugment policy, e.g. rand-m9-mstd0.5 ('' for none)")
    g.add_argument("--reprob", type=float, help="RandomErasing probability")
    g.add_argument("--remode", help="RandomErasing mode (pixel, rand, const)")
    g.add_argument("--recount", type=int, help='RandomErasing count')
    g.add_argument("--hflip", type=float, help='horizontal flip probability')
    g.add_argument("--color-jitter", type=float, help='colour jitter strength')
    g.add_argument("--scale", type=float, nargs=2, metavar=("MIN", "MAX"), help="RandomResizedCrop scale")
    g.add_argument("--train-interpolation", help='resize interpolation for training (e.g. random, bicubic)')
    g.add_argument("--mixup", type=float, help="Mixup alpha")
    g.add_argument("--cutmix", type=float, help="CutMix alpha")
    g.add_argument("--mixup-prob", type=float, help='probability of applying Mixup / CutMix to a batch')
    g.add_argument("--smoothing", type=float, help="label smoothing")
    g.add_argument("--crop-pct", type=float, help="eval center-crop fraction (default: model card)")
    g = p.add_argument_group("optimisation")
    g.add_argument("--epochs", type=int, help='training epochs')
    g.add_argument("-b", "--batch-size", type=int, help="per process")
    g.add_argument("--opt", help='optimizer, any timm name (e.g. rmsproptf, adamw, sgd)')
    g.add_argument("--opt-eps", type=float, help='optimizer epsilon')
    g.add_argument("--momentum", type=float, help='optimizer momentum')
    g.add_argument("--weight-decay", type=float, help='weight decay')
    g.add_argument("--lr", type=float, help="absolute learning rate (default: lr-base scaled by global batch)")
    g.add_argument("--lr-base", type=float, help='learning rate for --lr-base-size images per step')
    g.add_argument("--lr-base-size", type=int, help='global batch --lr-base is given for')
    g.add_argument("--clip-grad", type=float, help='clip gradients to this norm')
    g.add_argument("--sched", help='learning-rate schedule, any timm name (e.g. step, cosine)')
    g.add_argument("--decay-epochs", type=float, help='step schedule: epochs between decays')
    g.add_argument("--decay-rate", type=float, help='step schedule: factor per decay')
    g.add_argument("--warmup-epochs", type=int, help='epochs of linear learning-rate warm-up')
    g.add_argument("--warmup-lr", type=float, help='learning rate at the start of warm-up')
    g.add_argument("--min-lr", type=float, help='lowest learning rate of the schedule')
    g.add_argument("--model-ema", action=B, default=None, help='keep an exponential moving average of the weights')
    g.add_argument("--model-ema-decay", type=float, help='EMA decay per step')
    g.add_argument("--amp", action=B, default=None, help="mixed precision (GPU only)")
    g.add_argument("--channels-last", action=B, default=None, help='NHWC memory format')
    g.add_argument("--sync-bn", action=B, default=None, help='synchronised BatchNorm across processes')
    g = p.add_argument_group("distillation")
    g.add_argument("--teacher", help="teacher: timm / gpunet name (pretrained) or checkpoint path")
    g.add_argument("--teacher-model", help="architecture of a teacher checkpoint that does not record it")
    g.add_argument("--teacher-pretrained", action=B, default=None, help="load the teacher's published weights")
    g.add_argument("--teacher-img-size", type=int, help="default: the teacher's own resolution")
    g.add_argument("--distill-weight", type=float, help='weight of the distillation loss (0..1)')
    g.add_argument("--distill-temperature", type=float, help='softmax temperature of the distillation loss')
    g = p.add_argument_group("run")
    g.add_argument("--recipe", choices=["paper", "finetune"], help="named hyper-parameter set")
    g.add_argument("--config", help="YAML file of options (overridden by flags)")
    g.add_argument("--output", help="folder for checkpoints (last.pth.tar, best.pth.tar)")
    g.add_argument("--resume", help="last.pth.tar, its folder, or 'auto' (resume if output has one)")
    g.add_argument("--seed", type=int, help='random seed')
    g.add_argument("--early-stop-patience", type=int, help='stop after this many epochs without a better top-1')
    g.add_argument("--log-interval", type=int, help='log every N steps')
    g.add_argument("--json", action="store_true",
                   help="print the run summary as one JSON document on stdout (epochs go to stderr)")


_NOT_CONFIG = {"command", "handler", "config", "json", "version", "debug", "log_verbose", "log_quiet",
               "log_level", "flag_of", "deprecated_flags"}  # CLI-wide switches


def _overrides(args: argparse.Namespace) -> Dict[str, Any]:
    out = {k: v for k, v in vars(args).items() if k not in _NOT_CONFIG and v is not None}
    if "scale" in out:
        out["scale"] = tuple(out["scale"])
    return out


def _print_epoch(stats) -> None:
    def pct(v):
        return "-" if v is None else f"{v:.2f}"

    print(f"epoch {stats.epoch + 1}/{stats.epochs}  loss {stats.train_loss:.4f}  lr {stats.lr:.3g}  "
          f"top1 {pct(stats.top1)}  top5 {pct(stats.top5)}  ema_top1 {pct(stats.ema_top1)}  "
          f"best {pct(stats.best_metric)}  {stats.images_per_second:.0f} img/s", flush=True)


def _train(args: argparse.Namespace) -> int:
    import os

    from gpunet.train import resolve_config, train

    cfg = resolve_config(config_file=args.config, overrides=_overrides(args))
    rank = int(os.environ.get("RANK", "0"))
    result = train(cfg, callback=None if args.json else _print_epoch)
    if rank == 0:
        if args.json:
            summary = {k: v for k, v in result.to_dict().items() if k != "history"}
            summary["final"] = result.history[-1] if result.history else None
            print_json(summary)
        else:
            best = "-" if result.best_metric is None else f"{result.best_metric:.2f}"
            print(f"done: {result.epochs_run} epoch(s) run, best top-1 {best} at epoch "
                  f"{'-' if result.best_epoch is None else result.best_epoch + 1}"
                  f"{' (stopped early)' if result.stopped_early else ''}; checkpoints in {result.output}")
    return 0


def _eval(args: argparse.Namespace) -> int:
    from gpunet.train import evaluate

    if args.pretrained and args.checkpoint:
        raise ValueError("pass either --pretrained or --checkpoint, not both")
    r = evaluate(args.model, args.data_dir, split=args.split, dataset=args.dataset or "",
                 pretrained=args.pretrained, checkpoint=args.checkpoint, batch_size=args.batch_size,
                 workers=args.workers, img_size=args.img_size, crop_pct=args.crop_pct,
                 interpolation=args.interpolation, device=args.device, amp=args.amp)
    if args.json:
        print_json(r)
    else:
        print(f"{r['model']}: top-1 {r['top1']:.3f}  top-{r['topk']} {r['top5']:.3f}  on {r['images']} images "
              f"({r['img_size']} px, crop_pct {r['crop_pct']}, {r['interpolation']})")
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser("train", help="train or fine-tune a model (DDP under torchrun)",
                              description="Train on timm's parts. Precedence: recipe < --config YAML < flags. "
                                          "Multi-GPU: torchrun --nproc_per_node N -m gpunet train ...")
    _add_train_args(p)
    p.set_defaults(handler=_train, log_level=20)  # logging.INFO: a training run reports its epochs by default

    e = subparsers.add_parser("eval", help="top-1 / top-5 on an image folder with the model card's transform")
    e.add_argument("--model", required=True, help="hub name, spec file, or timm name")
    w = e.add_mutually_exclusive_group()
    w.add_argument("--checkpoint", help="weights file (training checkpoint: EMA weights are used)")
    w.add_argument("--pretrained", action="store_true", help="published weights")
    e.add_argument("--data-dir", required=True, help="folder with val/<class>/* or <class>/* directly")
    e.add_argument("--split", default="val", help='split folder under --data-dir (default val)')
    e.add_argument("--dataset", help="timm dataset name (default: ImageFolder)")
    e.add_argument("-b", "--batch-size", type=int, default=64, help="images per batch (default 64)")
    e.add_argument("-j", "--workers", type=int, default=2, help='data-loading processes (default 2)')
    e.add_argument("--img-size", type=int, help="default: the model's resolution")
    e.add_argument("--crop-pct", type=float, help="default: the model card's")
    e.add_argument("--interpolation", help="default: the model card's (bicubic)")
    e.add_argument("--device", help="cpu, cuda, cuda:1 (default: cuda if available)")
    e.add_argument("--amp", action="store_true", help="float16 autocast on GPU")
    e.add_argument("--json", action="store_true", help="print the result as one JSON document on stdout")
    e.set_defaults(handler=_eval)
