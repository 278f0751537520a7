"""``gpunet export | bench | quantize | plot | deploy``: export a model, measure it, draw accuracy vs
latency, and deploy the best model for a latency budget measured on this machine."""
from __future__ import annotations

import argparse
import os
import sys

from ._flags import add_batch_size, add_gpu, add_img_size, add_json, add_model, add_models, model_list
from ._fmt import format_table, print_json

_BACKENDS = ("onnxruntime", "openvino", "torch", "tensorrt")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="export a model to ONNX (checked), OpenVINO IR or a TensorRT engine")
    add_model(p, "hub model name (e.g. gpunet-0) or a spec .json file")
    p.add_argument("--format", choices=("onnx", "openvino", "tensorrt"), default="onnx", help="default onnx")
    p.add_argument("--out", default=None, help="output file (default: NAME.onnx / NAME.xml / NAME.engine)")
    p.add_argument("--checkpoint", default=None, help="weights to load first (any format gpunet reads)")
    add_batch_size(p, help="batch of the exported graph (default 1)")
    p.add_argument("--dynamic-batch", action="store_true", help="symbolic batch axis (verified at batch 3)")
    p.add_argument("--max-batch", type=int, default=None,
                   help="tensorrt with --dynamic-batch: largest batch of the engine's profile (default --batch-size)")
    add_img_size(p, old=("--resolution",), dest="resolution")
    p.add_argument("--opset", type=int, default=None, help="ONNX opset (default: the exporter's)")
    p.add_argument("--half", action="store_true", help="FP16 ONNX (what TensorRT 11 needs for an FP16 engine)")
    p.add_argument("--precision", default=None, choices=("fp32", "fp16", "bf16"),
                   help="onnx: fp16 = --half; openvino: fp32|bf16 check precision; tensorrt: fp32|fp16 (default)|bf16 "
                        "(TensorRT 10 only)")
    p.add_argument("--workspace-gb", type=float, default=4.0, help="TensorRT builder workspace (GiB)")
    p.add_argument("--no-check", dest="check", action="store_false", help="skip the checker / PyTorch comparison")
    add_json(p, "the export report")
    p.set_defaults(handler=cmd_export)

    p = sub.add_parser("bench", help="measure latency; --save adds the results as tiers for this device")
    add_models(p, "hub model; repeat or comma-separate (default: all)")
    p.add_argument("--backend", default="onnxruntime", choices=_BACKENDS, help="default onnxruntime")
    p.add_argument("--precision", default="fp32", choices=("fp32", "bf16", "fp16", "int8"), help="default fp32")
    add_batch_size(p)
    add_img_size(p, "input side in px (default: each model's own)", old=("--resolution",), dest="resolution")
    p.add_argument("--warmup", type=int, default=10, help="untimed runs first (default 10)")
    p.add_argument("--iters", type=int, default=50, help="timed runs (default 50)")
    p.add_argument("--threads", type=int, default=None, help="CPU threads (default: all usable cores)")
    p.add_argument("--calib-dir", default=None,
                   help="int8: calibration images (default: random inputs, valid for speed only)")
    p.add_argument("--calib-size", type=int, default=300, help="int8: calibration images used (default 300)")
    p.add_argument("--save", action="store_true", help="write the results into the user registry as tiers")
    add_gpu(p, "with --save: device id to save the tiers under (default: from the CPU/GPU)", old=("--device-name",))
    add_json(p, "the measurements")
    p.set_defaults(handler=cmd_bench)

    p = sub.add_parser("quantize", help="post-training INT8 (NNCF) to one QDQ ONNX file, accuracy-checked")
    add_model(p, "hub model name (e.g. gpunet-0), spec .json file or timm name")
    p.add_argument("--out", required=True, help="output .onnx file (written only if every check passes)")
    p.add_argument("--calib-dir", required=True, help="calibration images: ImageFolder or a flat folder")
    p.add_argument("--checkpoint", default=None, help="fine-tuned weights (default: the published ones)")
    add_img_size(p, "input side in px (default: the model's / checkpoint's)")
    p.add_argument("--calib-size", type=int, default=300, help="calibration images used (default 300)")
    p.add_argument("--val-dir", default=None, help="images with labels (ImageFolder): fp32 vs INT8 top-1")
    p.add_argument("--max-drop", type=float, default=1.0, help="largest top-1 drop accepted, in points (default 1)")
    p.add_argument("--allow-drop", action="store_true", help="write the file even if the drop exceeds --max-drop")
    p.add_argument("--static-batch", dest="dynamic_batch", action="store_false", help="fix the batch at 1")
    p.add_argument("--uint8-activations", dest="signed_activations", action="store_false",
                   help="keep uint8 after ReLU: faster in ONNX Runtime on CPU, but TensorRT refuses the file")
    add_json(p, "the quantization report")
    p.set_defaults(handler=cmd_quantize)

    p = sub.add_parser("plot", help="latency vs top-1 (the paper's Fig. 1); one series per --gpu")
    add_gpu(p, "latency device; repeat for several series (default gv100)", old=("--device",), append=True)
    p.add_argument("--out", default="pareto.png", help="image file (.png, .svg, .pdf; default pareto.png)")
    add_batch_size(p, help="batch size of the latency figures (default 1)", old=("--batch",))
    p.add_argument("--logx", action="store_true", help="log-scale latency axis")
    p.add_argument("--title", default=None, help="plot title (default: from the devices)")
    p.add_argument("--search", action="store_true",
                   help="also draw the search winners tiered on each device (gpunet search export --pareto)")
    add_json(p, "the file written and its series")
    p.set_defaults(handler=cmd_plot)

    p = sub.add_parser("deploy", help="from a latency budget to a verified artifact measured on this machine")
    p.add_argument("--max-latency-ms", type=float, required=True, help="budget: measured p50 at --batch-size")
    p.add_argument("--out", required=True, help="folder to write (atomically; nothing when no candidate fits)")
    add_gpu(p, "device id the results are saved under as tiers (default: from the CPU)", old=("--device",))
    group = p.add_mutually_exclusive_group()
    add_models(group, "hub model or model folder (local-dir:DIR, hf-hub:ORG/NAME); repeat or comma-separate "
                      "(default: the hub models that could fit)")
    group.add_argument("--all", dest="all_models", action="store_true", help="measure every hub model")
    p.add_argument("--backends", default=None, help="comma-separated: onnxruntime,openvino,tensorrt (default all)")
    p.add_argument("--precisions", default=None, help="comma-separated: fp32,bf16,fp16,int8 (default all the "
                                                      "machine runs; int8 only with --calib-dir)")
    p.add_argument("--calib-dir", default=None, help="INT8 calibration images (ImageFolder or flat folder)")
    p.add_argument("--calib-size", type=int, default=300, help="calibration images used (default 300)")
    p.add_argument("--val-dir", default=None, help="labelled images (ImageFolder): top-1 of every path")
    p.add_argument("--max-drop", type=float, default=1.0, help="largest INT8 top-1 drop, in points (default 1)")
    p.add_argument("--weights", default="pretrained", choices=("pretrained", "random"),
                   help="hub models' weights: pretrained (default: published, fetched once and verified) or "
                        "random (latency only); a model folder (--model local-dir:DIR) carries its own")
    add_batch_size(p, help="batch size the budget is for (default 1)")
    add_img_size(p, "input side in px (default: each model's own)", old=("--resolution",), dest="resolution")
    p.add_argument("--threads", type=int, default=None, help="CPU threads (default: all usable cores)")
    p.add_argument("--rounds", type=int, default=5, help="timing rounds; each times one block per path")
    p.add_argument("--block", type=int, default=10, help="consecutive timed runs per block")
    p.add_argument("--warmup", type=int, default=3, help="untimed runs before each path's first block")
    p.add_argument("--warmup-s", type=float, default=2.0,
                   help="and at least this many seconds of them (default 2; large networks warm up slowly)")
    p.add_argument("--pause", type=float, default=0.2, help="seconds between blocks")
    add_json(p, "the decision and the measured table")
    p.set_defaults(handler=cmd_deploy)


