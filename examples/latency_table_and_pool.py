"""Measure a per-block latency table on this machine, then sample a pool of networks into latency groups.

    python examples/latency_table_and_pool.py --networks 20 --pool-size 2000 --groups 5 --lut small.lut

The paper's section 3.2: a network's latency is the sum of its blocks' latencies, so the table times
each distinct block of the first ``--networks`` Sobol-sampled networks of the ``small`` search space
once; the pool (``--pool-size`` networks, same Sobol sequence) is then estimated from the table. Blocks
the table lacks (networks past the first ``--networks``) come from a cost model fitted to the table.
Running it again with the same ``--lut`` measures only the blocks that are new.
"""
import argparse

import gpunet.search as search


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lut", default="small.lut", help="latency table file (SQLite; created or extended)")
    parser.add_argument("--networks", type=int, default=20, help="networks whose blocks are measured")
    parser.add_argument("--pool-size", type=int, default=2000, help="networks in the pool")
    parser.add_argument("--groups", type=int, default=5, help="equal-count latency groups of the pool")
    parser.add_argument("--backend", default="torch", choices=("torch", "onnxruntime", "openvino"),
                        help="runtime the blocks are timed on (torch is quickest to build; a table keeps one)")
    parser.add_argument("--iters", type=int, default=20, help="timed runs per block")
    parser.add_argument("--warmup", type=int, default=3, help="untimed runs per block first")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads (fixed when the table is created)")
    parser.add_argument("--seed", type=int, default=0, help="Sobol seed of the networks")
    parser.add_argument("--out", help="also save the pool here (.npz, for `gpunet search run --pool`)")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    space = search.SearchSpace.small()
    keys = search.network_blocks(space, space.sample(args.networks, seed=args.seed))
    counts = search.build_lut(args.lut, keys, args.backend, iters=args.iters, warmup=args.warmup,
                              threads=args.threads, progress=False)
    print(f"latency table {args.lut}: {len(keys)} blocks for {args.networks} networks of the {space.name} space "
          f"({counts['measured']} measured now, {counts['present']} already there), {args.backend}")
    with search.LatencyTable(args.lut) as table:
        print(f"table holds {len(table)} blocks")
        for row in sorted(table.rows(), key=lambda r: r["median_ms"])[-3:]:
            print(f"  slow block: {row['kind']:9s} {row['in_channels']:>4d} -> {row['out_channels']:<4d} "
                  f"k{row['kernel_size']} at {row['height']:>3d} px: {row['median_ms']:.3f} ms")

    pool = search.Pool.sample(space, args.pool_size, seed=args.seed, lut=args.lut, groups=args.groups,
                              fill="costmodel")
    summary = pool.summary()
    print(f"pool: {len(pool)} networks, {summary['with_latency']} with a latency, "
          f"{summary['estimated_by_costmodel']} using the cost model for some block")
    for g in pool.group_counts():
        print(f"  group {g['label']}: {g['count']:6d} networks, {g['lo_ms']:.3f} - {g['hi_ms']:.3f} ms")
    if args.out:
        pool.save(args.out)
        print(f"saved the pool to {args.out}")


if __name__ == "__main__":
    main()
