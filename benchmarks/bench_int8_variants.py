"""Which INT8 variant is fastest in OpenVINO on this CPU, against OpenVINO bf16 (issue 13).

The variants differ in what NNCF quantizes and how OpenVINO receives it:

    bf16        the fp32 export, OpenVINO bf16 (the baseline)
    int8        the portable file (int8 activations, as TensorRT needs), as is
    int8-cpu    the same file with uint8 restored for the CPU (gpunet.export.quantize.cpu_activations)
    int8-nncf-cpu   NNCF TargetDevice.CPU, uint8 activations
    keep-kxk    k x k dense convolutions left unquantized (NNCF ignored_scope; OpenVINO runs them bf16)
    keep-dw     depthwise convolutions left unquantized
    ov-ir       NNCF on the OpenVINO model read from the export instead of on the ONNX file

Timed with bench_deploy.time_blocks (rounds x block consecutive runs per variant, order rotating, pause between
blocks), batch 1, random weights and random calibration (speed only); prints the load average.

    python benchmarks/bench_int8_variants.py --models gpunet-1,gpunet-2
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from gpunet.export.onnx import export_onnx_proto, quiet  # noqa: E402
from gpunet.hub import resolve_model_input  # noqa: E402
from gpunet.export.openvino import compile_openvino  # noqa: E402
from gpunet.export.quantize import _signed_activations, cpu_activations, random_calibration  # noqa: E402

from bench_deploy import time_blocks  # noqa: E402  (same folder: the block-timing loop the table uses)

VARIANTS = ("bf16", "int8", "int8-cpu", "int8-nncf-cpu", "keep-kxk", "keep-dw", "ov-ir")


def conv_names(proto):
    """{'1x1' | 'kxk' | 'dw': [Conv node names]} of an ONNX graph."""
    from onnx import helper

    inits = {i.name: i for i in proto.graph.initializer}
    out = {"1x1": [], "kxk": [], "dw": []}
    for n in proto.graph.node:
        if n.op_type != "Conv":
            continue
        a = {x.name: helper.get_attribute_value(x) for x in n.attribute}
        k = tuple(a.get("kernel_shape", inits[n.input[1]].dims[2:]))
        out["dw" if a.get("group", 1) > 1 else "1x1" if k == (1, 1) else "kxk"].append(n.name)
    return out


def nncf_quantize(model, samples, feed, target="ANY", ignore=()):
    import nncf
    from nncf.quantization.advanced_parameters import AdvancedQuantizationParameters, QuantizationParameters

    params = AdvancedQuantizationParameters(activations_quantization_params=QuantizationParameters(per_channel=False))
    with quiet(("nncf",), stderr=True):
        return nncf.quantize(model, nncf.Dataset(samples, feed), preset=nncf.QuantizationPreset.PERFORMANCE,
                             target_device=getattr(nncf.TargetDevice, target), subset_size=len(samples),
                             advanced_parameters=params,
                             ignored_scope=nncf.IgnoredScope(names=list(ignore)) if ignore else None)


def compiled_variants(name, variants, threads):
    import openvino as ov

    model, shape, _ = resolve_model_input(name, 1, None)
    proto = export_onnx_proto(model, shape)
    samples = random_calibration(shape, n=8)
    inp = proto.graph.input[0].name
    convs = conv_names(proto)
    ov_config = {"INFERENCE_NUM_THREADS": threads, "PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": "bf16"}

    def onnx_q(target="ANY", ignore=(), signed=True, cpu=False):
        q = nncf_quantize(proto, samples, lambda x: {inp: x}, target, ignore)
        if signed:
            _signed_activations(q)
        if cpu:
            cpu_activations(q)
        return compile_openvino(q, "bf16", threads)

    out = {}
    for v in variants:
        if v == "bf16":
            out[v] = compile_openvino(proto, "bf16", threads)
        elif v == "int8":
            out[v] = onnx_q()
        elif v == "int8-cpu":
            out[v] = onnx_q(cpu=True)
        elif v == "int8-nncf-cpu":
            out[v] = onnx_q(target="CPU", signed=False)
        elif v == "keep-kxk":
            out[v] = onnx_q(ignore=convs["kxk"], cpu=True)
        elif v == "keep-dw":
            out[v] = onnx_q(ignore=convs["dw"], cpu=True)
        elif v == "ov-ir":
            import tempfile

            import onnx

            core = ov.Core()
            with tempfile.TemporaryDirectory() as tmp:
                path = os.path.join(tmp, "m.onnx")
                onnx.save(proto, path)
                ir = core.read_model(path)
            out[v] = core.compile_model(nncf_quantize(ir, samples, lambda x: x), "CPU", ov_config)
    return out, samples[0], {k: len(v) for k, v in convs.items()}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", default="gpunet-1,gpunet-2")
    p.add_argument("--variants", default=",".join(VARIANTS))
    p.add_argument("--rounds", type=int, default=6)
    p.add_argument("--block", type=int, default=10)
    p.add_argument("--pause", type=float, default=0.5)
    p.add_argument("--threads", type=int, default=min(2, os.cpu_count() or 1))
    args = p.parse_args(argv)
    variants = args.variants.split(",")
    bad = [v for v in variants if v not in VARIANTS]
    if bad:
        p.error(f"--variants: unknown {bad[0]!r}; expected some of {', '.join(VARIANTS)}")
    if "bf16" not in variants:
        variants.insert(0, "bf16")
    start = time.perf_counter()
    print(f"# OpenVINO INT8 variants vs bf16, {args.threads} threads, batch 1, {args.rounds} rounds x {args.block}-run "
          f"blocks; load average at start {' '.join(f'{v:.1f}' for v in os.getloadavg())}"
          + (f"; ONEDNN_MAX_CPU_ISA={os.environ['ONEDNN_MAX_CPU_ISA']}"
             if os.environ.get("ONEDNN_MAX_CPU_ISA") else ""))
    print(f"{'model':10s} {'convs (1x1/kxk/dw)':18s} " + " ".join(f"{v:>14s}" for v in variants))
    for name in args.models.split(","):
        compiled, x, counts = compiled_variants(name, variants, args.threads)
        requests = {k: c.create_infer_request() for k, c in compiled.items()}
        runners = {k: (lambda r=r: r.infer({0: x})) for k, r in requests.items()}
        times = time_blocks(runners, args.rounds, args.block, 3, args.pause)
        ms = {k: float(np.median(v)) for k, v in times.items()}
        cells = [f"{ms[v]:6.2f} ms" + ("" if v == "bf16" else f" {ms['bf16'] / ms[v]:.2f}x") for v in variants]
        convs = f"{counts['1x1']:>6d}/{counts['kxk']}/{counts['dw']:<9d}"
        print(f"{name:10s} {convs} " + " ".join(f"{c:>14s}" for c in cells), flush=True)
    print(f"# x = OV bf16 ms / variant ms; load average at end {' '.join(f'{v:.1f}' for v in os.getloadavg())}; "
          f"{time.perf_counter() - start:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
