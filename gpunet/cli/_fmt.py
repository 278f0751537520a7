"""Output helpers for the CLI: readable tables for people, JSON for programs."""
from __future__ import annotations

import contextlib
import json
import sys
from typing import Any, Iterable, Iterator, List, Optional, Sequence, TextIO


_json_stream: List[TextIO] = []  # where print_json writes while a --json command runs


@contextlib.contextmanager
def json_stdout(enabled: bool) -> Iterator[None]:
    """With ``--json``: stdout carries one JSON document (:func:`print_json`), and whatever else the
    command prints goes to stderr, so ``gpunet CMD --json | jq`` always parses."""
    if not enabled:
        yield
        return
    _json_stream.append(sys.stdout)
    try:
        with contextlib.redirect_stdout(sys.stderr):
            yield
    finally:
        _json_stream.pop()


def print_json(obj: Any, stream: Optional[TextIO] = None) -> None:
    """One indented JSON document: on the real stdout during :func:`json_stdout`."""
    out = stream or (_json_stream[-1] if _json_stream else sys.stdout)
    out.write(json.dumps(obj, indent=2, default=str) + "\n")
    out.flush()


def format_table(rows: Iterable[Sequence[Any]], headers: Sequence[str],
                 align: Optional[str] = None) -> str:
    """Plain-text table; ``align`` is one char per column ('l' or 'r'), numbers right by default."""
    rows = [["-" if v is None else str(v) for v in r] for r in rows]
    widths = [len(h) for h in headers]
    for r in rows:
        widths = [max(w, len(c)) for w, c in zip(widths, r)]
    if align is None:
        first = rows[0] if rows else []
        align = "".join("r" if _is_number(c) else "l" for c in first) or "l" * len(headers)
    def fmt(cells: List[str]) -> str:
        return "  ".join(c.rjust(w) if a == "r" else c.ljust(w)
                         for c, w, a in zip(cells, widths, align)).rstrip()
    lines = [fmt(list(headers)), "  ".join("-" * w for w in widths)]
    lines += [fmt(r) for r in rows]
    return "\n".join(lines)


def _is_number(s: str) -> bool:
    try:
        float(s.rstrip("%x"))
        return True
    except ValueError:
        return False