def _model(name: str, checkpoint: str = None):
    from gpunet.hub import get_model

    return get_model(name, checkpoint_path=checkpoint) if checkpoint else name


def cmd_export(args) -> int:
    base = os.path.splitext(os.path.basename(args.name))[0]
    out = args.out or base + {"onnx": ".onnx", "openvino": ".xml", "tensorrt": ".engine"}[args.format]
    if args.max_batch is not None and args.format != "tensorrt":
        raise ValueError("--max-batch applies to --format tensorrt (an ONNX / OpenVINO dynamic batch has no maximum)")
    model = _model(args.name, args.checkpoint)
    if args.format == "onnx":
        if args.precision not in (None, "fp32", "fp16"):
            raise ValueError(f"--precision {args.precision!r} does not apply to ONNX; use --half for FP16")
        from gpunet.export import export_onnx

        report = export_onnx(model, out, batch_size=args.batch_size, dynamic_batch=args.dynamic_batch,
                             opset=args.opset, half=args.half or args.precision == "fp16", check=args.check,
                             resolution=args.resolution).to_dict()
    elif args.format == "openvino":
        from gpunet.export import export_openvino

        report = export_openvino(model, out, batch_size=args.batch_size, dynamic_batch=args.dynamic_batch,
                                 precision=args.precision or "fp32", check=args.check, resolution=args.resolution)
    else:
        from gpunet.export.tensorrt import export_engine

        # TensorRT version, precision vs the export's dtype and the batch profile are checked before exporting
        report = export_engine(model, out, precision=args.precision or "fp16", batch_size=args.batch_size,
                               max_batch=args.max_batch, dynamic_batch=args.dynamic_batch, half=args.half,
                               resolution=args.resolution, opset=args.opset, check=args.check,
                               workspace_gb=args.workspace_gb)
    if args.json:
        print_json(report)
        return 0
    print(f"wrote {out}")
    if args.format == "tensorrt":
        batches = f"batch {report['batch']}" if not report["dynamic_batch"] else \
            f"dynamic batch 1..{report['max_batch']} (opt {report['batch']})"
        print(f"TensorRT {report['tensorrt']}, {report['precision']}, {batches}")
    if report.get("checked") or report.get("max_rel_err") is not None:
        print(f"checked against PyTorch: max abs error {report['max_abs_err']:.3g}, "
              f"max rel error {report['max_rel_err']:.3g}")
    return 0


