"""``gpunet.deploy.deploy``: latency budget -> candidates -> measured paths -> tiers -> decision ->
the verified deploy folder. The steps live in :mod:`~gpunet.deploy.measure` (timing),
:mod:`~gpunet.deploy.choose` (the pure decision) and :mod:`~gpunet.deploy.artifact` (the folder)."""
from __future__ import annotations

import dataclasses
import os
import time
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence, Tuple

import torch

from .._checks import argument_error, non_negative, one_of, positive, positive_int
from .artifact import DEPLOY_SCHEMA, markdown_table, write_folder
from .choose import Decision, MeasuredPath, NoFitError, choose
from .measure import WEIGHTS, ModelRun, Timing, graph_for, known_best_ms, measure_model, plan_paths
from .runtime import usable_threads

__all__ = ["deploy", "DeployResult", "candidate_models", "CANDIDATE_SLACK", "DEFAULT_BACKENDS", "ALL_PRECISIONS"]

#: a model whose best known figure on the device is above budget x this is not measured again
CANDIDATE_SLACK = 1.5
DEFAULT_BACKENDS = ("onnxruntime", "openvino", "tensorrt")
ALL_PRECISIONS = ("fp32", "bf16", "fp16", "int8")


@dataclass
class DeployResult:
    """What :func:`deploy` measured, chose and wrote (``info`` is ``deploy.json``)."""

    decision: Decision
    out: str
    device: str
    info: Dict[str, Any]
    saved: List[Tuple[str, str]]

    def to_dict(self) -> Dict[str, Any]:
        return {"out": self.out, "device": self.device, "decision": self.decision.to_dict(),
                "deploy": {k: v for k, v in self.info.items() if k != "candidates"},
                "saved": [{"device": d, "registry": r} for d, r in self.saved]}


def _names(value: Any, choices: Sequence[str], argument: str) -> List[str]:
    items = value.split(",") if isinstance(value, str) else list(value)
    out = [one_of(i.strip().lower(), choices, argument) for i in items if str(i).strip()]
    if not out:
        raise argument_error(argument, f"{argument} names nothing; expected some of {', '.join(choices)}")
    return list(dict.fromkeys(out))


def _check_dir(path: Optional[str], argument: str) -> Optional[str]:
    if path is not None and not os.path.isdir(path):
        raise argument_error(argument, f"{argument}: image folder not found: {path}", FileNotFoundError)
    return None if path is None else os.fspath(path)


def _check_args(a: Dict[str, Any]) -> Dict[str, Any]:
    """``deploy``'s arguments checked and normalised, before any model is built."""
    positive(a["max_latency_ms"], "max_latency_ms")
    positive_int(a["batch_size"], "batch_size")
    positive_int(a["calib_size"], "calib_size")
    non_negative(a["max_drop"], "max_drop")
    a["threads"] = usable_threads() if a["threads"] is None else positive_int(a["threads"], "threads")
    a["backends"] = _names(a["backends"] or DEFAULT_BACKENDS, DEFAULT_BACKENDS, "backends")
    asked_precisions = a["precisions"] is not None
    a["precisions"] = _names(a["precisions"] or ALL_PRECISIONS, ALL_PRECISIONS, "precisions")
    a["calib_dir"], a["val_dir"] = _check_dir(a["calib_dir"], "calib_dir"), _check_dir(a["val_dir"], "val_dir")
    if asked_precisions and "int8" in a["precisions"] and a["calib_dir"] is None:
        raise argument_error("precisions", "precisions int8 needs calib_dir (calibration images): INT8 from random "
                                           "calibration is never deployed")
    if a["models"] is not None and a["all_models"]:
        raise argument_error("models", "models and all_models exclude each other")
    a["weights"] = one_of(a["weights"], WEIGHTS, "weights")
    _check_out(a["out"])
    return a


def _check_out(out: str) -> None:
    """``out`` is replaced whole: only a new or empty folder, or an earlier deploy's, may be named."""
    if os.path.exists(out) and not os.path.isdir(out):
        raise argument_error("out", f"out {out!r} is a file; give a folder to write the deploy into")
    if os.path.isdir(out) and os.listdir(out) and not os.path.isfile(os.path.join(out, "deploy.json")):
        raise argument_error("out", f"out {out!r} holds files and is not a gpunet deploy folder (no deploy.json); "
                                    f"it would be replaced whole: give a new or empty folder")


