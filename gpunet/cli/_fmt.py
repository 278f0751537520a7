"""Output helpers for the CLI: readable tables for people, JSON for programs."""
from __future__ import annotations

import json
import sys
from typing import Any, Iterable, List, Optional, Sequence, TextIO


def print_json(obj: Any, stream: Optional[TextIO] = None) -> None:
    (stream or sys.stdout).write(json.dumps(obj, indent=2, default=str) + "\n")


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
