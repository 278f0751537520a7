"""``gpunet.load_deployed(folder)``: a ``gpunet deploy`` folder back as a callable, images -> logits,
on the recorded backend with the recorded preprocessing; refused when a file's hash changed."""
from __future__ import annotations

import json
import os
import warnings
from typing import Any, Dict, Optional

import numpy as np

from .._checks import positive_int
from .artifact import DEPLOY_SCHEMA, ArtifactError, artifact_files, sha256_file
from .runtime import image_transform, path_callable, preprocess_images, run_batched, usable_threads

__all__ = ["DeployedModel", "load_deployed", "read_deploy_json"]

_REQUIRED = ("model", "backend", "precision", "batch_size", "input_shape", "preprocessing", "files", "fingerprint")


def read_deploy_json(folder: str) -> Dict[str, Any]:
    """``folder``'s ``deploy.json``, checked for the fields :func:`load_deployed` needs."""
    path = os.path.join(folder, "deploy.json")
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"deploy folder not found: {folder}")
    if not os.path.isfile(path):
        raise ArtifactError(f"{path}: not found; is {folder} a folder written by gpunet deploy?")
    try:
        with open(path, encoding="utf-8") as f:
            info = json.load(f)
    except (OSError, ValueError) as e:
        raise ArtifactError(f"{path}: not readable JSON: {e}") from e
    missing = [k for k in _REQUIRED if not isinstance(info, dict) or k not in info]
    if missing:
        raise ArtifactError(f"{path}: missing {', '.join(missing)}")
    if info.get("schema") != DEPLOY_SCHEMA:
        raise ArtifactError(f"{path}: schema {info.get('schema')!r}, this gpunet reads schema {DEPLOY_SCHEMA}")
    return info


def _check_files(folder: str, info: Dict[str, Any]) -> None:
    expected = artifact_files(info["backend"])
    for name in expected:
        if name not in info["files"]:
            raise ArtifactError(f"{folder}/deploy.json lists no sha256 for {name}")
    for name, digest in info["files"].items():
        path = os.path.join(folder, name)
        if not os.path.isfile(path):
            raise ArtifactError(f"{path}: missing (deploy.json records it)")
        if sha256_file(path) != digest:
            raise ArtifactError(f"{path}: sha256 differs from the one in deploy.json; the file was changed after "
                                f"gpunet deploy wrote it (deploy again)")


def _warn_other_machine(info: Dict[str, Any]) -> None:
    from ..latency.fingerprint import device_fingerprint

    recorded = info["fingerprint"].get("id")
    here = device_fingerprint(info["backend"]).get("id")
    if recorded != here:
        warnings.warn(f"this machine's fingerprint {here} differs from the one {info['model']} was deployed and "
                      f"timed on ({recorded}, {info.get('device')}); its measured latency "
                      f"({info.get('p50_ms', float('nan')):.2f} ms p50) may not hold here", RuntimeWarning, stacklevel=3)


class DeployedModel:
    """Callable: ``model(images)`` -> logits ``(N, classes)`` (numpy). ``images``: a PIL image, a
    uint8 HWC / NHWC array, a preprocessed float CHW / NCHW tensor or array, or a list of them.
    ``info`` is ``deploy.json``; ``preprocess(images)`` gives the network's float input."""

    def __init__(self, folder: str, info: Dict[str, Any], threads: Optional[int]):
        self.folder, self.info = folder, info
        self.backend, self.precision = info["backend"], info["precision"]
        self.batch_size = int(info["batch_size"])
        self.input_shape = tuple(info["input_shape"])
        main = os.path.join(folder, artifact_files(self.backend)[0])
        self._run = path_callable(self.backend, self.precision, main, threads or usable_threads())
        self._transform = image_transform(info["preprocessing"])

    def preprocess(self, images: Any) -> np.ndarray:
        return preprocess_images(images, self._transform, self.input_shape[1:])

    def __call__(self, images: Any) -> np.ndarray:
        return run_batched(self._run, self.preprocess(images), self.batch_size)

    def __repr__(self) -> str:
        return (f"DeployedModel({self.info['model']!r}, {self.backend} {self.precision}, batch {self.batch_size}, "
                f"input {'x'.join(map(str, self.input_shape[1:]))}, from {self.folder!r})")


def load_deployed(folder: str, threads: Optional[int] = None) -> DeployedModel:
    """The model ``gpunet deploy --out folder`` wrote, ready to call on images (see :class:`DeployedModel`).

    Refuses (:class:`~gpunet.deploy.artifact.ArtifactError`) a folder whose artifact files no longer
    match the sha256 in ``deploy.json``; warns when this machine's fingerprint differs from the one
    it was measured on. ``threads``: CPU threads (default: every core this process may use).
    """
    folder = os.fspath(folder)
    if threads is not None:
        positive_int(threads, "threads")
    info = read_deploy_json(folder)
    _check_files(folder, info)
    _warn_other_machine(info)
    return DeployedModel(folder, info, threads)
