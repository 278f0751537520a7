"""``verify_cached``: does every cached weight file still match its recorded sha256 (and fit)?"""
from __future__ import annotations

import os
from typing import Any, Dict, List, Optional

from .cache import list_cached
from .download import sha256_file

__all__ = ["verify_cached"]


def verify_cached(model: Optional[str] = None, deep: bool = False) -> List[Dict[str, Any]]:
    """One result per cached file: ``{model, variant, path, ok, problem}``.

    ``deep`` also loads each file strictly into its architecture (slower: reads every tensor).
    """
    from ..registry import get_registry

    if model is not None:
        model = get_registry().resolve_model(model)
    out = []
    for rec in list_cached():
        if model is not None and rec.get("model") != model:
            continue
        res = {"model": rec.get("model"), "variant": rec.get("variant"), "path": rec.get("path"),
               "sha256": rec.get("sha256"), "ok": False, "problem": rec.get("problem")}
        out.append(res)
        if res["problem"]:
            continue
        path = rec.get("path")
        if not path or not os.path.exists(path):
            res["problem"] = "file missing"
            continue
        actual = sha256_file(path)
        pending = rec.get("pending") if isinstance(rec.get("pending"), dict) else {}
        if actual != rec["sha256"]:
            if actual != pending.get("sha256"):
                res["problem"] = f"sha256 mismatch: recorded {rec['sha256']}, file has {actual}"
                continue
            res["sha256"] = actual  # an interrupted commit of a checked file; the next load finalises it
        if deep:
            from ..checkpoint import CheckpointError
            from .convert import check_fits, read_weights

            try:
                check_fits(rec["model"], read_weights(path, rec["model"]), path)
            except (CheckpointError, ValueError, OSError) as e:  # unreadable, corrupt or not fitting
                msg = str(e).splitlines()[0] if str(e) else type(e).__name__
                res["problem"] = f"does not load: {msg if path in msg else f'{path}: {msg}'}"
                continue
        res["ok"] = True
    return out
