"""The weights cache: ``$GPUNET_HOME/weights/<model>/<variant>/<file>`` plus a record beside it.

The record (``<file>.json``) holds the sha256 a file was verified with: the publisher's when
the manifest has one, else the hash of the first verified download (or import), and the file's
stat signature at that moment (size, mtime, ctime, inode, device), as pip and huggingface_hub
trust a verified file: hash once, then trust the signature. A load whose file still has the
recorded signature skips the hash; any change on disk (a rewrite, even one that restores the
size and mtime, changes the ctime) makes the next load hash the file again and refuse it if the
hash differs. ``gpunet weights verify`` always hashes. Files fetched through Hugging Face stay
in HF's own cache; their record points there.
"""
from __future__ import annotations

import json
import os
import time
from typing import Any, Dict, List, Optional

from .._io import atomic_write_text
from ..errors import BadInputError
from ..registry import gpunet_home
from .download import ChecksumError, sha256_file
from .manifest import Variant

__all__ = ["RECORD_SCHEMA", "CacheCorruptError", "cache_root", "variant_dir", "cache_file", "read_record",
           "write_record", "commit_file", "check_record", "trusted_path", "list_cached", "stat_signature"]

RECORD_SCHEMA = "gpunet-weights-record/1"


class CacheCorruptError(BadInputError, ChecksumError):
    """A cached weight file no longer matches the sha256 it was verified with, or its record is
    unreadable (CLI exit code 2, like every corrupt input file)."""


def cache_root() -> str:
    return os.path.join(gpunet_home(), "weights")


def variant_dir(model: str, variant: str) -> str:
    return os.path.join(cache_root(), model, variant)


def cache_file(variant: Variant) -> str:
    """Where a variant's weight file lives when fetched by URL or imported."""
    return os.path.join(variant_dir(variant.model, variant.name), variant.file)


def _record_path(variant: Variant) -> str:
    return cache_file(variant) + ".json"


def read_record(variant: Variant) -> Optional[Dict[str, Any]]:
    path = _record_path(variant)
    try:
        with open(path, encoding="utf-8") as f:
            rec = json.load(f)
    except FileNotFoundError:
        return None
    except json.JSONDecodeError as e:
        raise CacheCorruptError(f"{path}: cache record is not valid JSON ({e}); delete it and the weight "
                                f"file beside it, then fetch again") from None
    if not isinstance(rec, dict) or rec.get("schema") != RECORD_SCHEMA or "sha256" not in rec \
            or not isinstance(rec.get("path"), str):
        raise CacheCorruptError(f"{path}: not a {RECORD_SCHEMA} record; delete it and fetch again")
    return rec


def stat_signature(path: str) -> Dict[str, int]:
    """What changes when a file's bytes may have: size, mtime, ctime, inode, device (following
    symlinks, so a Hugging Face cache link gives its blob's)."""
    st = os.stat(path)
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "ctime_ns": st.st_ctime_ns, "ino": st.st_ino,
            "dev": st.st_dev}


