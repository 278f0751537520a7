"""Measure the deploy candidates on this machine: which paths it can run, one export per model,
every path checked against PyTorch, timed in blocks with rotating order, top-1 on ``val_dir``.

Paths are timed in BLOCKS of consecutive runs, not call by call: runtimes keep their thread pools
spinning after a call, so an interleave charges each path for the previous one's spin-down (see
``benchmarks/bench_deploy.py``). Each round runs one block per path, the order rotates between
rounds and a short pause separates blocks; p50 / p90 are over all blocks' runs.
"""
from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

from .choose import MeasuredPath
from .runtime import cpu_graph, path_callable, run_batched

__all__ = ["Timing", "ModelRun", "plan_paths", "known_best_ms", "measure_model", "time_blocks", "data_config",
           "graph_for", "DEPLOY_PRECISIONS", "WEIGHTS", "candidate_model",
           "tensorrt_unavailable", "engine_source"]

#: what each backend can be asked for by ``gpunet deploy`` (subject to this machine)
DEPLOY_PRECISIONS = {"onnxruntime": ("fp32", "int8"), "openvino": ("fp32", "bf16", "fp16", "int8"),
                     "tensorrt": ("fp32", "fp16", "bf16", "int8")}

#: what a hub model is deployed with: its published weights (fetched once, verified; default) or a
#: fresh initialisation (``random``: the artifact's latency holds, its predictions mean nothing). A
#: model folder (``local-dir:DIR``, ``hf-hub:ORG/NAME``: a fine-tuned model) always carries its own.
WEIGHTS = ("pretrained", "random")


@dataclass
class Timing:
    """How paths are timed: ``rounds`` rounds of one ``block``-run block per path (order rotating),
    ``warmup`` untimed runs before each path's first block, and at least ``warmup_s`` seconds of
    them (a large network on OpenVINO bf16 was still 30 % slow after 3 runs: gpunet-d1 37 ms vs
    29 ms steady, benchmarks/bench_deploy_budgets.py), ``pause`` seconds between blocks."""

    rounds: int = 5
    block: int = 10
    warmup: int = 3
    warmup_s: float = 2.0
    pause: float = 0.2


@dataclass
class ModelRun:
    """One candidate's measurement: its paths, and what writing its artifact needs."""

    model: str
    paths: List[MeasuredPath]
    input_shape: Tuple[int, ...]
    spec_sha256: Optional[str]
    preprocessing: Dict[str, Any]
    graphs: Dict[Any, Any] = field(default_factory=dict)  # "fp32" / "fp16" / "int8" -> ModelProto; TensorRT engines
    reference: Optional[np.ndarray] = None  # PyTorch fp32 output on the fixed input
    times_ms: Dict[Tuple[str, str], List[float]] = field(default_factory=dict)
    calibration: Optional[str] = None
    weights: Dict[str, Any] = field(default_factory=dict)  # what the model carries (deploy.json "weights")


def _gpu_present() -> bool:
    from ..latency.fingerprint import gpu_info

    return bool(gpu_info())


def _tensorrt_major() -> Optional[int]:
    from ..export.tensorrt import TensorRTUnavailable, tensorrt_version

    try:
        return tensorrt_version()[0]
    except TensorRTUnavailable:
        return None


def tensorrt_unavailable(precision: str, major: Optional[int], gpu: bool) -> str:
    """Why ``gpunet deploy`` cannot build a TensorRT ``precision`` engine ('' when it can):
    no GPU, no TensorRT (``major`` None), or bf16 on a strongly typed TensorRT (11), whose
    precision comes from the graph's types and gpunet exports fp32 or fp16 only."""
    from ..export.tensorrt import INSTALL_HINT, is_strongly_typed

    if not gpu:
        return "no NVIDIA GPU on this machine"
    if major is None:
        return f"TensorRT is not available: {INSTALL_HINT}"
    if precision == "bf16" and is_strongly_typed(major):
        return f"TensorRT {major} builds strongly typed networks and gpunet exports no bf16 graph (use fp16)"
    return ""


