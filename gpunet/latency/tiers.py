"""Measured latency tiers for the user's own device, saved into the user registry.

After ``save_tiers(results, "my-laptop")`` the device is a first-class hub device:
``gpunet.query(gpu="my-laptop")`` and ``gpunet.get_model(name, gpu="my-laptop")`` work.
Each entry keeps how it was measured (fingerprint, backend, precision, date, spread).
"""
from __future__ import annotations

import re
from typing import Any, Dict, Iterable, Optional, Tuple

from ..registry import get_registry, normalize_name, update_user_registry
from .bench import BenchmarkResult
from .fingerprint import default_device_name

__all__ = ["save_tiers", "engine_label"]

_DEVICE_ID = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")


def engine_label(result: BenchmarkResult) -> str:
    """``onnxruntime 1.18.0`` etc.: the backend and its library version, as in the packaged tiers."""
    libs = result.fingerprint.get("libraries", {})
    version = libs.get(result.backend) or libs.get("torch" if result.backend == "torch" else "", "")
    return f"{result.backend} {version}".strip()


def save_tiers(results: Iterable[BenchmarkResult], device_name: Optional[str] = None,
               path: Optional[str] = None) -> Tuple[str, str]:
    """Write benchmark results as latency tiers of ``device_name``; returns (device id, file).

    All results must come from one machine and backend (one fingerprint). Re-measuring a model
    replaces its entry with the same batch / precision / engine.
    """
    results = list(results)
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
    fp = results[0].fingerprint
    device = normalize_name(device_name) if device_name else default_device_name(fp)
    if not _DEVICE_ID.match(device):
        raise ValueError(f"device name {device_name!r} must be 1-64 characters of letters, digits, '.', '_' or '-'")
    packaged = reg.devices.get(device, {}).get("origin") == "packaged"
    if packaged:
        raise ValueError(f"device {device!r} is a packaged device with published figures; pick another name")
    first = results[0]
    kind = "gpu" if first.backend == "tensorrt" else "cpu"

    def change(data: Dict[str, Any]) -> None:
        dev = data["devices"].setdefault(device, {})
        dev.update({"name": fp.get("gpu") if kind == "gpu" else fp.get("cpu"), "kind": kind,
                    "engine": engine_label(first), "precision": first.precision, "batch": first.batch_size,
                    "source": f"measured with gpunet bench on {first.date[:10]}", "fingerprint": fp})
        per_model = data["latency"].setdefault(device, {})
        for r in results:
            entry = {"latency_ms": round(r.median_ms, 4), "batch": r.batch_size, "precision": r.precision,
                     "engine": engine_label(r), "kind": "measured", "timing": "median " + r.timing,
                     "source": f"gpunet bench, {r.iters} iterations after {r.warmup} warm-up",
                     "date": r.date, "p90_ms": round(r.p90_ms, 4), "p99_ms": round(r.p99_ms, 4),
                     "std_ms": round(r.std_ms, 4), "min_ms": round(r.min_ms, 4), "iters": r.iters,
                     "threads": r.threads, "resolution": r.input_shape[-1], "input_shape": list(r.input_shape),
                     "fingerprint_id": r.fingerprint.get("id")}
            if r.calibration:  # int8: a figure from random calibration is a speed figure only
                entry["calibration"] = r.calibration
            key = (entry["batch"], entry["precision"], entry["engine"])
            old = per_model.get(normalize_name(r.model), [])
            per_model[normalize_name(r.model)] = [e for e in old if (e.get("batch", 1), e.get("precision"),
                                                                       e.get("engine")) != key] + [entry]

    return device, update_user_registry(change, path)
