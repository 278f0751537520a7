"""``load_pretrained``: pick a weight variant, fetch it once (verified), load it strictly."""
from __future__ import annotations

import inspect
import logging
import os
import sys
import warnings
from typing import List, Optional, Tuple

from torch import nn

from ..checkpoint import CheckpointError, load_checkpoint
from .cache import cache_file, check_record, read_record, variant_dir, write_record
from .._io import file_lock
from .download import ChecksumError, DownloadError, download_url, offline_mode, sha256_file, show_progress
from .manifest import Manifest, Source, Variant, load_manifest
from ..errors import GPUNetError

__all__ = ["WeightsNotCachedError", "choose_variant", "fetch_weights", "load_pretrained", "cached_path"]

log = logging.getLogger(__name__)


class WeightsNotCachedError(GPUNetError, FileNotFoundError):
    """Downloads are off (offline) or impossible, and the weights are not in the cache."""


def _hf_local(source: Source) -> Optional[str]:
    try:
        from huggingface_hub import hf_hub_download
    except ImportError:
        return None
    try:
        return hf_hub_download(source.repo_id, source.filename, revision=source.revision, local_files_only=True,
                               endpoint=source.endpoint)
    except Exception:  # LocalEntryNotFoundError and friends: simply not cached
        return None


def cached_path(variant: Variant) -> Optional[str]:
    """Where ``variant`` already is on disk (our cache or HF's), without checking it; else None."""
    rec = read_record(variant)
    if rec is not None and os.path.exists(rec["path"]):
        return rec["path"]
    if os.path.exists(cache_file(variant)):
        return cache_file(variant)
    for s in variant.sources:
        if s.type == "hf":
            p = _hf_local(s)
            if p:
                return p
    return None


def choose_variant(manifest: Manifest, hub_name: str, weights: Optional[str] = None,
                   offline: Optional[bool] = None) -> Variant:
    """``weights`` if given, else the first variant in preference order that is cached or downloadable."""
    if weights is not None:
        return manifest.variant(hub_name, weights)
    offline = offline_mode() if offline is None else offline
    variants = manifest.model_variants(hub_name)
    for v in variants:
        if cached_path(v) is not None or (v.sources and not offline):
            return v
    with_sources = [v for v in variants if v.sources] or variants
    raise _not_cached(with_sources[0], offline, [v.name for v in variants])


def _not_cached(variant: Variant, offline: bool, tried: Optional[List[str]] = None) -> WeightsNotCachedError:
    dest = cache_file(variant)
    why = ("downloads are off (GPUNET_OFFLINE / HF_HUB_OFFLINE is set)" if offline
           else f"variant {variant.name!r} has no download source")
    lines = [f"no cached weights for {variant.model} ({', '.join(tried or [variant.name])}) and {why}."]
    for s in variant.sources:
        if s.type == "url":
            inside = f", which holds {s.member}" if s.member else ""
            lines.append(f"Download {s.url}{inside} on a machine with internet, then run "
                         f"`gpunet weights import {variant.model} <downloaded file>` or put "
                         f"{s.member or variant.file} at {dest}.")
        else:
            lines.append(f"Fetch {s.describe()} into the Hugging Face cache (`huggingface-cli download "
                         f"{s.repo_id} {s.filename} --revision {s.revision or 'main'}`).")
    if not variant.sources:
        lines.append(f"Make it with `gpunet weights convert` and `gpunet weights import {variant.model} FILE` "
                     f"(it goes to {dest}).")
    return WeightsNotCachedError(" ".join(lines))


def _caller_stacklevel() -> int:
    """``stacklevel`` that points a warning at the first frame outside the gpunet package."""
    pkg = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep
    frame, level = sys._getframe(2), 2
    while frame is not None and os.path.abspath(frame.f_code.co_filename).startswith(pkg):
        frame, level = frame.f_back, level + 1
    return level


def _first_seen(variant: Variant, path: str, sha: str, source: str, **extra) -> None:
    rec = write_record(variant, path, sha, verified_by="manifest" if variant.sha256 else "first-download",
                       source=source, **extra)
    if not variant.sha256:
        warnings.warn(f"{variant.model} ({variant.name}): the publisher gives no checksum, so the sha256 of this "
                      f"first download ({sha}) is recorded in {rec['record']} and every later load is checked "
                      f"against it.", UserWarning, stacklevel=_caller_stacklevel())


