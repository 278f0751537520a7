"""Winners of a search into the hub: the K best journal lines (or each latency group's best, the
Pareto front) become user-registry models that say what they are.

Each model gets the searched network (decoded from its vector: the resolution the latency table
and the groups were computed at; the class count it was trained with), its accuracy and what
that accuracy is (``training``: the input size and epochs it was trained for, against the
recipe's; ``proxy: true`` for any shorter or smaller training, and ``gpunet.query`` leaves such
models out unless asked), the split it was measured on (the validation split that selected it,
or ``test_dir``, a split the search never saw), its weights (a timm / Hugging Face model folder
beside the user registry, ``models/<name>/``: the entry survives moving or deleting the search
folder, and timm builds it as ``gpunet_<name>`` or ``local-dir:``) and a latency tier on the given device:
measured end to end with :func:`gpunet.latency.benchmark` at the pool's batch and precision, or
the pool's table estimate marked ``kind: estimated``.

The pool's latencies come from one device's table; the export refuses another device (a
different fingerprint) unless ``force=True``, and tells, per winner, whether its measured latency
falls inside the latency group it was searched in.
"""
from __future__ import annotations

import json
import os
import re
from typing import Any, Dict, List, Optional

from ..._checks import argument_error, positive_int
from .journal import JOURNAL_NAME, Journal
from .driver import SPACE_NAME, SearchRunError, read_pool_facts, read_settings

__all__ = ["export_winners", "WINNERS_DIR"]

WINNERS_DIR = "models"  # beside the user registry: models/<model>/ (a timm model folder)
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


# ------------------------------------------------------------------------------ which lines

def _successes(out: str) -> List[Dict[str, Any]]:
    recs = [r for r in Journal(os.path.join(out, JOURNAL_NAME)).records()
            if r.get("value") is not None and r.get("checkpoint")]
    if not recs:
        raise SearchRunError(f"{out}: no successful candidate with a checkpoint in {JOURNAL_NAME}")
    return recs