def _model_names(given):
    from gpunet.registry import get_registry

    reg = get_registry()
    names = model_list(given)
    if names is None or [n.lower() for n in names] == ["all"]:
        return [n for n in reg.list_models() if reg.models[n].get("origin") == "packaged"]
    return [reg.resolve_model(n) for n in names]


def cmd_bench(args) -> int:
    from gpunet.latency import BACKENDS, PRECISIONS, benchmark

    if args.backend not in BACKENDS:
        raise ValueError(f"unknown backend {args.backend!r}; expected one of {', '.join(BACKENDS)}")
    if args.precision not in PRECISIONS[args.backend]:
        raise ValueError(f"unsupported precision {args.precision!r} for backend {args.backend!r}; "
                         f"expected one of {', '.join(PRECISIONS[args.backend])}")
    names = _model_names(args.models)
    if not names:
        raise ValueError("--model names no model")
    tty = sys.stderr.isatty() and not args.json and not args.log_quiet
    steps = names
    if tty:
        from tqdm.auto import tqdm

        steps = tqdm(names, desc="models", unit="model")
    if args.calib_dir is not None and args.precision != "int8":
        raise ValueError("--calib-dir applies to --precision int8 only")
    if args.calib_dir is not None and not os.path.isdir(args.calib_dir):
        raise FileNotFoundError(f"--calib-dir: folder not found: {args.calib_dir}")
    results = [benchmark(n, backend=args.backend, batch_size=args.batch_size, resolution=args.resolution,
                         precision=args.precision, warmup=args.warmup, iters=args.iters, threads=args.threads,
                         progress=tty, calib_data=args.calib_dir, calib_size=args.calib_size) for n in steps]
    saved = None
    if args.save:
        from gpunet.latency.tiers import save_tiers

        saved = save_tiers(results, args.gpu)
    if args.json:
        print_json({"results": [r.to_dict() for r in results],
                    "saved": {"device": saved[0], "registry": saved[1]} if saved else None})
        return 0
    rows = [(r.model, "x".join(map(str, r.input_shape[1:])), r.batch_size, f"{r.median_ms:.2f}", f"{r.p90_ms:.2f}",
             f"{r.p99_ms:.2f}", f"{r.std_ms:.2f}", f"{r.throughput:.1f}") for r in results]
    first = results[0]
    print(f"{first.backend} {first.precision}, {first.threads or '-'} threads, {first.iters} iterations after "
          f"{first.warmup} warm-up on {first.fingerprint.get('gpu') or first.fingerprint.get('cpu')}")
    if first.backend == "tensorrt":
        fp = first.fingerprint
        print(f"TensorRT {fp.get('tensorrt', '?')} on {fp.get('gpu', '?')} (driver {fp.get('gpu_driver', '?')}, "
              f"CUDA {fp.get('cuda', '?')}); timing: {first.timing}")
    if first.calibration:
        print(f"int8 calibrated on {first.calibration}")
    print(format_table(rows, ["model", "input", "batch", "median ms", "p90 ms", "p99 ms", "std ms", "img/s"]))
    if saved:
        print(f"saved {len(results)} tiers for device {saved[0]!r} in {saved[1]}; try: gpunet query --gpu {saved[0]}")
    return 0


def cmd_plot(args) -> int:
    from gpunet.plot import plot_pareto

    gpus = args.gpu or ["gv100"]
    out = plot_pareto(gpus, args.out, batch=args.batch_size, logx=args.logx, title=args.title, search=args.search)
    if args.json:
        print_json({"out": out, "gpus": gpus, "batch_size": args.batch_size, "search": args.search})
    else:
        print(f"wrote {out}")
    return 0