def engine_source(precision: str, major: int) -> str:
    """Which of a model's ONNX graphs a TensorRT ``precision`` engine is built from: ``int8`` the
    QDQ graph, ``fp16`` the FP16 export where TensorRT is strongly typed, else the fp32 export
    (lowered by builder flags on TensorRT 10)."""
    from ..export.tensorrt import is_strongly_typed

    if precision == "int8":
        return "int8"
    return "fp16" if precision == "fp16" and is_strongly_typed(major) else "fp32"


def _unavailable(backend: str, precision: str, calib_dir: Any) -> str:
    """Why this machine cannot run ``backend`` at ``precision`` here ('' when it can)."""
    if precision not in DEPLOY_PRECISIONS.get(backend, ()):
        return f"{backend} does not run {precision} here (it runs {', '.join(DEPLOY_PRECISIONS[backend])})"
    if backend == "tensorrt":
        gpu = _gpu_present()
        why = tensorrt_unavailable(precision, _tensorrt_major() if gpu else None, gpu)
        if why:
            return why
    if precision == "int8" and calib_dir is None:
        return "no --calib-dir: INT8 is measured only with calibration images"
    if backend == "openvino":
        try:
            from ..export.openvino import openvino_precisions

            native = openvino_precisions()
        except ModuleNotFoundError:
            return "openvino is not installed"
        if precision in ("bf16", "fp16") and precision not in native:
            return f"{precision} is not native on this CPU for OpenVINO (it runs {', '.join(native)})"
    return ""


def plan_paths(backends: Sequence[str], precisions: Sequence[str],
               calib_dir: Any) -> Tuple[List[Tuple[str, str]], List[Tuple[str, str, str]]]:
    """([(backend, precision)] to measure, [(backend, precision, why not)] skipped)."""
    run, skipped = [], []
    for b in backends:
        for p in precisions:
            if p not in DEPLOY_PRECISIONS[b]:
                continue  # not a combination at all (onnxruntime bf16): not worth a table row
            why = _unavailable(b, p, calib_dir)
            (skipped.append((b, p, why)) if why else run.append((b, p)))
    return run, skipped


def known_best_ms(registry, model: str, device: str, batch: int) -> Optional[float]:
    """The fastest figure the registry holds for ``model`` on ``device`` at ``batch`` (None: none)."""
    if device not in registry.devices:
        return None
    figures = [e["latency_ms"] for e in registry.latency_entries(model, device)
               if e.get("batch", 1) == batch and e.get("latency_ms") is not None]
    return min(figures) if figures else None


def data_config(model: torch.nn.Module, input_shape: Sequence[int]) -> Dict[str, Any]:
    """The timm data config (input size at the deploy resolution, crop, interpolation, mean, std)."""
    import timm.data

    cfg = dict(timm.data.resolve_model_data_config(model))
    cfg["input_size"] = tuple(int(s) for s in input_shape[1:])
    keep = ("input_size", "interpolation", "mean", "std", "crop_pct", "crop_mode")
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in cfg.items() if k in keep}


def _warm_up(run, runs: int, seconds: float) -> None:
    """``runs`` untimed calls, more until ``seconds`` have passed (later rounds: one per block)."""
    start = time.perf_counter()
    done = 0
    while done < runs or time.perf_counter() - start < seconds:
        run()
        done += 1


def time_blocks(runners: Dict[Any, Any], timing: Timing) -> Dict[Any, List[float]]:
    """{key: [ms, ...]}: ``timing.rounds`` rounds of one block per runner, order rotating."""
    order = list(runners)
    times: Dict[Any, List[float]] = {k: [] for k in order}
    for r in range(timing.rounds):
        shift = r % len(order) if order else 0
        for k in order[shift:] + order[:shift]:
            run = runners[k]
            _warm_up(run, timing.warmup if r == 0 else 1, timing.warmup_s if r == 0 else 0.0)
            for _ in range(timing.block):
                t = time.perf_counter()
                run()
                times[k].append((time.perf_counter() - t) * 1e3)
            if timing.pause:
                time.sleep(timing.pause)  # let this path's worker threads go idle before the next block
    return times


