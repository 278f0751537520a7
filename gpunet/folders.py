"""timm / Hugging Face model folders, in and out: :func:`save_pretrained`, :func:`load_folder`, :func:`push_folder`.

A folder is what timm writes and reads (``timm.create_model("local-dir:DIR")``, ``"hf-hub:ORG/NAME"``)::

    config.json        architecture ("gpunet_1" for NVIDIA's networks, "gpunet_spec" for any other),
                       num_classes, num_features, global_pool, pretrained_cfg (timm's data config),
                       model_args (spec: the gpunet spec, num_classes, in_chans, global_pool) and a
                       "gpunet" block (format, version, spec sha256, where the weights come from)
    model.safetensors  the state_dict in gpunet's key names (metadata: the architecture's sha256)
    README.md          the model card, Hugging Face metadata (YAML) at the top

The timm entry points (:mod:`gpunet.timm_models`) build from ``model_args`` and load the weights
through :func:`load_cfg_weights`, so timm and :func:`gpunet.get_model` give the same model. A bad
spec in ``config.json`` fails naming the file and the field; a damaged weight file names the file.
"""
from __future__ import annotations

import contextlib
import functools
import hashlib
import importlib
import json
import os
from dataclasses import dataclass
from typing import Any, Dict, Iterator, List, Optional, Tuple

from torch import nn

from .checkpoint import extract_state_dict, load_state_dict_into, read_checkpoint, to_gpunet_state_dict
from .errors import BadInputError, GPUNetError
from .model import GENERIC_ARCHITECTURE, GPUNet, gpunet_pretrained_cfg
from .nvidia import load_any, parse_any
from .registry import Registry, get_registry
from .spec import NetworkSpec

__all__ = ["save_pretrained", "folder_config", "read_folder_config", "load_folder", "push_folder",
           "entry_spec", "entry_pretrained_cfg", "load_cfg_weights", "timm_architecture", "weights_key",
           "registry_metrics", "FolderConfig", "FolderError", "HubError", "CONFIG_NAME", "WEIGHTS_NAME",
           "README_NAME", "WEIGHT_FILES", "FOLDER_FORMAT"]

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
README_NAME = "README.md"
FOLDER_FORMAT = "gpunet-folder/1"
#: weight files a folder may hold, in timm's order of preference (timm's own save_for_hf may write the .bin)
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin", "pytorch_model.pth", "model.pth")
#: safetensors metadata key: :func:`weights_key` of the spec the weights were saved for
ARCH_KEY = "gpunet_arch_sha256"
_SOURCE_KEYS = ("url", "file", "state_dict", "hf_hub_id", "hf_hub_filename", "source")
_TUPLE_KEYS = ("input_size", "test_input_size", "min_input_size", "mean", "std", "pool_size", "test_pool_size")


class FolderError(BadInputError, ValueError):
    """A model folder (or Hub repository) is not one gpunet can build: the message names the file."""


class HubError(GPUNetError, RuntimeError):
    """The Hugging Face Hub could not be reached or refused a request; names the endpoint and repo."""


@dataclass(frozen=True)
class FolderConfig:
    """A checked ``config.json``: what it builds, and where it was read (``source``, for messages)."""

    location: str
    source: str
    architecture: str
    spec: NetworkSpec
    model_args: Dict[str, Any]
    pretrained_cfg: Dict[str, Any]
    data: Dict[str, Any]


# -- architecture ------------------------------------------------------------------------------

@functools.lru_cache(maxsize=1)
def _packaged() -> Registry:
    return Registry()


def _same_network(a: NetworkSpec, b: NetworkSpec) -> bool:
    """Same layers, family and resolution (class count and name aside)."""
    return a.replace(num_classes=b.num_classes, name=b.name).fingerprint() == b.fingerprint()


def _nvidia_spec(architecture: str) -> Optional[NetworkSpec]:
    """The packaged spec of NVIDIA's network timm calls ``architecture`` (``gpunet_0``), else None."""
    reg = _packaged()
    name = architecture.replace("_", "-")
    if name in reg.models and reg.models[name].get("nvidia_config"):
        return reg.spec(name)
    return None


