"""``gpunet deploy``: from a latency budget to a verified artifact measured on this machine.

    result = gpunet.deploy.deploy(20.0, "out/", models="gpunet-0,gpunet-p0")
    model = gpunet.load_deployed("out/")      # images -> logits, on the chosen backend

:mod:`.choose` holds the decision (a pure function over measured paths), :mod:`.measure` the
timing, :mod:`.runtime` the backend callables and preprocessing, :mod:`.artifact` the folder
format and writer, :mod:`.load` the reader, :mod:`.pipeline` the steps in order.
"""
from __future__ import annotations

from .artifact import ArtifactError
from .choose import INT8_MIN_SPEEDUP, RANK_REGISTRY, RANK_VAL_DIR, Decision, MeasuredPath, NoFitError, choose
from .load import DeployedModel, load_deployed
from .measure import Timing
from .pipeline import DeployResult, deploy

__all__ = ["deploy", "DeployResult", "load_deployed", "DeployedModel", "choose", "Decision", "MeasuredPath",
           "NoFitError", "ArtifactError", "Timing", "INT8_MIN_SPEEDUP", "RANK_REGISTRY", "RANK_VAL_DIR"]
