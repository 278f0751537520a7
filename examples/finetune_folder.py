"""Fine-tune a hub model on a folder of images (DIR/train/<class>/*.png, DIR/val/<class>/*.png), then evaluate it.

    python examples/finetune_folder.py --make-digits data/digits --epochs 3 --output output/finetune_digits

``--make-digits DIR`` first writes such a folder from scikit-learn's digits (real 8x8 scans, upscaled, as
PNG), so the example runs with no download; leave it out to train on your own ``--data-dir``. The weights
start random unless ``--pretrained`` is given (that downloads the model's ImageNet weights).
"""
import argparse
import os

import gpunet
import gpunet.train


def make_digits(root: str, per_class_train: int, per_class_val: int, size: int) -> str:
    """scikit-learn's digits as an ImageFolder: ``per_class_*`` images per digit, ``size`` px RGB PNGs."""
    import numpy as np
    from PIL import Image
    from sklearn.datasets import load_digits

    digits = load_digits()
    seen = {}
    for i, (image, label) in enumerate(zip(digits.images, digits.target)):
        k = seen[label] = seen.get(label, 0) + 1
        if k > per_class_train + per_class_val:
            continue
        split = "train" if k <= per_class_train else "val"
        folder = os.path.join(root, split, str(label))
        os.makedirs(folder, exist_ok=True)
        grey = Image.fromarray((image / 16.0 * 255).astype(np.uint8))  # 16 grey levels -> 0..255
        grey.resize((size, size), Image.BICUBIC).convert("RGB").save(os.path.join(folder, f"{i}.png"))
    return root


def percent(value) -> str:
    return "-" if value is None else f"{value:.1f}%"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--make-digits", metavar="DIR", help="write the digits ImageFolder to DIR and train on it")
    parser.add_argument("--digits-train", type=int, default=40, help="training images per digit (--make-digits)")
    parser.add_argument("--digits-val", type=int, default=10, help="validation images per digit (--make-digits)")
    parser.add_argument("--data-dir", help="an ImageFolder with train/ and val/ (default: the --make-digits DIR)")
    parser.add_argument("--model", default="gpunet-0", help=f"hub model, one of {gpunet.list_models()}")
    parser.add_argument("--pretrained", action="store_true", help="start from the ImageNet weights (downloads them)")
    parser.add_argument("--img-size", type=int, default=32, help="training and evaluation resolution in px")
    parser.add_argument("--epochs", type=int, default=3, help="training epochs")
    parser.add_argument("--batch-size", type=int, default=16, help="images per step")
    parser.add_argument("--lr", type=float, default=3e-3, help="learning rate (AdamW, cosine schedule)")
    parser.add_argument("--workers", type=int, default=0, help="data-loading processes (0: in this process)")
    parser.add_argument("--output", default="output/finetune_digits", help="run folder (must be new or empty)")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    if args.make_digits:
        # the PNGs at the training size: digits are tiny, nothing is gained by storing more pixels
        make_digits(args.make_digits, args.digits_train, args.digits_val, size=args.img_size)
        print(f"wrote the digits ImageFolder to {args.make_digits}")
    data_dir = args.data_dir or args.make_digits
    if not data_dir:
        raise SystemExit("give --data-dir DIR (an ImageFolder) or --make-digits DIR")

    # The "finetune" recipe (AdamW, cosine, EMA), with light augmentation: digits are not mirror-symmetric.
    cfg = gpunet.train.resolve_config("finetune", overrides=dict(
        model=args.model, pretrained=args.pretrained, data_dir=data_dir, output=args.output, epochs=args.epochs,
        img_size=args.img_size, batch_size=args.batch_size, lr=args.lr, workers=args.workers,
        aa="", hflip=0.0, color_jitter=0.0, reprob=0.0, scale=(0.6, 1.0), log_interval=0))

    def report(stats) -> None:  # after every epoch's validation
        print(f"epoch {stats.epoch + 1}/{stats.epochs}: train loss {stats.train_loss:.3f}  "
              f"top-1 {percent(stats.top1)}  EMA top-1 {percent(stats.ema_top1)}  ({stats.val_images} val images)")

    result = gpunet.train.train(cfg, callback=report)
    print(f"checkpoint: {result.checkpoint}")
    print(f"best checkpoint: {result.best_checkpoint} (best top-1 {percent(result.best_metric)})")

    scores = gpunet.train.evaluate(args.model, data_dir, checkpoint=result.best_checkpoint, workers=args.workers)
    print(f"evaluate {args.model} on {data_dir}/val: top-1 {scores['top1']:.1f}%  top-{scores['topk']} "
          f"{scores['top5']:.1f}%  ({scores['images']} images at {scores['img_size']} px)")


if __name__ == "__main__":
    main()
