"""Winners of a search into the hub: the K best journal lines become user-registry models.

Each model gets its spec (decoded from the vector at the resolution and class count it was
trained with), its accuracy (the journal's value, with the dataset named), its checkpoint (the
weights that scored that value; ``gpunet.get_model(name)`` loads them) and a latency tier on the
given device: measured end to end with :func:`gpunet.latency.benchmark`, or the pool's table
estimate marked ``kind: estimated``. The tiers are written by :mod:`gpunet.latency.tiers`.

Steps: read the run (settings, space, the journal's top K), build each model's entry, register
the models (with their estimates when not measuring), then measure and save the tiers.
"""
from __future__ import annotations

import json
import os
import re
from typing import Any, Dict, List, Optional

from ..._checks import positive_int
from .journal import JOURNAL_NAME, Journal
from .driver import SPACE_NAME, SearchRunError, read_settings

__all__ = ["export_winners"]

_ESTIMATE_SOURCE = "the search pool's latency-table estimate (gpunet sample --lut)"
_ESTIMATE_DEVICE_SOURCE = "gpunet search export --no-measure (table estimates)"


def _prefix(out: str) -> str:
    base = re.sub(r"[^a-z0-9]+", "-", os.path.basename(os.path.abspath(out)).lower()).strip("-")
    return f"search-{base or 'run'}"


def _read_settings(out: str) -> Dict[str, Any]:
    """The run's settings; only a ``train`` search has weights and accuracies to export."""
    settings = read_settings(out)
    if settings["evaluator"] != "train":
        raise SearchRunError(f"{out}: a {settings['evaluator']!r} search has no trained weights or accuracies; "
                             f"export the winners of a search run with evaluator='train'")
    return settings


def _read_space(out: str):
    from ..space import SearchSpace

    with open(os.path.join(out, SPACE_NAME), encoding="utf-8") as f:
        return SearchSpace.from_dict(json.load(f))


def _top_records(out: str, top: int) -> List[Dict[str, Any]]:
    """The ``top`` best journal lines with a value and a checkpoint (best first; ties: journal order)."""
    recs = [r for r in Journal(os.path.join(out, JOURNAL_NAME)).records()
            if r.get("value") is not None and r.get("checkpoint")]
    if not recs:
        raise SearchRunError(f"{out}: no successful candidate with a checkpoint in {JOURNAL_NAME}")
    order = sorted(range(len(recs)), key=lambda i: (-recs[i]["value"], i))
    return [recs[i] for i in order[:top]]


def _check_record(rec: Dict[str, Any], measure: bool) -> None:
    if not os.path.exists(rec["checkpoint"]):
        raise SearchRunError(f"candidate {rec['candidate_id']}: checkpoint {rec['checkpoint']} is missing")
    if not measure and rec.get("latency_ms") is None:
        raise SearchRunError(f"measure=False needs the pool's table latency, but candidate {rec['candidate_id']} "
                             f"has none (its pool was sampled without a lut); measure it (measure=True)")


def _model_entry(rec: Dict[str, Any], name: str, space, settings: Dict[str, Any], out: str) -> Dict[str, Any]:
    """The registry entry of one winner: spec at its trained resolution / classes, top-1, checkpoint."""
    from ...complexity import count_params
    from ...model import build_model

    spec = space.decode(rec["vector"])
    spec = spec.replace(resolution=int(rec.get("img_size") or spec.resolution),
                        num_classes=int(rec.get("num_classes") or spec.num_classes), name=name)
    return {
        "spec": spec.to_dict(), "top1": round(float(rec["value"]), 4), "dataset": rec.get("dataset"),
        "top1_dataset": rec.get("data_dir"), "resolution": spec.resolution,
        "crop_pct": float(rec.get("crop_pct") or 1.0), "interpolation": rec.get("interpolation") or "bicubic",
        "checkpoint": os.path.abspath(rec["checkpoint"]), "params": count_params(build_model(spec)),
        "distilled": False,
        "source": f"gpunet search {os.path.abspath(out)}, candidate {rec['candidate_id']} "
                  f"({settings['algorithm']}, trial {rec['trial_id']})",
        "search": {"dir": os.path.abspath(out), "candidate_id": rec["candidate_id"], "vector": rec["vector"],
                   "algorithm": settings["algorithm"], "table_latency_ms": rec.get("latency_ms")},
    }


def _row(rec: Dict[str, Any], name: str, entry: Dict[str, Any]) -> Dict[str, Any]:
    return {"name": name, "top1": float(rec["value"]), "dataset": rec.get("dataset"),
            "checkpoint": entry["checkpoint"], "candidate_id": rec["candidate_id"],
            "table_latency_ms": rec.get("latency_ms"), "vector_resolution": int(rec["vector"][0])}


def _register(entries: Dict[str, Dict[str, Any]], rows: List[Dict[str, Any]], device: str, estimate: bool,
              registry_path: Optional[str]) -> str:
    """Write the models (and, when ``estimate``, their table estimates on ``device``) in one update."""
    from ...latency.tiers import add_estimated_tiers, estimated_entry
    from ...registry import update_user_registry

    def change(data: Dict[str, Any]) -> None:
        data["models"].update(entries)
        if estimate:
            tiers = {row["name"]: estimated_entry(row["table_latency_ms"], row["vector_resolution"],
                                                  _ESTIMATE_SOURCE) for row in rows}
            add_estimated_tiers(data, device, tiers, _ESTIMATE_DEVICE_SOURCE)

    return update_user_registry(change, registry_path)


def _measure(rows: List[Dict[str, Any]], device: str, backend: str, iters: int, warmup: int,
             registry_path: Optional[str]) -> None:
    """Benchmark the registered winners end to end and save the figures as measured tiers."""
    from ...latency import benchmark
    from ...latency.tiers import save_tiers

    results = [benchmark(row["name"], backend=backend, iters=iters, warmup=warmup) for row in rows]
    save_tiers(results, device, registry_path)
    for row, r in zip(rows, results):
        row.update(latency_ms=r.median_ms, latency_kind="measured")


def export_winners(out: str, top: int = 1, device: str = "", backend: str = "onnxruntime", measure: bool = True,
                   prefix: Optional[str] = None, iters: int = 50, warmup: int = 10,
                   registry_path: Optional[str] = None) -> List[Dict[str, Any]]:
    """Register the ``top`` best candidates of the search in ``out``; returns one row per model."""
    from ...latency.tiers import check_device_name
    from ...registry import normalize_name

    settings = _read_settings(out)
    top = positive_int(top, "top", SearchRunError)
    dev = check_device_name(device, "device", SearchRunError)
    winners = _top_records(out, top)
    space = _read_space(out)
    prefix = prefix or _prefix(out)
    entries, rows = {}, []
    for rec in winners:
        _check_record(rec, measure)
        name = normalize_name(f"{prefix}-{rec['candidate_id'][:8]}")
        entries[name] = _model_entry(rec, name, space, settings, out)
        rows.append(_row(rec, name, entries[name]))
    path = _register(entries, rows, dev, not measure, registry_path)
    if measure:
        _measure(rows, dev, backend, iters, warmup, registry_path)
    else:
        for row in rows:
            row.update(latency_ms=row["table_latency_ms"], latency_kind="estimated")
    for row in rows:
        row.update(device=dev, registry=path)
    return rows