def _export(mr: ModelRun, model: torch.nn.Module, plan: Sequence[Tuple[str, str]], calib_dir: Any,
            calib_size: int) -> None:
    """The fp32 export (checked against PyTorch) and, when planned, the INT8 graph from ``calib_dir``."""
    from ..export.onnx import check_onnx, export_onnx_proto

    shape = mr.input_shape
    mr.graphs["fp32"] = export_onnx_proto(model, shape)
    check_onnx(mr.graphs["fp32"], model, shape, [shape[0]])
    trt = [p for b, p in plan if b == "tensorrt"]
    if trt and "fp16" in {engine_source(p, _tensorrt_major()) for p in trt}:
        mr.graphs["fp16"] = export_onnx_proto(model, shape, half=True)
    if any(p == "int8" for _, p in plan):
        from ..export.quantize import int8_graph

        mr.graphs["int8"], mr.calibration = int8_graph(model, shape, calib_dir, calib_size)


def graph_for(mr: ModelRun, backend: str, precision: str):
    """What a path runs: the fp32 export, the INT8 graph with uint8 CPU activations, or (TensorRT)
    the engine's bytes, built from :func:`engine_source`'s graph once per path."""
    if backend == "tensorrt":
        key = ("tensorrt", precision)
        if key not in mr.graphs:
            from .runtime import tensorrt_engine

            source = mr.graphs[engine_source(precision, _tensorrt_major())]
            mr.graphs[key] = tensorrt_engine(source, precision)
        return mr.graphs[key]
    return cpu_graph(mr.graphs["int8"]) if precision == "int8" else mr.graphs["fp32"]


def _build_runners(mr: ModelRun, plan: Sequence[Tuple[str, str]], x: np.ndarray,
                   threads: int) -> Dict[Tuple[str, str], Any]:
    """{(backend, precision): callable(x)} for the paths that start and match PyTorch's output."""
    from ..export.onnx import TOLERANCES, max_errors

    runners = {}
    for p in mr.paths:
        if (p.backend, p.precision) not in plan:
            continue
        try:
            fn = path_callable(p.backend, p.precision, graph_for(mr, p.backend, p.precision), threads)
            p.max_rel_err = max_errors(fn(x), mr.reference)[1]
        except Exception as e:  # a runtime refusing a graph is a result for this path, not a crash
            p.status, p.reason = "failed", f"{type(e).__name__}: {e}"[:300]
            continue
        tol = TOLERANCES.get(p.precision)
        p.verified = tol is not None and p.max_rel_err <= tol
        if p.precision == "int8":
            p.calibration = "images" if mr.calibration and "random" not in mr.calibration else "random"
        runners[(p.backend, p.precision)] = fn
    return runners


def _val_loader(val_dir: str, preprocessing: Dict[str, Any], batch: int):
    from ..train.data import open_dataset
    from .runtime import image_transform

    ds = open_dataset(val_dir, "val", allow_root=True)
    ds.transform = image_transform(preprocessing)
    return torch.utils.data.DataLoader(ds, batch_size=max(batch, 16), shuffle=False, num_workers=0)


def _accuracy(mr: ModelRun, model: torch.nn.Module, runners: Dict[Tuple[str, str], Any], val_dir: str) -> None:
    """Top-1 of PyTorch fp32 and of every started path on the same ``val_dir`` images."""
    batch = mr.input_shape[0]
    correct = {k: 0 for k in runners}
    correct_fp, n = 0, 0
    for x, y in _val_loader(val_dir, mr.preprocessing, batch):
        y = y.numpy().reshape(-1)
        with torch.inference_mode():
            logits = model(x).float().numpy()
        if len(y) and (y.max() >= logits.shape[-1] or y.min() < 0):
            raise ValueError(f"val_dir: label {int(y.max())} is out of range for {mr.model} with "
                             f"{logits.shape[-1]} outputs (check the class folders)")
        correct_fp += int((logits.argmax(-1) == y).sum())
        xs = x.numpy()
        for k, fn in runners.items():
            correct[k] += int((run_batched(fn, xs, batch).argmax(-1) == y).sum())
        n += len(y)
    if n == 0:
        raise ValueError(f"val_dir: no images in {val_dir}")
    for p in mr.paths:
        if (p.backend, p.precision) in runners:
            p.top1, p.top1_fp32, p.val_images = 100.0 * correct[(p.backend, p.precision)] / n, 100.0 * correct_fp / n, n


