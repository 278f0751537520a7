"""Model cards: what a model is, how fast, how accurate, how to use it — rendered from the registry.

``write_cards("model_cards")`` regenerates ``model_cards/<name>.md`` (also ``gpunet cards``);
``stale_cards("model_cards")`` lists cards that differ from what the registry says now.
``render_folder_card`` is the README.md of a model folder (:func:`gpunet.save_pretrained`): Hugging
Face metadata (:func:`hf_metadata`) over the same card, or a spec's own for other networks.
"""
from __future__ import annotations

import os
from typing import Any, Dict, List, Optional

from .registry import Registry, get_registry
from .spec import NetworkSpec

__all__ = ["stage_table", "model_summary", "render_card", "write_cards", "stale_cards", "hf_metadata",
           "render_folder_card", "HF_TAGS"]

_KIND = {"head": "Conv", "head_large": "Conv x3", "conv": "Conv", "fused_irb": "Fused-IRB", "irb": "IRB",
         "tail": "Conv1x1 & Pool & FC"}


def _span(values: List[Any]) -> str:
    uniq = []
    for v in values:
        if v not in uniq:
            uniq.append(v)
    return "/".join(str(v) for v in uniq)


def stage_table(spec: NetworkSpec, resolution: Optional[int] = None) -> List[Dict[str, Any]]:
    """One row per stage (stem, each body stage, tail): type, blocks, kernel, stride, expansion,
    activation, SE, channels and output size — the paper's Table 1 view of a network."""
    sizes = spec.spatial_sizes(resolution)
    stem = spec.stem
    rows = [dict(stage=stem.stage if stem.stage is not None else 0, type=_KIND[stem.kind], blocks=1, kernel="3",
                 stride="2", expansion="", act=stem.act or "", se="", channels=f"{stem.in_channels}->{stem.out_channels}",
                 output=f"{sizes[0]}x{sizes[0]}")]
    for stage_id, idx in spec.stages():
        layers = [spec.layers[i] for i in idx]
        out = sizes[idx[-1]]
        rows.append(dict(
            stage=stage_id, type=_span([_KIND[l.kind] for l in layers]), blocks=len(layers),
            kernel=_span([l.kernel_size for l in layers]), stride=_span([l.stride for l in layers]),
            expansion=_span([l.to_dict().get("expansion", "") for l in layers]),
            act=_span([l.act for l in layers]), se=_span(["yes" if l.se else "no" for l in layers])
            if any(l.kind != "conv" for l in layers) else "",
            channels=f"{layers[0].in_channels}->{layers[-1].out_channels}", output=f"{out}x{out}"))
    tail = spec.tail
    width = f"{tail.in_channels}->{tail.out_channels}" + (
        f"->{tail.pre_logits_channels}" if tail.pre_logits_channels else "")
    rows.append(dict(stage="tail", type=_KIND["tail"], blocks=1, kernel="1", stride="1", expansion="", act="relu",
                     se="", channels=f"{width}->{spec.num_classes}", output="1x1"))
    return rows


def model_summary(name: str, registry: Optional[Registry] = None) -> Dict[str, Any]:
    """Everything ``gpunet info`` shows: registry facts, latency per device, the stage table."""
    reg = registry or get_registry()
    n = reg.resolve_model(name)
    info = reg.model_info(n)
    spec = reg.spec(n)
    latency = {}
    for dev in reg.list_devices():
        entries = reg.latency.get(dev, {}).get(n, [])
        if entries:
            latency[dev] = [{k: v for k, v in e.items() if k != "origin"} for e in entries]
    info.pop("spec_path", None)
    info.pop("origin", None)
    if not isinstance(info.get("spec"), str):
        info["spec"] = "inline"
    return dict(name=n, **info, spec_fingerprint=spec.fingerprint(), latency=latency,
                stages=stage_table(spec))


def _fmt_int(v: Optional[int]) -> str:
    return "-" if v is None else f"{v:,}"