def _device(device: Optional[str]) -> str:
    from ..latency.fingerprint import default_device_name, device_fingerprint
    from ..latency.tiers import check_device_name

    return check_device_name(device or default_device_name(device_fingerprint("onnxruntime")), "device")


def candidate_models(models: Any, all_models: bool, device: str, budget: float,
                batch: int) -> Tuple[List[str], List[MeasuredPath]]:
    """(hub names and model folders to measure, rows for the hub models left out by their known
    figure on ``device``). ``models`` may name model folders (``local-dir:DIR``, ``hf-hub:ORG/NAME``,
    a directory): fine-tuned models, measured whatever the figures."""
    from ..hub import folder_location
    from ..registry import get_registry

    reg = get_registry()
    if models is not None:
        items = models.split(",") if isinstance(models, str) else list(models)
        names = list(dict.fromkeys(folder_location(n.strip()) or reg.resolve_model(n.strip())
                                   for n in items if n.strip()))
        if not names:
            raise argument_error("models", "models names no model")
        return names, []
    names, skipped = [], []
    for n in reg.list_models():
        known = None if all_models else known_best_ms(reg, n, device, batch)
        if known is not None and known > budget * CANDIDATE_SLACK:
            skipped.append(MeasuredPath(n, "-", "-", registry_top1=reg.model_info(n).get("top1"), status="skipped",
                                        reason=f"known figure {known:.2f} ms on {device} > {CANDIDATE_SLACK:g} x "
                                               f"budget (use --all or --model to measure it again)"))
        else:
            names.append(n)
    return names, skipped


def _measure_all(names: Sequence[str], a: Dict[str, Any], timing: Timing, progress: bool) -> List[ModelRun]:
    """Every candidate measured (a tqdm bar across them with ``progress``); an export that fails is
    a failed row for each of that model's paths, not the end of the deploy."""
    from ..export.onnx import ExportError
    from ..export.quantize import QuantizationError
    from ..weights import DownloadError, WeightsNotCachedError

    plan, skipped = plan_paths(a["backends"], a["precisions"], a["calib_dir"])
    steps = names
    if progress:
        from tqdm.auto import tqdm

        steps = tqdm(names, desc="deploy candidates", unit="model")
    runs = []
    for n in steps:
        try:
            runs.append(measure_model(n, plan, skipped, a["batch_size"], a["resolution"], a["threads"], timing,
                                      a["calib_dir"], a["calib_size"], a["val_dir"], a["weights"]))
        except (WeightsNotCachedError, DownloadError) as e:  # its latency alone would deploy nothing usable
            why = f"{type(e).__name__}: {str(e).splitlines()[0]}"[:240] + " (weights='random' deploys for latency only)"
            runs.append(_failed_run(n, plan, why))
        except (ExportError, QuantizationError) as e:
            runs.append(_failed_run(n, plan, f"{type(e).__name__}: {e}"[:300]))
    return runs


def _failed_run(name: str, plan: Sequence[Tuple[str, str]], reason: str) -> ModelRun:
    """A candidate that could not be measured: a failed row saying why for each of its paths."""
    rows = [MeasuredPath(name, b, p, status="failed", reason=reason) for b, p in plan]
    return ModelRun(model=name, paths=rows, input_shape=(), spec_sha256=None, preprocessing={})


