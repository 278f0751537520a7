"""The model hub's index: models, devices, and latency tiers per device.

Packaged data (``gpunet/data/registry.json``) holds NVIDIA's seven networks with their
published figures. A user-local registry file (``$GPUNET_REGISTRY``, default
``$GPUNET_HOME/registry.json``, ``GPUNET_HOME`` defaulting to ``~/.cache/gpunet``) uses the
same schema and is merged over it: devices a user measured, models a search found.

Schema (``gpunet-registry/1``)::

    devices: {id: {name, kind, engine, precision, batch, source, ...}}
    models:  {name: {spec (path relative to the file, or an inline spec object), top1,
                     params, flops, resolution, crop_pct, distilled, teacher, source, ...}}
    latency: {device id: {model name: [{latency_ms, batch, precision, engine, kind, source, ...}]}}
"""
from __future__ import annotations

import contextlib
import copy
import dataclasses
import difflib
import json
import os
import threading
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Tuple

from ._checks import positive, positive_int
from .errors import BadInputError, GPUNetError
from .nvidia import parse_any as parse_spec
from .spec import NetworkSpec, SpecError

__all__ = [
    "ModelCard", "Registry", "UnknownNameError", "RegistryError", "get_registry", "list_models",
    "list_devices", "query", "normalize_name", "user_registry_path", "gpunet_home",
    "update_user_registry", "REGISTRY_SCHEMA",
]

REGISTRY_SCHEMA = "gpunet-registry/1"
_PACKAGED = os.path.join(os.path.dirname(__file__), "data", "registry.json")


class RegistryError(BadInputError, ValueError):
    """A registry file is malformed (the message names the file and the entry)."""


class UnknownNameError(GPUNetError, ValueError):
    """An unknown model or device name; the message lists valid choices and the closest one."""

    def __init__(self, what: str, name: str, choices: List[str]):
        self.name, self.choices = name, list(choices)
        close = difflib.get_close_matches(normalize_name(name), self.choices, n=1, cutoff=0.4)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        super().__init__(f"unknown {what} {name!r}.{hint} Valid {what}s: {', '.join(self.choices)}")


def normalize_name(name: str) -> str:
    """Case-insensitive, ``_`` and ``-`` interchangeable: ``GPUNet_0`` -> ``gpunet-0``."""
    return str(name).strip().lower().replace("_", "-")


def gpunet_home() -> str:
    return os.path.expanduser(os.environ.get("GPUNET_HOME") or os.path.join("~", ".cache", "gpunet"))


def user_registry_path() -> str:
    return os.path.expanduser(os.environ.get("GPUNET_REGISTRY") or os.path.join(gpunet_home(), "registry.json"))


@dataclass(frozen=True)
class ModelCard:
    """What a user needs to pick a model for a latency budget on a device."""

    name: str
    gpu: str
    latency_ms: Optional[float]
    top1: Optional[float]
    params: Optional[int]
    resolution: int
    flops: Optional[int] = None
    crop_pct: float = 1.0
    distilled: bool = False
    teacher: Optional[str] = None
    family: str = "standard"
    batch: int = 1
    precision: Optional[str] = None
    engine: Optional[str] = None
    latency_kind: Optional[str] = None
    latency_source: Optional[str] = None
    source: Optional[str] = None
    measurement: Dict[str, Any] = field(default_factory=dict)
    proxy: bool = False  # top-1 of a proxy training (smaller input or fewer epochs than the recipe's)
    training: Dict[str, Any] = field(default_factory=dict)  # a search winner's img_size / epochs trained

    def to_dict(self) -> Dict[str, Any]:
        return dataclasses.asdict(self)


def _read_json(path: str) -> Dict[str, Any]:
    try:
        with open(path, "r", encoding="utf-8") as f:
            data = json.load(f)
    except json.JSONDecodeError as e:
        raise RegistryError(f"{path}: not valid JSON ({e.msg} at line {e.lineno})") from e
    if not isinstance(data, dict):
        raise RegistryError(f"{path}: expected a JSON object")
    schema = data.get("schema", REGISTRY_SCHEMA)
    if schema != REGISTRY_SCHEMA:
        raise RegistryError(f"{path}: field 'schema' is {schema!r}, expected {REGISTRY_SCHEMA!r}")
    for section in ("devices", "models", "latency"):
        if not isinstance(data.get(section, {}), dict):
            raise RegistryError(f"{path}: field '{section}' must be an object")
    return data


def _check_entries(data: Dict[str, Any], path: str) -> None:
    for section in ("devices", "models"):
        for name, info in data.get(section, {}).items():
            if not isinstance(info, dict):
                raise RegistryError(f"{path}: {section}.{name} must be an object, got {type(info).__name__}")
    for dev, per_model in data.get("latency", {}).items():
        if not isinstance(per_model, dict):
            raise RegistryError(f"{path}: latency.{dev} must be an object of model -> entries")
        for model, entries in per_model.items():
            if not isinstance(entries, list):
                raise RegistryError(f"{path}: latency.{dev}.{model} must be a list of entries")
            for i, e in enumerate(entries):
                lat = e.get("latency_ms") if isinstance(e, dict) else None
                if not isinstance(lat, (int, float)) or isinstance(lat, bool) or lat <= 0:
                    raise RegistryError(f"{path}: latency.{dev}.{model}[{i}].latency_ms must be a "
                                        f"positive number, got {lat!r}")


