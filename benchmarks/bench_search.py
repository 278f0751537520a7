"""How fast do the search algorithms find the best rows of a pool? (paper section 3.3)

For each synthetic objective over the 41-gene Table 1 space, each algorithm (LaMCTS, TPE,
random) searches a Sobol pool from ``SearchSpace().sample`` one evaluation at a time (or
``--batch`` at a time, as parallel workers would). The table gives, per number of evaluations,
the median over seeds of the *top %* reached: the share of the pool strictly better than the best
row found (0.2 means the best found is in the pool's top 0.2 %; 0 means the pool's optimum).
Also timed: one ``tell`` + ``ask`` of LaMCTS with 1,000 told samples over a 1,000,000-row pool
(``--timing-pool``). The CPU model, its vector ISA (AVX-512 / AMX / AVX2) and the load average are
printed with the table, since both move these timings.

Objectives (constants drawn once from a fixed stream; the searches' seeds never touch them).
Genes are scaled to [0, 1] by their choices' range (``u``):

- ``smooth``: ``-sum_i w_i (u_i - c_i)^2``, one optimum inside the space.
- ``rugged``: ``smooth`` at half weight + ``sum_i a_i cos(2 pi k_i u_i + phi_i)`` (k up to 3:
  several local optima per gene) + 60 random pairwise products ``b_ij (u_i - c_i)(u_j - c_j)``.
- ``accuracy``: "top-1" rising with depth (layers), width (log filters), resolution and expansion
  with diminishing returns (``1 - exp(-x/s)``), small gains for swish and SE, a penalty for
  unbalanced stage depths and 0.05 points of deterministic "training noise". Its pool mimics one
  latency group: the middle 20 % by a FLOPs proxy of a pool 5x larger, so capacity is traded
  between depth, width and resolution instead of simply maximised.
- ``<name>+fail`` (e.g. ``accuracy+fail``): the same objective where ``--failures`` (5 %) of the
  rows fail (the algorithm is told ``None``) and ``--diverged`` (5 %) "diverge" to chance level: 0.1
  on ``accuracy`` (top-1 at chance among values around 74-80), ``min - 10 (max - min)`` of the pool
  on the others (as far below). Which rows fail or diverge follows a hash of the row alone, not the
  seed, so every algorithm meets the same broken rows; the top % ranks the pool by what the
  searches can observe (a failed row is worse than any value, a diverged one has its chance value).

    python benchmarks/bench_search.py [--pool 20000] [--seeds 9] [--budget 200] [--batch 1]
        [--objectives smooth,rugged,accuracy,smooth+fail,rugged+fail,accuracy+fail]
        [--failures 0.05] [--diverged 0.05] [--algorithms lamcts,tpe,random]
        [--timing-pool 1000000] [--no-timing] [--plot out.png]
"""
from __future__ import annotations

import argparse
import hashlib
import os
import sys
import time
import warnings

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # run from a checkout

from gpunet.latency.fingerprint import cpu_description  # noqa: E402

CHECKPOINTS = (25, 50, 100, 200)


# -- objectives -----------------------------------------------------------------------------------
def _unit(space, X):
    lo = np.array([min(g.choices) for g in space.genes], dtype=float)
    hi = np.array([max(g.choices) for g in space.genes], dtype=float)
    return (np.asarray(X, dtype=float) - lo) / np.where(hi > lo, hi - lo, 1.0)


def _constants(d):
    r = np.random.default_rng(20201206)  # fixed: the objectives never change with --seeds
    return {"w": r.uniform(0.2, 1.0, d), "c": r.uniform(0.1, 0.9, d), "a": r.uniform(0.05, 0.25, d),
            "k": r.integers(1, 4, d), "phi": r.uniform(0, 2 * np.pi, d),
            "pairs": r.choice(d, size=(60, 2)), "b": r.normal(0, 0.6, 60), "noise": r.normal(0, 1, d)}


def smooth(space, X):
    u, k = _unit(space, X), _constants(len(space.genes))
    return -(k["w"] * (u - k["c"]) ** 2).sum(axis=1)