def render_card(name: str, registry: Optional[Registry] = None) -> str:
    """Markdown model card (deterministic: regenerating gives identical bytes)."""
    reg = registry or get_registry()
    s = model_summary(name, reg)
    lines = _card_properties(s) + _card_latency(s) + _card_architecture(s) + _card_usage(s)
    return "\n".join(lines)


def _provenance(s: Dict[str, Any]) -> List[str]:
    """Where the network comes from, and (a search winner) what its top-1 is: the card's first rows."""
    if not s.get("search"):
        return [f"GPUNet {'distilled ' if s.get('distilled') else ''}network from NVIDIA's release of *Searching "
                f"the Deployable Convolution Neural Networks for GPUs* (CVPR 2022), rebuilt exactly by gpunet "
                f"(parameter count and logits match NVIDIA's implementation).",
                "", "| property | value |", "|---|---|",
                f"| hub name | `{s['name']}` (timm: `{s['name'].replace('-', '_')}`) |",
                f"| ImageNet-1k top-1 | {s.get('top1', '-')} % |"]
    t, found = s.get("training") or {}, s["search"]
    kind = ("**proxy** training: its top-1 is not comparable with the hub's full trainings"
            if s.get("proxy") else "full training")
    return [f"Network found by `gpunet search` ({found.get('algorithm')}, candidate `{found.get('candidate_id')}`, "
            f"latency group {found.get('group', '-')}). Its accuracy comes from a {kind}.",
            "", "| property | value |", "|---|---|", f"| hub name | `{s['name']}` |",
            f"| top-1 | {s.get('top1', '-')} % on {s.get('dataset') or '-'}, {s.get('top1_split', '-')} |",
            f"| trained | {t.get('img_size', '-')} px, {t.get('epochs', '-')} epochs (recipe "
            f"{t.get('recipe') or 'paper'}: {t.get('recipe_epochs', '-')} epochs) |",
            f"| proxy | {'yes' if s.get('proxy') else 'no'} |"]


def _card_properties(s: Dict[str, Any]) -> List[str]:
    """Title, provenance line and the property table of a :func:`model_summary`."""
    n = s["name"]
    return [
        f"# {s.get('nvidia_name') or n}",
        "",
        "<!-- Generated by `gpunet cards --out model_cards` from gpunet's registry; do not edit by hand. -->",
        "",
        *_provenance(s),
        f"| parameters | {_fmt_int(s.get('params'))} |",
        f"| FLOPs (multiply-adds) | {_fmt_int(s.get('flops'))} |",
        f"| input resolution | {s['resolution']} x {s['resolution']} |",
        f"| module family | {s.get('family', 'standard')} |",
        f"| distillation teacher | {s.get('teacher') or 'none'} |",
        f"| NVIDIA config | `{s.get('nvidia_config', '-')}` |",
        f"| NGC checkpoint | `{s.get('ngc_id', '-')}` |",
        f"| spec fingerprint | `{s['spec_fingerprint'][:16]}` |",
    ]


def _card_latency(s: Dict[str, Any]) -> List[str]:
    """The latency table: one row per registry entry, device by device."""
    lines = [
        "",
        "## Latency",
        "",
        "| device | latency (ms) | batch | precision | engine | kind | source |",
        "|---|---|---|---|---|---|---|",
    ]
    for dev, entries in s["latency"].items():
        for e in entries:
            lines.append(f"| {dev} | {e['latency_ms']} | {e.get('batch', 1)} | {e.get('precision', '-')} | "
                         f"{e.get('engine', '-')} | {e.get('kind', '-')} | {e.get('source', '-')} |")
    return lines + [
        "",
        "`kind` is `measured` for published measurements and `target` where NVIDIA names the model after its "
        "GV100 latency target but published no measurement.",
    ]


