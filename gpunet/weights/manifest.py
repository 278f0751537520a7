"""Which weight files exist for each hub model, where to get them, and how to check them.

The manifest (``gpunet-weights/1``) lists per model one or more *variants* (one weight file
each), tried in the model's ``preference`` order. A variant's ``sources`` are mirrors of the
same file, tried in order::

    {"schema": "gpunet-weights/1",
     "models": {"gpunet-0": {
        "preference": ["safetensors", "nvidia-ngc"],
        "variants": {"nvidia-ngc": {
            "format": "nvidia-pth-tar",      # or "safetensors"
            "file": "0.65ms.pth.tar",        # name of the weight file in the cache
            "sha256": null, "size": null,    # of that file; null where the publisher gives none
            "license": "...", "source": "...",
            "sources": [
              {"type": "url", "url": "https://...", "archive": "zip", "member": "0.65ms.pth.tar",
               "archive_sha256": null},
              {"type": "hf", "repo_id": "org/name", "filename": "x.safetensors", "revision": "<40-hex commit>",
               "endpoint": null}]}}}}}      # endpoint: a Hugging Face mirror (optional)

The packaged copy is ``gpunet/data/weights_manifest.json`` (identical to ``weights_manifest.json``
at the repository root, a test keeps them so); ``$GPUNET_WEIGHTS_MANIFEST`` replaces it.
"""
from __future__ import annotations

import copy
import functools
import json
import os
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple

from ..errors import BadInputError

__all__ = ["is_commit", "MANIFEST_SCHEMA", "FORMATS", "ManifestError", "Source", "Variant", "Manifest",
           "load_manifest", "manifest_path", "published_cfg_fields", "PACKAGED_MANIFEST"]

MANIFEST_SCHEMA = "gpunet-weights/1"
FORMATS = ("nvidia-pth-tar", "safetensors", "pth")
PACKAGED_MANIFEST = os.path.join(os.path.dirname(os.path.dirname(__file__)), "data", "weights_manifest.json")
_SOURCE_FIELDS = {"url": ("url",), "hf": ("repo_id", "filename")}


class ManifestError(BadInputError, ValueError):
    """A manifest file is malformed; the message names the file and the field."""


@dataclass(frozen=True)
class Source:
    """One mirror of a weight file: a plain URL (optionally a zip holding it) or a HF Hub file."""

    type: str
    url: Optional[str] = None
    archive: Optional[str] = None
    member: Optional[str] = None
    archive_sha256: Optional[str] = None
    repo_id: Optional[str] = None
    filename: Optional[str] = None
    revision: Optional[str] = None
    endpoint: Optional[str] = None  # a Hugging Face mirror; default: huggingface_hub's (HF_ENDPOINT)

    def describe(self) -> str:
        if self.type == "hf":
            rev = f"@{self.revision}" if self.revision else ""
            via = f" (via {self.endpoint})" if self.endpoint else ""
            return f"hf://{self.repo_id}/{self.filename}{rev}{via}"
        return f"{self.url}" + (f" (member {self.member})" if self.member else "")


@dataclass(frozen=True)
class Variant:
    model: str
    name: str
    format: str
    file: str
    sha256: Optional[str]
    size: Optional[int]
    license: str
    source: str
    sources: List[Source] = field(default_factory=list)
    note: Optional[str] = None

    def to_dict(self) -> Dict[str, Any]:
        out = {k: getattr(self, k) for k in ("format", "file", "sha256", "size", "license", "source")}
        out["sources"] = [{k: v for k, v in vars(s).items() if v is not None} for s in self.sources]
        if self.note:
            out["note"] = self.note
        return out