def rugged(space, X):
    u, k = _unit(space, X), _constants(len(space.genes))
    base = -0.5 * (k["w"] * (u - k["c"]) ** 2).sum(axis=1)
    waves = (k["a"] * np.cos(2 * np.pi * k["k"] * u + k["phi"])).sum(axis=1)
    i, j = k["pairs"][:, 0], k["pairs"][:, 1]
    inter = (k["b"] * (u[:, i] - k["c"][i]) * (u[:, j] - k["c"][j])).sum(axis=1)
    return base + waves + inter


def _stages(space, X):
    cfg = [space.stage_config(X, s) for s in range(len(space.stages))]
    return cfg


def flops_proxy(space, X):
    X = np.asarray(X)
    h = space.resolution(X).astype(float)
    cin = np.full(len(X), 3.0)
    total = np.zeros(len(X))
    for s, st in enumerate(space.stages):
        c = space.stage_config(X, s)
        h = h / st.stride
        f, e, n = c["filters"].astype(float), c["expansion"].astype(float), c["layers"].astype(float)
        total += h * h * (cin * f * e + np.maximum(n - 1, 0) * f * f * e) * c["kernel"] ** 2 / 9
        cin = np.where(n > 0, f, cin)
    return total


def accuracy(space, X):
    X = np.asarray(X)
    u, k = _unit(space, X), _constants(len(space.genes))
    body = [space.stage_config(X, s) for s in range(1, len(space.stages))]
    layers = np.stack([c["layers"] for c in body], axis=1).astype(float)
    depth = layers.sum(axis=1)
    width = np.stack([np.log2(c["filters"]) for c in body], axis=1).mean(axis=1)
    used = layers > 0
    share = lambda key: np.where(used, np.stack([c[key] for c in body], axis=1), 0).sum(1) / used.sum(1)
    expansion = share("expansion")
    res = space.resolution(X).astype(float)
    balance = (layers / np.maximum(layers.sum(axis=1, keepdims=True), 1)).std(axis=1)
    top1 = (60 + 9 * (1 - np.exp(-depth / 18)) + 7 * (1 - np.exp(-(width - 5) / 1.2))
            + 5 * (1 - np.exp(-(res - 192) / 160)) + 2 * (1 - np.exp(-(expansion - 1) / 2.5))
            + 0.6 * share("act") + 0.4 * share("se") - 6 * balance)
    return top1 + 0.05 * np.sin(1000 * u @ k["noise"])


OBJECTIVES = {"smooth": smooth, "rugged": rugged, "accuracy": accuracy}
FAIL_SUFFIX = "+fail"
ALL_OBJECTIVES = list(OBJECTIVES) + [o + FAIL_SUFFIX for o in OBJECTIVES]


def row_hash_unit(pool):
    """One number in [0, 1) per row from a hash of its genes: the same rows break for every seed."""
    return np.array([int.from_bytes(hashlib.blake2b(np.asarray(r, dtype=np.int64).tobytes(),
                                                    digest_size=8).digest(), "little") / 2.0 ** 64
                     for r in pool])


def break_rows(base, values, pool, failures, diverged):
    """``values`` with the ``failures`` share of rows NaN (failed) and the next ``diverged`` share at chance."""
    u = row_hash_unit(pool)
    chance = 0.1 if base == "accuracy" else values.min() - 10 * np.ptp(values)
    out = np.where(u < failures + diverged, chance, values)
    return np.where(u < failures, np.nan, out)


def objective_values(space, name, pool, failures=0.05, diverged=0.05):
    """Values of objective ``name`` (a base name, or ``<base>+fail``) over ``pool``; NaN = failure."""
    base = name[:-len(FAIL_SUFFIX)] if name.endswith(FAIL_SUFFIX) else name
    values = OBJECTIVES[base](space, pool)
    return break_rows(base, values, pool, failures, diverged) if base != name else values