def _new_record(variant: Variant, path: str, size: int, sha256: str, verified_by: str, source: str,
                **extra: Any) -> Dict[str, Any]:
    return {"schema": RECORD_SCHEMA, "model": variant.model, "variant": variant.name, "format": variant.format,
            "path": os.path.abspath(path), "size": size, "sha256": sha256, "verified_by": verified_by,
            "source": source, "recorded_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), **extra}


def write_record(variant: Variant, path: str, sha256: str, verified_by: str, source: str,
                 **extra: Any) -> Dict[str, Any]:
    """Record how ``path`` was verified (``manifest``, ``first-download`` or ``import``).

    For a file that is already in place (a Hugging Face cache file, one placed by hand); a new
    file goes in with :func:`commit_file`, which changes file and record together.
    """
    os.makedirs(variant_dir(variant.model, variant.name), exist_ok=True)
    rec = _new_record(variant, path, os.path.getsize(path), sha256, verified_by, source, **extra)
    rec["stat"] = stat_signature(path)
    atomic_write_text(_record_path(variant), json.dumps(rec, indent=1) + "\n")
    return dict(rec, record=_record_path(variant))


def commit_file(variant: Variant, tmp: str, sha256: str, verified_by: str, source: str,
                **extra: Any) -> Dict[str, Any]:
    """Move a fully verified ``tmp`` onto :func:`cache_file` and record it, as one step.

    The caller holds :func:`gpunet._io.file_lock` on the cache file. Two renames cannot be atomic
    together, so the record first announces the new file (``pending``: its sha256), then the file
    is renamed, then the record is finalised. A crash in between leaves a record from which
    :func:`check_record` can tell the announced file (hash = ``pending``) from a damaged one.
    """
    dest = cache_file(variant)
    rec = _new_record(variant, dest, os.path.getsize(tmp), sha256, verified_by, source, **extra)
    try:
        old = read_record(variant)
    except CacheCorruptError:
        old = None
    journal = dict(old if old is not None else {"schema": RECORD_SCHEMA, "model": variant.model,
                                                 "variant": variant.name, "path": os.path.abspath(dest),
                                                 "sha256": None},
                   pending={"sha256": sha256, "record": rec})
    atomic_write_text(_record_path(variant), json.dumps(journal, indent=1) + "\n")
    os.replace(tmp, dest)
    rec["stat"] = stat_signature(dest)
    atomic_write_text(_record_path(variant), json.dumps(rec, indent=1) + "\n")
    return dict(rec, record=_record_path(variant))


def trusted_path(variant: Variant) -> Optional[str]:
    """The cached file when its record needs nothing done (verified with the sha256 the manifest
    expects, no interrupted commit, the recorded stat signature unchanged), else None: then
    :func:`check_record`, under the cache file's lock, decides. Takes no lock: a record is
    replaced atomically, so this reads the old one or the new one, and a file replaced after the
    stat is a race the locked path has too (it also loads after releasing the lock)."""
    try:
        rec = read_record(variant)
    except CacheCorruptError:
        return None
    if rec is None or rec.get("pending") or rec["sha256"] != (variant.sha256 or rec["sha256"]):
        return None
    try:
        return rec["path"] if rec.get("stat") == stat_signature(rec["path"]) else None
    except OSError:
        return None


def check_record(variant: Variant, rec: Dict[str, Any]) -> str:
    """The recorded file's path, after checking its sha256 (and the manifest's, if any).

    The hash is skipped when the record agrees with the manifest and the file still has the
    recorded stat signature (:func:`stat_signature`). A record that does not match its file is
    re-verified, never trusted blindly either way: the file is accepted only if its hash is the
    manifest's, or the one an interrupted :func:`commit_file` announced (``pending``); the record
    is then rewritten. Otherwise the file was changed or damaged on disk and
    :class:`CacheCorruptError` says so.
    """
    path = rec["path"]
    if not os.path.exists(path):
        raise FileNotFoundError(f"{_record_path(variant)} records {path}, which no longer exists; "
                                f"delete the record and fetch again")
    pending = rec.get("pending") if isinstance(rec.get("pending"), dict) else None
    expected = variant.sha256 or rec["sha256"]
    signature = stat_signature(path)
    if rec["sha256"] == expected and not pending and rec.get("stat") == signature:
        return path  # verified before, unchanged since
    actual = sha256_file(path)
    if actual == expected and rec["sha256"] == actual and not pending:
        atomic_write_text(_record_path(variant), json.dumps(dict(_plain(rec), stat=signature), indent=1) + "\n")
        return path  # the same bytes (touched, copied back, or an older record): trusted from now on
    fixed = None
    if pending and isinstance(pending.get("record"), dict) and actual == pending.get("sha256") \
            and (not variant.sha256 or actual == variant.sha256):
        fixed = dict(pending["record"])  # the commit renamed the file, then stopped
    elif actual == expected:  # stale record (or a commit that stopped before its rename): file checks out
        fixed = _plain(rec)
        if rec["sha256"] != actual:
            fixed.update(sha256=actual, size=os.path.getsize(path), verified_by="manifest",
                         recorded_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
    if fixed is not None:
        fixed["stat"] = signature
        atomic_write_text(_record_path(variant), json.dumps(fixed, indent=1) + "\n")
        return path
    why = "the manifest's sha256" if variant.sha256 else f"the sha256 recorded {rec.get('recorded_at')}"
    raise CacheCorruptError(f"{path}: cached weights for {variant.model} ({variant.name}) do not match "
                            f"{why}: expected {expected}, got {actual}. The file was changed or damaged "
                            f"on disk; delete it (and {os.path.basename(_record_path(variant))}) to fetch "
                            f"it again")


def _plain(rec: Dict[str, Any]) -> Dict[str, Any]:
    """A record as stored: without an interrupted commit's ``pending`` or the ``record`` path."""
    return {k: v for k, v in rec.items() if k not in ("pending", "record")}


def list_cached() -> List[Dict[str, Any]]:
    """Every record in the cache (including ones for models no longer in the manifest)."""
    out = []
    root = cache_root()
    if not os.path.isdir(root):
        return out
    for model in sorted(os.listdir(root)):
        mdir = os.path.join(root, model)
        if not os.path.isdir(mdir):
            continue
        for variant in sorted(os.listdir(mdir)):
            vdir = os.path.join(mdir, variant)
            if not os.path.isdir(vdir):
                continue
            for name in sorted(os.listdir(vdir)):
                if not name.endswith(".json") or name.startswith("."):
                    continue
                try:
                    with open(os.path.join(vdir, name), encoding="utf-8") as f:
                        rec = json.load(f)
                except (OSError, json.JSONDecodeError):
                    rec = {"model": model, "variant": variant, "path": os.path.join(vdir, name[:-5]),
                           "sha256": None, "problem": f"unreadable record {name}"}
                if isinstance(rec, dict) and rec.get("schema", RECORD_SCHEMA) == RECORD_SCHEMA:
                    rec.setdefault("record", os.path.join(vdir, name))
                    out.append(rec)
    return out
