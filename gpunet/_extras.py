"""Optional dependencies: import one or say which pip extra installs it.

onnx, onnxruntime, onnxscript, openvino and nncf are imported inside the functions that need them
(never at ``import gpunet``); each goes through :func:`require` so a missing one names its extra.
"""
from __future__ import annotations

import importlib
from typing import Any

__all__ = ["require"]


def require(module: str, extra: str, what: str) -> Any:
    """Import an optional dependency or raise an ImportError naming the pip extra."""
    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise ImportError(f"{what} needs the '{module}' package: pip install 'gpunet[{extra}]' "
                          f"(or pip install {module})") from e
