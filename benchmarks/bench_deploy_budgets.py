"""What `gpunet deploy` measures and chooses on this machine, checked against OpenVINO's own benchmark_app.

1. Every model (default: all seven) is measured exactly as `gpunet deploy` does (one export, every
   backend x precision this machine runs, checked against PyTorch, timed in blocks with rotating
   order; `gpunet.deploy.measure.measure_model`), and the table is printed.
2. `gpunet.deploy.choose` picks at three budgets taken from the table: tight (1.1x the fastest
   verified p50), middle (geometric mean of fastest and slowest) and loose (1.1x the slowest).
3. Right after each model's measurement (a shared VM drifts over minutes, so the comparison must
   not wait for the whole table), every OpenVINO path of it is written as the IR `gpunet deploy`
   writes (model.xml / .bin) and timed by `benchmark_app` (same threads and inference precision via
   `-load_config`, batch 1, `-hint latency`, `-api sync`), alternating with a re-timing of our own
   callable on that IR. benchmark_app's median is printed next to deploy's p50; for the artifacts
   chosen at the three budgets the ratio must be within 10 % (issue 23).

INT8 appears only with --calib-dir (images; deploy never chooses random-calibrated INT8).

    python benchmarks/bench_deploy_budgets.py
    python benchmarks/bench_deploy_budgets.py --models gpunet-0,gpunet-1 --calib-dir digits/ --calib-size 64
"""
from __future__ import annotations

import argparse
import json
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import gpunet  # noqa: E402
from gpunet.cli._fmt import format_table  # noqa: E402
from gpunet.deploy.choose import NoFitError, choose  # noqa: E402
from gpunet.deploy.measure import Timing, graph_for, measure_model, plan_paths  # noqa: E402
from gpunet.deploy.runtime import path_callable, usable_threads  # noqa: E402
from gpunet.latency.fingerprint import cpu_description, device_fingerprint  # noqa: E402

OV_PRECISION = {"fp32": "f32", "bf16": "bf16", "fp16": "f16", "int8": None}  # int8: rest bf16 where native
TOLERANCE = 0.10


def _load() -> str:
    return " ".join(f"{v:.2f}" for v in os.getloadavg())


def measure(names, args, timing):
    """Deploy's measurement of every model, each followed at once by its benchmark_app comparison:
    (runs, {(model, precision): (deploy p50, IR re-timed, benchmark_app median)})."""
    plan, skipped = plan_paths(["onnxruntime", "openvino"], ["fp32", "bf16", "fp16", "int8"], args.calib_dir)
    runs, app = [], {}
    for n in names:
        t0 = time.perf_counter()
        mr = measure_model(n, plan, skipped, 1, None, args.threads, timing, args.calib_dir, args.calib_size,
                           weights="random")  # latency is what is compared here; weights need no download
        runs.append(mr)
        print(f"{n}: measured in {time.perf_counter() - t0:.0f} s; load {_load()}", file=sys.stderr, flush=True)
        for p in mr.paths:
            if p.backend == "openvino" and p.timed:
                app[(n, p.precision)] = compare(mr, p, args, timing)
                ours, again, theirs = app[(n, p.precision)]
                print(f"  openvino {p.precision}: deploy {ours:.2f} ms, re-timed {again:.2f} ms, benchmark_app "
                      f"{theirs:.2f} ms; load {_load()}", file=sys.stderr, flush=True)
    return runs, app


def table(runs):
    rows = []
    for mr in runs:
        for p in mr.paths:
            ms = lambda v: f"{v:.2f}" if v is not None else "-"  # noqa: E731
            rows.append([p.model, p.backend, p.precision, p.status, ms(p.p50_ms), ms(p.p90_ms),
                         f"{p.max_rel_err:.1e}" if p.max_rel_err is not None else "-",
                         "yes" if p.verified else "no", (p.reason or "")[:60]])
    return format_table(rows, ["model", "backend", "precision", "status", "p50 ms", "p90 ms", "rel err", "verified",
                               "note"], align="llllrrrll")


def budgets(paths):
    fits = sorted(p.p50_ms for p in paths if p.timed and p.verified)
    lo, hi = fits[0], fits[-1]
    return {"tight": 1.1 * lo, "middle": math.sqrt(lo * hi), "loose": 1.1 * hi}


def save_ir(proto, folder):
    """The IR `gpunet deploy` writes for an OpenVINO path (fp32 weights, no fp16 compression)."""
    import openvino as ov

    src = os.path.join(folder, "model.onnx")
    with open(src, "wb") as f:
        f.write(proto.SerializeToString())
    xml = os.path.join(folder, "model.xml")
    ov.save_model(ov.Core().read_model(src), xml, compress_to_fp16=False)
    return xml


def benchmark_app(xml, precision, threads, seconds):
    """benchmark_app's median ms. Its UI takes -nthreads only with -hint none, so the thread count
    and precision go in through -load_config, beside -hint latency (one stream)."""
    from gpunet.export.openvino import openvino_precisions

    hint = OV_PRECISION[precision] or ("bf16" if "bf16" in openvino_precisions() else "f32")
    exe = shutil.which("benchmark_app") or sys.exit("benchmark_app not found (it ships with the openvino wheel)")
    config = os.path.join(os.path.dirname(xml), "benchmark_app.json")
    with open(config, "w") as f:
        json.dump({"CPU": {"INFERENCE_NUM_THREADS": str(threads), "INFERENCE_PRECISION_HINT": hint}}, f)
    cmd = [exe, "-m", xml, "-d", "CPU", "-hint", "latency", "-api", "sync", "-b", "1", "-load_config", config,
           "-t", str(seconds)]
    done = subprocess.run(cmd, capture_output=True, text=True)
    m = re.search(r"Median:\s+([0-9.]+)\s*ms", done.stdout)
    if done.returncode or not m:
        raise RuntimeError(f"benchmark_app failed (exit {done.returncode}):\n{(done.stdout + done.stderr)[-2000:]}")
    return float(m.group(1))


