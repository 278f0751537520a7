"""Device fingerprint: enough about the machine and libraries to tell whose numbers these are.

A latency is only meaningful with the hardware, thread count and library versions it was
measured with; every :class:`~gpunet.latency.BenchmarkResult` and every saved tier carries this.
"""
from __future__ import annotations

import functools
import hashlib
import importlib.metadata
import json
import os
import platform
import re
import shutil
import subprocess
from typing import Any, Dict, List, Optional

__all__ = ["device_fingerprint", "cpu_info", "cpu_description", "gpu_info", "fingerprint_id", "default_device_name"]

#: instruction-set extensions that change which kernels the CPU runtimes pick.
_CPU_FLAGS = ("avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "avx512_fp16", "amx_bf16", "amx_int8")
#: the Python distribution that implements each backend.
_BACKEND_PACKAGES = {"torch": [], "onnxruntime": ["onnxruntime", "onnxruntime-gpu", "onnx"],
                     "openvino": ["openvino", "onnx"], "tensorrt": ["tensorrt", "tensorrt-cu12", "tensorrt-cu13"]}


@functools.lru_cache(maxsize=1)
def cpu_info() -> Dict[str, Any]:
    """CPU model, logical cores, cores this process may use, and relevant ISA flags."""
    model, flags = platform.processor() or platform.machine(), set()
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            text = f.read()
        m = re.search(r"^model name\s*:\s*(.+)$", text, re.M)
        model = m.group(1).strip() if m else model
        m = re.search(r"^flags\s*:\s*(.+)$", text, re.M)
        flags = set(m.group(1).split()) if m else set()
    except OSError:
        pass
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:  # macOS / Windows
        usable = os.cpu_count() or 1
    return {"cpu": model, "cpu_count": os.cpu_count(), "cpu_usable": usable,
            "cpu_flags": [f for f in _CPU_FLAGS if f in flags]}


def cpu_description(info: Optional[Dict[str, Any]] = None) -> str:
    """One line for a benchmark's output: the CPU model, its widest vector ISA (AMX / AVX-512 /
    AVX2) with the flags that matter for inference, and the cores this process may use."""
    info = info or cpu_info()
    flags = set(info.get("cpu_flags") or ())
    isa = "AMX" if {"amx_bf16", "amx_int8"} & flags else "AVX-512" if "avx512f" in flags else \
        "AVX2" if "avx2" in flags else "no AVX2"
    return (f"{info.get('cpu')}; ISA {isa} ({' '.join(sorted(flags)) or 'no flags read'}); "
            f"{info.get('cpu_usable')} of {info.get('cpu_count')} cores usable")


@functools.lru_cache(maxsize=1)
def gpu_info() -> List[Dict[str, Any]]:
    """NVIDIA GPUs (name, memory, driver) via ``nvidia-smi``; empty without one."""
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return []
    try:
        out = subprocess.run([exe, "--query-gpu=name,memory.total,driver_version", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=10, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    gpus = []
    for line in out.strip().splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) == 3:
            gpus.append({"name": parts[0], "memory": parts[1], "driver": parts[2]})
    return gpus


def _version(dist: str) -> Optional[str]:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def device_fingerprint(backend: str = "torch") -> Dict[str, Any]:
    """Machine + library versions for ``backend``; ``id`` is a short hash of the stable fields."""
    import torch

    fp: Dict[str, Any] = dict(cpu_info())
    fp["os"] = f"{platform.system()} {platform.release()}"
    fp["python"] = platform.python_version()
    fp["backend"] = backend
    libs = {"torch": torch.__version__}
    for dist in _BACKEND_PACKAGES.get(backend, []):
        v = _version(dist)
        if v:
            libs[dist] = v
    fp["libraries"] = libs
    fp["torch_threads"] = torch.get_num_threads()
    if backend == "tensorrt" or shutil.which("nvidia-smi"):
        gpus = gpu_info()
        fp["gpus"] = gpus
        if gpus:
            fp["gpu"], fp["gpu_driver"] = gpus[0]["name"], gpus[0]["driver"]
        if torch.version.cuda:
            fp["cuda"] = torch.version.cuda
    fp["id"] = fingerprint_id(fp)
    return fp


def fingerprint_id(fp: Dict[str, Any]) -> str:
    """12 hex digits over hardware and library versions (not thread counts or dates)."""
    stable = {k: fp.get(k) for k in ("cpu", "cpu_count", "cpu_flags", "gpu", "gpu_driver", "backend", "libraries")}
    return hashlib.sha256(json.dumps(stable, sort_keys=True).encode()).hexdigest()[:12]


def default_device_name(fp: Dict[str, Any]) -> str:
    """A readable device id when the user gives none, e.g. ``cpu-amd-epyc-2c`` or ``gpu-nvidia-h100``."""
    if fp.get("backend") == "tensorrt" and fp.get("gpu"):
        base = "gpu-" + fp["gpu"]
    else:
        base = f"cpu-{fp.get('cpu', 'unknown')}-{fp.get('cpu_usable') or fp.get('cpu_count')}c"
    base = re.sub(r"\(r\)|\(tm\)|processor|cpu @.*|\d+-core", "", base.lower())
    return re.sub(r"[^a-z0-9]+", "-", base).strip("-")
