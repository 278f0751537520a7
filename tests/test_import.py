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


def _imported(stderr: str) -> set:
    """Top-level module names from ``python -X importtime`` output."""
    names = set()
    for line in stderr.splitlines():
        if line.startswith("import time:") and "|" in line:
            names.add(line.rsplit("|", 1)[1].strip().split(".")[0])
    return names


def _commands():
    from gpunet.cli import build_parser

    sub = next(a for a in build_parser()._actions if a.__class__.__name__ == "_SubParsersAction")
    return sorted(sub.choices)


def test_cli_help_imports_neither_torch_nor_timm():
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    commands = _commands()
    assert {"deploy", "query", "search", "weights"} <= set(commands)
    for argv in [["--help"]] + [[c, "--help"] for c in commands]:
        r = subprocess.run([sys.executable, "-X", "importtime", "-m", "gpunet", *argv], capture_output=True,
                           text=True, cwd=REPO, timeout=300, env=env)
        assert r.returncode == 0, (argv, r.stderr[-2000:])
        assert "usage: gpunet" in r.stdout, argv
        heavy = _imported(r.stderr) & {"torch", "timm", "numpy", *HEAVY}
        assert not heavy, (argv, heavy)


def test_import_gpunet_is_light_and_timm_finds_the_models_whichever_comes_first():
    code = ("import sys, gpunet; light = 'torch' not in sys.modules and 'timm' not in sys.modules; "
            "import timm; print(light, timm.is_model('gpunet_0'), gpunet.get_model('gpunet-0').__class__.__name__)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=300)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["True", "True", "GPUNet"]
    code = "import timm, gpunet; print(timm.is_model('gpunet_0'), timm.is_model('gpunet_d2'))"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=300)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["True", "True"]
