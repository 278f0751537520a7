"""Register gpunet's models with timm when timm is imported, without importing timm (and torch) ourselves.

``import gpunet`` must make ``timm.create_model("gpunet_0")`` work, yet stay light enough for
``gpunet --help`` (no torch, no timm). So: when timm is already imported, the registration module
runs at once; otherwise a finder on ``sys.meta_path`` wraps the loaders of timm and of our own
modules, and the registration runs once timm has loaded and none of our modules is still
initialising (``import gpunet.hub`` imports timm from inside ``gpunet.model``). The finder then
removes itself. A registration that fails warns and leaves timm importable.
"""
from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
import warnings
from typing import Any, Optional

__all__ = ["register_when_timm_loads"]


def _register(module: str) -> None:
    try:
        importlib.import_module(module)
    except Exception as e:  # timm must stay importable whatever happens to our registration
        warnings.warn(f"gpunet could not register its models with timm ({type(e).__name__}: {e}); "
                      f"timm.create_model('gpunet_0') will not find them", RuntimeWarning, stacklevel=2)


class _CountingLoader(importlib.abc.Loader):
    """The real loader of timm or one of our modules; tells the hook when its module starts and ends."""

    def __init__(self, loader: Any, hook: "_AfterTimm", name: str):
        self._loader, self._hook, self._name = loader, hook, name

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module) -> None:
        self._hook.depth += 1
        ok = False
        try:
            self._loader.exec_module(module)
            ok = True
        finally:
            self._hook.leave(self._name, ok)

    def __getattr__(self, name: str) -> Any:  # resource readers, is_package, get_code ...
        return getattr(self._loader, name)


class _AfterTimm(importlib.abc.MetaPathFinder):
    """Watches the imports of timm and of our own package; registers once timm has loaded and no
    module of ours is half-initialised (our model code imports timm itself, mid-import)."""

    def __init__(self, module: str):
        self.module, self.prefix = module, module.split(".")[0] + "."
        self.depth, self.timm_loaded = 0, False

    def find_spec(self, name: str, path: Optional[Any] = None, target: Optional[Any] = None):
        if name != "timm" and not name.startswith(self.prefix):
            return None
        for finder in sys.meta_path:
            find = getattr(finder, "find_spec", None)
            if finder is self or find is None:
                continue
            spec = find(name, path, target)
            if spec is not None:
                if spec.loader is not None:
                    spec.loader = _CountingLoader(spec.loader, self, name)
                return spec
        return None

    def leave(self, name: str, ok: bool) -> None:
        self.depth -= 1
        self.timm_loaded = self.timm_loaded or (name == "timm" and ok)
        if self.depth == 0 and self.timm_loaded and self in sys.meta_path:
            sys.meta_path.remove(self)
            _register(self.module)


def register_when_timm_loads(module: str) -> None:
    """Import ``module`` (which registers models with timm) now if timm is loaded, else right after it is."""
    if "timm" in sys.modules:
        _register(module)
    elif not any(isinstance(f, _AfterTimm) and f.module == module for f in sys.meta_path):
        sys.meta_path.insert(0, _AfterTimm(module))
