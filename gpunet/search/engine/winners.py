"""Winners of a search into the hub: the K best journal lines become user-registry models.

Each model gets its spec (decoded from the vector at the resolution and class count it was
trained with), its accuracy (the journal's value, with the dataset named), its checkpoint (the
weights that scored that value; ``gpunet.get_model(name)`` loads them) and a latency tier on the
given device: measured end to end with :func:`gpunet.latency.benchmark`, or the pool's table
estimate marked ``kind: estimated``.
"""
from __future__ import annotations

import json
import os
import re
from typing import Any, Dict, List, Optional

from .journal import JOURNAL_NAME, Journal
from .driver import SETTINGS_NAME, SPACE_NAME, SearchRunError

__all__ = ["export_winners"]


def _prefix(out: str) -> str:
    base = re.sub(r"[^a-z0-9]+", "-", os.path.basename(os.path.abspath(out)).lower()).strip("-")
    return f"search-{base or 'run'}"


def export_winners(out: str, top: int = 1, device: str = "", backend: str = "onnxruntime", measure: bool = True,
                   prefix: Optional[str] = None, iters: int = 50, warmup: int = 10,
                   registry_path: Optional[str] = None) -> List[Dict[str, Any]]:
    """Register the ``top`` best candidates of the search in ``out``; returns one row per model."""
    from ...registry import get_registry, normalize_name, update_user_registry
    from ...complexity import count_params
    from ..space import SearchSpace

    settings_path = os.path.join(out, SETTINGS_NAME)
    if not os.path.exists(settings_path):
        raise SearchRunError(f"{out}: not a search folder ({SETTINGS_NAME} not found)")
    with open(settings_path, encoding="utf-8") as f:
        settings = json.load(f)
    if settings["evaluator"] != "train":
        raise SearchRunError(f"{out}: a {settings['evaluator']!r} search has no trained weights or accuracies; "
                             f"export the winners of an --evaluator train search")
    if not isinstance(top, int) or top < 1:
        raise SearchRunError(f"--top must be >= 1, got {top!r}")
    dev = normalize_name(device or "")
    if not re.match(r"^[a-z0-9][a-z0-9._-]{0,63}$", dev):
        raise SearchRunError(f"--device {device!r}: 1-64 letters, digits, '.', '_' or '-'")
    if get_registry().devices.get(dev, {}).get("origin") == "packaged":
        raise SearchRunError(f"--device {dev!r} is a packaged device with published figures; name your own device")
    recs = [r for r in Journal(os.path.join(out, JOURNAL_NAME)).records()
            if r.get("value") is not None and r.get("checkpoint")]
    if not recs:
        raise SearchRunError(f"{out}: no successful candidate with a checkpoint in {JOURNAL_NAME}")
    order = sorted(range(len(recs)), key=lambda i: (-recs[i]["value"], i))
    winners = [recs[i] for i in order[:top]]
    with open(os.path.join(out, SPACE_NAME), encoding="utf-8") as f:
        space = SearchSpace.from_dict(json.load(f))
    prefix = prefix or _prefix(out)

    entries = {}
    rows = []
    for rec in winners:
        if not os.path.exists(rec["checkpoint"]):
            raise SearchRunError(f"candidate {rec['candidate_id']}: checkpoint {rec['checkpoint']} is missing")
        name = normalize_name(f"{prefix}-{rec['candidate_id'][:8]}")
        spec = space.decode(rec["vector"])
        spec = spec.replace(resolution=int(rec.get("img_size") or spec.resolution),
                            num_classes=int(rec.get("num_classes") or spec.num_classes), name=name)
        if not measure and rec.get("latency_ms") is None:
            raise SearchRunError(f"candidate {rec['candidate_id']} has no table latency in the pool (sampled "
                                 f"without --lut); measure it (drop --no-measure)")
        from ...model import build_model

        entries[name] = {
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
        rows.append({"name": name, "top1": float(rec["value"]), "dataset": rec.get("dataset"),
                     "checkpoint": entries[name]["checkpoint"], "candidate_id": rec["candidate_id"],
                     "table_latency_ms": rec.get("latency_ms"), "vector_resolution": int(rec["vector"][0])})

    def add_models(data: Dict[str, Any]) -> None:
        data["models"].update(entries)
        if not measure:
            data["devices"].setdefault(dev, {"name": dev, "kind": "unknown", "engine": "latency table estimate",
                                             "source": "gpunet search export --no-measure (table estimates)"})
            per = data["latency"].setdefault(dev, {})
            for row in rows:
                per[row["name"]] = [{"latency_ms": float(row["table_latency_ms"]), "batch": 1, "precision": "fp32",
                                     "engine": "latency table estimate", "kind": "estimated",
                                     "resolution": row["vector_resolution"],
                                     "source": "the search pool's latency-table estimate (gpunet sample --lut)"}]

    path = update_user_registry(add_models, registry_path)
    if measure:
        from ...latency import benchmark
        from ...latency.tiers import save_tiers

        results = [benchmark(row["name"], backend=backend, iters=iters, warmup=warmup) for row in rows]
        save_tiers(results, dev, registry_path)
        for row, r in zip(rows, results):
            row.update(latency_ms=r.median_ms, latency_kind="measured")
    else:
        for row in rows:
            row.update(latency_ms=row["table_latency_ms"], latency_kind="estimated")
    for row in rows:
        row.update(device=dev, registry=path)
    return rows
