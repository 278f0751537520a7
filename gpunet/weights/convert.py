"""NVIDIA's checkpoints in, safetensors with our key names out; hand-downloaded files into the cache.

NVIDIA publishes each GPUNet as an NGC zip holding ``<config stem>.pth.tar`` with their module
names (``network.stage: 1 layer3.conv.weight``). Reading goes through :mod:`gpunet.checkpoint`
(``torch.load(weights_only=True)``, ``argparse.Namespace`` allowed) and :mod:`gpunet.nvidia`
(renaming); every file is checked against the architecture by a strict load before it is
written anywhere.
"""
from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import tempfile
import zipfile
from typing import Any, Dict, Iterator, Optional

import torch

from .._io import atomic_path
from ..checkpoint import CheckpointError, extract_state_dict, load_state_dict_checked, read_checkpoint, \
    to_gpunet_state_dict
from ..registry import get_registry
from .cache import cache_file, commit_file
from .._io import file_lock
from .download import sha256_file
from .manifest import Manifest, Source, Variant, load_manifest

__all__ = ["is_archive", "extract_member", "read_weights", "check_fits", "convert_to_safetensors", "import_weights",
           "safetensors_metadata", "check_spec_fingerprint"]

CHUNK = 1 << 20


def _zip_member(zf: zipfile.ZipFile, member: Optional[str], source: str) -> zipfile.ZipInfo:
    names = [i for i in zf.infolist() if not i.is_dir()]
    if member is not None:
        hits = [i for i in names if i.filename == member or os.path.basename(i.filename) == member]
    else:
        hits = [i for i in names if i.filename.endswith((".pth.tar", ".pth", ".pt", ".safetensors"))]
    if len(hits) != 1:
        want = repr(member) if member else "exactly one checkpoint (.pth.tar/.pth/.safetensors)"
        raise CheckpointError(f"{source}: expected {want} in the zip, found "
                              f"{[i.filename for i in names][:10]}")
    return hits[0]


def extract_member(zip_path: str, dest: str, member: Optional[str] = None, source: Optional[str] = None) -> str:
    """Unpack one file from a zip atomically (CRC-checked by ``zipfile``); returns its sha256."""
    source = source or zip_path
    h = hashlib.sha256()
    try:
        with zipfile.ZipFile(zip_path) as zf:
            info = _zip_member(zf, member, source)
            with atomic_path(dest) as tmp, zf.open(info) as src, open(tmp, "wb") as out:
                for chunk in iter(lambda: src.read(CHUNK), b""):
                    h.update(chunk)
                    out.write(chunk)
                out.flush()
                os.fsync(out.fileno())
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, ValueError) as e:
        raise CheckpointError(f"{source}: not a valid zip archive or corrupted member ({e})") from None
    return h.hexdigest()


def is_archive(path: str) -> bool:
    """A zip holding a checkpoint (NGC's download), as opposed to ``torch.save``'s own zip format."""
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as zf:
        return not any(n.endswith("data.pkl") for n in zf.namelist())


@contextlib.contextmanager
def _as_checkpoint_file(path: str, member: Optional[str] = None) -> Iterator[str]:
    """``path`` itself, or its checkpoint unpacked from a zip into a temp dir."""
    if not os.path.exists(path):
        raise FileNotFoundError(f"weights file not found: {path}")
    if not is_archive(path):
        yield path
        return
    with tempfile.TemporaryDirectory(prefix="gpunet-unzip-") as tmp:
        with zipfile.ZipFile(path) as zf:
            name = os.path.basename(_zip_member(zf, member, path).filename)
        out = os.path.join(tmp, name)
        extract_member(path, out, member, source=path)
        yield out


def read_weights(path: str, hub_name: str, member: Optional[str] = None) -> Dict[str, torch.Tensor]:
    """Our-key-name state_dict from NVIDIA's zip / ``.pth.tar``, a training checkpoint or safetensors."""
    spec = get_registry().spec(hub_name)
    with _as_checkpoint_file(path, member) as ckpt:
        return to_gpunet_state_dict(extract_state_dict(read_checkpoint(ckpt), path), spec, path)


def check_fits(hub_name: str, sd: Dict[str, torch.Tensor], source: str) -> None:
    """Strict load into a freshly built ``hub_name``: raises CheckpointError naming bad keys."""
    from ..model import build_model

    load_state_dict_checked(build_model(get_registry().spec(hub_name)), sd, source=source)


def safetensors_metadata(path: str) -> Dict[str, str]:
    from safetensors import safe_open

    try:
        with safe_open(path, framework="pt") as f:
            return dict(f.metadata() or {})
    except Exception as e:  # SafetensorError: bad header
        raise CheckpointError(f"{path}: not a valid safetensors file ({type(e).__name__}: "
                              f"{str(e).splitlines()[0] if str(e) else ''})") from e


def check_spec_fingerprint(metadata: Dict[str, str], spec, hub_name: str, source: str) -> None:
    """Refuse a safetensors file whose header names another architecture than ``spec``
    (``gpunet_spec_sha256``, written by :func:`convert_to_safetensors`; files without it pass)."""
    expected = metadata.get("gpunet_spec_sha256")
    if expected and expected != spec.fingerprint():
        raise CheckpointError(f"{source}: converted for a different architecture than {hub_name} "
                              f"(spec sha256 {expected} vs {spec.fingerprint()})")