def timm_architecture(spec: NetworkSpec) -> str:
    """The timm entry point a folder of ``spec`` names: ``gpunet_1`` when the network is one of
    NVIDIA's seven (any class count), else :data:`~gpunet.model.GENERIC_ARCHITECTURE`."""
    reg = _packaged()
    for n in reg.list_models():
        if reg.models[n].get("nvidia_config") and _same_network(reg.spec(n), spec):
            return n.replace("-", "_")
    return GENERIC_ARCHITECTURE


def weights_key(spec: NetworkSpec) -> str:
    """sha256 of the network a state_dict belongs to: the spec without its name, input resolution
    and class count (the classifier's shape is checked by the strict load, or it is replaced)."""
    d = spec.to_dict()
    for k in ("name", "resolution", "num_classes"):
        d.pop(k, None)
    return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()


def entry_spec(architecture: str, spec: Any = None, source: str = "spec argument") -> NetworkSpec:
    """The spec a timm entry point builds: ``spec`` (a NetworkSpec, a spec dict as in
    ``model_args``, or a spec file) or NVIDIA's network ``architecture`` names.

    Raises :class:`~gpunet.spec.SpecError` naming ``source`` and the field for a bad spec, and
    :class:`FolderError` when the spec contradicts the architecture's name."""
    nvidia = _nvidia_spec(architecture)
    if spec is None:
        if nvidia is None:
            raise FolderError(f"{source}: architecture {architecture!r} needs model_args.spec (the gpunet spec "
                              f"of the network)")
        return nvidia
    if isinstance(spec, NetworkSpec):
        spec = spec.validate(source=source)
    elif isinstance(spec, (str, os.PathLike)):
        spec = load_any(spec)
    else:
        spec = parse_any(spec, source=f"{source} model_args.spec")
    if nvidia is not None and not _same_network(nvidia, spec):
        raise FolderError(f"{source}: model_args.spec is not {architecture}'s network (fingerprint "
                          f"{spec.fingerprint()[:16]}); name architecture {GENERIC_ARCHITECTURE!r} for any other")
    return spec


def _as_tuples(cfg: Dict[str, Any]) -> Dict[str, Any]:
    """JSON lists back to the tuples timm's configs hold (``input_size``, ``mean``, ...)."""
    return {k: tuple(v) if k in _TUPLE_KEYS and isinstance(v, list) else v for k, v in cfg.items()}


def entry_pretrained_cfg(architecture: str, spec: NetworkSpec, cfg: Any) -> Any:
    """The ``pretrained_cfg`` a timm entry point passes on: a folder's (lists made tuples), the
    spec's own for the generic entry point, else ``cfg`` as given (timm resolves the registry's)."""
    if hasattr(cfg, "to_dict"):
        cfg = cfg.to_dict()
    if isinstance(cfg, dict):
        return _as_tuples(cfg)
    if architecture == GENERIC_ARCHITECTURE:
        return gpunet_pretrained_cfg(spec, architecture=architecture)
    return cfg


def cfg_source(cfg: Any) -> str:
    """The config file a ``pretrained_cfg`` came from, as error messages name it."""
    if isinstance(cfg, dict) and cfg.get("source") == "local-dir" and cfg.get("file"):
        return os.path.join(cfg["file"], CONFIG_NAME)
    if isinstance(cfg, dict) and cfg.get("source") == "hf-hub" and cfg.get("hf_hub_id"):
        return f"hf-hub:{cfg['hf_hub_id']}/{CONFIG_NAME}"
    return "spec argument"


# -- saving ------------------------------------------------------------------------------------

def _describe(model: nn.Module) -> Tuple[NetworkSpec, Dict[str, Any]]:
    """The spec (with the model's class count) and ``model_args`` that rebuild ``model``; refuses a
    model whose layers no longer match its spec (pruned, or a layer replaced)."""
    if not isinstance(model, GPUNet):
        raise TypeError(f"save_pretrained takes a GPUNet (gpunet.get_model, timm.create_model('gpunet_*')), got "
                        f"{type(model).__name__}; for a features_only wrapper save the classifier model")
    spec = model.spec.replace(num_classes=model.num_classes)
    pool = model.global_pool.pool_type
    ref = GPUNet(spec, in_chans=model.in_chans, global_pool=pool, device="meta")
    own, want = model.state_dict(), ref.state_dict()
    bad = [k for k in set(own) | set(want) if k not in own or k not in want or own[k].shape != want[k].shape]
    if bad:
        raise ValueError(f"the model no longer matches its spec ({len(bad)} tensors differ, e.g. {sorted(bad)[:3]}): "
                         f"pruned (prune_intermediate_layers) or with replaced layers; save the full network")
    args: Dict[str, Any] = dict(spec=spec.to_dict(), num_classes=model.num_classes, in_chans=model.in_chans,
                                global_pool=pool)
    if model.output_stride != ref.output_stride:
        args["output_stride"] = model.output_stride
    return spec, args