def make_pool(space, name, n, seed=0):
    if not name.startswith("accuracy"):
        return space.sample(n, seed=seed)
    big = space.sample(5 * n, seed=seed)
    cost = flops_proxy(space, big)
    order = np.argsort(cost, kind="stable")
    return big[np.sort(order[2 * n:3 * n])]  # the middle fifth: one "latency group"


# -- runs -----------------------------------------------------------------------------------------
def make_algo(name, pool, seed):
    import gpunet.search as search
    cls = getattr(search, {"lamcts": "LaMCTS", "tpe": "TPESearch", "random": "RandomSearch"}[name])
    return cls(pool, seed=seed)


def run_one(algo, values, budget, batch, index):
    """Best value after each evaluation (asks ``batch`` rows at a time, tells them in order).

    A NaN value is a failed evaluation: told as ``None``, never the best.
    """
    best, trace = -np.inf, []
    while len(trace) < budget:
        xs = algo.ask(min(batch, budget - len(trace)))
        for x in xs:
            v = float(values[index[x.tobytes()]])
            algo.tell(x, None if np.isnan(v) else v)
            best = best if np.isnan(v) else max(best, v)
            trace.append(best)
    return np.asarray(trace)


def top_percent(ranked, trace):
    """Share (%) of the pool strictly better than each best-so-far in ``trace`` (``ranked`` sorted)."""
    return 100.0 * (len(ranked) - np.searchsorted(ranked, trace, side="right")) / len(ranked)


def time_tell_ask(space, objective, told=1000, pool_n=1_000_000, repeats=3):
    """Wall and CPU seconds of ``repeats`` LaMCTS ``tell`` + ``ask`` with ``told`` samples over ``pool_n`` rows."""
    from gpunet.search import LaMCTS
    pool = space.sample(pool_n, seed=123)
    vals = objective(space, pool)
    algo = LaMCTS(pool, seed=0)
    rng = np.random.default_rng(0)
    rows = rng.choice(pool_n, size=told + repeats, replace=False)
    for r in rows[:told]:
        algo.tell(pool[r], vals[r])
    times, cpu = [], []
    for r in rows[told:]:
        t0, c0 = time.perf_counter(), time.process_time()
        algo.tell(pool[r], vals[r])
        algo.ask()
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    return times, cpu


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pool", type=int, default=20_000, help="pool rows per objective (default 20000)")
    ap.add_argument("--seeds", type=int, default=9, help="search seeds per algorithm (median over them)")
    ap.add_argument("--budget", type=int, default=200, help="evaluations per search")
    ap.add_argument("--batch", type=int, default=1, help="rows per ask (parallel workers)")
    ap.add_argument("--objectives", default=",".join(ALL_OBJECTIVES),
                    help="comma-separated; <name>+fail adds failed and diverged rows")
    ap.add_argument("--failures", type=float, default=0.05, help="share of failed rows in +fail objectives")
    ap.add_argument("--diverged", type=float, default=0.05, help="share of rows at chance in +fail objectives")
    ap.add_argument("--algorithms", default="lamcts,tpe,random")
    ap.add_argument("--timing-pool", type=int, default=1_000_000, help="pool rows of the tell+ask timing")
    ap.add_argument("--no-timing", action="store_true", help="skip the tell+ask timing")
    ap.add_argument("--plot", help="write a PNG of top %% vs evaluations here (needs matplotlib)")
    args = ap.parse_args(argv)
    args.objectives = [o for o in args.objectives.split(",") if o]
    args.algorithms = [a for a in args.algorithms.split(",") if a]
    for o in args.objectives:
        if o not in ALL_OBJECTIVES:
            ap.error(f"unknown objective {o!r}; choose from {ALL_OBJECTIVES}")
    if not (0 <= args.failures and 0 <= args.diverged and args.failures + args.diverged < 1):
        ap.error("--failures and --diverged must be >= 0 and leave some rows intact")
    return args