def _best_first(recs: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
    order = sorted(range(len(recs)), key=lambda i: (-recs[i]["value"], i))  # ties: journal order
    return [recs[i] for i in order]


def _top_records(out: str, top: int) -> List[Dict[str, Any]]:
    """The ``top`` best journal lines with a value and a checkpoint (best first)."""
    return _best_first(_successes(out))[:top]


def _group_bests(out: str) -> List[Dict[str, Any]]:
    """The best line of every latency group the search ran (the front), in group order."""
    recs = _successes(out)
    if any(r.get("group") is None for r in recs):
        raise SearchRunError(f"pareto: {out} was not searched by latency groups (its lines have no 'group'); "
                             f"run the search with group='all' (--group all) or a list of groups")
    best: Dict[int, Dict[str, Any]] = {}
    for r in _best_first(recs):
        best.setdefault(int(r["group"]), r)
    return [best[g] for g in sorted(best)]


# ------------------------------------------------------------------------------ checks

def _check_record(rec: Dict[str, Any], measure: bool) -> None:
    if not os.path.exists(rec["checkpoint"]):
        raise SearchRunError(f"candidate {rec['candidate_id']}: checkpoint {rec['checkpoint']} is missing")
    if not measure and rec.get("latency_ms") is None:
        raise SearchRunError(f"measure=False needs the pool's table latency, but candidate {rec['candidate_id']} "
                             f"has none (its pool was sampled without a lut); measure it (measure=True)")


def _device_id_of(device: str, backend: str, measure: bool, registry_path: Optional[str]) -> Optional[str]:
    """The fingerprint id the tiers will be saved under: this machine's when measuring, else the
    registry's record of ``device`` (None for a device it does not know yet)."""
    if measure:
        from ...latency import device_fingerprint

        return device_fingerprint(backend)["id"]
    from ...registry import Registry, user_registry_path

    reg = Registry(user_path=registry_path or user_registry_path())
    return (reg.devices.get(device, {}).get("fingerprint") or {}).get("id")


def _check_device(facts: Dict[str, Any], device: str, backend: str, measure: bool, force: bool,
                  registry_path: Optional[str]) -> None:
    """Refuse a device other than the one whose table made the pool's latencies (unless ``force``)."""
    source = facts.get("source") or {}
    table_id = source.get("lut_device_id")
    if not table_id or force:
        return
    mine = _device_id_of(device, backend, measure, registry_path)
    if mine is not None and mine != table_id:
        where = f"this machine with backend {backend!r}" if measure else f"device {device!r} in the registry"
        raise argument_error("device", f"device: the pool's latencies (and so the latency groups searched) come from "
                             f"a table measured on device {table_id} ({source.get('lut_backend')}), but {where} has "
                             f"fingerprint {mine}; export on the table's device, or force=True to publish figures "
                             f"of another device", SearchRunError)


# ------------------------------------------------------------------------------ one entry

def _training(rec: Dict[str, Any], resolution: int) -> Dict[str, Any]:
    """How the accuracy was obtained; ``proxy`` when the training was smaller or shorter than the recipe's."""
    from ...train.recipes import RECIPES

    img_size = int(rec.get("img_size") or resolution)
    epochs = int(rec.get("epochs") or 0)
    full = int(rec.get("recipe_epochs") or RECIPES["paper"]["epochs"])
    return {"img_size": img_size, "epochs": epochs, "recipe": rec.get("recipe"), "recipe_epochs": full,
            "stopped_early": bool(rec.get("stopped_early", False)),
            "proxy": img_size < resolution or epochs < full}


def _model_entry(rec: Dict[str, Any], name: str, space, settings: Dict[str, Any], out: str) -> Dict[str, Any]:
    """The registry entry of one winner: the searched network, its training facts, top-1, checkpoint."""
    from ...complexity import count_params
    from ...model import build_model

    spec = space.decode(rec["vector"])
    spec = spec.replace(num_classes=int(rec.get("num_classes") or spec.num_classes), name=name)
    training = _training(rec, spec.resolution)
    return {
        "spec": spec.to_dict(), "top1": round(float(rec["value"]), 4), "dataset": rec.get("dataset"),
        "top1_dataset": rec.get("data_dir"), "top1_split": "val (the split the search selected on)",
        "resolution": spec.resolution, "proxy": training["proxy"], "training": training,
        "crop_pct": float(rec.get("crop_pct") or 1.0), "interpolation": rec.get("interpolation") or "bicubic",
        "checkpoint": os.path.abspath(rec["checkpoint"]), "params": count_params(build_model(spec)),
        "distilled": False,
        "source": f"gpunet search {os.path.abspath(out)}, candidate {rec['candidate_id']} "
                  f"({settings['algorithm']}, trial {rec['trial_id']})",
        "search": {"dir": os.path.abspath(out), "candidate_id": rec["candidate_id"], "vector": rec["vector"],
                   "algorithm": settings["algorithm"], "group": rec.get("group"),
                   "table_latency_ms": rec.get("latency_ms"), "val_top1": float(rec["value"])},
    }


def _test_top1(entry: Dict[str, Any], test_dir: str) -> None:
    """Replace the entry's top-1 by its accuracy on ``test_dir`` (at the size it was trained at)."""
    from ...checkpoint import load_checkpoint
    from ...model import build_model
    from ...spec import parse_spec
    from ...train.evaluate import evaluate

    if not os.path.isdir(test_dir):
        raise SearchRunError(f"test_dir: {test_dir!r} is not a folder (class folders, or a test/ split of them)")
    spec = parse_spec(entry["spec"], source="winner spec").replace(resolution=entry["training"]["img_size"])
    model = build_model(spec)
    load_checkpoint(model, entry["checkpoint"], spec)
    res = evaluate(model, test_dir, split="test", img_size=spec.resolution, crop_pct=entry["crop_pct"],
                   interpolation=entry["interpolation"], workers=0, progress=False)
    entry.update(top1=round(res["top1"], 4), top1_dataset=os.path.abspath(test_dir),
                 top1_split=f"test ({res['images']} images the search never selected on)")


def _metrics(entry: Dict[str, Any]) -> Dict[str, Any]:
    """The folder card's metrics: the entry's top-1, the split and dataset it was measured on."""
    dataset = entry.get("dataset") or os.path.basename(str(entry.get("top1_dataset") or "").rstrip(os.sep)) or "custom"
    return dict(dataset=dataset, dataset_name=dataset, split=entry["top1_split"], top1=entry["top1"],
                name="top-1 accuracy" + (" (proxy training)" if entry["proxy"] else ""))


def _write_folder(entry: Dict[str, Any], name: str, registry_file: str) -> None:
    """Write the winner as a timm / Hugging Face model folder beside the registry (``models/<name>/``,
    relocatable: ``timm.create_model("local-dir:...")``) and point the entry at it."""
    from ..._io import atomic_dir, sha256_file
    from ...checkpoint import load_checkpoint
    from ...folders import WEIGHTS_NAME, save_pretrained
    from ...model import build_model, gpunet_pretrained_cfg
    from ...registry import Registry
    from ...spec import parse_spec

    spec = parse_spec(entry["spec"], source=f"winner {name} spec")
    model = build_model(spec)
    load_checkpoint(model, entry["checkpoint"], spec)
    model.pretrained_cfg = gpunet_pretrained_cfg(spec, crop_pct=entry["crop_pct"],
                                                 interpolation=entry["interpolation"], description=entry["source"])
    rel = f"{WINNERS_DIR}/{name}"
    dest = os.path.join(os.path.dirname(os.path.abspath(registry_file)), WINNERS_DIR, name)
    with atomic_dir(dest) as tmp:
        save_pretrained(model, tmp, metrics=_metrics(entry), registry=Registry(),
                        weights=f"the checkpoint of search winner `{name}` ({entry['source']})")
        digest = sha256_file(os.path.join(tmp, WEIGHTS_NAME))
    entry["search"]["checkpoint"] = entry["checkpoint"]
    entry.update(checkpoint=f"{rel}/{WEIGHTS_NAME}", checkpoint_sha256=digest, folder=rel)


# ------------------------------------------------------------------------------ registry + latency

def _row(rec: Dict[str, Any], name: str, entry: Dict[str, Any], facts: Dict[str, Any]) -> Dict[str, Any]:
    group = rec.get("group")
    return {"name": name, "top1": entry["top1"], "top1_split": entry["top1_split"], "val_top1": float(rec["value"]),
            "dataset": rec.get("dataset"), "proxy": entry["proxy"], "training": entry["training"],
            "checkpoint": entry["checkpoint"], "folder": entry["folder"], "candidate_id": rec["candidate_id"], "group": group,
            "group_range_ms": (facts.get("group_ranges_ms") or {}).get(str(group)),
            "table_latency_ms": rec.get("latency_ms"), "resolution": entry["resolution"]}


def _register(entries: Dict[str, Dict[str, Any]], rows: List[Dict[str, Any]], device: str, estimate: bool,
              registry_path: str, source: Dict[str, Any]) -> str:
    """Write the models (and, when ``estimate``, their table estimates on ``device``) in one update."""
    from ...latency.tiers import add_estimated_tiers, estimated_entry
    from ...registry import update_user_registry

    def change(data: Dict[str, Any]) -> None:
        data["models"].update(entries)
        if estimate:
            tiers = {row["name"]: estimated_entry(row["table_latency_ms"], row["resolution"], _ESTIMATE_SOURCE,
                                                  batch=int(source.get("batch", 1)),
                                                  precision=str(source.get("precision", "fp32")))
                     for row in rows}
            add_estimated_tiers(data, device, tiers, _ESTIMATE_DEVICE_SOURCE)
            if source.get("lut_device_id"):
                data["devices"][device].setdefault("table_device_id", source["lut_device_id"])

    return update_user_registry(change, registry_path)


def _register_with_timm(registry_path: str) -> None:
    """timm builds the new winners in this process too (``gpunet_<name>``), not only after the next import."""
    from ...registry import Registry
    from ...timm_models import register_user_models

    register_user_models(Registry(user_path=registry_path))


def _measure(rows: List[Dict[str, Any]], device: str, backend: str, iters: int, warmup: int,
             registry_path: str, source: Dict[str, Any]) -> None:
    """Benchmark the registered winners end to end (the pool's batch / precision); save measured tiers."""
    from ...latency import benchmark
    from ...latency.tiers import save_tiers

    batch, precision = int(source.get("batch", 1)), str(source.get("precision", "fp32"))
    results = [benchmark(row["name"], backend=backend, batch_size=batch, precision=precision, iters=iters,
                         warmup=warmup) for row in rows]
    save_tiers(results, device, registry_path)
    for row, r in zip(rows, results):
        row.update(latency_ms=r.median_ms, latency_kind="measured")


def _place_in_groups(rows: List[Dict[str, Any]]) -> None:
    """``in_group``: whether each winner's latency falls inside its group's range (None: no range)."""
    for row in rows:
        rng = row["group_range_ms"]
        row["in_group"] = None if rng is None else bool(rng[0] <= row["latency_ms"] < rng[1])


def export_winners(out: str, top: int = 1, device: str = "", backend: str = "onnxruntime", measure: bool = True,
                   prefix: Optional[str] = None, iters: int = 50, warmup: int = 10,
                   registry_path: Optional[str] = None, pareto: bool = False, test_dir: Optional[str] = None,
                   force: bool = False) -> List[Dict[str, Any]]:
    """Register the ``top`` best candidates of the search in ``out`` (``pareto``: each latency
    group's best instead); returns one row per model, with ``in_group`` when groups were searched."""
    from ...latency.tiers import check_device_name
    from ...registry import normalize_name, user_registry_path

    settings = _read_settings(out)
    top = positive_int(top, "top", SearchRunError)
    dev = check_device_name(device, "device", SearchRunError)
    registry_path = registry_path or user_registry_path()
    facts = read_pool_facts(out)
    _check_device(facts, dev, backend, measure, force, registry_path)
    winners = _group_bests(out) if pareto else _top_records(out, top)
    space, prefix = _read_space(out), prefix or _prefix(out)
    entries, rows = {}, []
    for rec in winners:
        _check_record(rec, measure)
        name = normalize_name(f"{prefix}-{rec['candidate_id'][:8]}")
        entries[name] = _model_entry(rec, name, space, settings, out)
        if test_dir:
            _test_top1(entries[name], test_dir)
        _write_folder(entries[name], name, registry_path)
        rows.append(_row(rec, name, entries[name], facts))
    source = facts.get("source") or {}
    path = _register(entries, rows, dev, not measure, registry_path, source)
    _register_with_timm(path)
    if measure:
        _measure(rows, dev, backend, iters, warmup, registry_path, source)
    else:
        for row in rows:
            row.update(latency_ms=row["table_latency_ms"], latency_kind="estimated")
    _place_in_groups(rows)
    for row in rows:
        row.update(device=dev, registry=path)
    return rows
