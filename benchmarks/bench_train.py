"""Training throughput of GPUNet-0 at 64 px on CPU (regression tracking).

Two figures with the paper's recipe (rmsproptf, EMA, label smoothing, drop-path):
  * step:       forward + backward + optimizer + EMA on ready tensors (the model's cost);
  * end-to-end: one epoch through the trainer's loader with RandAugment m9 and RandomErasing
                on a synthetic ImageFolder (what ``gpunet train`` sustains).

    python benchmarks/bench_train.py [--batch-size 32] [--steps 10] [--threads N] [--workers 2]
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))


def make_folder(root: str, classes: int, per_class: int, size: int) -> str:
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    for c in range(classes):
        folder = os.path.join(root, "train", str(c))
        os.makedirs(folder)
        for i in range(per_class):
            Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)).save(
                os.path.join(folder, f"{i}.png"))
    return root


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="gpunet-0")
    ap.add_argument("--img-size", type=int, default=64)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()

    import torch

    from gpunet.cli._fmt import format_table
    from gpunet.train import Trainer, resolve_config

    if args.threads:
        torch.set_num_threads(args.threads)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        data = make_folder(os.path.join(tmp, "data"), classes=10, per_class=args.batch_size * 4 // 10 + 1,
                           size=args.img_size + 8)
        cfg = resolve_config("paper", overrides=dict(
            model=args.model, data_dir=data, val_split="", img_size=args.img_size, batch_size=args.batch_size,
            workers=args.workers, output=os.path.join(tmp, "out"), log_interval=0))
        trainer = Trainer(cfg).setup()
        images = torch.randn(args.batch_size, 3, args.img_size, args.img_size)
        target = torch.randint(0, 10, (args.batch_size,))
        for _ in range(args.warmup):
            trainer.train_step(images, target)
        start = time.perf_counter()
        for _ in range(args.steps):
            trainer.train_step(images, target)
        sec = time.perf_counter() - start
        rows.append(["step (fwd+bwd+rmsproptf+EMA)", args.batch_size, args.steps,
                     f"{sec / args.steps * 1000:.0f}", f"{args.steps * args.batch_size / sec:.1f}"])
        stats = trainer.train_one_epoch(0)
        steps = trainer.updates_per_epoch
        rows.append([f"end-to-end epoch (RandAugment, {args.workers} workers)", args.batch_size, steps,
                     f"{stats['seconds'] / steps * 1000:.0f}", f"{stats['images_per_second']:.1f}"])
    print(f"{args.model} training at {args.img_size} px on {'cuda' if torch.cuda.is_available() else 'cpu'}, "
          f"{torch.get_num_threads()} thread(s), torch {torch.__version__}")
    print(format_table(rows, ["what", "batch", "steps", "ms/step", "images/s"]))


if __name__ == "__main__":
    main()
