"""``gpunet sample`` (Sobol pools tiered by latency), ``gpunet lut build|validate|export|info`` and
``gpunet search run|status|repair|export`` (the distributed search and its winners)."""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
from typing import Optional

from ._flags import add_batch_size, add_gpu, add_json, model_list
from ._fmt import format_table, print_json


def register(subparsers) -> None:
    p = subparsers.add_parser("sample", help="sample networks from the search space, estimate and tier their latency",
                              description="Sobol-sample N networks (41-integer vectors), estimate their latency "
                                          "from a lookup table and label them by latency group.")
    p.add_argument("--n", type=int, required=True, help="number of networks")
    p.add_argument("--out", required=True, help="output pool (.npz)")
    p.add_argument("--lut", help="latency table (SQLite); without it the pool has no latencies")
    p.add_argument("--space", default="paper", help="'paper' (Table 1), 'small', or a space JSON file")
    p.add_argument("--seed", type=int, default=0, help="Sobol scramble seed (default 0)")
    p.add_argument("--edges", help="latency group edges in ms, comma separated (default: --groups quantiles)")
    p.add_argument("--groups", type=int, default=5, help="equal-count groups when --edges is not given")
    p.add_argument("--fill", choices=("nan", "costmodel", "error"), default="nan",
                   help="blocks missing from the table: NaN latency, analytic estimate (flagged), or error")
    add_batch_size(p, help="batch the table's latencies are for (default 1)", old=("--batch",))
    p.add_argument("--precision", default="fp32", choices=("fp32", "bf16", "fp16", "int8"),
                   help="precision the table's latencies are for (default fp32)")
    p.add_argument("--no-calibration", action="store_true", help="use the raw table sum")
    p.add_argument("--statistic", choices=("median", "min"), default="median",
                   help="block latency read from the table (min is steadier on a busy shared CPU)")
    add_json(p, "the pool's summary")
    p.set_defaults(handler=_sample)

    lut = subparsers.add_parser("lut", help="per-block latency lookup table: build, validate, export, info")
    sub = lut.add_subparsers(dest="lut_command", metavar="ACTION")
    lut.set_defaults(handler=lambda args: (lut.print_help(), 2)[1])

    b = sub.add_parser("build", help="measure the blocks a set of networks needs (only the missing ones)")
    _common(b)
    src = b.add_mutually_exclusive_group()
    src.add_argument("--n", type=int, help="sample this many networks from --space (default 20)")
    src.add_argument("--pool", help="a pool .npz from `gpunet sample` (its vectors, in its own space)")
    src.add_argument("--model", action="append", help="a hub model or spec file (repeatable, or a comma list)")
    b.add_argument("--seed", type=int, default=0, help="seed of the --n networks (default 0)")
    b.add_argument("--limit", type=int, help="measure at most this many missing blocks (resume later)")
    b.add_argument("--dry-run", action="store_true", help="only count missing blocks")
    b.add_argument("--refresh", action="store_true",
                   help="measure present blocks again too, keeping the lower latency (busy machines)")
    add_json(b, "the build summary")
    b.set_defaults(handler=_build)

    v = sub.add_parser("validate", help="measure N random networks end to end and compare with the table")
    _common(v)
    v.add_argument("--n", type=int, default=50, help="networks measured end to end (default 50)")
    v.add_argument("--seed", type=int, default=1, help="seed of the networks (default 1; use a fresh one per check)")
    v.add_argument("--plot", help="scatter plot PNG path")
    v.add_argument("--no-build", action="store_true", help="do not measure missing blocks first")
    v.add_argument("--refresh-blocks", action="store_true",
                   help="measure the networks' blocks again, keeping the lower latency (busy machines)")
    v.add_argument("--statistic", choices=("median", "min"), default="median",
                   help="median (default) or min of the timed runs, for blocks and networks alike")
    v.add_argument("--passes", type=int, default=5,
                   help="end-to-end passes over the networks, each in a fresh session; each network keeps its "
                        "median (default 5)")
    v.add_argument("--recheck-blocks", type=int, default=24,
                   help="blocks timed again for the measurement's noise floor (default 24; 0: none)")
    add_json(v, "the validation report")
    v.set_defaults(handler=_validate, space_default="small")

    e = sub.add_parser("export", help="write the table as CSV or JSON")
    e.add_argument("--lut", required=True, help="latency table file (SQLite)")
    e.add_argument("--out", required=True, help="output file (.csv or .json)")
    e.add_argument("--format", choices=("csv", "json"), help="default: from the --out suffix")
    add_json(e, "what was written")
    e.set_defaults(handler=_export)

    i = sub.add_parser("info", help="device, backend, block counts and calibration of a table")
    i.add_argument("--lut", required=True, help="latency table file (SQLite)")
    add_json(i, "the table's summary")
    i.set_defaults(handler=_info)

    _register_search(subparsers)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--lut", required=True, help="latency table file (SQLite; created if missing)")
    p.add_argument("--backend", default="onnxruntime", choices=("onnxruntime", "torch", "openvino", "tensorrt"),
                   help="engine the blocks are timed on (default onnxruntime)")
    p.add_argument("--space", default=None, help="'paper' (Table 1), 'small' (default for validate) or a JSON file")
    p.add_argument("--iters", type=int, default=30, help="timed runs per block / network (default 30)")
    p.add_argument("--warmup", type=int, default=5, help="untimed runs first (default 5)")
    p.add_argument("--threads", type=int, help="CPU threads (fixed per table; default: all usable cores)")
    p.add_argument("--precision", default="fp32", choices=("fp32", "bf16", "fp16", "int8"),
                   help="precision blocks and networks run in: fp32 (default), bf16 / fp16 (openvino, tensorrt), "
                        "int8 (onnxruntime, openvino, tensorrt; NNCF on random inputs, speed only)")
    p.add_argument("--block-timing", choices=("wall", "kernels"),
                   help="how blocks are timed, fixed per table: wall (each block alone, host wall clock; the "
                        "default except on openvino) or kernels (openvino's per-node counters, the block's edge "
                        "reorders and the infer call left out; the default on openvino except at int8)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def _space(args):
    from gpunet.search import SearchSpace

    return SearchSpace.load(args.space or getattr(args, "space_default", None) or "paper")


def _build(args) -> int:
    from gpunet.search.lut import LatencyTable, build_lut, network_blocks, spec_blocks

    if args.model:
        from gpunet.hub import load_spec

        keys = [k for m in model_list(args.model) for k in spec_blocks(load_spec(m), precision=args.precision)]
    elif args.pool:
        from gpunet.search import Pool

        pool = Pool.load(args.pool)
        keys = network_blocks(pool.space, pool.vectors, precision=args.precision)
    else:
        space = _space(args)
        keys = network_blocks(space, space.sample(args.n or 20, seed=args.seed), precision=args.precision)
    import os

    unique = list({k.key: k for k in keys}.values())
    if os.path.exists(args.lut):
        with LatencyTable(args.lut) as t:
            missing = t.missing(unique)
    else:
        missing = unique
    if args.dry_run:
        out = {"lut": args.lut, "blocks": len(unique), "missing": len(missing)}
        print_json(out) if args.json else print(f"{len(unique)} distinct blocks, {len(missing)} not in {args.lut}")
        return 0
    todo = unique if args.refresh else missing
    todo = todo[:args.limit] if args.limit else todo
    counts = build_lut(args.lut, todo, args.backend, iters=args.iters, warmup=args.warmup, threads=args.threads,
                       progress=False if args.quiet else None, refresh=args.refresh, block_timing=args.block_timing)
    counts.update(lut=args.lut, blocks=len(unique), still_missing=len(missing) - counts["measured"]
                  - counts["by_others"])
    if args.json:
        print_json(counts)
    else:
        print(f"{args.lut}: measured {counts['measured']} blocks ({counts['by_others']} by other workers, "
              f"{len(unique) - len(missing)} already present); {counts['still_missing']} still missing")
    if counts.get("busy"):
        print(f"warning: load average reached {max(counts['load_avg']):.2f} while measuring: other processes "
              f"shared the cores, so these blocks may be slow; noted in the table ('busy_builds'); measure "
              f"again on a quiet machine with --refresh", file=sys.stderr)
    return 0


def _validate(args) -> int:
    from gpunet.search.lut.validate import validate_lut

    report = validate_lut(args.lut, backend=args.backend, n=args.n, space=_space(args), seed=args.seed,
                          iters=args.iters, warmup=args.warmup, threads=args.threads,
                          build_missing=not args.no_build, plot=args.plot, progress=False if args.quiet else None,
                          statistic=args.statistic, refresh_blocks=args.refresh_blocks, precision=args.precision,
                          passes=args.passes, block_timing=args.block_timing, recheck_blocks=args.recheck_blocks)
    if args.json:
        print_json(report.to_dict())
        return 0
    rows = [["networks", report.n], ["space", report.space], ["statistic", report.statistic], ["backend / precision / device", f"{report.backend} / {report.precision} / {report.device_id}"],
            ["Spearman (table sum)", f"{report.spearman_table_sum:.3f}"],
            ["Spearman (calibrated, LOO)", f"{report.spearman_calibrated:.3f}"],
            ["mean error, table sum", f"{report.mean_error_table_sum:+.1%}"],
            ["mean |error|, calibrated (LOO)", f"{report.mean_abs_error_calibrated:.1%}"],
            ["within ±10%, calibrated (LOO)", f"{report.within_10pct_calibrated:.0%}"],
            ["within ±10%, calibrated (in sample)", f"{report.within_10pct_in_sample:.0%}"],
            ["within ±10%, 3-term calibration (LOO)", f"{report.within_10pct_three_term:.0%}"],
            ["calibration", ", ".join(f"{k}={v:.4g}" if isinstance(v, (int, float)) else f"{k}={v}"
                                      for k, v in report.calibration.items() if v is not None)],
            ["blocks measured now", report.blocks_measured], ["seconds", f"{report.seconds:.0f}"],
            ["load average (blocks, networks, end)", ", ".join(f"{x:.2f}" for x in report.load_avg)],
            ["spread of timed runs (p90/median-1)", f"{report.run_spread:.1%}"],
            [f"spread between {report.passes} passes (max-min)/median", f"{report.pass_spread:.1%}"],
            ["machine", "BUSY: " + "; ".join(report.warnings) if report.busy else "quiet"]]
    rows[-1:-1] = _noise_rows(report.noise)
    if report.cache_share_mb:
        rows.insert(-1, ["last-level cache share, probed (MB)", ", ".join(f"{x:.0f}" for x in report.cache_share_mb)])
    for note in report.cache_notes:
        rows.append(["cache", note])
    if report.moved_since_last:
        moved = [abs(x) for x in report.moved_since_last]
        rows.insert(-1, [f"moved since last measured ({len(moved)} networks), median / max",
                         f"{statistics.median(moved):.1%} / {max(moved):.1%}"])
    if report.within_10pct_stored is not None:
        rows.insert(8, ["within ±10%, table's earlier calibration (held out)",
                        f"{report.within_10pct_stored:.0%} (mean |error| {report.mean_abs_error_stored:.1%})"])
    if report.plot:
        rows.append(["plot", report.plot])
    print(format_table(rows, ["metric", "value"], align="ll"))
    if report.busy:
        print("warning: the machine was busy while measuring; figures above are not trustworthy "
              "(rerun on a quiet machine)", file=sys.stderr)
    _note_unrepeatable(report)
    _note_noise_floor(report)
    return 0


def _note_unrepeatable(report) -> None:
    from gpunet.latency.machine import UNREPEATABLE_MOVE

    moved = sorted(abs(x) for x in report.moved_since_last)
    if moved and statistics.median(moved) > UNREPEATABLE_MOVE:
        print(f"note: the {len(moved)} networks measured before moved a median {statistics.median(moved):.1%} "
              "since: the share within ±10 % is bounded by how well this machine repeats a timing (try fewer "
              "--threads, or a quieter machine)", file=sys.stderr)


def _noise_rows(noise) -> list:
    """The report's rows for its noise floor (none when the caller timed the networks)."""
    if not noise:
        return []
    pct = (lambda x: "unknown" if x is None else f"{x:.1%}")
    return [[f"noise: one block timing repeats to (sd, {noise['blocks_rechecked']} timed again)",
             pct(noise["block_repeat_sd"])],
            ["noise: a network's median, standard error (median)", pct(noise["network_median_se"])],
            ["within ±10%, a table without error at this noise", pct(noise["within_10pct"])]]


def _note_noise_floor(report) -> None:
    reach = report.noise.get("within_10pct") if report.noise else None
    if reach is not None and reach < 0.95:
        print(f"note: at this machine's timing noise a table without any error would put {reach:.0%} of these "
              "networks within ±10 %: the rest of the misses are the measurement (try more --passes, fewer "
              "--threads, --refresh-blocks, or a quieter machine)", file=sys.stderr)


def _export(args) -> int:
    from gpunet.search.lut import LatencyTable

    with LatencyTable(args.lut) as t:
        n = t.export(args.out, args.format)
    if args.json:
        print_json({"out": args.out, "blocks": n})
    else:
        print(f"wrote {n} blocks to {args.out}")
    return 0


def _info(args) -> int:
    from gpunet.search.lut import LatencyTable

    with LatencyTable(args.lut) as t:
        kinds = {}
        for r in t.rows():
            kinds[r["kind"]] = kinds.get(r["kind"], 0) + 1
        fp = t.fingerprint
        info = {"lut": args.lut, "backend": t.backend, "device_id": t.device_id, "cpu": fp.get("cpu"),
                "gpu": fp.get("gpu"), "threads": t.get_meta("threads"), "block_timing": t.block_timing(),
                "blocks": len(t), "by_kind": kinds,
                "calibration": t.get_meta("calibration")}
    if args.json:
        print_json(info)
    else:
        print(format_table([[k, json.dumps(v) if isinstance(v, (dict, list)) else v] for k, v in info.items()],
                           ["field", "value"]))
    return 0


def _sample(args) -> int:
    from gpunet.search import Pool

    edges = None
    if args.edges:
        try:
            edges = [float(x) for x in args.edges.split(",")]
        except ValueError:
            raise ValueError(f"--edges: expected comma-separated numbers in ms, got {args.edges!r}") from None
    # streamed chunk by chunk into the file: a pool larger than memory can be written
    summary = {"out": args.out, **Pool.sample_to(args.out, _space(args), args.n, seed=args.seed, lut=args.lut,
                                                 groups=args.groups, edges_ms=edges, batch=args.batch_size,
                                                 precision=args.precision, fill=args.fill,
                                                 calibration=not args.no_calibration, statistic=args.statistic)}
    if args.json:
        print_json(summary)
        return 0
    _print_sample(summary, args)
    return 0


def _print_sample(summary, args) -> None:
    print(f"wrote {summary['n']} networks ({summary['space']}, seed {args.seed}) to {args.out}")
    if summary["groups"]:
        print(format_table([[i, f"{g['lo_ms']:.3g}", f"{g['hi_ms']:.3g}", g["count"]]
                            for i, g in enumerate(summary["groups"])], ["group", "from ms", "to ms", "networks"]))
    if summary.get("missing_blocks") or summary.get("estimated_by_costmodel"):
        print(f"{summary['missing_blocks']} networks lack table entries (latency NaN), "
              f"{summary['estimated_by_costmodel']} use cost-model estimates; `gpunet lut build --pool {args.out}` "
              f"measures what they need", file=sys.stderr)


# ---------------------------------------------------------------------------------------- search
def _register_search(subparsers) -> None:
    s = subparsers.add_parser("search", help="run a NAS over a pool (Ray or in-process), follow it, export winners")
    sub = s.add_subparsers(dest="search_command", metavar="ACTION")
    s.set_defaults(handler=lambda args: (s.print_help(), 2)[1])

    r = sub.add_parser("run", help="evaluate --budget candidates of a pool with an ask/tell algorithm",
                       description="Journal: OUT/results.jsonl, one line per evaluated candidate. Re-run with "
                                   "--resume (same arguments) after a crash to finish the budget.")
    r.add_argument("--pool", required=True, help="pool .npz from `gpunet sample`")
    g = r.add_mutually_exclusive_group()
    g.add_argument("--group", help="latency group(s) of the pool (pools sampled with --lut): a label, a comma list "
                                   "(0,2,5) or 'all'; several groups: one search and --budget evaluations each")
    g.add_argument("--latency-ms", help="LO:HI, candidates with LO <= latency < HI")
    r.add_argument("--evaluator", choices=("train", "synthetic"), required=True,
                   help="train: each candidate is trained (--data-dir, --epochs); synthetic: a fast test objective")
    r.add_argument("--algorithm", choices=("lamcts", "tpe", "random"), default="lamcts",
                   help="ask/tell algorithm (default: lamcts, the paper's LA-MCTS-guided BO)")
    r.add_argument("--budget", type=int, required=True,
                   help="candidates to evaluate per group (journal lines at the end)")
    r.add_argument("--workers", type=int, default=1, help="trials at once (ConcurrencyLimiter)")
    r.add_argument("--gpus-per-trial", type=float, default=None,
                   help="GPUs per trial (default: 1 when the cluster has GPUs, else 0); a trial sees only its own")
    r.add_argument("--cpus-per-trial", type=float, default=1.0, help="CPUs per trial (per worker with "
                                                                      "--workers-per-trial)")
    r.add_argument("--workers-per-trial", type=int, default=1,
                   help="train each candidate data-parallel on N Ray Train workers (NCCL on GPUs, gloo on CPU)")
    r.add_argument("--scheduler", choices=("asha",), help="stop unpromising candidates early (Tune's ASHA on the "
                                                         "per-epoch validation top-1)")
    r.add_argument("--grace-epochs", type=int, default=1, help="ASHA: epochs every candidate trains")
    r.add_argument("--reduction-factor", type=int, default=2, help="ASHA: keep 1/R of the candidates per rung")
    r.add_argument("--engine", choices=("ray", "local"), default="ray",
                   help="ray: local Ray or --address; local: one at a time in this process, no Ray")
    r.add_argument("--address", help="join a running Ray cluster from one of its nodes (auto or HOST:6379; "
                                     "Ray Client ray:// is refused)")
    r.add_argument("--max-retries", type=int, default=3,
                   help="retries of a trial lost to infrastructure (worker, node, storage)")
    r.add_argument("--max-infra-failures", type=int, default=20,
                   help="end the search with an error after this many trials lost to infrastructure")
    r.add_argument("--seed", type=int, default=0, help="seed of the algorithm (and of the trainings)")
    r.add_argument("--out", required=True, help="search folder (shared storage on a cluster)")
    r.add_argument("--resume", action="store_true", help="continue the search in --out")
    t = r.add_argument_group("train evaluator")
    t.add_argument("--data-dir", help="ImageFolder with train/ and val/")
    t.add_argument("--epochs", type=int, help="training epochs per candidate")
    t.add_argument("--img-size", type=int, help="training resolution (default: the candidate's)")
    t.add_argument("--train-config", help="YAML of TrainConfig keys (recipe, lr, batch_size, ...)")
    t.add_argument("--early-stop-patience", type=int, help="stop a training after N epochs without progress")
    y = r.add_argument_group("synthetic evaluator")
    y.add_argument("--eval-seconds", type=float, default=0.0, help="time one evaluation takes")
    y.add_argument("--fail-rate", type=float, default=0.0,
                   help="share of candidates that fail on purpose (to see failure accounting)")
    y.add_argument("--infra-fail-rate", type=float, default=0.0,
                   help="share of candidates whose trials always raise OSError (infrastructure failures)")
    y.add_argument("--flaky-rate", type=float, default=0.0,
                   help="share of candidates whose first attempt raises OSError (a retry succeeds)")
    add_json(r, "the final status")
    r.add_argument("--quiet", action="store_true", help="no progress line on stderr")
    r.set_defaults(handler=_search_run)

    rp = sub.add_parser("repair", help="move corrupt journal lines to results.rejected.jsonl (nothing else changes)")
    rp.add_argument("dir", help="search folder")
    add_json(rp, "the lines moved")
    rp.set_defaults(handler=_search_repair)

    st = sub.add_parser("status", help="progress, best so far and running trials of a search folder")
    st.add_argument("dir", help="search folder")
    add_json(st, "the status")
    st.set_defaults(handler=_search_status)

    e = sub.add_parser("export", help="write the best candidates into the user registry (gpunet.query lists them)")
    e.add_argument("dir", help="search folder")
    e.add_argument("--top", type=int, default=1, help="best candidates to export (per group with --pareto; default 1)")
    add_gpu(e, "device name the winners' latencies are for, registered as their tier (required)", old=("--device",),
            required=True)
    e.add_argument("--backend", default="onnxruntime", help="latency.benchmark backend")
    e.add_argument("--no-measure", action="store_true", help="use the pool's table estimate (kind: estimated)")
    e.add_argument("--prefix", help="model name prefix (default: search-<folder name>)")
    e.add_argument("--iters", type=int, default=50, help="timed runs when measuring (default 50)")
    e.add_argument("--pareto", action="store_true",
                   help="export each latency group's best (a search run with --group all or a list): the front")
    e.add_argument("--test-dir", help="measure the exported top-1 on this split (class folders, or DIR/test), "
                                      "one the search never selected on")
    e.add_argument("--force", action="store_true",
                   help="export although --gpu is not the device the pool's latency table was measured on")
    add_json(e, "the exported models")
    e.set_defaults(handler=_search_export)


def _group_arg(text: Optional[str]):
    """``--group``: None, one label, a list of labels or ``"all"``."""
    if text is None or text == "all":
        return text
    try:
        labels = [int(x) for x in text.split(",")]
    except ValueError:
        raise ValueError(f"--group: expected a label, a comma list of labels or 'all', got {text!r}") from None
    return labels[0] if len(labels) == 1 else labels


def _search_run(args) -> int:
    from gpunet.search.engine.driver import SearchSettings, run_search

    lat = None
    if args.latency_ms:
        try:
            lo, hi = (float(x) for x in args.latency_ms.split(":"))
        except ValueError:
            raise ValueError(f"--latency-ms: expected LO:HI in ms, got {args.latency_ms!r}") from None
        lat = (lo, hi)
    if args.evaluator == "train":
        if not args.data_dir or not args.epochs:
            raise ValueError("--evaluator train needs --data-dir and --epochs")
        opts = dict(data_dir=args.data_dir, epochs=args.epochs, img_size=args.img_size,
                    train_config=args.train_config, early_stop_patience=args.early_stop_patience, seed=args.seed)
    else:
        opts = dict(eval_seconds=args.eval_seconds, fail_rate=args.fail_rate)
        if args.infra_fail_rate or args.flaky_rate:
            opts.update(infra_fail_rate=args.infra_fail_rate, flaky_rate=args.flaky_rate)
    settings = SearchSettings(
        pool=args.pool, out=args.out, evaluator=args.evaluator, algorithm=args.algorithm, budget=args.budget,
        workers=args.workers, group=_group_arg(args.group), latency_ms=lat, gpus_per_trial=args.gpus_per_trial,
        cpus_per_trial=args.cpus_per_trial, workers_per_trial=args.workers_per_trial, engine=args.engine,
        address=args.address, seed=args.seed, max_retries=args.max_retries,
        max_infra_failures=args.max_infra_failures, scheduler=args.scheduler, grace_epochs=args.grace_epochs,
        reduction_factor=args.reduction_factor, evaluator_options=opts)
    bar = None if args.quiet else _Progress(args.budget)
    try:
        status = run_search(settings, resume=args.resume, progress=bar)
    finally:
        if bar is not None:
            bar.close()
    _print_status(status, args.json)
    return 0


class _Progress:
    """Progress of a search on stderr: a tqdm bar on a terminal, else one line per finished trial
    (logs and CI keep every line)."""

    def __init__(self, budget: int):
        self.bar = None
        if sys.stderr.isatty():
            from tqdm.auto import tqdm

            self.bar = tqdm(total=budget, desc="search", unit="trial", file=sys.stderr)

    def __call__(self, p) -> None:
        if self.bar is None:
            _progress_line(p)
            return
        self.bar.total = p["budget"]
        self.bar.update(p["completed"] - self.bar.n)
        self.bar.set_postfix(best="-" if p["best"] is None else f"{p['best']:.4g}", running=p["running"])

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _progress_line(p) -> None:
    """One line on stderr per finished trial: completed/budget, best so far, running."""
    best = "-" if p["best"] is None else f"{p['best']:.4g}"
    infra = f", {p['infrastructure_failures']} lost to infrastructure" if p["infrastructure_failures"] else ""
    print(f"search: {p['completed']}/{p['budget']} evaluated, best {best}, {p['running']} running{infra}",
          file=sys.stderr, flush=True)


def _search_repair(args) -> int:
    from gpunet.search.engine.journal import repair_journal

    moved = repair_journal(args.dir)
    if args.json:
        print_json({"dir": os.path.abspath(args.dir), "moved_lines": moved})
    elif moved:
        print(f"{args.dir}: moved line(s) {', '.join(map(str, moved))} to results.rejected.jsonl")
    else:
        print(f"{args.dir}: the journal has no corrupt line; nothing changed")
    return 0


def _print_status(st, as_json: bool) -> None:
    if as_json:
        print_json(st)
        return
    best = st["best"]
    print(f"{st['out']}: {st['completed']}/{st['budget']} evaluated ({st['failed']} failed), "
          f"{len(st['running'])} running; evaluator {st['evaluator']}, algorithm {st['algorithm']}")
    if best:
        lat = "-" if best.get("latency_ms") is None else f"{best['latency_ms']:.3g} ms"
        print(f"best: {best['value']:.4g} (candidate {best['candidate_id']}, latency {lat})")
    for g in st.get("groups", []):
        b = g["best"]
        print(f"group {g['group']}: {g['completed']} evaluated ({g['failed']} failed), best "
              f"{'-' if b is None else format(b['value'], '.4g')}")
    if st.get("infrastructure_failures"):
        print(f"{st['infrastructure_failures']} trial(s) lost to infrastructure (infrastructure.jsonl; not evaluations)")
    if st.get("holder"):
        h = st["holder"]
        print(f"running in pid {h.get('pid')} on {h.get('hostname')}")
    for r in st["running"]:
        print(f"running: candidate {r['candidate_id']} (worker pid {r['worker_pid'] or '-'})")


def _search_status(args) -> int:
    from gpunet.search.engine.driver import search_status

    _print_status(search_status(args.dir), args.json)
    return 0


def _search_export(args) -> int:
    from gpunet.search.engine.winners import export_winners

    rows = export_winners(args.dir, top=args.top, device=args.gpu, backend=args.backend,
                          measure=not args.no_measure, prefix=args.prefix, iters=args.iters, pareto=args.pareto,
                          test_dir=args.test_dir, force=args.force)
    for r in rows:
        if r["in_group"] is False:
            lo, hi = r["group_range_ms"]
            print(f"gpunet search export: warning: {r['name']} (group {r['group']}) measures {r['latency_ms']:.4g} ms "
                  f"on {r['device']}, outside its group's {lo:.4g}-{hi:.4g} ms", file=sys.stderr)
    if args.json:
        print_json({"models": rows})
        return 0
    print(format_table([[r["name"], "-" if r["group"] is None else r["group"], f"{r['top1']:.2f}",
                         f"{r['dataset']} {r['top1_split'].split(' ')[0]}", "yes" if r["proxy"] else "no",
                         f"{r['latency_ms']:.4g}", r["latency_kind"]] for r in rows],
                       ["model", "group", "top-1", "measured on", "proxy", "latency ms", "kind"]))
    return 0