def registry_metrics(model: nn.Module, registry: Optional[Registry] = None) -> Optional[Dict[str, Any]]:
    """The registry's top-1 (and its dataset) for a model holding that hub model's own weights
    (``model.hub_weights``: set by :func:`gpunet.get_model` / timm when they load NVIDIA's published
    weights or a search winner's checkpoint) with its classifier unchanged; else None."""
    name = getattr(model, "hub_weights", None)
    reg = registry or get_registry()
    if not name or name not in reg.models or reg.spec(name).num_classes != getattr(model, "num_classes", None):
        return None
    info = reg.model_info(name)
    if info.get("top1") is None:
        return None
    if info.get("nvidia_config"):
        return dict(dataset="imagenet-1k", dataset_name="ImageNet-1k", split="validation", top1=info["top1"],
                    name="top-1 accuracy")
    if not info.get("dataset"):
        return None
    return dict(dataset=info["dataset"], dataset_name=info["dataset"], split=info.get("top1_split"),
                top1=info["top1"], name="top-1 accuracy" + (" (proxy training)" if info.get("proxy") else ""))


def _weights_line(model: nn.Module, spec: NetworkSpec, reg: Registry) -> str:
    name = getattr(model, "hub_weights", None)
    if not name or name not in reg.models:
        return "not a hub model's own weights (random init, or trained outside gpunet's registry)"
    what = ("NVIDIA's published weights" if reg.models[name].get("nvidia_config")
            else "the registry checkpoint") + f" of `{name}`, loaded by gpunet"
    if reg.spec(name).num_classes != spec.num_classes:
        what += f", with a new {spec.num_classes}-class classifier"
    return what


def _export_cfg(model: GPUNet, spec: NetworkSpec) -> Dict[str, Any]:
    """The model's ``pretrained_cfg`` as the folder's: no weight locations, the current class count
    and input channels (timm's own export does the same)."""
    src = dict(getattr(model, "pretrained_cfg", None) or gpunet_pretrained_cfg(model.spec))
    cfg = {k: v for k, v in src.items() if k not in _SOURCE_KEYS and k != "architecture"
           and (v is not None or k in ("pool_size", "first_conv", "classifier"))}
    if not getattr(model, "hub_weights", None):  # the tag names published weights these are not
        cfg.pop("tag", None)
    size = tuple(cfg.get("input_size") or (3, spec.resolution, spec.resolution))
    if src.get("num_classes") != model.num_classes:
        for k in ("label_names", "label_descriptions", "label_offset"):
            cfg.pop(k, None)
    cfg.update(num_classes=model.num_classes, input_size=(model.in_chans, *size[1:]), custom_load=False)
    return cfg


def folder_config(model: nn.Module, metrics: Optional[Dict[str, Any]] = None,
                  registry: Optional[Registry] = None, weights: Optional[str] = None) -> Dict[str, Any]:
    """``config.json`` of ``model``'s folder (timm's keys plus a ``gpunet`` block); ``weights`` is
    the line saying what the weights are (default: from ``model.hub_weights`` and the registry)."""
    from . import __version__

    spec, model_args = _describe(model)
    reg = registry or get_registry()
    config: Dict[str, Any] = dict(architecture=timm_architecture(spec), num_classes=model.num_classes,
                                  num_features=model.num_features)
    if model_args["global_pool"]:
        config["global_pool"] = model_args["global_pool"]
    config["model_args"] = model_args
    config["pretrained_cfg"] = _export_cfg(model, spec)
    config["gpunet"] = dict(format=FOLDER_FORMAT, version=__version__, spec_sha256=spec.fingerprint(),
                            hub_weights=getattr(model, "hub_weights", None),
                            weights=weights or _weights_line(model, spec, reg), metrics=metrics)
    return config