def _save_tiers(runs: Sequence[ModelRun], device: str, timing: Timing, threads: int) -> List[Tuple[str, str]]:
    """Every timed path as a latency tier of ``device`` (one save per backend: one fingerprint each)."""
    from ..latency.bench import BenchmarkResult, summarize
    from ..latency.fingerprint import device_fingerprint
    from ..latency.tiers import save_tiers

    date = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    by_backend: Dict[str, list] = {}
    for mr in runs:
        if mr.weights.get("source") == "folder":  # tiers are the hub's: a folder is not a hub name
            continue
        for (backend, precision), times in mr.times_ms.items():
            s = summarize(times)
            by_backend.setdefault(backend, []).append(BenchmarkResult(
                model=mr.model, backend=backend, precision=precision, batch_size=mr.input_shape[0],
                input_shape=tuple(mr.input_shape), iters=len(times), warmup=timing.warmup, threads=threads,
                throughput=mr.input_shape[0] * 1e3 / s["median_ms"],
                timing=f"host wall clock, gpunet deploy: {timing.rounds} rounds x {timing.block}-run blocks, "
                       f"order rotating", date=date, times_ms=list(times),
                calibration=mr.calibration if precision == "int8" else None, **s))
    saved = []
    for backend, results in by_backend.items():
        fp = device_fingerprint(backend)
        for r in results:
            r.fingerprint = fp
        saved.append(save_tiers(results, device))
    return saved


def _accuracy(p: MeasuredPath, val_dir: Optional[str]) -> Optional[Dict[str, Any]]:
    if val_dir is None or p.top1 is None:
        return None
    return {"val_dir": os.path.abspath(val_dir), "val_images": p.val_images, "top1": p.top1,
            "top1_fp32": p.top1_fp32, "drop": p.drop}


