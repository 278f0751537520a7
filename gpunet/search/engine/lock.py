"""One process per search folder: ``DIR/.search.lock``, held for the whole run.

Two heads on one folder would each count their own completions and overrun the budget (seen:
a ``--resume`` started beside a running search left 7 lines for a budget of 6). The lock is an
exclusive ``flock`` on an open file, so it dies with its process (no stale locks after a kill);
the file holds who took it (host, pid, start time, command) so the refusal can say so.
"""
from __future__ import annotations

import json
import os
import socket
import sys
import time
from typing import Any, Dict, Optional

from ...errors import GPUNetError

__all__ = ["SearchLock", "SearchLockedError", "lock_holder", "LOCK_NAME"]

LOCK_NAME = ".search.lock"


class SearchLockedError(GPUNetError, ValueError):
    """Another process is running the search in this folder."""


def _describe(holder: Optional[Dict[str, Any]]) -> str:
    if not holder:
        return "another process"
    since = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(holder.get("started", 0)))
    return f"pid {holder.get('pid')} on host {holder.get('hostname')} since {since}"


def _read_holder(path: str) -> Optional[Dict[str, Any]]:
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read().strip()
        return json.loads(text) if text else None
    except (OSError, ValueError):
        return None


class SearchLock:
    """``with SearchLock(out):`` the search in ``out`` is this process's, or :class:`SearchLockedError`."""

    def __init__(self, out: str):
        self.out = os.path.abspath(out)
        self.path = os.path.join(self.out, LOCK_NAME)
        self._file = None

    def __enter__(self) -> "SearchLock":
        import fcntl

        os.makedirs(self.out, exist_ok=True)
        f = open(self.path, "a+", encoding="utf-8")
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.close()
            raise SearchLockedError(
                f"{self.out} is being searched by {_describe(_read_holder(self.path))}; wait for it to end or "
                f"stop it (a second run or --resume on the same folder would double-count the budget)") from None
        holder = {"hostname": socket.gethostname(), "pid": os.getpid(), "started": round(time.time(), 3),
                  "argv": list(sys.argv)}
        f.seek(0)
        f.truncate()
        f.write(json.dumps(holder) + "\n")
        f.flush()
        self._file = f
        return self

    def __exit__(self, *exc) -> None:
        import fcntl

        if self._file is None:
            return
        self._file.seek(0)
        self._file.truncate()
        self._file.flush()
        fcntl.flock(self._file.fileno(), fcntl.LOCK_UN)
        self._file.close()
        self._file = None


def lock_holder(out: str) -> Optional[Dict[str, Any]]:
    """Who runs the search in ``out`` now (host, pid, started, argv), or None when nobody does."""
    import fcntl

    path = os.path.join(os.path.abspath(out), LOCK_NAME)
    if not os.path.exists(path):
        return None
    with open(path, encoding="utf-8") as f:
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return _read_holder(path) or {}
        fcntl.flock(f.fileno(), fcntl.LOCK_UN)
    return None
