"""gpunet's modules import one another without cycles (function-level imports included), and the
model code stays free of torch where it is plain data."""
import ast
import subprocess
import sys
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[1] / "gpunet"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PKG.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _imports(path: Path, name: str, modules) -> set:
    """gpunet modules that ``path`` imports anywhere (top level or inside functions)."""
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        targets = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            targets = [mod] + [f"{mod}.{a.name}" for a in node.names]
        for t in targets:
            # the longest gpunet module the name refers to (``from . import spec`` -> gpunet.spec)
            while t and t not in modules:
                t = t.rpartition(".")[0]
            if t and t != name and not name.startswith(t + "."):  # a submodule reaching its package
                found.add(t)
    return found


def _graph():
    files = {_module_name(p): p for p in PKG.rglob("*.py")}
    return {name: _imports(path, name, files) for name, path in files.items()}


def _find_cycle(graph):
    state, stack = {}, []

    def visit(node):
        state[node] = 1
        stack.append(node)
        for dep in sorted(graph.get(node, ())):
            if state.get(dep) == 1:
                return stack[stack.index(dep):] + [dep]
            if dep not in state:
                cycle = visit(dep)
                if cycle:
                    return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            cycle = visit(node)
            if cycle:
                return cycle
    return None


def test_no_import_cycle_in_gpunet():
    graph = _graph()
    assert "gpunet.spec" in graph and "gpunet.search.lut.codes" in graph
    assert _find_cycle(graph) is None, " -> ".join(_find_cycle(graph))


def test_cycle_finder_sees_function_level_imports():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}}
    assert _find_cycle(graph) == ["a", "b", "c", "a"]
    assert _find_cycle({"a": {"b"}, "b": set()}) is None
    files = {"gpunet.spec": None, "gpunet.nvidia": None, "gpunet": None}
    assert "gpunet.nvidia" not in _imports(PKG / "spec.py", "gpunet.spec", files)
    assert "gpunet.spec" in _imports(PKG / "nvidia.py", "gpunet.nvidia", files)


def test_model_code_dependencies_point_one_way():
    graph = _graph()
    assert graph["gpunet.spec"] <= {"gpunet.errors", "gpunet._io"}
    assert "gpunet.model" not in graph["gpunet.builder"]
    assert "gpunet.search.lut.estimate" not in graph["gpunet.search.lut.table"]
    below = ("gpunet.weights", "gpunet.export", "gpunet.latency", "gpunet.search", "gpunet.train", "gpunet.cli")
    for mod in ("gpunet.spec", "gpunet.blocks", "gpunet.builder", "gpunet.model", "gpunet.nvidia"):
        assert not [d for d in graph[mod] if d.startswith(below)], mod


def test_spec_module_imports_without_torch():
    # gpunet/__init__ imports the models (torch); load spec.py as a file to see its own imports
    code = ("import importlib.util, sys; sys.modules['gpunet'] = type(sys)('gpunet'); "
            f"sys.modules['gpunet'].__path__ = [{str(PKG)!r}]; import gpunet.spec; "
            "assert 'torch' not in sys.modules, 'gpunet.spec imported torch'")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def test_spec_parser_points_nvidia_files_to_the_loader(reference_dir):
    import json

    import gpunet
    from gpunet.spec import SpecError, parse_spec

    cfg = json.loads((reference_dir / "nvidia_configs" / "0.65ms.json").read_text())
    with pytest.raises(SpecError, match="NVIDIA's list format.*gpunet.load_spec"):
        parse_spec(cfg)
    assert gpunet.load_spec(str(reference_dir / "nvidia_configs" / "0.65ms.json")).resolution == 320
