"""Quick start: pick the most accurate GPUNet that fits a latency budget, build it, run it.

    python examples/quickstart.py --max-latency-ms 1.0 --gpu gv100
"""
import argparse

import torch

import gpunet


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-latency-ms", type=float, default=1.0)
    parser.add_argument("--gpu", default="gv100", help=f"one of {gpunet.list_devices()}")
    parser.add_argument("--num-classes", type=int, default=1000)
    args = parser.parse_args()

    cards = gpunet.query(max_latency_ms=args.max_latency_ms, gpu=args.gpu)
    if not cards:
        raise SystemExit(f"no hub model runs within {args.max_latency_ms} ms on {args.gpu}")
    print(f"models within {args.max_latency_ms} ms on {args.gpu}, best first:")
    for c in cards:
        print(f"  {c.name:10s} top-1 {c.top1:5.1f}%  {c.latency_ms:.2f} ms  {c.params / 1e6:5.1f} M params")

    best = cards[0]
    model = gpunet.get_model(best.name, gpu=args.gpu, num_classes=args.num_classes).eval()
    x = torch.randn(1, 3, best.resolution, best.resolution)
    with torch.no_grad():
        logits = model(x)
    print(f"built {best.name}: input {tuple(x.shape)} -> logits {tuple(logits.shape)}")


if __name__ == "__main__":
    main()
