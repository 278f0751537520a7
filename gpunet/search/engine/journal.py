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

__all__ = ["Journal", "JournalError", "candidate_id", "repair_journal", "JOURNAL_NAME", "INFRA_NAME", "REJECTED_NAME"]

JOURNAL_NAME = "results.jsonl"
INFRA_NAME = "infrastructure.jsonl"     # trials lost to the machines: not evaluations, may repeat a candidate
REJECTED_NAME = "results.rejected.jsonl"  # lines ``repair`` took out of the journal


class JournalError(BadInputError, ValueError):
    """The journal is malformed or a write would break its one-line-per-candidate rule."""


def candidate_id(vector: Iterable[int]) -> str:
    """A stable 12-hex id of a candidate vector (its trial folder and journal key)."""
    text = ",".join(str(int(v)) for v in vector)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def _parse(raw: bytes) -> Optional[str]:
    """Why a complete journal line is not a record, or None when it is one."""
    try:
        rec = json.loads(raw)
    except json.JSONDecodeError as e:
        return f"is not JSON ({e.msg})"
    if not isinstance(rec, dict) or "candidate_id" not in rec or "vector" not in rec:
        return "lacks 'candidate_id' / 'vector'"
    return None


class Journal:
    """Append-only JSON lines of finished evaluations, keyed by candidate.

    ``unique=False`` (the infrastructure journal) appends without the one-line-per-candidate rule.
    """

    def __init__(self, path: str, unique: bool = True):
        self.path = os.fspath(path)
        self.unique = unique

    def _complete_lines(self) -> List[bytes]:
        if not os.path.exists(self.path):
            return []
        with open(self.path, "rb") as f:
            return f.read().split(b"\n")[:-1]  # the part after the last newline is incomplete

    def records(self) -> List[Dict[str, Any]]:
        """Every complete line, in file order (an unterminated last line is skipped)."""
        out = []
        for n, raw in enumerate(self._complete_lines(), 1):
            if not raw.strip():
                continue
            why = _parse(raw)
            if why:
                folder = os.path.dirname(os.path.abspath(self.path))
                raise JournalError(f"{self.path}: line {n} {why}; `gpunet search repair {folder}` moves it to "
                                   f"{REJECTED_NAME}")
            out.append(json.loads(raw))
        return out

    def done(self) -> Dict[str, Dict[str, Any]]:
        return {r["candidate_id"]: r for r in self.records()}

    def append(self, record: Dict[str, Any]) -> bool:
        """Write ``record`` as one line; False (nothing written) if its candidate already has one."""
        from ..._io import file_lock, fsync_dir

        rec = dict(record)
        rec.setdefault("candidate_id", candidate_id(rec["vector"]))
        line = json.dumps(rec, allow_nan=False, sort_keys=False).encode() + b"\n"
        os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
        with file_lock(self.path):
            if self.unique and rec["candidate_id"] in self.done():
                return False
            created = not os.path.exists(self.path)
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
            if created:
                fsync_dir(os.path.dirname(os.path.abspath(self.path)))
        return True

    def best(self) -> Optional[Dict[str, Any]]:
        ok = [r for r in self.records() if r.get("value") is not None]
        return max(ok, key=lambda r: r["value"]) if ok else None


def repair_journal(out: str) -> List[int]:
    """Move the corrupt complete lines of ``out``'s journal to ``results.rejected.jsonl``.

    Each moved line is appended there as ``{"line": N, "text": ...}``; the journal is rewritten
    atomically with every other byte as it was (a torn last line included). Returns the line
    numbers moved; a journal without a corrupt line is not touched.
    """
    from ..._io import atomic_write_bytes, file_lock

    path = os.path.join(out, JOURNAL_NAME)
    if not os.path.exists(path):
        raise JournalError(f"{out}: no {JOURNAL_NAME} to repair")
    with file_lock(path):
        with open(path, "rb") as f:
            parts = f.read().split(b"\n")
        bad = [n for n, raw in enumerate(parts[:-1], 1) if raw.strip() and _parse(raw)]
        if not bad:
            return []
        rejected = b"".join(json.dumps({"line": n, "text": parts[n - 1].decode("utf-8", "replace")}).encode()
                            + b"\n" for n in bad)
        with open(os.path.join(out, REJECTED_NAME), "ab") as f:
            f.write(rejected)
            f.flush()
            os.fsync(f.fileno())
        keep = [raw for n, raw in enumerate(parts[:-1], 1) if n not in bad]
        atomic_write_bytes(path, b"".join(raw + b"\n" for raw in keep) + parts[-1])
    return bad
