"""``load_pretrained``: pick a weight variant, fetch it once (verified), load it strictly."""
from __future__ import annotations

import contextlib
import inspect
import logging
import os
import sys
import warnings
from typing import List, Optional, Tuple

from torch import nn

from ..checkpoint import CheckpointError, load_state_dict_into, read_checkpoint, read_safetensors
from .cache import CacheCorruptError, cache_file, check_record, commit_file, read_record, trusted_path, variant_dir, \
    write_record
from .._io import file_lock
from .download import ChecksumError, DownloadError, download_url, offline_mode, sha256_file, show_progress
from .manifest import Manifest, Source, Variant, load_manifest
from ..errors import GPUNetError
from ..registry import get_registry

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
    try:
        rec = read_record(variant)
    except CacheCorruptError:  # unreadable record: the file beside it is re-verified on fetch
        rec = None
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


def _warn_first_seen(variant: Variant, rec: dict) -> None:
    if not variant.sha256:
        warnings.warn(f"{variant.model} ({variant.name}): the publisher gives no checksum, so the sha256 of this "
                      f"first download ({rec['sha256']}) is recorded in {rec['record']} and every later load is "
                      f"checked against it.", UserWarning, stacklevel=_caller_stacklevel())


def _check_candidate(variant: Variant, path: str, sha: str, source: str) -> None:
    """Every check a file must pass before it is trusted: size, sha256 (where the manifest has
    them) and a strict load into the architecture (a safetensors file: also its spec fingerprint).

    Raises :class:`ChecksumError` (size / hash) or :class:`CheckpointError` (does not fit),
    naming ``source``.
    """
    from .convert import check_fits, check_spec_fingerprint, read_weights, safetensors_metadata

    size = os.path.getsize(path)
    if variant.size is not None and size != variant.size:
        raise ChecksumError(f"{source}: size mismatch: the manifest says {variant.size} bytes, got {size}")
    if variant.sha256 and sha != variant.sha256:
        raise ChecksumError(f"{source}: sha256 mismatch: expected {variant.sha256}, got {sha}")
    sd = read_weights(path, variant.model)
    check_fits(variant.model, sd, source)
    if variant.format == "safetensors":
        check_spec_fingerprint(safetensors_metadata(path), get_registry().spec(variant.model), variant.model, source)


def _incoming(variant: Variant) -> str:
    """Where a download waits for its checks (a dot file: never listed, never loaded; its name
    ends like the cache file's, so readers that go by suffix treat it the same)."""
    return os.path.join(variant_dir(variant.model, variant.name), ".incoming." + variant.file)


def _fetch_url(variant: Variant, source: Source, dest: str, progress: Optional[bool]) -> str:
    """Download into a temp file, check it completely, then rename it and record it together."""
    from .convert import extract_member

    tmp = _incoming(variant)
    try:
        if source.archive == "zip":
            archive = dest + ".zip"
            archive_sha = download_url(source.url, archive, sha256=source.archive_sha256, progress=progress)
            try:
                sha = extract_member(archive, tmp, source.member, source=source.url)
            except CheckpointError as e:
                raise DownloadError(f"{e} (downloaded archive removed)") from None
            finally:
                os.unlink(archive)
            extra = {"archive_sha256": archive_sha}
        else:
            sha = download_url(source.url, tmp, sha256=variant.sha256, size=variant.size, progress=progress)
            extra = {}
        _check_candidate(variant, tmp, sha, source.describe())
    except ChecksumError as e:
        _remove(tmp)
        msg = str(e)
        raise ChecksumError(msg if "nothing was kept" in msg else f"{msg} (nothing was kept)") from None
    except CheckpointError as e:
        _remove(tmp)
        raise DownloadError(f"{source.describe()}: {e} (nothing was kept)") from None
    except BaseException:
        _remove(tmp)
        raise
    rec = commit_file(variant, tmp, sha, verified_by="manifest" if variant.sha256 else "first-download",
                      source=source.describe(), **extra)
    _warn_first_seen(variant, rec)
    return dest


def _remove(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


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
    try:
        _check_candidate(variant, path, sha, source.describe())
    except (ChecksumError, CheckpointError) as e:
        for p in {os.path.realpath(path), path}:  # the blob and the snapshot link: never load it again
            if os.path.lexists(p):
                os.unlink(p)
        raise DownloadError(f"{e} (corrupted or wrong download; removed from the Hugging Face cache)") from None
    rec = write_record(variant, path, sha, verified_by="manifest" if variant.sha256 else "first-download",
                       source=source.describe())
    _warn_first_seen(variant, rec)
    return path


def _cached(variant: Variant, dest: str) -> Optional[str]:
    """The cached file (checked, its record repaired if need be), or None: not cached. Lock held."""
    try:
        rec = read_record(variant)
    except CacheCorruptError as e:  # unreadable record: re-verify the file as if placed by hand
        log.warning("%s", e)
        rec = None
    if rec is not None and os.path.exists(rec["path"]):
        return check_record(variant, rec)
    if os.path.exists(dest):  # placed by hand, as the offline error suggests (or its record was lost)
        sha = sha256_file(dest)
        try:
            _check_candidate(variant, dest, sha, dest)
        except ChecksumError as e:
            raise ChecksumError(f"{e}; it differs from what the manifest lists for {variant.model} "
                                f"({variant.name}): remove it and fetch again") from None
        except CheckpointError as e:
            raise CheckpointError(f"{e}; it is not {variant.model}'s {variant.name} weights: remove it and "
                                  f"fetch again") from None
        rec = write_record(variant, dest, sha, verified_by="manifest" if variant.sha256 else "first-download",
                           source=f"placed in the cache by hand ({dest})")
        _warn_first_seen(variant, rec)
        return dest
    return None


def fetch_weights(hub_name: str, weights: Optional[str] = None, progress: Optional[bool] = None,
                  manifest: Optional[Manifest] = None) -> Tuple[str, Variant]:
    """Local path of ``hub_name``'s weights (downloaded once and verified; later calls trust a file
    whose stat signature is unchanged since and hash one that changed, see :mod:`.cache`).

    A new file is trusted only after every check (manifest size and sha256 where known, the
    strict load into the architecture); one that fails is deleted and the next source tried.
    """
    hub_name = get_registry().resolve_model(hub_name)
    manifest = manifest or load_manifest()
    offline = offline_mode()
    variant = choose_variant(manifest, hub_name, weights, offline)
    trusted = trusted_path(variant)
    if trusted is not None:
        return trusted, variant
    dest = cache_file(variant)
    os.makedirs(variant_dir(variant.model, variant.name), exist_ok=True)
    with file_lock(dest):
        path = _cached(variant, dest)
        if path is not None:
            return path, variant
        errors = []
        for source in variant.sources:
            if source.type == "url" and offline:
                continue
            try:
                if source.type == "hf":
                    return _fetch_hf(variant, source, offline, progress), variant
                return _fetch_url(variant, source, dest, progress), variant
            except DownloadError as e:  # includes ChecksumError
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
    spec = getattr(model, "spec", None) or get_registry().spec(hub_name)
    if variant.format == "safetensors":  # tensors and header from one open of the file
        from .convert import check_spec_fingerprint

        sd, meta = read_safetensors(path)
        check_spec_fingerprint(meta, spec, hub_name, path)
    else:
        sd = read_checkpoint(path)
    log.info("loading %s weights (%s) from %s", hub_name, variant.name, path)
    return load_state_dict_into(model, sd, spec, path, adopt=True)
