"""The deploy folder's format, and writing it: the artifact, ``deploy.json`` and ``README.md``,
atomically, after the artifact ran and matched what was measured (:mod:`gpunet.deploy.load` reads it).

``deploy.json`` records the sha256 of every artifact file; a folder whose files no longer match
is refused, naming the file. A machine whose fingerprint id differs from the recorded one gets a
warning: the measured latency was not taken there.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from typing import Any, Dict, List, Sequence

import numpy as np

from .._io import atomic_dir, sha256_file
from ..errors import BadInputError
from .choose import MeasuredPath
from .runtime import path_callable

__all__ = ["DEPLOY_SCHEMA", "ArtifactError", "write_folder", "sha256_file",
           "markdown_table", "artifact_files"]

DEPLOY_SCHEMA = 1


class ArtifactError(BadInputError, ValueError):
    """A deploy folder is incomplete, malformed or was changed after ``gpunet deploy`` wrote it."""


def artifact_files(backend: str) -> List[str]:
    """The files a deploy on ``backend`` writes, the one its runtime opens first."""
    return {"openvino": ["model.xml", "model.bin"], "tensorrt": ["model.engine"]}.get(backend, ["model.onnx"])


def _write_graph(folder: str, backend: str, graph) -> str:
    """The artifact file(s) of ``graph`` (TensorRT: the measured engine's bytes) in ``folder``;
    returns the file a runtime opens."""
    if backend == "tensorrt":
        path = os.path.join(folder, "model.engine")
        with open(path, "wb") as f:
            f.write(graph)
        return path
    onnx_path = os.path.join(folder, "model.onnx")
    if backend != "openvino":
        with open(onnx_path, "wb") as f:
            f.write(graph.SerializeToString())
        return onnx_path
    import openvino as ov

    tmp = tempfile.mkdtemp(prefix="gpunet-deploy-ov-")
    try:
        src = os.path.join(tmp, "model.onnx")
        with open(src, "wb") as f:
            f.write(graph.SerializeToString())
        ov.save_model(ov.Core().read_model(src), os.path.join(folder, "model.xml"), compress_to_fp16=False)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return os.path.join(folder, "model.xml")


def _check_written(path: str, chosen: MeasuredPath, graph, x: np.ndarray, reference: np.ndarray,
                   threads: int) -> float:
    """Run the written artifact on ``x``: it must give what the measured path gave (relative error)."""
    from ..export.onnx import TOLERANCES, ExportError, max_errors

    out = path_callable(chosen.backend, chosen.precision, path, threads)(x)
    if chosen.precision == "int8":  # no PyTorch tolerance for INT8: compare with the graph that was timed
        reference, tol = path_callable(chosen.backend, chosen.precision, graph, threads)(x), 1e-3
    else:
        tol = TOLERANCES[chosen.precision]
    err = max_errors(out, reference)[1]
    if not err <= tol:
        raise ExportError(f"the written {os.path.basename(path)} differs from the measured {chosen.backend} "
                          f"{chosen.precision} path: max rel error {err:.3g} > {tol:g}")
    return err


def write_folder(out: str, chosen: MeasuredPath, graph, x: np.ndarray, reference: np.ndarray,
                 info: Dict[str, Any], readme: str, threads: int) -> Dict[str, Any]:
    """Write ``out`` whole or not at all: the artifact (checked by running it), ``deploy.json``
    (``info`` plus file hashes) and ``README.md``. Returns what ``deploy.json`` holds."""
    with atomic_dir(out) as tmp:
        path = _write_graph(tmp, chosen.backend, graph)
        info = dict(info, artifact_rel_err=_check_written(path, chosen, graph, x, reference, threads))
        info["files"] = {n: sha256_file(os.path.join(tmp, n)) for n in artifact_files(chosen.backend)}
        with open(os.path.join(tmp, "deploy.json"), "w", encoding="utf-8") as f:
            json.dump(info, f, indent=1, default=str)
            f.write("\n")
        with open(os.path.join(tmp, "README.md"), "w", encoding="utf-8") as f:
            f.write(readme)
    return info


def _fmt(v: Any, spec: str = ".2f") -> str:
    return "-" if v is None else format(v, spec) if isinstance(v, (int, float)) else str(v)


def markdown_table(paths: Sequence[MeasuredPath]) -> str:
    """Every candidate path, one row each, as a Markdown table."""
    head = ["model", "backend", "precision", "p50 ms", "p90 ms", "registry top-1", "val top-1", "drop", "status"]
    rows = [head, ["---"] * len(head)]
    for p in paths:
        rows.append([p.model, p.backend, p.precision, _fmt(p.p50_ms), _fmt(p.p90_ms), _fmt(p.registry_top1, "g"),
                     _fmt(p.top1), _fmt(p.drop, "+.2f"), ("**chosen**" if p.chosen else p.reason or p.status)])
    return "\n".join("| " + " | ".join(str(c).replace("|", "/") for c in r) + " |" for r in rows) + "\n"