def _fetch_url(variant: Variant, source: Source, dest: str, progress: Optional[bool]) -> str:
    from .convert import extract_member

    if source.archive == "zip":
        archive = dest + ".zip"
        archive_sha = download_url(source.url, archive, sha256=source.archive_sha256, progress=progress)
        try:
            sha = extract_member(archive, dest, source.member, source=source.url)
        except CheckpointError as e:
            raise DownloadError(f"{e} (downloaded archive removed)") from None
        finally:
            os.unlink(archive)
        extra = {"archive_sha256": archive_sha}
    else:
        sha = download_url(source.url, dest, sha256=variant.sha256, progress=progress)
        extra = {}
    if variant.sha256 and sha != variant.sha256:
        os.unlink(dest)
        raise ChecksumError(f"{source.describe()}: sha256 mismatch: expected {variant.sha256}, got {sha} "
                            f"(corrupted download; nothing was kept)")
    _first_seen(variant, dest, sha, source.describe(), **extra)
    return dest


def _fetch_hf(variant: Variant, source: Source, offline: bool, progress: Optional[bool]) -> str:
    try:
        from huggingface_hub import hf_hub_download
    except ImportError:
        raise DownloadError(f"{source.describe()}: needs huggingface_hub (pip install 'gpunet[hf]')") from None
    kwargs = {}
    if not show_progress(progress) and "tqdm_class" in inspect.signature(hf_hub_download).parameters:
        from tqdm.auto import tqdm

        class _Quiet(tqdm):
            def __init__(self, *args, **kw):
                kw["disable"] = True
                super().__init__(*args, **kw)

        kwargs["tqdm_class"] = _Quiet
    path = hf_hub_download(source.repo_id, source.filename, revision=source.revision,
                           local_files_only=offline, endpoint=source.endpoint, **kwargs)
    sha = sha256_file(path)
    if variant.sha256 and sha != variant.sha256:
        for p in {os.path.realpath(path), path}:  # the blob and the snapshot link: never load it again
            if os.path.lexists(p):
                os.unlink(p)
        raise ChecksumError(f"{source.describe()}: sha256 mismatch: expected {variant.sha256}, got {sha} "
                            f"(corrupted download; removed from the Hugging Face cache)")
    _first_seen(variant, path, sha, source.describe())
    return path


def fetch_weights(hub_name: str, weights: Optional[str] = None, progress: Optional[bool] = None,
                  manifest: Optional[Manifest] = None) -> Tuple[str, Variant]:
    """Local path of ``hub_name``'s weights (downloaded once, sha256-checked on every call)."""
    from ..registry import get_registry

    hub_name = get_registry().resolve_model(hub_name)
    manifest = manifest or load_manifest()
    offline = offline_mode()
    variant = choose_variant(manifest, hub_name, weights, offline)
    dest = cache_file(variant)
    os.makedirs(variant_dir(variant.model, variant.name), exist_ok=True)
    with file_lock(dest):
        rec = read_record(variant)
        if rec is not None and os.path.exists(rec["path"]):
            return check_record(variant, rec), variant
        if os.path.exists(dest):  # placed by hand, as the offline error suggests
            sha = sha256_file(dest)
            if variant.sha256 and sha != variant.sha256:
                raise ChecksumError(f"{dest}: sha256 {sha} differs from the manifest's {variant.sha256} for "
                                    f"{hub_name} ({variant.name}); remove it and fetch again")
            _first_seen(variant, dest, sha, f"placed in the cache by hand ({dest})")
            return dest, variant
        errors = []
        for source in variant.sources:
            if source.type == "url" and offline:
                continue
            try:
                if source.type == "hf":
                    return _fetch_hf(variant, source, offline, progress), variant
                return _fetch_url(variant, source, dest, progress), variant
            except ChecksumError as e:
                errors.append(str(e))
            except DownloadError as e:
                errors.append(str(e))
            except Exception as e:  # huggingface_hub's errors (offline, not found, HTTP)
                if source.type != "hf":
                    raise
                errors.append(f"{source.describe()}: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}")
        if offline or not variant.sources:
            raise _not_cached(variant, offline)
        raise DownloadError(f"could not fetch weights for {hub_name} ({variant.name}) from any source:\n  "
                            + "\n  ".join(errors))


def load_pretrained(model: nn.Module, hub_name: str, weights: Optional[str] = None,
                    progress: Optional[bool] = None) -> nn.Module:
    """Load ``hub_name``'s published weights into ``model`` (a GPUNet built from its spec).

    ``weights`` names a variant from the manifest (``"nvidia-ngc"``, ``"safetensors"``); by
    default the best one that is cached or downloadable. A model built with another
    ``num_classes`` keeps its own classifier (fine-tuning).
    """
    path, variant = fetch_weights(hub_name, weights, progress)
    spec = getattr(model, "spec", None)
    if variant.format == "safetensors" and spec is not None:
        from .convert import safetensors_metadata

        expected = safetensors_metadata(path).get("gpunet_spec_sha256")
        if expected and expected != spec.fingerprint():
            raise CheckpointError(f"{path}: converted for a different architecture than {hub_name} "
                                  f"(spec sha256 {expected} vs {spec.fingerprint()})")
    log.info("loading %s weights (%s) from %s", hub_name, variant.name, path)
    return load_checkpoint(model, path, spec)
