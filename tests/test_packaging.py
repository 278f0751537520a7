"""Packaging: PEP 621 metadata in pyproject.toml, one version, typed package, the extras add up."""
import importlib.metadata
import sys
from pathlib import Path

import pytest

import gpunet

REPO = Path(__file__).resolve().parents[1]
tomllib = pytest.importorskip("tomllib" if sys.version_info >= (3, 11) else "tomli")


def _project():
    with open(REPO / "pyproject.toml", "rb") as f:
        return tomllib.load(f)


def test_the_version_is_written_once_and_is_what_pip_installed():
    data = _project()
    assert data["project"]["dynamic"] == ["version"]
    assert data["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "gpunet._version.__version__"}
    assert "version" not in (REPO / "setup.py").read_text()
    assert gpunet.__version__ == importlib.metadata.version("gpunet")


def test_all_is_every_extra_that_installs_without_a_gpu():
    extras = _project()["project"]["optional-dependencies"]
    union = {r for k, v in extras.items() if k not in ("tensorrt", "test", "all", "docs") for r in v}
    assert set(extras["all"]) == union
    assert not any("tensorrt" in r for r in extras["all"])


def test_the_package_says_it_is_typed():
    assert (REPO / "gpunet" / "py.typed").is_file()
    assert "py.typed" in _project()["tool"]["setuptools"]["package-data"]["gpunet"]
    assert importlib.metadata.entry_points(group="console_scripts", name="gpunet")
