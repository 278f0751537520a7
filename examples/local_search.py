"""Search the ``small`` space on this machine: LA-MCTS (the paper's algorithm) over a pool, in-process.

    python examples/local_search.py --budget 16 --out output/search_synthetic
    python examples/local_search.py --evaluator train --data-dir data/digits --epochs 1 --img-size 32 \\
        --budget 4 --out output/search_digits

``--evaluator synthetic`` (the default) scores a candidate with a fixed formula of its encoding in
milliseconds: a FAST STAND-IN FOR TRAINING, to try the search machinery (pool, algorithm, journal,
resume); its "top-1" means nothing. ``--evaluator train`` trains every candidate on ``--data-dir`` (an
ImageFolder with train/ and val/, e.g. the digits folder of ``finetune_folder.py --make-digits``) and
scores it by validation top-1. The pool is ``--pool`` (e.g. ``latency_table_and_pool.py --out``, whose
latency groups ``--group`` selects) or ``--pool-size`` networks sampled here without latencies.
"""
import argparse
import json
import os

import gpunet.search as search


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="output/search", help="search folder (journal, state; must be new)")
    parser.add_argument("--pool", help="a pool .npz to search (default: sample --pool-size networks)")
    parser.add_argument("--pool-size", type=int, default=256, help="networks sampled when no --pool is given")
    parser.add_argument("--group", type=int, help="search only this latency group of --pool")
    parser.add_argument("--budget", type=int, default=16, help="candidates evaluated")
    parser.add_argument("--algorithm", default="lamcts", choices=("lamcts", "tpe", "random"),
                        help="search algorithm (lamcts: the paper's LA-MCTS)")
    parser.add_argument("--evaluator", default="synthetic", choices=("synthetic", "train"),
                        help="synthetic: a fast stand-in formula, not training; train: train each candidate")
    parser.add_argument("--data-dir", help="ImageFolder with train/ and val/ (--evaluator train)")
    parser.add_argument("--epochs", type=int, default=1, help="training epochs per candidate (--evaluator train)")
    parser.add_argument("--img-size", type=int, default=32, help="training resolution in px (--evaluator train)")
    parser.add_argument("--batch-size", type=int, default=16, help="images per step (--evaluator train)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the pool and of the algorithm")
    parser.add_argument("--top", type=int, default=3, help="best candidates printed")
    return parser.parse_args()


def evaluator_options(args: argparse.Namespace) -> dict:
    """What the evaluator needs; training reads its hyper-parameters from a config file in the search folder."""
    if args.evaluator == "synthetic":
        return {}
    if not args.data_dir:
        raise SystemExit("--evaluator train needs --data-dir (an ImageFolder with train/ and val/)")
    config = os.path.join(args.out, "train_config.json")  # JSON is YAML too: the trainer reads it either way
    with open(config, "w") as f:
        json.dump({"recipe": "finetune", "batch_size": args.batch_size, "lr": 3e-3, "workers": 0, "aa": "",
                   "hflip": 0.0, "color_jitter": 0.0, "reprob": 0.0, "scale": [0.6, 1.0]}, f, indent=1)
    return {"data_dir": args.data_dir, "epochs": args.epochs, "img_size": args.img_size, "train_config": config}


def describe(space, record: dict) -> str:
    spec = space.decode(record["vector"])
    widths = "-".join(str(spec.layers[idx[-1]].out_channels) for _, idx in spec.stages())
    latency = "" if record.get("latency_ms") is None else f"  {record['latency_ms']:.2f} ms"
    trained = f" (trained at {record['img_size']} px)" if record.get("img_size") else ""
    return (f"{record['candidate_id']}  value {record['value']:7.3f}{latency}  {len(spec.layers)} layers, "
            f"widths {widths}, encoded resolution {spec.resolution} px{trained}")


def main() -> None:
    args = parse_args()
    if os.path.isdir(args.out) and os.listdir(args.out):
        raise SystemExit(f"{args.out} is not empty: give a new --out folder")
    os.makedirs(args.out, exist_ok=True)
    pool_path = args.pool
    if pool_path is None:
        pool_path = os.path.join(args.out, "pool.npz")
        search.Pool.sample(search.SearchSpace.small(), args.pool_size, seed=args.seed).save(pool_path)
        print(f"sampled {args.pool_size} networks of the small space into {pool_path} (no latencies)")
    if args.evaluator == "synthetic":
        print("evaluator: synthetic -- a fast stand-in formula for training, to try the machinery; "
              "its values are not accuracies")
    settings = search.SearchSettings(pool=pool_path, out=args.out, evaluator=args.evaluator,
                                     algorithm=args.algorithm, budget=args.budget, group=args.group,
                                     engine="local", seed=args.seed, evaluator_options=evaluator_options(args))

    def progress(status: dict) -> None:  # after every finished candidate; "best" is the best value so far
        print(f"  evaluated {status['completed']}/{status['budget']}, best value {status['best']}")

    status = search.run_search(settings, progress=progress)
    print(f"{args.algorithm} evaluated {status['completed']} candidates ({status['failed']} failed) in {status['out']}")
    space = search.Pool.load(pool_path).space
    records = search.Journal(os.path.join(args.out, "results.jsonl")).records()
    ranked = sorted((r for r in records if r["value"] is not None), key=lambda r: r["value"], reverse=True)
    print(f"best {min(args.top, len(ranked))} candidates:")
    for record in ranked[:args.top]:
        print("  " + describe(space, record))
    if status["best"] and status["best"].get("checkpoint"):
        print(f"best checkpoint: {status['best']['checkpoint']}")


if __name__ == "__main__":
    main()