def _write_weights(model: nn.Module, spec: NetworkSpec, path: str) -> None:
    """``model.safetensors``: temp file, fsync, rename (a reader never sees half a file)."""
    from safetensors.torch import save_file

    from ._io import atomic_path

    sd = model.state_dict()
    if any(t.device.type == "meta" for t in sd.values()):
        raise ValueError("the model's tensors are on the meta device (no data to save); materialise it first")
    sd = {k: t.detach().to("cpu").contiguous() for k, t in sd.items()}
    meta = {"format": "pt", ARCH_KEY: weights_key(spec), "gpunet_spec_sha256": spec.fingerprint()}
    with atomic_path(path) as tmp:
        save_file(sd, tmp, metadata=meta)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())


def save_pretrained(model: nn.Module, save_directory: str, *, card: bool = True,
                    metrics: Optional[Dict[str, Any]] = None, license: Optional[str] = None,
                    repo_id: Optional[str] = None, registry: Optional[Registry] = None,
                    weights: Optional[str] = None) -> str:
    """Write ``model`` (a GPUNet) as a timm / Hugging Face model folder; returns the folder.

    ``config.json``, ``model.safetensors`` (our key names) and, with ``card``, ``README.md`` (model
    card with Hugging Face metadata: ``library_name: timm``, license, tags, and the dataset and
    top-1 of ``metrics``: by default the registry's, for a model holding a hub model's own
    weights; ``metrics={}`` claims none). Each file is written atomically, ``config.json`` last.
    ``timm.create_model("local-dir:DIR", pretrained=True)`` and ``gpunet.get_model(DIR)`` rebuild it.
    ``repo_id`` only changes the card's usage lines (``hf-hub:ORG/NAME``); ``weights`` replaces the
    card's line on what the weights are (a search winner's export says which search made them).
    """
    from ._io import atomic_write_text

    reg = registry or get_registry()
    metrics = registry_metrics(model, reg) if metrics is None else (dict(metrics) or None)
    config = folder_config(model, metrics, reg, weights)
    spec = NetworkSpec.from_dict(config["model_args"]["spec"])
    save_directory = os.fspath(save_directory)
    os.makedirs(save_directory, exist_ok=True)
    _write_weights(model, spec, os.path.join(save_directory, WEIGHTS_NAME))
    if card:
        atomic_write_text(os.path.join(save_directory, README_NAME),
                          _card(model, spec, config, reg, license, repo_id))
    atomic_write_text(os.path.join(save_directory, CONFIG_NAME), json.dumps(config, indent=2) + "\n")
    return save_directory


def _card(model: nn.Module, spec: NetworkSpec, config: Dict[str, Any], reg: Registry,
          license: Optional[str], repo_id: Optional[str]) -> str:
    from .cards import render_folder_card
    from .complexity import count_params

    cfg = config["pretrained_cfg"]
    hub = getattr(model, "hub_weights", None)
    hub = hub if hub in reg.models else (spec.name if spec.name in reg.models
                                                  and _same_network(reg.spec(spec.name), spec) else None)
    folder = dict(architecture=config["architecture"], num_classes=config["num_classes"],
                  in_chans=config["model_args"]["in_chans"], weights=config["gpunet"]["weights"],
                  license=license or cfg.get("license") or "apache-2.0", metrics=config["gpunet"]["metrics"],
                  params=count_params(model), crop_pct=cfg.get("crop_pct", 1.0),
                  interpolation=cfg.get("interpolation", "bicubic"), repo_id=repo_id)
    if hub and not config["gpunet"]["metrics"]:
        folder["note"] = (f"The top-1 above is that of `{hub}`'s own weights; the weights in this folder "
                          f"were not evaluated by gpunet.")
    return render_folder_card(spec, folder, hub_name=hub, registry=reg)


# -- reading -----------------------------------------------------------------------------------

def _network_errors() -> Tuple[type, ...]:
    """What huggingface_hub's HTTP client raises when a host cannot be reached (its client varies)."""
    found: List[type] = [OSError]
    for mod, attr in (("httpx2", "HTTPError"), ("httpx", "HTTPError"), ("requests", "RequestException")):
        try:
            found.append(getattr(importlib.import_module(mod), attr))
        except (ImportError, AttributeError):
            pass
    return tuple(found)


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return f"{type(e).__name__}: {text.splitlines()[0] if text else ''}"


