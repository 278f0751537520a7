"""`import gpunet` stays light: optional heavy dependencies load only when used."""
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
HEAVY = ["onnx", "onnxruntime", "tensorrt", "ray", "optuna", "matplotlib", "openvino"]


def test_import_does_not_pull_heavy_dependencies():
    code = ("import sys, gpunet, timm; gpunet.list_models(); "
            "m = timm.create_model('gpunet_0'); "
            f"print([n for n in {HEAVY!r} if n in sys.modules])")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=300)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[]"


def test_quickstart_example_runs():
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    r = subprocess.run([sys.executable, "examples/quickstart.py", "--max-latency-ms", "0.7", "--gpu", "gv100"],
                       capture_output=True, text=True, cwd=REPO, timeout=300, env=env)
    assert r.returncode == 0, r.stderr
    assert "gpunet-p0" in r.stdout and "logits (1, 1000)" in r.stdout