def run_table(space, args, cps):
    """Median top % per (objective, algorithm) over the seeds; prints each row as it is done."""
    rows, curves = [], {}
    for oname in args.objectives:
        pool = make_pool(space, oname, args.pool)
        values = objective_values(space, oname, pool, args.failures, args.diverged)
        index = {r.tobytes(): i for i, r in enumerate(pool)}
        ranked = np.sort(np.where(np.isnan(values), -np.inf, values))   # a failure is worse than any value
        for aname in args.algorithms:
            tops, secs = [], []
            for seed in range(args.seeds):
                t0 = time.perf_counter()
                trace = run_one(make_algo(aname, pool, seed), values, args.budget, args.batch, index)
                secs.append(time.perf_counter() - t0)
                tops.append(top_percent(ranked, trace))
            med = np.median(np.stack(tops), axis=0)
            curves[(oname, aname)] = med
            rows.append([oname, aname] + [f"{med[c - 1]:.3f}" for c in cps] + [f"{np.mean(secs):.1f}"])
            print(f"  {oname:13s} {aname:7s} " + "  ".join(f"{c}:{med[c - 1]:.3f}" for c in cps)
                  + f"  ({np.mean(secs):.1f} s/search)", flush=True)
    return rows, curves


def print_targets(args, curves):
    """LaMCTS within the top 0.2 % after 100 evaluations, and at least as good as TPE there."""
    if "lamcts" not in args.algorithms or args.budget < 100:
        return
    for oname in args.objectives:
        lam = curves[(oname, "lamcts")][99]
        msg = [f"LaMCTS@100 top {lam:.3f}% ({'meets' if lam <= 0.2 else 'MISSES'} <= 0.2%)"]
        if "tpe" in args.algorithms:
            tpe = curves[(oname, "tpe")][99]
            msg.append(f"TPE@100 {tpe:.3f}% ({'LaMCTS as good or better' if lam <= tpe else 'TPE BETTER'})")
        print(f"target {oname}: " + "; ".join(msg))


def print_timing(space, pool_n):
    load = os.getloadavg()[0]
    t, cpu = time_tell_ask(space, smooth, pool_n=pool_n)
    print(f"LaMCTS tell+ask, 1000 told, {pool_n}-row pool: median {np.median(t):.2f} s wall, "
          f"{np.median(cpu):.2f} s CPU (max {max(t):.2f} s wall over {len(t)}; load {load:.2f}; "
          f"target < 3 s)")


def plot(path, args, curves):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        sys.exit("--plot needs matplotlib (pip install matplotlib)")
    from gpunet._io import atomic_path
    objectives = args.objectives
    fig, axes = plt.subplots(1, len(objectives), figsize=(4.5 * len(objectives), 3.6), squeeze=False)
    for ax, oname in zip(axes[0], objectives):
        for aname in args.algorithms:
            ax.plot(np.arange(1, args.budget + 1), np.maximum(curves[(oname, aname)], 1e-3), label=aname)
        ax.axhline(0.2, color="grey", lw=0.8, ls="--")
        ax.set(title=oname, xlabel="evaluations", ylabel="top % of pool (median)", yscale="log")
        ax.legend()
    fig.tight_layout()
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, format="png", dpi=120)
    print(f"plot written to {path}")


def main() -> None:
    args = parse_args()
    warnings.filterwarnings("ignore")

    from gpunet.cli._fmt import format_table
    from gpunet.search import SearchSpace

    space = SearchSpace()
    cps = [c for c in CHECKPOINTS if c <= args.budget] or [args.budget]
    print(f"cpu: {cpu_description()}")
    print(f"load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())}", flush=True)
    rows, curves = run_table(space, args, cps)
    print()
    print(f"top % of the pool reached (share strictly better than the best found; median over "
          f"{args.seeds} seeds; pool {args.pool} rows, batch {args.batch}; +fail: {args.failures:.0%} "
          f"failed, {args.diverged:.0%} diverged rows):")
    print(format_table(rows, ["objective", "algorithm"] + [f"after {c}" for c in cps] + ["s/search"]))
    print_targets(args, curves)
    if not args.no_timing:
        print_timing(space, args.timing_pool)
    print(f"cpu: {cpu_description()}")
    print(f"load average at end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    if args.plot:
        plot(args.plot, args, curves)


if __name__ == "__main__":
    main()