@contextlib.contextmanager
def _hub_cache_only(hub: bool = True) -> Iterator[None]:
    """With gpunet's offline mode on (``GPUNET_OFFLINE``, which timm and huggingface_hub do not read), set
    huggingface_hub's own flag (checked at each request) for the block, then restore it."""
    from .weights.download import offline_mode

    constants = importlib.import_module("huggingface_hub.constants") if hub and offline_mode() else None
    if constants is None or constants.HF_HUB_OFFLINE:
        yield
        return
    constants.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        constants.HF_HUB_OFFLINE = False


def _hf_file(ident: str, filename: str, cache_dir: Optional[str] = None) -> str:
    """``filename`` of Hub repo ``ORG/NAME[@rev]`` through huggingface_hub's cache (cache only when
    offline). Raises FileNotFoundError when the repo has no such file or it is not cached."""
    from . import __version__
    from ._extras import require
    from .weights.download import offline_mode

    hf_hub_download = require("huggingface_hub", "hf", "hf-hub: model repositories").hf_hub_download
    errors = importlib.import_module("huggingface_hub.utils")  # the error classes, in every release

    repo, _, rev = ident.partition("@")
    try:
        with _hub_cache_only():  # also keeps its once-a-process telemetry look-up off the network
            return hf_hub_download(repo, filename, revision=rev or None, cache_dir=cache_dir,
                                   local_files_only=offline_mode(), library_name="gpunet",
                                   library_version=__version__)
    except (errors.RepositoryNotFoundError, errors.RevisionNotFoundError) as e:
        raise FolderError(f"hf-hub:{ident}: {_first_line(e)} (a private or gated repository needs `hf auth login`)"
                          ) from None
    except errors.LocalEntryNotFoundError:
        raise FileNotFoundError(f"hf-hub:{ident}/{filename} is not in huggingface_hub's cache and the Hub was not "
                                f"asked or could not be reached (HF_HUB_OFFLINE / GPUNET_OFFLINE, or no network)") from None
    except errors.EntryNotFoundError:
        raise FileNotFoundError(f"hf-hub:{ident} has no file {filename} (is it a timm model repository?)") from None
    except _network_errors() as e:
        raise HubError(f"hf-hub:{ident}: cannot fetch {filename}: {_first_line(e)}") from None


def _read_json(path: str, source: str) -> Dict[str, Any]:
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise FolderError(f"{source}: not valid JSON ({e})") from None
    if not isinstance(data, dict):
        raise FolderError(f"{source}: expected a JSON object, got {type(data).__name__}")
    return data


def _config_path(location: str, cache_dir: Optional[str]) -> Tuple[str, str]:
    """(local path of config.json, the name messages give it)."""
    prefix, _, ident = location.partition(":")
    if prefix == "hf-hub":
        try:
            return _hf_file(ident, CONFIG_NAME, cache_dir), f"hf-hub:{ident}/{CONFIG_NAME}"
        except FileNotFoundError as e:  # no config.json: not a timm model repository (or not cached)
            raise FolderError(str(e)) from None
    if prefix != "local-dir":
        raise FolderError(f"{location!r}: a model folder is 'local-dir:DIR' or 'hf-hub:ORG/NAME[@rev]'")
    path = os.path.join(ident, CONFIG_NAME)
    if not os.path.isdir(ident):
        raise FileNotFoundError(f"model folder not found: {ident}")
    if not os.path.isfile(path):
        raise FolderError(f"{ident}: no {CONFIG_NAME}, so not a timm / Hugging Face model folder "
                          f"(gpunet.save_pretrained writes one)")
    return path, path


def _is_gpunet_entry(architecture: Any) -> bool:
    import timm

    return (isinstance(architecture, str) and timm.models.is_model(architecture)
            and getattr(timm.models.model_entrypoint(architecture), "__module__", "") == "gpunet.timm_models")


