"""What successive halving saves in a training search: the same searches with and without ASHA.

For each seed, two ``gpunet search run`` searches on Ray Tune (``--evaluator train``, digits from
scikit-learn as a 10-class ImageFolder at 32 px, a ``--space small`` Sobol pool, random search so
both runs of a seed propose the same candidates in the same order): one trains every candidate for
``--epochs``, the other passes ``scheduler="asha"`` (Tune's ``ASHAScheduler`` on the per-epoch
validation top-1, ``--grace-epochs``, ``--reduction-factor``). The table gives per run the epochs
trained in total (the search's cost), how many candidates ASHA stopped, the best validation top-1
and the wall time (a timing of this machine; compare only within one run of the script).

    python benchmarks/bench_asha.py [--seeds 0,1] [--budget 8] [--epochs 6] [--grace-epochs 1]
        [--reduction-factor 2] [--workers 2]
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

FAST = ("batch_size: 32\nworkers: 0\naa: ''\nhflip: 0.0\nreprob: 0.0\ncolor_jitter: 0.0\nscale: [0.6, 1.0]\n"
        "lr: 0.003\nrecipe: finetune\nmodel_ema: false\n")


def make_digits(root: str, n_train: int, n_val: int, size: int = 32) -> str:
    """scikit-learn's digits as RGB PNGs in ``root/train/<class>`` and ``root/val/<class>``."""
    import numpy as np
    from PIL import Image
    from sklearn.datasets import load_digits

    d, counts = load_digits(), {}
    for j, c in enumerate(d.target.tolist()):
        k = counts[c] = counts.get(c, 0) + 1
        if k > n_train + n_val:
            continue
        folder = os.path.join(root, "train" if k <= n_train else "val", str(c))
        os.makedirs(folder, exist_ok=True)
        img = Image.fromarray((d.images[j] / 16.0 * 255).astype(np.uint8)).resize((size, size), Image.BICUBIC)
        img.convert("RGB").save(os.path.join(folder, f"{j}.png"))
    return root


def one_search(pool: str, out: str, data: str, cfg: str, seed: int, scheduler, args) -> dict:
    from gpunet.search.engine.driver import SearchSettings, run_search
    from gpunet.search.engine.journal import Journal

    settings = SearchSettings(
        pool=pool, out=out, evaluator="train", algorithm="random", budget=args.budget, workers=args.workers,
        engine="ray", seed=seed, scheduler=scheduler, grace_epochs=args.grace_epochs,
        reduction_factor=args.reduction_factor,
        evaluator_options={"data_dir": data, "epochs": args.epochs, "img_size": 32, "train_config": cfg,
                           "seed": seed})
    start = time.perf_counter()
    run_search(settings)
    seconds = time.perf_counter() - start
    recs = Journal(os.path.join(out, "results.jsonl")).records()
    ok = [r for r in recs if r.get("value") is not None]
    return {"seed": seed, "scheduler": scheduler or "none", "lines": len(recs),
            "epochs": sum(int(r.get("epochs") or 0) for r in recs),
            "stopped": sum(bool(r.get("stopped_early")) for r in recs),
            "best_top1": max(r["value"] for r in ok) if ok else None,
            "best_full": max((r["value"] for r in ok if not r.get("stopped_early")), default=None),
            "seconds": seconds}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", default="0,1")
    ap.add_argument("--budget", type=int, default=8)
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--grace-epochs", type=int, default=1)
    ap.add_argument("--reduction-factor", type=int, default=2)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--n-train", type=int, default=40, help="training images per class")
    ap.add_argument("--json", action="store_true", help="also print the rows as one JSON line")
    args = ap.parse_args()

    from gpunet.cli import main as cli
    from gpunet.cli._fmt import format_table
    from gpunet.latency.fingerprint import cpu_info
    from gpunet.latency.machine import load_average

    info = cpu_info()
    print(f"cpu: {info.get('cpu')}  isa: {' '.join(info.get('cpu_flags') or [])}  cores: {os.cpu_count()}  "
          f"load average at start: {load_average():.2f}", flush=True)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        data = make_digits(os.path.join(tmp, "digits"), args.n_train, 15)
        cfg = os.path.join(tmp, "fast.yaml")
        with open(cfg, "w") as f:
            f.write(FAST)
        pool = os.path.join(tmp, "pool.npz")
        cli(["sample", "--space", "small", "--n", "256", "--out", pool, "--json"])
        for seed in [int(s) for s in args.seeds.split(",") if s]:
            for scheduler in (None, "asha"):
                out = os.path.join(tmp, f"s{seed}-{scheduler or 'none'}")
                rows.append(one_search(pool, out, data, cfg, seed, scheduler, args))
                print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    print(format_table([[r["seed"], r["scheduler"], r["lines"], r["epochs"], r["stopped"],
                         "-" if r["best_top1"] is None else f"{r['best_top1']:.1f}", f"{r['seconds']:.0f}"]
                        for r in rows],
                       ["seed", "scheduler", "candidates", "epochs trained", "stopped early", "best val top-1",
                        "wall s"]))
    print(f"budget {args.budget}, {args.epochs} epochs max, ASHA grace {args.grace_epochs} reduction "
          f"{args.reduction_factor}, {args.workers} workers; load average at end: {load_average():.2f}")
    if args.json:
        print(json.dumps(rows))


if __name__ == "__main__":
    main()
