"""The deploy decision: a pure function over measured paths (no timing, no clock, no machine).

A *path* is one model on one backend at one precision, with what was measured for it. The
choice is the most accurate model whose fastest *verified* path fits the budget (p50 at the deploy
batch), ties by latency. The fitting models are compared on one yardstick (:func:`ranking`): their
registry top-1 when every one has it (a proxy training's top-1 ranks after full trainings, as in
:func:`gpunet.query`); else, when every one was measured on ``val_dir``, their PyTorch fp32 top-1
there (fine-tuned folders, or folders next to hub models: a registry figure on ImageNet and a
folder's on the user's images do not compare). A non-INT8 path is verified when its output
matched PyTorch within the precision's tolerance; an INT8 path only when it was calibrated on
images, its top-1 was measured within ``max_drop`` of fp32, and it is at least
:data:`INT8_MIN_SPEEDUP` x faster than the model's best non-INT8 path. Every path that was not
chosen says why (``reason``).
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence

from .._checks import argument_error, non_negative, positive
from ..errors import GPUNetError

__all__ = ["MeasuredPath", "Decision", "NoFitError", "choose", "ranking", "rank_top1", "INT8_MIN_SPEEDUP",
           "RANK_REGISTRY", "RANK_VAL_DIR"]

#: INT8 must beat the model's best non-INT8 path by this factor to be chosen (issue 23).
INT8_MIN_SPEEDUP = 1.15

#: The yardsticks models are ranked on (``Decision.ranked_by``).
RANK_REGISTRY = "registry top-1"
RANK_VAL_DIR = "fp32 top-1 on val_dir"


class NoFitError(GPUNetError, ValueError):
    """No candidate's measured p50 fits the budget; ``fastest`` is the fastest measured path
    (``None`` when nothing could be measured) and ``paths`` the full table."""

    exit_code = 2

    def __init__(self, message: str, fastest: Optional["MeasuredPath"] = None,
                 paths: Sequence["MeasuredPath"] = ()):
        super().__init__(message)
        self.argument = "max_latency_ms"
        self.fastest = fastest
        self.paths = list(paths)


@dataclass
class MeasuredPath:
    """One model x backend x precision and what was measured for it.

    ``status``: ``measured`` (timed), ``skipped`` (this machine cannot run it, or it was not asked
    for; ``reason`` says which) or ``failed`` (an error while exporting / timing / checking).
    ``calibration``: INT8 only, ``"images"`` or ``"random"`` (speed only, never chosen).
    ``top1`` / ``top1_fp32``: measured on ``--val-dir`` (this path / PyTorch fp32), percent.
    """

    model: str
    backend: str
    precision: str
    registry_top1: Optional[float] = None
    proxy_top1: bool = False  # the registry top-1 is from a proxy training: ranked after full trainings
    status: str = "measured"
    p50_ms: Optional[float] = None
    p90_ms: Optional[float] = None
    max_rel_err: Optional[float] = None
    verified: bool = False
    calibration: Optional[str] = None
    top1: Optional[float] = None
    top1_fp32: Optional[float] = None
    val_images: int = 0
    load_average: Optional[float] = None
    reason: str = ""
    chosen: bool = False

    @property
    def drop(self) -> Optional[float]:
        if self.top1 is None or self.top1_fp32 is None:
            return None
        return self.top1_fp32 - self.top1

    @property
    def timed(self) -> bool:
        return self.status == "measured" and self.p50_ms is not None and math.isfinite(self.p50_ms)

    def to_dict(self) -> Dict[str, Any]:
        d = dataclasses.asdict(self)
        d["drop"] = self.drop
        return d


@dataclass
class Decision:
    """The chosen path (``None`` never: no fit raises), the budget, every path with its reason, and
    the yardstick the fitting models were ranked on (:data:`RANK_REGISTRY` or :data:`RANK_VAL_DIR`)."""

    chosen: MeasuredPath
    max_latency_ms: float
    paths: List[MeasuredPath]
    ranked_by: str = RANK_REGISTRY

    def to_dict(self) -> Dict[str, Any]:
        return {"chosen": self.chosen.to_dict(), "max_latency_ms": self.max_latency_ms,
                "ranked_by": self.ranked_by, "paths": [p.to_dict() for p in self.paths]}


def _int8_reason(p: MeasuredPath, best_other: Optional[float], max_drop: float, min_speedup: float) -> str:
    """Why INT8 path ``p`` may not be chosen ('' when it may)."""
    if p.calibration != "images":
        return "INT8 calibrated on random inputs: speed only, never chosen (give --calib-dir)"
    if p.top1 is None or p.top1_fp32 is None:
        return "INT8 accuracy not checked (give --val-dir)"
    if p.drop > max_drop:
        return f"INT8 top-1 drop {p.drop:.2f} points > max_drop {max_drop:g}"
    if best_other is not None and p.p50_ms * min_speedup > best_other:
        return (f"INT8 only {best_other / p.p50_ms:.2f}x faster than the best non-INT8 path "
                f"({best_other:.2f} ms); needs >= {min_speedup:g}x")
    return ""


def _mark_eligible(paths: Sequence[MeasuredPath], max_drop: float, min_speedup: float) -> List[MeasuredPath]:
    """The paths that may be chosen; the others get a ``reason`` (if they have none yet)."""
    best_other: Dict[str, float] = {}
    for p in paths:
        if p.timed and p.verified and p.precision != "int8":
            best_other[p.model] = min(best_other.get(p.model, math.inf), p.p50_ms)
    eligible = []
    for p in paths:
        if not p.timed:
            p.reason = p.reason or f"not measured ({p.status})"
            continue
        if p.precision == "int8":
            why = _int8_reason(p, best_other.get(p.model), max_drop, min_speedup)
        else:
            why = "" if p.verified else "output did not match PyTorch"
        if why:
            p.reason = why
            continue
        eligible.append(p)
    return eligible


def ranking(paths: Sequence[MeasuredPath]) -> str:
    """The yardstick ``paths`` (the fitting ones) are compared on: :data:`RANK_REGISTRY` when every
    model has a registry top-1 (ImageNet's 50,000 images: the most precise figure); else
    :data:`RANK_VAL_DIR` when every one was measured on ``val_dir``; else :data:`RANK_REGISTRY`, a
    model without a registry figure by its ``val_dir`` one, a model with neither ranked last."""
    if all(p.registry_top1 is not None for p in paths):
        return RANK_REGISTRY
    return RANK_VAL_DIR if all(p.top1_fp32 is not None for p in paths) else RANK_REGISTRY


def rank_top1(p: MeasuredPath, by: str = RANK_REGISTRY) -> Optional[float]:
    """The top-1 path ``p``'s model is ranked by on yardstick ``by`` (see :func:`ranking`); None
    when it has none there."""
    if by not in (RANK_REGISTRY, RANK_VAL_DIR):
        raise argument_error("by", f"by must be {RANK_REGISTRY!r} or {RANK_VAL_DIR!r}, got {by!r}")
    if by == RANK_VAL_DIR:
        return p.top1_fp32
    return p.registry_top1 if p.registry_top1 is not None else p.top1_fp32


def _rank(p: MeasuredPath, by: str):
    top1 = rank_top1(p, by)
    top1 = -math.inf if top1 is None else top1
    proxy = p.proxy_top1 and by == RANK_REGISTRY  # measured on the same images, a proxy figure is no worse
    return (proxy, -top1, p.p50_ms, p.precision == "int8", p.model, p.backend, p.precision)


def choose(paths: Sequence[MeasuredPath], max_latency_ms: float, max_drop: float = 1.0,
           min_int8_speedup: float = INT8_MIN_SPEEDUP) -> Decision:
    """Pick the path to deploy (see the module doc); sets ``chosen`` and ``reason`` on ``paths``.

    Raises :class:`NoFitError` naming the fastest measured path when no verified path fits.
    """
    budget = positive(max_latency_ms, "max_latency_ms")
    max_drop = non_negative(max_drop, "max_drop")
    if isinstance(min_int8_speedup, bool) or not isinstance(min_int8_speedup, (int, float)) or min_int8_speedup < 1:
        raise argument_error("min_int8_speedup", f"min_int8_speedup must be a number >= 1, got {min_int8_speedup!r}")
    paths = list(paths)
    for p in paths:
        p.chosen = False
    eligible = _mark_eligible(paths, max_drop, min_int8_speedup)
    best: Dict[str, MeasuredPath] = {}  # each model's fastest eligible path
    for p in sorted(eligible, key=lambda q: (q.p50_ms, q.precision == "int8")):
        best.setdefault(p.model, p)
    for p in eligible:
        if best[p.model] is not p:
            p.reason = f"slower than {best[p.model].backend} {best[p.model].precision} for this model"
    fitting = [p for p in best.values() if p.p50_ms <= budget]
    for p in best.values():
        if p.p50_ms > budget:
            p.reason = f"p50 {p.p50_ms:.2f} ms > budget {budget:g} ms"
    if not fitting:
        raise _no_fit(paths, eligible, budget)
    by = ranking(fitting)
    chosen = min(fitting, key=lambda p: _rank(p, by))
    for p in fitting:
        if p is not chosen:
            p.reason = (f"fits, but {chosen.model} ranks higher ({by} {_pct(rank_top1(chosen, by))} vs "
                        f"{_pct(rank_top1(p, by))})" if p.model != chosen.model else p.reason)
    chosen.chosen, chosen.reason = True, "chosen"
    return Decision(chosen=chosen, max_latency_ms=budget, paths=paths, ranked_by=by)


def _pct(x: Optional[float]) -> str:
    return "unknown" if x is None else f"{round(x, 2):g}%"


def _no_fit(paths: Sequence[MeasuredPath], eligible: Sequence[MeasuredPath], budget: float) -> NoFitError:
    timed = list(eligible) or [p for p in paths if p.timed]  # a random-calibration INT8 figure is no answer
    if not timed:
        why = list(dict.fromkeys(f"{p.model}: {p.reason}" for p in paths if p.status == "failed" and p.reason))
        return NoFitError(f"max_latency_ms {budget:g}: no candidate could be measured, so none fits"
                          + "".join(f"\n  {w}" for w in why[:5]), None, paths)
    fastest = min(timed, key=lambda p: p.p50_ms)
    return NoFitError(f"max_latency_ms {budget:g}: no candidate fits; the fastest measured is {fastest.model} on "
                      f"{fastest.backend} {fastest.precision} at {fastest.p50_ms:.2f} ms p50", fastest, paths)
