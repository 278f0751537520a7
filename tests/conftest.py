"""Shared test fixtures: an isolated GPUNET_HOME per test and the reference data in ../shared."""
from __future__ import annotations

import json
import math
import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("GPUNET_SHARED", REPO.parent / "shared"))
REFERENCE = SHARED / "reference"


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: takes more than ~20 s on 2 cores")


@pytest.fixture(autouse=True)
def isolated_home(tmp_path, monkeypatch):
    """Every test gets its own cache / user registry; nothing touches ~/.cache."""
    home = tmp_path / "gpunet_home"
    home.mkdir()
    monkeypatch.setenv("GPUNET_HOME", str(home))
    monkeypatch.delenv("GPUNET_REGISTRY", raising=False)
    monkeypatch.delenv("GPUNET_WEIGHTS_MANIFEST", raising=False)
    monkeypatch.delenv("GPUNET_OFFLINE", raising=False)
    # tests of logic must not depend on how loaded the machine is (a busy run is left out of
    # calibrations): the load probe reads 0, here and in subprocesses; tests of the busy path pin
    # their own value (monkeypatch of the module's load_average, or this variable)
    monkeypatch.setenv("GPUNET_LOAD_AVERAGE", "0")
    return home


@pytest.fixture
def one_thread():
    """One torch thread: identical float results in-process and in subprocesses, no oversubscription."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def reference_dir() -> Path:
    if not (REFERENCE / "nvidia_models.json").exists():
        pytest.fail(f"reference data not found at {REFERENCE}; set GPUNET_SHARED to the shared/ folder")
    return REFERENCE


@pytest.fixture(scope="session")
def nvidia_models(reference_dir):
    return json.loads((reference_dir / "nvidia_models.json").read_text())["models"]


def fill_recipe_b(keys_and_shapes):
    """NVIDIA's parity recipe B: a deterministic value for every state_dict tensor, in NVIDIA's key order."""
    import torch

    sd, i = {}, 0
    for key, shape in keys_and_shapes:
        if key.endswith("num_batches_tracked"):
            sd[key] = torch.tensor(0)
            continue
        r = torch.randn(shape, generator=torch.Generator().manual_seed(i))
        i += 1
        if key.endswith("running_var"):
            v = 1.0 + 0.1 * r.abs()
        elif key.endswith("running_mean") or key.endswith("bias"):
            v = 0.1 * r
        elif key.endswith("weight") and len(shape) == 1:
            v = 1.0 + 0.1 * r
        else:
            v = r * math.sqrt(1.0 / math.prod(shape[1:]))
        sd[key] = v
    return sd