def cmd_quantize(args) -> int:
    from gpunet.export.quantize import AccuracyDropError, quantize

    try:
        report = quantize(args.name, args.out, calib_data=args.calib_dir, checkpoint_path=args.checkpoint,
                          resolution=args.img_size, calib_size=args.calib_size, val_data=args.val_dir,
                          max_drop=args.max_drop, allow_drop=args.allow_drop, dynamic_batch=args.dynamic_batch,
                          signed_activations=args.signed_activations)
    except AccuracyDropError as e:
        if args.json:
            print_json(dict(e.report.to_dict(), error=str(e)))
        raise
    if args.json:
        print_json(report.to_dict())
        return 0
    print(f"wrote {report.path} ({report.size_bytes / 2 ** 20:.1f} MiB, {report.quantizers} quantizers, input "
          f"{'x'.join(map(str, report.input_shape[1:]))}); calibrated on {report.calibration}")
    if report.top1_fp32 is not None:
        print(f"top-1 on {report.val_images} images: fp32 {report.top1_fp32:.2f}%, int8 {report.top1_int8:.2f}% "
              f"(drop {report.drop:+.2f} points, max {report.max_drop:g}); same top-1 class for "
              f"{report.agreement:.2f}% of images")
    else:
        print("no --val-dir: accuracy not checked")
    return 0


def _deploy_rows(paths):
    f = lambda v, spec=".2f": "-" if v is None else format(v, spec)  # noqa: E731
    return [(p.model, p.backend, p.precision, f(p.p50_ms), f(p.p90_ms), f(p.registry_top1, "g"), f(p.top1),
             f(p.drop, "+.2f"), "CHOSEN" if p.chosen else (p.reason or p.status)) for p in paths]


def _deploy_table(paths) -> str:
    return format_table(_deploy_rows(paths), ["model", "backend", "precision", "p50 ms", "p90 ms", "top-1",
                                              "val top-1", "drop", "status"], align="lllrrrrrl")


def cmd_deploy(args) -> int:
    from gpunet.deploy import NoFitError, Timing, deploy
    from gpunet.latency.machine import load_average

    for flag in ("rounds", "block", "warmup"):
        if getattr(args, flag) < (0 if flag == "warmup" else 1):
            raise ValueError(f"--{flag} must be {'>= 0' if flag == 'warmup' else 'a positive integer'}, "
                             f"got {getattr(args, flag)}")
    for flag in ("pause", "warmup_s"):
        if getattr(args, flag) < 0:
            raise ValueError(f"--{flag.replace('_', '-')} must be >= 0, got {getattr(args, flag)}")
    timing = Timing(rounds=args.rounds, block=args.block, warmup=args.warmup, warmup_s=args.warmup_s,
                    pause=args.pause)
    load = load_average()
    if not args.json:
        print(f"load average (1 min) at start: {load:.2f}", file=sys.stderr)
    try:
        result = deploy(args.max_latency_ms, args.out, device=args.gpu, models=model_list(args.models),
                        all_models=args.all_models, backends=args.backends, precisions=args.precisions,
                        calib_dir=args.calib_dir, val_dir=args.val_dir, max_drop=args.max_drop,
                        calib_size=args.calib_size, batch_size=args.batch_size, resolution=args.resolution,
                        threads=args.threads, timing=timing, weights=args.weights,
                        progress=sys.stderr.isatty() and not (args.json or args.log_quiet))
    except NoFitError as e:
        if args.json:
            print_json({"error": str(e), "fastest": e.fastest.to_dict() if e.fastest else None,
                        "max_latency_ms": args.max_latency_ms, "load_average_start": load,
                        "paths": [p.to_dict() for p in e.paths]})
        else:
            print(_deploy_table(e.paths))
        raise
    if args.json:
        print_json(dict(result.to_dict(), load_average_start=load))
        return 0
    info, chosen = result.info, result.decision.chosen
    print(f"device {result.device}: {info['fingerprint'].get('cpu')}, {info['threads']} threads, batch "
          f"{info['batch_size']}, load average {chosen.load_average}")
    print(_deploy_table(result.decision.paths))
    print(f"chosen: {chosen.model} on {chosen.backend} {chosen.precision}, p50 {chosen.p50_ms:.2f} ms "
          f"(budget {args.max_latency_ms:g} ms; ranked by {result.decision.ranked_by})")
    print(f"wrote {result.out}; load it with gpunet.load_deployed({args.out!r})")
    if result.saved:
        device, registry = result.saved[0]
        print(f"saved {len([p for p in result.decision.paths if p.timed])} tiers for device {device!r} in {registry}; "
              f"try: gpunet query --gpu {device}")
    return 0