class Manifest:
    """A parsed, validated manifest."""

    def __init__(self, data: Dict[str, Any], path: str):
        self.path = path
        self.data = data
        self.variants: Dict[str, Dict[str, Variant]] = {}
        self.preference: Dict[str, List[str]] = {}
        _check(data, path)
        for model, entry in data["models"].items():
            self.variants[model] = {n: _parse_variant(model, n, v, path) for n, v in entry["variants"].items()}
            pref = entry.get("preference") or list(entry["variants"])
            bad = [p for p in pref if p not in entry["variants"]]
            if bad:
                raise ManifestError(f"{path}: models.{model}.preference names unknown variants {bad}; "
                                    f"variants: {sorted(entry['variants'])}")
            self.preference[model] = list(pref) + [v for v in entry["variants"] if v not in pref]

    def models(self) -> List[str]:
        return list(self.variants)

    def model_variants(self, model: str) -> List[Variant]:
        """Variants of ``model`` in preference order."""
        if model not in self.variants:
            raise ManifestError(f"{self.path}: no weights listed for model {model!r}; "
                                f"models with weights: {', '.join(self.variants) or 'none'}")
        return [self.variants[model][n] for n in self.preference[model]]

    def variant(self, model: str, name: str) -> Variant:
        variants = {v.name: v for v in self.model_variants(model)}
        if name not in variants:
            raise ManifestError(f"{self.path}: model {model!r} has no weight variant {name!r}; "
                                f"variants: {', '.join(variants)}")
        return variants[name]

    def to_json(self) -> str:
        return json.dumps(self.data, indent=1) + "\n"

    def with_variant(self, variant: Variant, prefer: bool = False) -> "Manifest":
        """A copy with ``variant`` added or replaced (``prefer`` puts it first)."""
        data = copy.deepcopy(self.data)
        entry = data["models"].setdefault(variant.model, {"variants": {}})
        entry["variants"][variant.name] = variant.to_dict()
        pref = [p for p in entry.get("preference", list(entry["variants"])) if p != variant.name]
        entry["preference"] = [variant.name] + pref if prefer else pref + [variant.name]
        return Manifest(data, self.path)


def _check(data: Any, path: str) -> None:
    if not isinstance(data, dict):
        raise ManifestError(f"{path}: expected a JSON object with 'schema' and 'models'")
    if data.get("schema") != MANIFEST_SCHEMA:
        raise ManifestError(f"{path}: schema is {data.get('schema')!r}, expected {MANIFEST_SCHEMA!r}")
    if not isinstance(data.get("models"), dict):
        raise ManifestError(f"{path}: 'models' must be an object of model name -> entry")
    for model, entry in data["models"].items():
        if not isinstance(entry, dict) or not isinstance(entry.get("variants"), dict) or not entry["variants"]:
            raise ManifestError(f"{path}: models.{model}.variants must be a non-empty object")


def _parse_variant(model: str, name: str, v: Any, path: str) -> Variant:
    where = f"{path}: models.{model}.variants.{name}"
    if not isinstance(v, dict):
        raise ManifestError(f"{where}: expected an object")
    for req in ("format", "file", "sources"):
        if req not in v:
            raise ManifestError(f"{where}: missing field {req!r}")
    if v["format"] not in FORMATS:
        raise ManifestError(f"{where}.format: {v['format']!r}, expected one of {FORMATS}")
    if not isinstance(v["file"], str) or not v["file"] or "/" in v["file"] or "\\" in v["file"] \
            or v["file"].startswith("."):
        raise ManifestError(f"{where}.file: expected a plain file name, got {v['file']!r}")
    sha = v.get("sha256")
    if sha is not None and not _is_sha256(sha):
        raise ManifestError(f"{where}.sha256: expected 64 hex digits or null, got {sha!r}")
    if v.get("size") is not None and not (isinstance(v["size"], int) and v["size"] > 0):
        raise ManifestError(f"{where}.size: expected a positive integer or null, got {v['size']!r}")
    if not isinstance(v["sources"], list):
        raise ManifestError(f"{where}.sources: expected a list")
    sources = []
    for i, s in enumerate(v["sources"]):
        sw = f"{where}.sources[{i}]"
        if not isinstance(s, dict) or s.get("type") not in _SOURCE_FIELDS:
            raise ManifestError(f"{sw}.type: expected one of {sorted(_SOURCE_FIELDS)}")
        for req in _SOURCE_FIELDS[s["type"]]:
            if not isinstance(s.get(req), str) or not s[req]:
                raise ManifestError(f"{sw}: missing field {req!r}")
        unknown = sorted(set(s) - {f for f in Source.__dataclass_fields__})
        if unknown:
            raise ManifestError(f"{sw}: unknown fields {unknown}")
        if s.get("archive") not in (None, "zip"):
            raise ManifestError(f"{sw}.archive: {s['archive']!r}, expected 'zip' or absent")
        if s.get("archive") == "zip" and not s.get("member"):
            raise ManifestError(f"{sw}: a zip source needs 'member' (the file inside the zip)")
        if s["type"] == "hf" and not is_commit(s.get("revision")):
            raise ManifestError(f"{sw}.revision: {s.get('revision')!r}; a Hugging Face source must pin a "
                                f"40-hex commit hash (a branch or tag can move to other bytes after publishing)")
        if s.get("archive_sha256") is not None and not _is_sha256(s["archive_sha256"]):
            raise ManifestError(f"{sw}.archive_sha256: expected 64 hex digits or null")
        sources.append(Source(**s))
    return Variant(model=model, name=name, format=v["format"], file=v["file"], sha256=sha and sha.lower(),
                   size=v.get("size"), license=v.get("license", "unknown"), source=v.get("source", "unknown"),
                   sources=sources, note=v.get("note"))


