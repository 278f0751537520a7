"""Every example in README.md and docs/ runs.

Each ```python fence is executed in a fresh namespace, and each ```bash fence with ``bash -e``, in an
empty working directory with a temporary HOME and GPUNET_HOME (``isolated_home``), so nothing touches
the real user folders. ``gpunet`` in a shell example is this interpreter's ``python -m gpunet``. An
example that needs a network, a GPU, a dataset or a long run is marked in the Markdown, on the line
right before its fence:

    <!-- skip: needs a GPU -->

and is reported as skipped with that reason. Other fences (```text, ```yaml, no language) are not run.
"""
from __future__ import annotations

import os
import re
import stat
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional

import pytest

REPO = Path(__file__).resolve().parents[1]
RUN_LANGS = {"python": "python", "py": "python", "bash": "shell", "sh": "shell", "shell": "shell",
             "console": "shell"}
FENCE = re.compile(r"^(\s*)(`{3,}|~{3,})\s*([\w+-]*)")
SKIP = re.compile(r"^\s*<!--\s*skip:\s*(.+?)\s*-->\s*$")
SHELL_TIMEOUT_S = 120


@dataclass(frozen=True)
class Snippet:
    path: str        # relative to the repository
    line: int        # 1-based line of the opening fence
    lang: str        # "python" or "shell"
    code: str
    skip: Optional[str] = None

    @property
    def id(self) -> str:
        return f"{self.path}:{self.line}"


def extract(text: str, path: str = "<text>") -> List[Snippet]:
    """The runnable fenced blocks of a Markdown text, each with the skip reason marked before it."""
    lines = text.splitlines()
    found, i = [], 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        indent, fence, lang = m.groups()
        start, body = i, []
        i += 1
        while i < len(lines) and not (lines[i].strip().startswith(fence) and lines[i].strip().strip(fence[0]) == ""):
            body.append(lines[i][len(indent):] if lines[i].startswith(indent) else lines[i])
            i += 1
        if i == len(lines):
            raise ValueError(f"{path}:{start + 1}: fence never closed")
        i += 1
        kind = RUN_LANGS.get(lang.lower())
        if kind is None:
            continue
        prev = next((lines[j] for j in range(start - 1, -1, -1) if lines[j].strip()), "")
        skip = SKIP.match(prev)
        found.append(Snippet(path, start + 1, kind, "\n".join(body) + "\n", skip.group(1) if skip else None))
    return found


def doc_files() -> List[Path]:
    return [REPO / "README.md"] + sorted(p for p in (REPO / "docs").rglob("*.md") if "hooks" not in p.parts)


def all_snippets() -> List[Snippet]:
    return [s for p in doc_files() for s in extract(p.read_text(encoding="utf-8"), p.relative_to(REPO).as_posix())]


SNIPPETS = all_snippets()


# -- the extractor itself ---------------------------------------------------------------------

def test_extract_reads_languages_skip_marks_and_line_numbers():
    text = ("# t\n\n```python\nx = 1\n```\n\n<!-- skip: needs a GPU -->\n```bash\ngpunet list\n```\n\n"
            "```text\nnot run\n```\n\n<!-- skip: far away -->\n\nsome words\n\n````python\n```\ny = 2\n````\n")
    got = extract(text)
    assert [(s.line, s.lang, s.skip) for s in got] == [(3, "python", None), (8, "shell", "needs a GPU"),
                                                       (20, "python", None)]
    assert got[0].code == "x = 1\n" and got[2].code == "```\ny = 2\n"


def test_extract_refuses_an_unclosed_fence():
    with pytest.raises(ValueError, match="never closed"):
        extract("```python\nx = 1\n", "a.md")


def test_every_page_of_the_docs_is_searched_and_examples_are_found():
    pages = {s.path for s in SNIPPETS}
    assert {"README.md", "docs/hub.md", "docs/deploy.md", "docs/latency-table.md", "docs/search.md"} <= pages
    assert any(s.skip is None and s.lang == "python" for s in SNIPPETS if s.path == "README.md")
    assert any(s.skip is None and s.lang == "shell" for s in SNIPPETS if s.path == "README.md")


# -- running them -------------------------------------------------------------------------------

@pytest.fixture(scope="session")
def gpunet_shim(tmp_path_factory) -> Path:
    """A folder with a ``gpunet`` that is ``python -m gpunet`` of this interpreter (not whatever
    ``gpunet`` is first on PATH)."""
    folder = tmp_path_factory.mktemp("bin")
    shim = folder / "gpunet"
    shim.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m gpunet "$@"\n')
    shim.chmod(shim.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return folder


@pytest.fixture(scope="session")
def mpl_config(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("mplconfig")  # one font cache for every example, not one per test


@pytest.fixture
def sandbox(tmp_path, monkeypatch, isolated_home, mpl_config):
    """An empty working directory and a temporary HOME; GPUNET_HOME comes from ``isolated_home``."""
    work, home = tmp_path / "work", tmp_path / "home"
    work.mkdir()
    home.mkdir()
    monkeypatch.chdir(work)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_CACHE_HOME", str(home / ".cache"))
    monkeypatch.setenv("HF_HOME", str(home / ".cache" / "huggingface"))
    monkeypatch.setenv("TORCH_HOME", str(home / ".cache" / "torch"))
    monkeypatch.setenv("MPLCONFIGDIR", str(mpl_config))
    monkeypatch.setenv("MPLBACKEND", "Agg")
    monkeypatch.setenv("GPUNET_OFFLINE", "1")  # an example that reaches for the network fails here
    return work


@pytest.mark.parametrize("snippet", SNIPPETS, ids=[s.id for s in SNIPPETS])
def test_example_runs(snippet: Snippet, sandbox, gpunet_shim, monkeypatch):
    if snippet.skip:
        pytest.skip(f"{snippet.id}: {snippet.skip}")
    if snippet.lang == "python":
        code = compile(snippet.code, snippet.id, "exec")
        exec(code, {"__name__": "__docs_example__"})  # noqa: S102 (the docs' own examples)
        return
    env = dict(os.environ, PATH=f"{gpunet_shim}{os.pathsep}{os.environ.get('PATH', '')}")
    proc = subprocess.run(["bash", "-euo", "pipefail", "-c", snippet.code], cwd=sandbox, env=env,
                          capture_output=True, text=True, timeout=SHELL_TIMEOUT_S)
    assert proc.returncode == 0, (f"{snippet.id} exited {proc.returncode}\n--- stdout\n{proc.stdout[-3000:]}"
                                  f"\n--- stderr\n{proc.stderr[-3000:]}")
    assert "is deprecated" not in proc.stderr, f"{snippet.id} uses an old flag spelling:\n{proc.stderr[-3000:]}"