def compare(mr, p, args, timing):
    """(deploy p50, re-timed p50 of the written IR, benchmark_app median), alternating rounds."""
    tmp = tempfile.mkdtemp(prefix="gpunet-bench-deploy-")
    try:
        xml = save_ir(graph_for(mr, "openvino", p.precision), tmp)
        run = path_callable("openvino", p.precision, xml, args.threads)
        x = np.random.default_rng(0).standard_normal(mr.input_shape).astype(np.float32)
        ours, theirs = [], []
        for r in range(args.app_rounds):
            steps = [("ours", None), ("app", None)]
            for what, _ in (steps if r % 2 == 0 else steps[::-1]):
                if what == "ours":
                    t_end = time.perf_counter() + timing.warmup_s  # as deploy: runs and seconds
                    for i in range(10 ** 6):
                        run(x)
                        if i + 1 >= timing.warmup and time.perf_counter() >= t_end:
                            break
                    for _ in range(timing.block * 3):
                        t = time.perf_counter()
                        run(x)
                        ours.append((time.perf_counter() - t) * 1e3)
                else:
                    theirs.append(benchmark_app(xml, p.precision, args.threads, args.app_seconds))
                time.sleep(timing.pause)
        return p.p50_ms, float(np.median(ours)), float(np.median(theirs))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def comparison(app, chosen):
    """The deploy / benchmark_app table; the target is judged on the chosen artifacts."""
    rows, met = [], []
    for (model, precision), (ours, again, theirs) in app.items():
        ok = abs(ours / theirs - 1) <= TOLERANCE
        is_chosen = (model, "openvino", precision) in chosen
        if is_chosen:
            met.append(ok)
        rows.append([model, precision, "chosen" if is_chosen else "", f"{ours:.2f}", f"{again:.2f}", f"{theirs:.2f}",
                     f"{ours / theirs:.3f}", "yes" if ok else "no"])
    text = format_table(rows, ["model", "precision", "", "deploy p50 ms", "IR re-timed ms", "benchmark_app median ms",
                               "deploy/app", "within 10%"], align="lllrrrrl")
    every = sum(r[-1] == "yes" for r in rows)
    return (f"{text}\n# within 10 % of benchmark_app: {sum(met)} of {len(met)} chosen OpenVINO artifacts, "
            f"{every} of {len(rows)} OpenVINO paths")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="all", help="comma list of hub names (default: the seven)")
    ap.add_argument("--threads", type=int, default=usable_threads())
    ap.add_argument("--calib-dir", default=None, help="INT8 calibration images (without: no INT8 paths)")
    ap.add_argument("--calib-size", type=int, default=300)
    ap.add_argument("--rounds", type=int, default=Timing.rounds)
    ap.add_argument("--block", type=int, default=Timing.block)
    ap.add_argument("--warmup-s", type=float, default=Timing.warmup_s, help="seconds of warm-up per path (deploy's)")
    ap.add_argument("--app-seconds", type=int, default=6, help="benchmark_app -t per run")
    ap.add_argument("--app-rounds", type=int, default=2, help="alternating rounds of ours / benchmark_app")
    args = ap.parse_args(argv)
    names = gpunet.list_models()[:7] if args.models == "all" else args.models.split(",")
    timing = Timing(rounds=args.rounds, block=args.block, warmup_s=args.warmup_s)
    fp = device_fingerprint("openvino")
    start = time.perf_counter()
    print(f"# {time.strftime('%Y-%m-%d')}; {cpu_description()}; {args.threads} threads; "
          f"onnxruntime {device_fingerprint('onnxruntime')['libraries'].get('onnxruntime')}, openvino "
          f"{fp['libraries'].get('openvino')}; batch 1; {timing.rounds} rounds x {timing.block}-run blocks, "
          f"{timing.warmup_s:g} s warm-up; "
          f"load average at start {_load()}", flush=True)
    runs, app = measure(names, args, timing)
    print(table(runs), flush=True)
    paths = [p for mr in runs for p in mr.paths]
    rows, chosen = [], set()
    for label, budget in budgets(paths).items():
        try:
            d = choose(paths, budget)
        except NoFitError as e:
            rows.append([label, f"{budget:.2f}", "-", "-", "-", f"{e}"[:60]])
            continue
        c = d.chosen
        chosen.add((c.model, c.backend, c.precision))
        rows.append([label, f"{budget:.2f}", c.model, f"{c.backend} {c.precision}", f"{c.p50_ms:.2f}",
                     f"top-1 {c.registry_top1}"])
    print(format_table(rows, ["budget", "ms", "chosen", "path", "p50 ms", "why"], align="lrllrl"), flush=True)
    print(comparison(app, chosen))
    print(f"# benchmark_app: -hint latency -api sync -b 1, {args.threads} threads and the precision via -load_config, "
          f"-t {args.app_seconds} s x {args.app_rounds} runs right after each model's measurement; load average at "
          f"end {_load()}; {time.perf_counter() - start:.0f} s in all")
    return 0


if __name__ == "__main__":
    sys.exit(main())