def _new_run(name: str, model: torch.nn.Module, shape: Tuple[int, ...],
             registry) -> Tuple[ModelRun, Tuple[Optional[float], bool]]:
    """(an empty run for ``name``, (its registry top-1, whether that is a proxy training's))."""
    info = registry.model_info(name) if name in registry.models else {}
    spec = getattr(model, "spec", None)
    return ModelRun(model=name, paths=[], input_shape=tuple(shape), preprocessing=data_config(model, shape),
                    spec_sha256=spec.fingerprint() if spec is not None else None), \
        (info.get("top1"), bool(info.get("proxy", False)))


def candidate_model(name: str, weights: str = "pretrained") -> Tuple[torch.nn.Module, Dict[str, Any]]:
    """(the model ``name`` names with its weights, what those are): a model folder's own; a hub
    model's published ones (:data:`WEIGHTS`; offline and not cached raises
    :class:`~gpunet.weights.WeightsNotCachedError`) or, with ``weights="random"``, none."""
    from ..hub import folder_location, get_model

    location = folder_location(name)
    if location is not None:
        return get_model(location), {"source": "folder", "location": location}
    if weights == "random":
        return get_model(name), {"source": "random", "note": "random initialisation: for latency only"}
    from ..weights import fetch_weights, load_pretrained

    path, variant = fetch_weights(name)
    model = load_pretrained(get_model(name), name, weights=variant.name)
    return model, {"source": "pretrained", "variant": variant.name, "file": os.path.basename(path),
                   "sha256": variant.sha256, "license": variant.license}


def measure_model(name: str, plan: Sequence[Tuple[str, str]], skipped: Sequence[Tuple[str, str, str]],
                  batch_size: int, resolution: Optional[int], threads: int, timing: Timing,
                  calib_dir: Any = None, calib_size: int = 300, val_dir: Optional[str] = None,
                  weights: str = "pretrained") -> ModelRun:
    """Export ``name`` (with ``weights``, see :func:`candidate_model`) once, start and check every
    planned path, time them in rotating blocks and (with ``val_dir``) measure top-1; skipped paths
    become rows with their reason."""
    from ..hub import resolve_model_input
    from ..latency.bench import summarize
    from ..latency.machine import load_average
    from ..registry import get_registry

    model, carried = candidate_model(name, weights)
    model, shape, _ = resolve_model_input(model, batch_size, resolution)
    mr, top1 = _new_run(name, model, shape, get_registry())
    mr.weights = carried
    mr.paths = [MeasuredPath(name, b, p, registry_top1=top1[0], proxy_top1=top1[1]) for b, p in plan]
    mr.paths += [MeasuredPath(name, b, p, registry_top1=top1[0], proxy_top1=top1[1], status="skipped", reason=why)
                 for b, p, why in skipped]
    x = torch.randn(*shape, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        mr.reference = model(x).float().numpy()
    _export(mr, model, plan, calib_dir, calib_size)
    xs = x.numpy()
    runners = _build_runners(mr, plan, xs, threads)
    loads = [load_average()]
    mr.times_ms = time_blocks({k: (lambda fn=fn: fn(xs)) for k, fn in runners.items()}, timing)
    loads.append(load_average())
    load = max((v for v in loads if math.isfinite(v)), default=float("nan"))
    for p in mr.paths:
        times = mr.times_ms.get((p.backend, p.precision))
        if times:
            stats = summarize(times)
            p.p50_ms, p.p90_ms, p.load_average = stats["median_ms"], stats["p90_ms"], load
    if val_dir is not None and runners:
        _accuracy(mr, model, runners, val_dir)
    return mr