def read_folder_config(location: str, cache_dir: Optional[str] = None) -> FolderConfig:
    """Read and check ``config.json`` of ``"local-dir:DIR"`` / ``"hf-hub:ORG/NAME[@rev]"``: a gpunet
    architecture, a valid spec, a ``pretrained_cfg`` object. Errors name the file and the field."""
    path, source = _config_path(location, cache_dir)
    data = _read_json(path, source)
    architecture = data.get("architecture")
    pcfg = data["pretrained_cfg"] if "pretrained_cfg" in data else {  # timm's older single-dict layout
        k: v for k, v in data.items() if k not in ("architecture", "num_features")}
    if not _is_gpunet_entry(architecture):
        raise FolderError(f"{source}: field 'architecture' is {architecture!r}, not a gpunet model "
                          f"(gpunet_0 ... gpunet_d2, {GENERIC_ARCHITECTURE})")
    if not isinstance(pcfg, dict):
        raise FolderError(f"{source}: field 'pretrained_cfg' must be an object")
    model_args = data.get("model_args", {})
    if not isinstance(model_args, dict):
        raise FolderError(f"{source}: field 'model_args' must be an object")
    spec = entry_spec(architecture, model_args.get("spec"), source)
    return FolderConfig(location, source, architecture, spec, model_args, pcfg, data)


def load_folder(location: str, checkpoint_path: Optional[str] = None, weights: Optional[str] = None,
                **kwargs: Any) -> nn.Module:
    """The model of a folder or Hub repository (``"local-dir:DIR"`` / ``"hf-hub:ORG/NAME[@rev]"``),
    built and loaded by timm's ``create_model`` (so both give the same model), after its
    ``config.json`` was checked. ``checkpoint_path`` loads another file instead of the folder's
    weights; ``kwargs`` go to the model (``num_classes`` different from the folder's: the
    classifier is dropped, for fine-tuning)."""
    import timm

    if weights is not None:
        raise ValueError("weights= picks a published variant of a hub model; a model folder holds its own weights")
    folder = read_folder_config(location, kwargs.get("cache_dir"))
    with _hub_cache_only(location.startswith("hf-hub:")):  # timm fetches config.json itself
        model = timm.create_model(location, pretrained=not checkpoint_path, **kwargs)
    if checkpoint_path:
        from .checkpoint import load_checkpoint

        load_checkpoint(model, checkpoint_path)
    else:  # what the folder says its weights are (a model card re-written from it keeps its metrics)
        hub = (folder.data.get("gpunet") or {}).get("hub_weights")
        if isinstance(hub, str) and hub in get_registry().models:
            model.hub_weights = hub
    return model


# -- weights -----------------------------------------------------------------------------------

def _folder_weights(directory: str) -> str:
    for name in WEIGHT_FILES:
        path = os.path.join(directory, name)
        if os.path.isfile(path):
            return path
    raise FolderError(f"{directory}: no weight file ({', '.join(WEIGHT_FILES)})")


def _hub_weights(ident: str, filename: Optional[str], cache_dir: Optional[str]) -> str:
    missing = []
    for name in (filename,) if filename else WEIGHT_FILES[:2]:
        try:
            return _hf_file(ident, name, cache_dir)
        except FileNotFoundError as e:
            missing.append(str(e))
    raise FolderError("; ".join(missing))


def _check_arch(model: GPUNet, path: str) -> None:
    """A gpunet-written safetensors file records which architecture its weights are for."""
    if not path.endswith(".safetensors"):
        return
    from safetensors import safe_open

    with safe_open(path, "pt") as f:
        saved = (f.metadata() or {}).get(ARCH_KEY)
    if saved and saved != weights_key(model.spec):
        raise FolderError(f"{path}: weights saved for another architecture than the folder's spec "
                          f"({ARCH_KEY} {saved[:16]} vs {weights_key(model.spec)[:16]})")


def _load_weights(model: GPUNet, obj: Any, source: str, cfg: Dict[str, Any]) -> None:
    """Our key names or NVIDIA's; a 3-channel stem adapted to ``in_chans`` as timm does."""
    from timm.models import adapt_input_conv

    sd = to_gpunet_state_dict(extract_state_dict(obj, source), model.spec, source)
    key = (cfg.get("first_conv") or "stem.0.conv") + ".weight"
    own = model.state_dict().get(key)
    if key in sd and own is not None and sd[key].shape[1] != own.shape[1] and sd[key].shape[0] == own.shape[0]:
        sd[key] = adapt_input_conv(own.shape[1], sd[key])
    load_state_dict_into(model, sd, model.spec, source)


