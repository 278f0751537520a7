"""Deployment speed on this CPU: PyTorch eager vs ONNX Runtime vs OpenVINO (fp32, bf16), batch 1.

All backends of one model run side by side, interleaved iteration by iteration (the order
rotates every round), so a noisy neighbour slows them alike and the ratios stay fair. The
ONNX graph is exported once per model and shared by ONNX Runtime and OpenVINO.

Targets (issue 4): ONNX Runtime fp32 >= 2x faster than eager for every model, outputs within
1e-4 relative; the fastest backend >= 2.5x faster than eager.

    python benchmarks/bench_deploy.py                     # all seven, native resolution
    python benchmarks/bench_deploy.py --models gpunet-0 --iters 20 --json out.json
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import gpunet  # noqa: E402
from gpunet.cli._fmt import format_table  # noqa: E402
from gpunet.export.onnx import export_onnx_proto, max_errors, resolve_model_input  # noqa: E402
from gpunet.latency.bench import _openvino_runner, _ort_runner, _torch_runner, _torch_threads  # noqa: E402
from gpunet.latency.fingerprint import device_fingerprint  # noqa: E402


def bench_model(name, resolution, iters, warmup, threads, bf16):
    model, shape, _ = resolve_model_input(name, 1, resolution)
    x = torch.randn(*shape, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        ref = model(x).numpy()
    t0 = time.perf_counter()
    proto = export_onnx_proto(model, shape)
    export_s = time.perf_counter() - t0
    runners = {"eager": _torch_runner(model, x, "fp32", threads),
               "ort": _ort_runner(proto, x.numpy(), threads),
               "ov_fp32": _openvino_runner(proto, x.numpy(), "fp32", threads)}
    if bf16:
        runners["ov_bf16"] = _openvino_runner(proto, x.numpy(), "bf16", threads)
    errs = {}
    with _torch_threads(threads):
        for k, run in runners.items():
            out = run()
            errs[k] = max_errors(out.numpy() if isinstance(out, torch.Tensor) else out, ref)[1]
            for _ in range(warmup):
                run()
        times = {k: [] for k in runners}
        order = list(runners)
        for i in range(iters):
            for k in order[i % len(order):] + order[:i % len(order)]:
                t = time.perf_counter()
                runners[k]()
                times[k].append((time.perf_counter() - t) * 1e3)
    return {"model": name, "resolution": shape[-1], "export_s": export_s,
            "median_ms": {k: float(np.median(v)) for k, v in times.items()},
            "p90_ms": {k: float(np.percentile(v, 90)) for k, v in times.items()},
            "rel_err": errs}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", default="all")
    p.add_argument("--resolution", type=int, default=None, help="default: each model's native resolution")
    p.add_argument("--iters", type=int, default=30)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    p.add_argument("--json", default=None, help="also write the raw results here")
    args = p.parse_args(argv)
    names = gpunet.list_models()[:7] if args.models == "all" else args.models.split(",")
    from gpunet.export.openvino import openvino_precisions

    bf16 = "bf16" in openvino_precisions()
    fp = device_fingerprint("openvino")
    print(f"# {fp['cpu']}, {args.threads} threads, flags {' '.join(fp['cpu_flags'])}; torch {torch.__version__}, "
          f"onnxruntime {device_fingerprint('onnxruntime')['libraries'].get('onnxruntime')}, openvino "
          f"{fp['libraries'].get('openvino')}; batch 1, {args.iters} interleaved iterations after {args.warmup} "
          f"warm-up; load average at start {os.getloadavg()[0]:.1f}", flush=True)
    results, rows = [], []
    for n in names:
        r = bench_model(n, args.resolution, args.iters, args.warmup, args.threads, bf16)
        results.append(r)
        m, e = r["median_ms"], r["rel_err"]
        best = min((k for k in m if k != "eager"), key=m.get)
        ort_x, best_x = m["eager"] / m["ort"], m["eager"] / m[best]
        rows.append([n, r["resolution"], f"{m['eager']:.1f}", f"{m['ort']:.1f}", f"{m['ov_fp32']:.1f}",
                     f"{m['ov_bf16']:.1f}" if "ov_bf16" in m else "-", f"{ort_x:.2f}x", f"{best_x:.2f}x ({best})",
                     f"{e['ort']:.1e}", f"{e['ov_fp32']:.1e}", f"{e['ov_bf16']:.1e}" if "ov_bf16" in e else "-",
                     "yes" if ort_x >= 2 and e["ort"] <= 1e-4 else "no", "yes" if best_x >= 2.5 else "no"])
        print(f"{n}: " + ", ".join(f"{k} {v:.1f} ms" for k, v in m.items()), file=sys.stderr, flush=True)
    print(format_table(rows, ["model", "res", "eager ms", "ORT ms", "OV fp32 ms", "OV bf16 ms", "ORT/eager",
                              "best/eager", "ORT rel err", "OV fp32 err", "OV bf16 err", "ORT>=2x", "best>=2.5x"],
                       align="lrrrrrrlrrrll"))
    print(f"# load average at end {os.getloadavg()[0]:.1f} (other processes share these cores)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"fingerprint": fp, "args": vars(args), "results": results}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
