"""The paper's Fig. 1 for any tiered device: latency vs ImageNet top-1, one series per device."""
from __future__ import annotations

import os
from typing import Optional, Sequence, Union

from ._io import atomic_path
from .registry import get_registry

__all__ = ["plot_pareto"]

_FORMATS = ("png", "svg", "pdf", "jpg", "jpeg")


def plot_pareto(gpus: Union[str, Sequence[str]] = ("gv100",), out: Union[str, os.PathLike] = "pareto.png",
                batch: int = 1, logx: bool = False, title: Optional[str] = None, dpi: int = 150,
                search: bool = False) -> str:
    """Draw latency (x) vs top-1 (y) of every model tiered on each device in ``gpus``; returns ``out``.

    ``search``: also draw the search winners tiered on each device (``gpunet search export``,
    e.g. ``--pareto``) as their own front next to the hub's models, proxy trainings included and
    said so in the legend (their top-1 is on the search's dataset, not ImageNet). Devices whose
    latencies differ by orders of magnitude (a GPU and a CPU) are easier to read with ``logx=True``.
    The file is written atomically; the format follows ``out``'s extension.
    """
    plt = _pyplot()
    gpus = [gpus] if isinstance(gpus, str) else list(gpus)
    if not gpus:
        raise ValueError("give at least one device to plot")
    out = os.fspath(out)
    ext = os.path.splitext(out)[1].lower().lstrip(".")
    if ext not in _FORMATS:
        raise ValueError(f"output file {out!r} must end in one of: {', '.join('.' + f for f in _FORMATS)}")
    series = _series(gpus, batch, search)
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    try:
        for i, (label, cards, winners) in enumerate(series):
            _draw(ax, label, cards, winners, annotate=i == 0 or len(series) == 1 or winners)
        if logx:
            ax.set_xscale("log")
        ax.set_xlabel(f"latency (ms, batch {batch})")
        ax.set_ylabel("top-1 (%): ImageNet for the hub, the search's dataset for winners" if search
                      else "ImageNet top-1 (%)")
        ax.set_title(title or "GPUNet: accuracy vs latency")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8, loc="lower right")
        fig.tight_layout()
        with atomic_path(out) as tmp:
            fig.savefig(tmp, format="jpeg" if ext == "jpg" else ext, dpi=dpi)
    finally:
        plt.close(fig)
    return out


def _pyplot():
    try:
        import matplotlib
    except ImportError as e:
        raise ImportError("plotting needs matplotlib: pip install 'gpunet[plot]' (or pip install matplotlib)") from e
    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def _series(gpus: Sequence[str], batch: int, search: bool):
    """``[(legend label, cards by latency, are search winners)]``: per device the hub's models, then (``search``)
    its search winners."""
    reg = get_registry()
    series = []
    for gpu in gpus:
        device = reg.resolve_device(gpu)
        cards = [c for c in reg.query(gpu=device, batch=batch, include_proxy=search) if c.top1 is not None]
        hub = [c for c in cards if not reg.models[c.name].get("search")]
        found = [c for c in cards if reg.models[c.name].get("search")]
        if not hub and not (search and found):
            raise ValueError(f"device {device!r} has no models with latency and top-1 at batch {batch}")
        info = reg.devices.get(device, {})
        engine = f"{info.get('engine', '')} {info.get('precision', '')}".strip()
        if hub:
            series.append((f"{device} ({engine})" if engine else device, sorted(hub, key=lambda c: c.latency_ms), False))
        if search and found:
            proxy = " (proxy trainings)" if any(c.proxy for c in found) else ""
            series.append((f"{device}: search winners{proxy}", sorted(found, key=lambda c: c.latency_ms), True))
    if search and not any(winners for _, _, winners in series):
        raise ValueError(f"no search winners are tiered on {', '.join(gpus)} at batch {batch}; "
                         f"export them first (gpunet search export DIR --pareto --device NAME)")
    return series


def _draw(ax, label: str, cards, winners: bool, annotate: bool) -> None:
    """One series: its points and the line of its front (the models no other beats on both axes)."""
    xs, ys = [c.latency_ms for c in cards], [c.top1 for c in cards]
    points = ax.scatter(xs, ys, s=26 if winners else 22, zorder=3, label=label, marker="D" if winners else "o")
    front = _pareto_front(cards)
    ax.plot([c.latency_ms for c in front], [c.top1 for c in front], color=points.get_facecolor()[0], alpha=0.6,
            linestyle="--" if winners else "-")
    for c in cards if annotate else []:
        ax.annotate(_label(c.name), (c.latency_ms, c.top1), textcoords="offset points", xytext=(4, -9), fontsize=7)


def _label(name: str) -> str:
    return "GPUNet-" + name.split("-", 1)[1].upper() if name.startswith("gpunet-") else name


def _pareto_front(cards):
    front, best = [], float("-inf")
    for c in sorted(cards, key=lambda c: (c.latency_ms, -c.top1)):
        if c.top1 > best:
            front.append(c)
            best = c.top1
    return front
