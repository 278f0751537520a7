"""From a latency budget to a running artifact: measure, choose, write, load, classify.

    python examples/deploy_budget.py --max-latency-ms 100 --out output/deploy --images 4

``gpunet.deploy.deploy`` times every candidate model on every backend x precision this machine runs
(here by default two small models on ONNX Runtime and OpenVINO), keeps the most accurate one (by its
registry top-1) whose p50 fits the budget, on its fastest path, and writes a verified folder (every
timing is also saved as a latency tier of this machine in the user registry under GPUNET_HOME);
``gpunet.load_deployed`` runs it. The models carry their published weights (fetched once and
verified); ``--weights random`` deploys freshly initialised ones where the weights cannot be had
(offline): the latency holds, the predicted classes then only show that the artifact runs.
``--images N`` classifies N digits images from scikit-learn; without it, random input.
"""
import argparse

import numpy as np

import gpunet
import gpunet.deploy


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-latency-ms", type=float, default=100.0, help="p50 budget per batch, in ms")
    parser.add_argument("--out", default="output/deploy", help="deploy folder (replaced if it holds a deploy)")
    parser.add_argument("--model", dest="models", default="gpunet-0,gpunet-p0",
                        help="hub models to measure, comma separated")
    parser.add_argument("--backends", default="onnxruntime,openvino", help="backends to measure, comma separated")
    parser.add_argument("--weights", default="pretrained", choices=("pretrained", "random"),
                        help="published weights (default) or a random initialisation (latency only)")
    parser.add_argument("--precisions", default="fp32,bf16,fp16", help="precisions to try (what the CPU lacks is "
                                                                       "skipped; int8 needs calibration images)")
    parser.add_argument("--img-size", type=int, help="input side in px (default: each model's own resolution)")
    parser.add_argument("--threads", type=int, help="CPU threads (default: every usable core)")
    parser.add_argument("--rounds", type=int, default=5, help="timing rounds per path")
    parser.add_argument("--block", type=int, default=10, help="timed runs per round")
    parser.add_argument("--warmup-s", type=float, default=2.0, help="seconds of untimed runs before a path is timed")
    parser.add_argument("--images", type=int, help="classify this many digits images (default: random input)")
    return parser.parse_args()


def inputs(count, shape):
    """``count`` digits images (PIL, the deployed model resizes them), or one random preprocessed batch."""
    if count is None:
        return np.random.default_rng(0).standard_normal((2, *shape[1:])).astype(np.float32)
    from PIL import Image
    from sklearn.datasets import load_digits

    digits = load_digits()
    return [Image.fromarray((img / 16.0 * 255).astype(np.uint8)).convert("RGB") for img in digits.images[:count]]


def main() -> None:
    args = parse_args()
    timing = gpunet.deploy.Timing(rounds=args.rounds, block=args.block, warmup_s=args.warmup_s)
    try:
        result = gpunet.deploy.deploy(args.max_latency_ms, args.out, models=args.models, backends=args.backends,
                                      precisions=args.precisions, resolution=args.img_size, threads=args.threads,
                                      timing=timing, weights=args.weights)
    except gpunet.deploy.NoFitError as e:
        raise SystemExit(str(e))
    for p in result.decision.paths:
        p50 = "-" if p.p50_ms is None else f"{p.p50_ms:7.2f} ms"
        print(f"  {p.model:10s} {p.backend:12s} {p.precision:5s} {p50:>10s}  {p.reason}")
    chosen = result.decision.chosen
    print(f"chosen for {args.max_latency_ms:g} ms on {result.device}: {chosen.model} on {chosen.backend} "
          f"{chosen.precision}, measured p50 {chosen.p50_ms:.2f} ms; written to {result.out}")

    model = gpunet.load_deployed(result.out)
    print(f"loaded {model!r}")
    x = inputs(args.images, model.input_shape)
    logits = model(x)
    what = "random inputs" if args.images is None else "digits images"
    print(f"{len(x)} {what} -> logits {logits.shape}, predicted classes {logits.argmax(axis=1).tolist()}")


if __name__ == "__main__":
    main()