def _info(mr: ModelRun, p: MeasuredPath, a: Dict[str, Any], device: str, timing: Timing,
          paths: Sequence[MeasuredPath]) -> Dict[str, Any]:
    """``deploy.json`` without the file hashes (added once the files are written)."""
    from .. import __version__
    from ..latency.fingerprint import device_fingerprint

    fp = device_fingerprint(p.backend)
    return {"schema": DEPLOY_SCHEMA, "gpunet": __version__, "model": mr.model, "spec_sha256": mr.spec_sha256,
            "backend": p.backend, "precision": p.precision, "batch_size": mr.input_shape[0],
            "input_shape": list(mr.input_shape), "threads": a["threads"], "runtime": fp.get("libraries", {}),
            "device": device, "fingerprint": fp, "p50_ms": p.p50_ms, "p90_ms": p.p90_ms,
            "max_latency_ms": float(a["max_latency_ms"]), "load_average": p.load_average,
            "timing": dataclasses.asdict(timing), "registry_top1": p.registry_top1, "weights": mr.weights,
            "calibration": mr.calibration if p.precision == "int8" else None,
            "accuracy": _accuracy(p, a["val_dir"]), "preprocessing": mr.preprocessing,
            "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "candidates": [q.to_dict() for q in paths]}


def _weights_line(w: Dict[str, Any]) -> str:
    if w.get("source") == "folder":
        return f"Weights: the model folder `{w['location']}`."
    if w.get("source") == "pretrained":
        return f"Weights: published, `{w['variant']}` ({w['file']}, sha256 {w['sha256']}; license {w['license']})."
    return "Weights: **random initialisation** (`weights='random'`): this artifact's latency holds, its outputs do not."


def _readme(info: Dict[str, Any], paths: Sequence[MeasuredPath]) -> str:
    pre = info["preprocessing"]
    acc = info["accuracy"]
    lines = [f"# {info['model']}, deployed by gpunet deploy", "",
             f"Chosen for a budget of {info['max_latency_ms']:g} ms (p50, batch {info['batch_size']}) on "
             f"`{info['device']}` ({info['fingerprint'].get('cpu')}, {info['threads']} threads): "
             f"**{info['backend']} {info['precision']}**, p50 {info['p50_ms']:.2f} ms, p90 {info['p90_ms']:.2f} ms "
             f"(load average {info['load_average']}).", "",
             f"Input {'x'.join(map(str, info['input_shape'][1:]))}, {pre.get('interpolation')} resize, crop_pct "
             f"{pre.get('crop_pct')}, mean {pre.get('mean')}, std {pre.get('std')}.", "",
             _weights_line(info["weights"]), ""]
    if info.get("ranked_by"):
        lines += [f"Models that fit were ranked by {info['ranked_by']}.", ""]
    if acc:
        lines += [f"Top-1 on {acc['val_images']} images of {acc['val_dir']}: {acc['top1']:.2f}% "
                  f"(PyTorch fp32 {acc['top1_fp32']:.2f}%).", ""]
    lines += ["```python", "import gpunet", "model = gpunet.load_deployed(\"path/to/this/folder\")",
              "logits = model(pil_image)  # numpy (N, classes)", "```", "", "## Every candidate measured", "",
              markdown_table(paths)]
    return "\n".join(lines)


def _nothing_could_fit(left_out: Sequence[MeasuredPath], device: str, budget: float, batch: int) -> NoFitError:
    """Every hub model's known figure on ``device`` is far above the budget: nothing is measured."""
    from ..registry import get_registry

    reg = get_registry()
    known = {p.model: known_best_ms(reg, p.model, device, batch) for p in left_out}
    name = min(known, key=known.get)
    return NoFitError(f"max_latency_ms {budget:g}: no hub model could fit on {device}; every known figure is above "
                      f"{CANDIDATE_SLACK:g} x the budget, the fastest being {name} at {known[name]:.2f} ms "
                      f"(--all or --model measures them again)", None, left_out)


def deploy(max_latency_ms: float, out: str, *, device: Optional[str] = None, models: Any = None,
           all_models: bool = False, backends: Any = None, precisions: Any = None, calib_dir: Optional[str] = None,
           val_dir: Optional[str] = None, max_drop: float = 1.0, calib_size: int = 300, batch_size: int = 1,
           resolution: Optional[int] = None, threads: Optional[int] = None, timing: Optional[Timing] = None,
           weights: str = "pretrained", progress: bool = False) -> DeployResult:
    """Measure the hub models that could fit ``max_latency_ms`` on this machine on every backend x
    precision it runs, save each result as a tier of ``device``, choose (:func:`~gpunet.deploy.choose.choose`)
    and write the verified artifact folder ``out`` (atomically; nothing on :class:`NoFitError`).

    Args:
        models: hub names or model folders (``local-dir:DIR``, ``hf-hub:ORG/NAME``: fine-tuned models;
            list or comma-separated); default: every hub model whose best known figure on ``device``
            is at most :data:`CANDIDATE_SLACK` x the budget (or has none).
        weights: ``pretrained`` (default: each hub model's published weights, fetched once and
            verified; a model whose weights cannot be had is a failed row saying why) or ``random``
            (latency only); a folder always carries its own (:func:`~gpunet.deploy.measure.candidate_model`).
        all_models: measure every hub model, whatever its known figures.
        backends / precisions: subsets of :data:`DEFAULT_BACKENDS` / :data:`ALL_PRECISIONS`; what this
            machine cannot run becomes a table row saying why.
        calib_dir / val_dir / max_drop / calib_size: INT8 calibration images, labelled validation
            images (top-1 of every path and of PyTorch fp32), the largest INT8 drop in points.
        resolution: input side (default: each model's own); threads: CPU threads (default: all usable).
        timing: rounds / block / warm-up / pause of the block timing (:class:`~gpunet.deploy.measure.Timing`).
    """
    a = _check_args(dict(locals()))
    timing = timing or Timing()
    for field_ in ("rounds", "block"):
        positive_int(getattr(timing, field_), f"timing.{field_}")
    dev = _device(device)
    names, left_out = candidate_models(models, all_models, dev, float(max_latency_ms), batch_size)
    if not names:
        raise _nothing_could_fit(left_out, dev, float(max_latency_ms), batch_size)
    runs = _measure_all(names, a, timing, progress)
    saved = _save_tiers(runs, dev, timing, a["threads"]) if any(mr.times_ms for mr in runs) else []
    paths = [p for mr in runs for p in mr.paths] + left_out
    try:
        decision = choose(paths, max_latency_ms, max_drop)
    except NoFitError as e:
        e.device, e.saved = dev, saved
        raise
    p = decision.chosen
    mr = next(r for r in runs if r.model == p.model)
    info = dict(_info(mr, p, a, dev, timing, paths), ranked_by=decision.ranked_by)
    x = torch.randn(*mr.input_shape, generator=torch.Generator().manual_seed(0)).numpy()
    info = write_folder(out, p, graph_for(mr, p.backend, p.precision), x, mr.reference, info, _readme(info, paths),
                        a["threads"])
    return DeployResult(decision=decision, out=os.path.abspath(out), device=dev, info=info, saved=saved)