def _card_architecture(s: Dict[str, Any]) -> List[str]:
    """The stage table (:func:`stage_table`) as markdown."""
    lines = [
        "",
        "## Architecture",
        "",
        "| stage | type | blocks | kernel | stride | expansion | act | SE | channels | output |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in s["stages"]:
        lines.append("| " + " | ".join(str(r[k]) for k in
                                        ("stage", "type", "blocks", "kernel", "stride", "expansion", "act", "se",
                                         "channels", "output")) + " |")
    return lines


def _card_usage(s: Dict[str, Any]) -> List[str]:
    """Evaluation transform, usage snippet, source and license."""
    n = s["name"]
    timm_name = n.replace("-", "_")
    crop = s.get("crop_pct", 1.0)
    return [
        "",
        "## Evaluation transform",
        "",
        f"Resize the short side to {round(s['resolution'] / crop)} px (bicubic), centre-crop {s['resolution']} px "
        f"(crop_pct {crop}), ImageNet mean (0.485, 0.456, 0.406) / std (0.229, 0.224, 0.225).",
        "",
        "## Use",
        "",
        "```python",
        "import gpunet, timm",
        f"model = gpunet.get_model(\"{n}\")                       # random init",
        f"model = gpunet.get_model(\"{n}\", pretrained=True)      # published weights",
        f"model = gpunet.get_model(\"{n}\", num_classes=10)       # for fine-tuning",
        f"backbone = timm.create_model(\"{timm_name}\", features_only=True)",
        "```",
        "",
        "## Source and license",
        "",
        f"{s.get('source', '-')}. {s.get('license', '')}".rstrip(),
        "",
    ]


def write_cards(out_dir: str, registry: Optional[Registry] = None) -> List[str]:
    """(Re)write one card per hub model; returns the paths written."""
    from ._io import atomic_write_text

    reg = registry or get_registry()
    os.makedirs(out_dir, exist_ok=True)
    paths = []
    for n in reg.list_models():
        path = os.path.join(out_dir, f"{n}.md")
        atomic_write_text(path, render_card(n, reg))
        paths.append(path)
    return paths


def stale_cards(out_dir: str, registry: Optional[Registry] = None) -> List[str]:
    """Hub models whose card in ``out_dir`` is missing or differs from a fresh render."""
    reg = registry or get_registry()
    stale = []
    for n in reg.list_models():
        path = os.path.join(out_dir, f"{n}.md")
        try:
            with open(path, "r", encoding="utf-8") as f:
                current = f.read()
        except FileNotFoundError:
            current = None
        if current != render_card(n, reg):
            stale.append(n)
    return stale


# -- model folders (timm / Hugging Face): the README.md of `gpunet.save_pretrained` -----------------

#: Hugging Face tags of every GPUNet folder
HF_TAGS = ("image-classification", "timm", "gpunet")


def _yaml_str(v: Any) -> str:
    """A YAML scalar: JSON's quoting (valid YAML) unless the text is a plain token."""
    import json
    import re

    text = str(v)
    return text if re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._/-]*", text) else json.dumps(text)


def hf_metadata(model_name: str, license: str = "apache-2.0", metrics: Optional[Dict[str, Any]] = None,
                tags=HF_TAGS) -> List[str]:
    """The Hugging Face metadata block (YAML between ``---`` lines) of a model folder's README.

    ``metrics`` (``dataset``, ``dataset_name``, ``split``, ``top1``) adds ``datasets``, ``metrics``
    and a ``model-index`` result naming the dataset; without it the card claims no accuracy.
    """
    lines = ["---", "library_name: timm", f"license: {_yaml_str(license)}", "pipeline_tag: image-classification",
             "tags:"] + [f"- {_yaml_str(t)}" for t in tags]
    if metrics and metrics.get("top1") is not None and metrics.get("dataset"):
        m = metrics
        lines += ["datasets:", f"- {_yaml_str(m['dataset'])}", "metrics:", "- accuracy", "model-index:",
                  f"- name: {_yaml_str(model_name)}", "  results:", "  - task:", "      type: image-classification",
                  "      name: Image Classification", "    dataset:",
                  f"      name: {_yaml_str(m.get('dataset_name') or m['dataset'])}",
                  f"      type: {_yaml_str(m['dataset'])}"]
        if m.get("split"):
            lines.append(f"      split: {_yaml_str(m['split'])}")
        lines += ["    metrics:", "    - type: accuracy", f"      name: {_yaml_str(m.get('name') or 'top-1 accuracy')}",
                  f"      value: {float(m['top1'])}"]
    return lines + ["---", ""]