def _entry_key(entry: Dict[str, Any]) -> Tuple[int, Optional[str], Optional[str]]:
    return entry.get("batch", 1), entry.get("precision"), entry.get("engine")


class Registry:
    """Packaged registry merged with the user's. Models keep packaged order, then user order."""

    def __init__(self, packaged_path: str = _PACKAGED, user_path: Optional[str] = None):
        self.packaged_path = packaged_path
        self.user_path = user_path
        base = _read_json(packaged_path)
        self.devices: Dict[str, Dict[str, Any]] = {}
        self.models: Dict[str, Dict[str, Any]] = {}
        self.latency: Dict[str, Dict[str, List[Dict[str, Any]]]] = {}
        self._merge(base, packaged_path, origin="packaged")
        if user_path and os.path.exists(user_path):
            user = _read_json(user_path)
            self._merge(user, user_path, origin="user")
        self._specs: Dict[str, NetworkSpec] = {}

    def _merge(self, data: Dict[str, Any], path: str, origin: str) -> None:
        _check_entries(data, path)
        base_dir = os.path.dirname(os.path.abspath(path))
        for dev, info in data.get("devices", {}).items():
            d = normalize_name(dev)
            self.devices[d] = dict(self.devices.get(d, {}), **info, origin=origin)
        for name, info in data.get("models", {}).items():
            n = normalize_name(name)
            if "spec" not in info and n not in self.models:
                raise RegistryError(f"{path}: models.{name} has no 'spec'")
            entry = dict(self.models.get(n, {}), **info, origin=origin)
            if isinstance(info.get("spec"), str):
                entry["spec_path"] = os.path.join(base_dir, info["spec"])
            for key in ("checkpoint", "folder"):  # relative: beside this registry file (relocatable)
                if isinstance(info.get(key), str):
                    entry[key] = os.path.join(base_dir, info[key])
            self.models[n] = entry
        for dev, per_model in data.get("latency", {}).items():
            target = self.latency.setdefault(normalize_name(dev), {})
            for model, entries in per_model.items():
                m = normalize_name(model)
                merged = list(target.get(m, []))
                for e in entries:  # a user entry replaces the one with the same batch/precision/engine
                    merged = [x for x in merged if _entry_key(x) != _entry_key(e)] + [dict(e, origin=origin)]
                target[m] = merged

    # -- lookups ------------------------------------------------------------------------
    def list_models(self) -> List[str]:
        return list(self.models)

    def list_devices(self) -> List[str]:
        return sorted(self.devices)

    def resolve_model(self, name: str) -> str:
        n = normalize_name(name)
        if n not in self.models:
            raise UnknownNameError("model", name, self.list_models())
        return n

    def resolve_device(self, device: str) -> str:
        d = normalize_name(device)
        if d not in self.devices:
            raise UnknownNameError("device", device, self.list_devices())
        return d

    def model_info(self, name: str) -> Dict[str, Any]:
        return copy.deepcopy(self.models[self.resolve_model(name)])

    def spec(self, name: str) -> NetworkSpec:
        n = self.resolve_model(name)
        if n not in self._specs:
            info = self.models[n]
            raw = info["spec"]
            if isinstance(raw, str):
                path = info["spec_path"]
                try:
                    with open(path, "r", encoding="utf-8") as f:
                        data = json.load(f)
                except FileNotFoundError as e:
                    raise RegistryError(f"model {n!r}: spec file {path} not found") from e
                except (json.JSONDecodeError, UnicodeDecodeError) as e:
                    raise RegistryError(f"model {n!r}: spec file {path} is not valid JSON ({e})") from e
                spec = parse_spec(data, source=path)
            else:
                spec = parse_spec(raw, source=f"registry model {n!r}")
            self._specs[n] = spec.replace(name=n)
        return self._specs[n]

    def latency_entries(self, name: str, device: str) -> List[Dict[str, Any]]:
        return list(self.latency.get(self.resolve_device(device), {}).get(self.resolve_model(name), []))

    def _pick_entry(self, device: str, model: str, batch: int, engine: Optional[str]) -> Optional[Dict[str, Any]]:
        entries = [e for e in self.latency.get(device, {}).get(model, []) if e.get("batch", 1) == batch]
        if engine is not None:
            entries = [e for e in entries if normalize_name(e.get("engine", "")).startswith(normalize_name(engine))]
        elif entries:
            default = self.devices.get(device, {}).get("engine")
            preferred = [e for e in entries if e.get("engine") == default]
            entries = preferred or entries
        return entries[0] if entries else None

    def card(self, name: str, gpu: str = "gv100", batch: int = 1, engine: Optional[str] = None) -> ModelCard:
        """The model's card on ``gpu`` (latency None when it has no entry for that device)."""
        n, d = self.resolve_model(name), self.resolve_device(gpu)
        info = self.models[n]
        e = self._pick_entry(d, n, batch, engine) or {}
        measured = {k: v for k, v in e.items()
                    if k not in ("latency_ms", "batch", "precision", "engine", "kind", "source", "origin")}
        return ModelCard(
            name=n, gpu=d, latency_ms=e.get("latency_ms"), top1=info.get("top1"), params=info.get("params"),
            # a tier measured at another input size says so: the card shows the size it holds for
            resolution=e.get("resolution") or info.get("resolution") or self.spec(n).resolution,
            flops=info.get("flops"),
            crop_pct=info.get("crop_pct", 1.0), distilled=bool(info.get("distilled", False)),
            teacher=info.get("teacher"), family=info.get("family", "standard"), batch=batch,
            precision=e.get("precision"), engine=e.get("engine"), latency_kind=e.get("kind"),
            latency_source=e.get("source"), source=info.get("source"), measurement=measured,
            proxy=bool(info.get("proxy", False)), training=dict(info.get("training") or {}))

    def query(self, max_latency_ms: Optional[float] = None, gpu: str = "gv100", min_top1: Optional[float] = None,
              distilled: Optional[bool] = None, batch: int = 1, engine: Optional[str] = None,
              include_proxy: bool = False) -> List[ModelCard]:
        """Models with a latency entry on ``gpu`` that fit the budget: best top-1 first, then fastest.

        Models whose top-1 comes from a proxy training (a search winner trained smaller or shorter
        than its recipe) are not ranked next to full trainings unless ``include_proxy``."""
        d = self.resolve_device(gpu)
        if max_latency_ms is not None:
            positive(max_latency_ms, "max_latency_ms")
        positive_int(batch, "batch")
        cards = []
        for n in self.models:
            if self._pick_entry(d, n, batch, engine) is None:
                continue
            c = self.card(n, d, batch, engine)
            if max_latency_ms is not None and c.latency_ms > max_latency_ms:
                continue
            if min_top1 is not None and (c.top1 is None or c.top1 < min_top1):
                continue
            if distilled is not None and c.distilled != distilled:
                continue
            if c.proxy and not include_proxy:
                continue
            cards.append(c)
        cards.sort(key=lambda c: (-(c.top1 if c.top1 is not None else float("-inf")), c.latency_ms))
        return cards