def _load_file(model: GPUNet, path: str, cfg: Dict[str, Any]) -> str:
    obj = read_checkpoint(path)  # a truncated / damaged file: CheckpointError naming it
    _check_arch(model, path)
    _load_weights(model, obj, path, cfg)
    return path


def _published_hub_id(hub_name: str) -> Optional[str]:
    from .weights.manifest import published_cfg_fields

    return published_cfg_fields(hub_name).get("hf_hub_id")


def load_cfg_weights(model: GPUNet, cfg: Dict[str, Any], hub_name: Optional[str] = None,
                     cache_dir: Optional[str] = None) -> str:
    """Load the weights ``cfg`` (timm's ``pretrained_cfg``) points at, in timm's order: a Hub repo
    (``source: hf-hub``), a folder (``source: local-dir``), ``state_dict``, ``file`` (a checkpoint or
    a folder), ``hf_hub_id``; otherwise (or when ``hf_hub_id`` is the manifest's own upload of
    ``hub_name``) ``hub_name``'s published weights (:mod:`gpunet.weights`, verified). Returns where
    they came from."""
    src, file, sd, hub_id = cfg.get("source"), cfg.get("file"), cfg.get("state_dict"), cfg.get("hf_hub_id")
    if hub_id and src != "hf-hub" and hub_name and hub_id == _published_hub_id(hub_name):
        hub_id = None  # the manifest's own upload: gpunet.weights fetches it and checks its sha256
    if hub_id and (src == "hf-hub" or not (sd is not None or file)):
        return _load_file(model, _hub_weights(hub_id, cfg.get("hf_hub_filename"), cache_dir), cfg)
    if file and (src == "local-dir" or os.path.isdir(file)):
        return _load_file(model, _folder_weights(file), cfg)
    if sd is not None:
        _load_weights(model, sd, "pretrained_cfg['state_dict']", cfg)
        return "pretrained_cfg['state_dict']"
    if file:
        return _load_file(model, file, cfg)
    if hub_name is None:
        raise FolderError(f"{cfg.get('architecture') or GENERIC_ARCHITECTURE} has no published weights: load a "
                          f"folder ('local-dir:DIR', 'hf-hub:ORG/NAME') or pass pretrained_cfg_overlay=dict(file=...)")
    from .weights import load_pretrained

    load_pretrained(model, hub_name)
    model.hub_weights = hub_name
    return f"{hub_name}'s published weights (gpunet.weights)"


# -- publishing --------------------------------------------------------------------------------

def push_folder(directory: str, repo_id: str, revision: Optional[str] = None, private: bool = False,
                endpoint: Optional[str] = None, commit_message: Optional[str] = None) -> Dict[str, Any]:
    """Upload a model folder to the Hugging Face Hub (``create_repo(exist_ok=True)``, ``upload_folder``).

    The token is huggingface_hub's own (``HF_TOKEN`` or ``hf auth login``); gpunet never reads,
    prints or writes it. The folder is checked first (a broken folder is never pushed). Returns
    ``repo_id``, ``revision``, ``commit`` (the new commit's id), ``commit_url`` and ``endpoint``.
    """
    from huggingface_hub import HfApi, constants

    from . import __version__
    from .weights.download import offline_mode

    read_folder_config("local-dir:" + os.fspath(directory))
    _folder_weights(os.fspath(directory))
    endpoint = (endpoint or constants.ENDPOINT).rstrip("/")
    if offline_mode():
        raise HubError(f"cannot push {repo_id} to {endpoint}: offline mode is on (HF_HUB_OFFLINE / GPUNET_OFFLINE)")
    api = HfApi(endpoint=endpoint, library_name="gpunet", library_version=__version__)
    files = [n for n in (CONFIG_NAME, WEIGHTS_NAME, README_NAME) if os.path.isfile(os.path.join(directory, n))]
    try:
        repo = api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
        info = api.upload_folder(repo_id=repo.repo_id, folder_path=os.fspath(directory), revision=revision,
                                 allow_patterns=files, commit_message=commit_message or "Add GPUNet model (gpunet)")
    except _network_errors() as e:
        raise HubError(f"cannot push {repo_id} to the Hugging Face Hub at {endpoint}: {_first_line(e)}") from None
    return dict(repo_id=repo.repo_id, revision=revision or "main", commit=info.oid, commit_url=info.commit_url,
                endpoint=endpoint, files=files)