def _folder_section(folder: Dict[str, Any]) -> List[str]:
    """What this folder holds (classes, weights' provenance) and how to load it."""
    where = folder.get("repo_id")
    ref = f"hf-hub:{where}" if where else "local-dir:PATH/TO/THIS/FOLDER"
    get = f"hf-hub:{where}" if where else "PATH/TO/THIS/FOLDER"
    return [
        "## This folder",
        "",
        "A timm model folder written by `gpunet.save_pretrained` (`config.json`, `model.safetensors`).",
        "",
        "| property | value |", "|---|---|",
        f"| timm architecture | `{folder['architecture']}` |",
        f"| classes | {folder['num_classes']} |",
        f"| input channels | {folder['in_chans']} |",
        f"| weights | {folder['weights']} |",
        "",
        *([folder["note"], ""] if folder.get("note") else []),
        "```python",
        "import gpunet, timm",
        f"model = timm.create_model(\"{ref}\", pretrained=True)",
        f"model = gpunet.get_model(\"{get}\")",
        "```",
        "",
    ]


def _spec_card(spec: NetworkSpec, folder: Dict[str, Any]) -> List[str]:
    """The card of a network that is not a hub model: what the spec says, nothing claimed."""
    s = dict(name=spec.name or "GPUNet", stages=stage_table(spec))
    return [f"# {s['name']}", "",
            "A GPUNet network (architecture family of *Searching the Deployable Convolution Neural Networks "
            "for GPUs*, CVPR 2022) built by gpunet from its spec.", "",
            "| property | value |", "|---|---|",
            f"| parameters | {_fmt_int(folder.get('params'))} |",
            f"| input resolution | {spec.resolution} x {spec.resolution} |",
            f"| module family | {spec.family} |",
            f"| spec fingerprint | `{spec.fingerprint()[:16]}` |",
            *_card_architecture(s), "",
            "## Evaluation transform", "",
            f"Resize the short side to {round(spec.resolution / folder.get('crop_pct', 1.0))} px "
            f"({folder.get('interpolation', 'bicubic')}), centre-crop {spec.resolution} px "
            f"(crop_pct {folder.get('crop_pct', 1.0)}), ImageNet mean (0.485, 0.456, 0.406) / "
            f"std (0.229, 0.224, 0.225).", ""]


def render_folder_card(spec: NetworkSpec, folder: Dict[str, Any], hub_name: Optional[str] = None,
                       registry: Optional[Registry] = None) -> str:
    """README.md of a model folder: Hugging Face metadata (:func:`hf_metadata`), then the hub
    model's card (:func:`render_card`, unchanged) or a spec's own, then what the folder holds.

    ``folder``: ``architecture``, ``num_classes``, ``in_chans``, ``weights`` (one line of
    provenance), ``license``, ``metrics`` (or None), ``params``, ``crop_pct``, ``interpolation``,
    optionally ``repo_id``."""
    name = hub_name or spec.name or "gpunet"
    head = hf_metadata(name, folder.get("license") or "apache-2.0", folder.get("metrics"))
    body = render_card(hub_name, registry).rstrip("\n").split("\n") + [""] if hub_name else _spec_card(spec, folder)
    return "\n".join(head + body + _folder_section(folder))