_lock = threading.Lock()
_cache: Dict[Tuple[str, Optional[float]], Registry] = {}


def get_registry() -> Registry:
    """The merged registry, re-read when the user file changes."""
    path = user_registry_path()
    try:
        mtime: Optional[float] = os.stat(path).st_mtime_ns
    except FileNotFoundError:
        mtime = None
    key = (path, mtime)
    with _lock:
        if key not in _cache:
            _cache.clear()
            _cache[key] = Registry(_PACKAGED, path)
        return _cache[key]


def list_models() -> List[str]:
    """Hub model names, e.g. ``['gpunet-0', 'gpunet-1', ...]`` (plus user-registered ones)."""
    return get_registry().list_models()


def list_devices() -> List[str]:
    """Devices with latency tiers: ``gv100``, ``v100``, ``a100`` and any the user measured."""
    return get_registry().list_devices()


def query(max_latency_ms: Optional[float] = None, gpu: str = "gv100", min_top1: Optional[float] = None,
          distilled: Optional[bool] = None, batch: int = 1, engine: Optional[str] = None,
          include_proxy: bool = False) -> List[ModelCard]:
    """Model cards that fit a latency budget on a device, best top-1 first (then fastest);
    proxy-trained search winners only with ``include_proxy=True``."""
    return get_registry().query(max_latency_ms, gpu, min_top1, distilled, batch, engine, include_proxy)


def update_user_registry(change: Callable[[Dict[str, Any]], None], path: Optional[str] = None) -> str:
    """Apply ``change(data)`` to the user registry under a file lock and write it atomically.

    ``data`` has ``devices`` / ``models`` / ``latency`` sections in the packaged schema.
    The merged result is validated before anything is written. Returns the file path.
    """
    from ._io import atomic_write_text, file_lock

    path = path or user_registry_path()
    with file_lock(path):
        if os.path.exists(path):
            data = _read_json(path)
        else:
            data = {"schema": REGISTRY_SCHEMA}
        for section in ("devices", "models", "latency"):
            data.setdefault(section, {})
        change(data)
        data["schema"] = REGISTRY_SCHEMA
        text = json.dumps(data, indent=1, sort_keys=False) + "\n"
        # validate: the merged registry must load and every new spec must parse
        probe = path + ".check"
        try:
            with open(probe, "w", encoding="utf-8") as f:
                f.write(text)
            reg = Registry(_PACKAGED, probe)
            for n in data["models"]:
                try:
                    reg.spec(n)
                except SpecError as e:
                    raise RegistryError(f"{path}: models.{n}: {e}") from e
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(probe)
        atomic_write_text(path, text)
    return path