def convert_to_safetensors(hub_name: str, src: str, dst: str, member: Optional[str] = None,
                           source: Optional[str] = None) -> Dict[str, Any]:
    """Write ``src`` (NVIDIA's zip or ``.pth.tar``, or any checkpoint) as safetensors in our key names.

    The metadata records the model, its spec fingerprint, where the weights came from and the
    sha256 of the source file. Returns ``{path, sha256, size, metadata}``.
    """
    from safetensors.torch import save_file

    hub_name = get_registry().resolve_model(hub_name)
    if not dst.endswith(".safetensors"):
        raise ValueError(f"destination must end with .safetensors, got {dst!r}")
    sd = read_weights(src, hub_name, member)
    check_fits(hub_name, sd, src)
    metadata = {"format": "pt", "gpunet_model": hub_name,
                "gpunet_spec_sha256": get_registry().spec(hub_name).fingerprint(),
                "source": source or os.path.basename(src), "source_sha256": sha256_file(src)}
    tensors = {k: v.detach().contiguous().clone() for k, v in sd.items()}
    with atomic_path(dst, suffix=".safetensors") as tmp:
        save_file(tensors, tmp, metadata=metadata)
    return {"path": os.path.abspath(dst), "sha256": sha256_file(dst), "size": os.path.getsize(dst),
            "metadata": metadata}


def variant_for_conversion(manifest: Manifest, hub_name: str, result: Dict[str, Any], name: str = "safetensors",
                           hf_repo: Optional[str] = None, hf_revision: Optional[str] = None,
                           hf_filename: Optional[str] = None, url: Optional[str] = None) -> Variant:
    """The manifest entry describing a converted file (sha256 and size filled in)."""
    old = {v.name: v for v in manifest.model_variants(hub_name)} if hub_name in manifest.models() else {}
    base = old.get(name)
    filename = hf_filename or (base.file if base else os.path.basename(result["path"]))
    sources = []
    if hf_repo:
        sources.append(Source(type="hf", repo_id=hf_repo, filename=filename, revision=hf_revision))
    if url:
        sources.append(Source(type="url", url=url))
    if not sources and base is not None:
        sources = list(base.sources)
    return Variant(model=hub_name, name=name, format="safetensors", file=filename, sha256=result["sha256"],
                   size=result["size"], license=base.license if base else "see the source's license",
                   source=(base.source if base else "converted with `gpunet weights convert`")
                   + f"; source sha256 {result['metadata']['source_sha256']}", sources=sources)


def import_weights(hub_name: str, path: str, variant: Optional[str] = None,
                   manifest: Optional[Manifest] = None) -> Dict[str, Any]:
    """Put a hand-downloaded weight file into the cache, after checking it fits the architecture.

    ``path``: NVIDIA's NGC zip or the ``.pth.tar`` inside it (variant ``nvidia-ngc``), or a
    safetensors file from ``gpunet weights convert`` (variant ``safetensors``). Returns the record.
    """
    hub_name = get_registry().resolve_model(hub_name)
    manifest = manifest or load_manifest()
    if variant is None:
        is_st = path.endswith(".safetensors")
        candidates = [v for v in manifest.model_variants(hub_name) if (v.format == "safetensors") == is_st]
        if not candidates:
            raise ValueError(f"no {'safetensors' if is_st else 'checkpoint'} variant of {hub_name} in "
                             f"{manifest.path}; pass variant=")
        var = candidates[0]
    else:
        var = manifest.variant(hub_name, variant)
    if path.endswith(".safetensors") != (var.format == "safetensors"):
        raise ValueError(f"{path} is {'a' if path.endswith('.safetensors') else 'not a'} safetensors file but "
                         f"variant {var.name!r} of {hub_name} has format {var.format!r}"
                         + (f"; convert it first with `gpunet weights convert {hub_name} {path} OUT.safetensors`"
                            if var.format == "safetensors" else ""))
    sd = read_weights(path, hub_name, member=_member_of(var))
    check_fits(hub_name, sd, path)
    if var.format == "safetensors":
        check_spec_fingerprint(safetensors_metadata(path), get_registry().spec(hub_name), hub_name, path)
    dest = cache_file(var)
    os.makedirs(os.path.dirname(dest), exist_ok=True)
    archive_sha = None
    # ``path`` fit above; its copy is hash-checked where it lands, then renamed and recorded together
    # under the lock: a crash leaves the old file and its record, or a record commit_file can repair
    tmp = os.path.join(os.path.dirname(dest), f".import-{os.getpid()}." + var.file)
    with file_lock(dest):
        try:
            if is_archive(path):
                archive_sha = sha256_file(path)
                sha = extract_member(path, tmp, _member_of(var) or None, source=path)
            else:
                with atomic_path(tmp) as part:
                    shutil.copyfile(path, part)
                sha = sha256_file(tmp)
            if var.sha256 and sha != var.sha256:
                raise CheckpointError(f"{path}: sha256 {sha} differs from the manifest's {var.sha256} for "
                                      f"{hub_name} ({var.name}); not imported")
            if var.size is not None and os.path.getsize(tmp) != var.size:
                raise CheckpointError(f"{path}: {os.path.getsize(tmp)} bytes, the manifest says {var.size} for "
                                      f"{hub_name} ({var.name}); not imported")
            extra = {"archive_sha256": archive_sha} if archive_sha else {}
            return commit_file(var, tmp, sha, verified_by="manifest" if var.sha256 else "import",
                               source=f"imported from {os.path.abspath(path)}", **extra)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)


def _member_of(var: Variant) -> Optional[str]:
    for s in var.sources:
        if s.member:
            return s.member
    return var.file if var.format == "nvidia-pth-tar" else None
