"""Latency tiers in the user registry: the only code that writes them, measured or estimated.

After ``save_tiers(results, "my-laptop")`` the device is a first-class hub device:
``gpunet.query(gpu="my-laptop")`` and ``gpunet.get_model(name, gpu="my-laptop")`` work.
Each measured entry keeps how it was measured (fingerprint, backend, precision, date, spread).
Estimates (a latency table's figure for a model nobody timed) are entries with
``kind: "estimated"``, written by :func:`add_estimated_tiers` inside the caller's registry update
(``gpunet search export --no-measure`` registers its models and their estimates in one write).
A model's entries are keyed by (batch, precision, engine): a new one replaces the old with that key.
Device names follow one rule, :func:`check_device_name`.
"""
from __future__ import annotations

import re
from typing import Any, Dict, Iterable, List, Mapping, Optional, Tuple, Type

from .._checks import ArgumentError, argument_error
from ..registry import get_registry, normalize_name, update_user_registry
from .bench import BenchmarkResult
from .fingerprint import default_device_name

__all__ = ["save_tiers", "engine_label", "check_device_name", "estimated_entry", "add_estimated_tiers",
           "TABLE_ENGINE"]

_DEVICE_ID = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
TABLE_ENGINE = "latency table estimate"  # the engine of a latency-table (LUT) estimate


def check_device_name(name: Optional[str], argument: str = "device_name",
                      error: Type[Exception] = ArgumentError) -> str:
    """``name`` as a device id the user may write tiers for: 1-64 of ``a-z 0-9 . _ -`` (after
    :func:`~gpunet.registry.normalize_name`) and not a packaged device with published figures.
    Errors start with ``argument`` (the caller's parameter) and are of type ``error``."""
    device = normalize_name(name or "")
    if not _DEVICE_ID.match(device):
        raise argument_error(argument, f"{argument} {name!r}: a device name must be 1-64 characters of letters, "
                                       f"digits, '.', '_' or '-'", error)
    if get_registry().devices.get(device, {}).get("origin") == "packaged":
        raise argument_error(argument, f"{argument} {device!r} is a packaged device with published figures; "
                                       f"pick another name", error)
    return device


def engine_label(result: BenchmarkResult) -> str:
    """``onnxruntime 1.18.0`` etc.: the backend and its library version, as in the packaged tiers."""
    libs = result.fingerprint.get("libraries", {})
    version = libs.get(result.backend) or libs.get("torch" if result.backend == "torch" else "", "")
    return f"{result.backend} {version}".strip()


def _put(per_model: Dict[str, List[Dict[str, Any]]], model: str, entry: Dict[str, Any]) -> None:
    """Add ``entry`` to ``model``'s list, replacing the one with its (batch, precision, engine)."""
    key = (entry.get("batch", 1), entry.get("precision"), entry.get("engine"))
    old = per_model.get(model, [])
    per_model[model] = [e for e in old if (e.get("batch", 1), e.get("precision"), e.get("engine")) != key] + [entry]


def _measured_entry(r: BenchmarkResult) -> Dict[str, Any]:
    entry = {"latency_ms": round(r.median_ms, 4), "batch": r.batch_size, "precision": r.precision,
             "engine": engine_label(r), "kind": "measured", "timing": "median " + r.timing,
             "source": f"gpunet bench, {r.iters} iterations after {r.warmup} warm-up",
             "date": r.date, "p90_ms": round(r.p90_ms, 4), "p99_ms": round(r.p99_ms, 4),
             "std_ms": round(r.std_ms, 4), "min_ms": round(r.min_ms, 4), "iters": r.iters,
             "threads": r.threads, "resolution": r.input_shape[-1], "input_shape": list(r.input_shape),
             "fingerprint_id": r.fingerprint.get("id")}
    if r.calibration:  # int8: a figure from random calibration is a speed figure only
        entry["calibration"] = r.calibration
    return entry


def _check_results(results: List[BenchmarkResult]) -> None:
    if not results:
        raise ValueError("no benchmark results to save")
    bad = [r for r in results if not isinstance(r, BenchmarkResult)]
    if bad:
        raise TypeError(f"save_tiers takes BenchmarkResult objects, got {type(bad[0]).__name__}")
    ids = {r.fingerprint.get("id") for r in results}
    if len(ids) != 1:
        raise ValueError(f"results come from {len(ids)} different device fingerprints; save them separately")
    reg = get_registry()
    unknown = [r.model for r in results if normalize_name(r.model) not in reg.models]
    if unknown:
        raise ValueError(f"only hub models can be tiered; not in the registry: {', '.join(unknown)}")


def save_tiers(results: Iterable[BenchmarkResult], device_name: Optional[str] = None,
               path: Optional[str] = None) -> Tuple[str, str]:
    """Write benchmark results as latency tiers of ``device_name``; returns (device id, file).

    All results must come from one machine and backend (one fingerprint). Re-measuring a model
    replaces its entry with the same batch / precision / engine.
    """
    results = list(results)
    _check_results(results)
    fp, first = results[0].fingerprint, results[0]
    device = check_device_name(device_name or default_device_name(fp))
    kind = "gpu" if first.backend == "tensorrt" else "cpu"

    def change(data: Dict[str, Any]) -> None:
        data["devices"].setdefault(device, {}).update(
            {"name": fp.get("gpu") if kind == "gpu" else fp.get("cpu"), "kind": kind, "engine": engine_label(first),
             "precision": first.precision, "batch": first.batch_size,
             "source": f"measured with gpunet bench on {first.date[:10]}", "fingerprint": fp})
        per_model = data["latency"].setdefault(device, {})
        for r in results:
            _put(per_model, normalize_name(r.model), _measured_entry(r))

    return device, update_user_registry(change, path)


def estimated_entry(latency_ms: float, resolution: int, source: str, engine: str = TABLE_ENGINE,
                    batch: int = 1, precision: str = "fp32") -> Dict[str, Any]:
    """A tier entry for a figure that was estimated, not measured (``kind: "estimated"``)."""
    return {"latency_ms": float(latency_ms), "batch": batch, "precision": precision, "engine": engine,
            "kind": "estimated", "resolution": int(resolution), "source": source}


def add_estimated_tiers(data: Dict[str, Any], device: str, entries: Mapping[str, Dict[str, Any]],
                        device_source: str, engine: str = TABLE_ENGINE) -> None:
    """Inside :func:`~gpunet.registry.update_user_registry`: ``entries`` ({model: :func:`estimated_entry`})
    as tiers of ``device`` (checked with :func:`check_device_name` first). A device not yet in the
    file is described as estimated on ``engine``; an existing description is kept."""
    data["devices"].setdefault(device, {"name": device, "kind": "unknown", "engine": engine, "source": device_source})
    per_model = data["latency"].setdefault(device, {})
    for model, entry in entries.items():
        _put(per_model, normalize_name(model), entry)
