"""``DIR/results.jsonl``: the search's truth, one JSON line per evaluated candidate.

A line is appended (under a file lock, flushed and fsynced) when a trial ends, so a reader sees
every finished evaluation while the search runs and a killed head loses none. A candidate is
keyed by its vector (``candidate_id``: a short hash), and :meth:`Journal.append` refuses a second
line for the same candidate, so a search never records a repeat. A line cut short by a kill
mid-write (no trailing newline) is not a record: readers skip it and the next append drops it.
"""
from __future__ import annotations

import hashlib
import json
import os
from typing import Any, Dict, Iterable, List, Optional

from ...errors import BadInputError

__all__ = ["Journal", "JournalError", "candidate_id", "JOURNAL_NAME"]

JOURNAL_NAME = "results.jsonl"


class JournalError(BadInputError, ValueError):
    """The journal is malformed or a write would break its one-line-per-candidate rule."""


def candidate_id(vector: Iterable[int]) -> str:
    """A stable 12-hex id of a candidate vector (its trial folder and journal key)."""
    text = ",".join(str(int(v)) for v in vector)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


class Journal:
    """Append-only JSON lines of finished evaluations, keyed by candidate."""

    def __init__(self, path: str):
        self.path = os.fspath(path)

    def records(self) -> List[Dict[str, Any]]:
        """Every complete line, in file order (an unterminated last line is skipped)."""
        if not os.path.exists(self.path):
            return []
        with open(self.path, "rb") as f:
            data = f.read()
        out = []
        lines = data.split(b"\n")
        for n, raw in enumerate(lines[:-1], 1):  # the part after the last newline is incomplete
            if not raw.strip():
                continue
            try:
                rec = json.loads(raw)
            except json.JSONDecodeError as e:
                raise JournalError(f"{self.path}: line {n} is not JSON ({e.msg})") from None
            if not isinstance(rec, dict) or "candidate_id" not in rec or "vector" not in rec:
                raise JournalError(f"{self.path}: line {n} lacks 'candidate_id' / 'vector'")
            out.append(rec)
        return out

    def done(self) -> Dict[str, Dict[str, Any]]:
        return {r["candidate_id"]: r for r in self.records()}

    def append(self, record: Dict[str, Any]) -> bool:
        """Write ``record`` as one line; False (nothing written) if its candidate already has one."""
        from ..._io import file_lock

        rec = dict(record)
        rec.setdefault("candidate_id", candidate_id(rec["vector"]))
        line = json.dumps(rec, allow_nan=False, sort_keys=False).encode() + b"\n"
        os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
        with file_lock(self.path):
            if rec["candidate_id"] in self.done():
                return False
            with open(self.path, "ab+") as f:
                f.seek(0, os.SEEK_END)
                size = f.tell()
                if size:  # drop a tail a killed writer left without its newline
                    f.seek(max(0, size - 65536))
                    tail = f.read()
                    cut = tail.rfind(b"\n")
                    keep = size - len(tail) + cut + 1
                    if keep != size:
                        f.truncate(keep)
                f.seek(0, os.SEEK_END)
                f.write(line)
                f.flush()
                os.fsync(f.fileno())
        return True

    def best(self) -> Optional[Dict[str, Any]]:
        ok = [r for r in self.records() if r.get("value") is not None]
        return max(ok, key=lambda r: r["value"]) if ok else None
