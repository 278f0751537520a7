"""timm's own model tests (tests/test_models.py of the installed timm's sdist) pass for the GPUNets.

The suite is fetched once with ``pip download`` into ``$GPUNET_TIMM_SUITE_CACHE`` (default
``~/.cache/gpunet/timm-suite/<version>``); without network and without a cached copy the test
skips, saying so. A conftest importing gpunet registers the models, then
``-k "gpunet and not pretrained"`` runs in a subprocess (about 1-2 min on 2 cores).
"""
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
import timm

REPO = Path(__file__).resolve().parents[1]
SELECTION = "gpunet and not pretrained"


def _suite_dir() -> Path:
    version = timm.__version__
    root = Path(os.environ.get("GPUNET_TIMM_SUITE_CACHE",
                               Path.home() / ".cache" / "gpunet" / "timm-suite")) / version
    suite = root / "tests"
    if (suite / "test_models.py").exists():
        return suite
    root.mkdir(parents=True, exist_ok=True)
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:", "--quiet",
             "--disable-pip-version-check", "--retries", "1", "--timeout", "20", "-d", str(root),
             f"timm=={version}"],
            capture_output=True, text=True, timeout=300)
    except subprocess.TimeoutExpired:
        pytest.skip(f"pip download of the timm {version} sdist timed out (no network?)")
    sdists = sorted(root.glob("timm-*.tar.gz"))
    if proc.returncode != 0 or not sdists:
        pytest.skip(f"cannot fetch timm {version}'s test suite (no network or no sdist on the index): "
                    f"{(proc.stderr or proc.stdout).strip().splitlines()[-1:] or ''}")
    tmp = root / "tests.part"
    with tarfile.open(sdists[-1]) as tar:
        members = [m for m in tar.getmembers() if m.isfile() and "/tests/" in m.name]
        for m in members:
            m.name = m.name.split("/tests/", 1)[1]
        tar.extractall(tmp, members=members, filter="data")
    conftest = tmp / "conftest.py"
    text = conftest.read_text() if conftest.exists() else ""
    conftest.write_text(text + "\n\nimport gpunet  # noqa: E402,F401  (registers the GPUNets with timm)\n")
    os.replace(tmp, suite)
    return suite


@pytest.mark.slow
def test_timm_model_suite_passes_for_gpunets(tmp_path):
    suite = _suite_dir()
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
         "-W", "ignore::pytest.PytestUnknownMarkWarning",
         "--rootdir", str(suite), str(suite / "test_models.py"), "-k", SELECTION],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=1800)
    tail = proc.stdout[-4000:] + proc.stderr[-2000:]
    assert proc.returncode == 0, tail
    summary = proc.stdout.strip().splitlines()[-1]
    assert " passed" in summary and "failed" not in summary and "error" not in summary, tail