def is_commit(s: Any) -> bool:
    """True for a full 40-hex git commit id (a Hugging Face revision pinned to one commit)."""
    return isinstance(s, str) and len(s) == 40 and all(c in "0123456789abcdefABCDEF" for c in s)


def _is_sha256(s: Any) -> bool:
    return isinstance(s, str) and len(s) == 64 and all(c in "0123456789abcdefABCDEF" for c in s)


def manifest_path() -> str:
    """``$GPUNET_WEIGHTS_MANIFEST`` if set, else the packaged manifest."""
    return os.path.expanduser(os.environ.get("GPUNET_WEIGHTS_MANIFEST") or PACKAGED_MANIFEST)


def load_manifest(path: Optional[str] = None) -> Manifest:
    """The parsed manifest at ``path`` (default :func:`manifest_path`). Parsed once per version
    of the file (its size, mtime, ctime and inode): treat the result as read-only
    (:meth:`Manifest.with_variant` makes a changed copy)."""
    path = path or manifest_path()
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise FileNotFoundError(f"weights manifest not found: {path}"
                                + (" (from GPUNET_WEIGHTS_MANIFEST)" if os.environ.get("GPUNET_WEIGHTS_MANIFEST")
                                   else "")) from None
    return _parsed(path, (st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_dev))


@functools.lru_cache(maxsize=8)
def _parsed(path: str, signature: Tuple[int, ...]) -> Manifest:
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except json.JSONDecodeError as e:
        raise ManifestError(f"{path}: not valid JSON ({e})") from None
    return Manifest(data, path)


@functools.lru_cache(maxsize=8)
def _published(manifest: str, mtime_ns: int) -> Dict[str, Dict[str, str]]:
    """Hub name -> where timm's ``pretrained_cfg`` says its weights are published: the first URL
    source (NVIDIA's NGC) as ``url``, and the first Hugging Face file of a safetensors variant on
    the default endpoint (once uploaded: ``gpunet weights convert --hf-repo``) as ``hf_hub_id``
    (``ORG/NAME@COMMIT``, timm's spelling of a pinned revision) and ``hf_hub_filename``."""
    m = load_manifest(manifest)
    out: Dict[str, Dict[str, str]] = {}
    for model in m.models():
        fields: Dict[str, str] = {}
        for v in m.model_variants(model):
            for s in v.sources:
                if s.type == "url" and s.url:
                    fields.setdefault("url", s.url)
                elif s.type == "hf" and v.format == "safetensors" and not s.endpoint and "hf_hub_id" not in fields:
                    fields.update(hf_hub_id=s.repo_id + (f"@{s.revision}" if s.revision else ""),
                                  hf_hub_filename=s.filename)
        if fields:
            out[model] = fields
    return out


def published_cfg_fields(name: str) -> Dict[str, str]:
    """The ``url`` / ``hf_hub_id`` / ``hf_hub_filename`` of hub model ``name``'s published weights,
    from the weights manifest :func:`gpunet.weights.load_pretrained` reads (``$GPUNET_WEIGHTS_MANIFEST``
    or the packaged one); empty for a model with none."""
    path = manifest_path()
    try:
        mtime = os.stat(path).st_mtime_ns
    except FileNotFoundError:
        mtime = -1  # load_manifest names the missing file
    return dict(_published(path, mtime).get(name, {}))
