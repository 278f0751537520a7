"""The paper's Fig. 1 for any tiered device: latency vs ImageNet top-1, one series per device."""
from __future__ import annotations

import os
from typing import Optional, Sequence, Union

from ._io import atomic_path
from .registry import get_registry

__all__ = ["plot_pareto"]

_FORMATS = ("png", "svg", "pdf", "jpg", "jpeg")


def plot_pareto(gpus: Union[str, Sequence[str]] = ("gv100",), out: Union[str, os.PathLike] = "pareto.png",
                batch: int = 1, logx: bool = False, title: Optional[str] = None, dpi: int = 150) -> str:
    """Draw latency (x) vs top-1 (y) of every model tiered on each device in ``gpus``; returns ``out``.

    Devices whose latencies differ by orders of magnitude (a GPU and a CPU) are easier to read
    with ``logx=True``. The file is written atomically; the format follows ``out``'s extension.
    """
    try:
        import matplotlib
    except ImportError as e:
        raise ImportError("plotting needs matplotlib: pip install 'gpunet[plot]' (or pip install matplotlib)") from e
    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    gpus = [gpus] if isinstance(gpus, str) else list(gpus)
    if not gpus:
        raise ValueError("give at least one device to plot")
    out = os.fspath(out)
    ext = os.path.splitext(out)[1].lower().lstrip(".")
    if ext not in _FORMATS:
        raise ValueError(f"output file {out!r} must end in one of: {', '.join('.' + f for f in _FORMATS)}")
    reg = get_registry()
    series = []
    for gpu in gpus:
        device = reg.resolve_device(gpu)
        cards = [c for c in reg.query(gpu=device, batch=batch) if c.top1 is not None]
        if not cards:
            raise ValueError(f"device {device!r} has no models with latency and top-1 at batch {batch}")
        series.append((device, sorted(cards, key=lambda c: c.latency_ms)))
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    try:
        for i, (device, cards) in enumerate(series):
            info = reg.devices.get(device, {})
            engine = f"{info.get('engine', '')} {info.get('precision', '')}".strip()
            xs, ys = [c.latency_ms for c in cards], [c.top1 for c in cards]
            points = ax.scatter(xs, ys, s=22, zorder=3, label=f"{device} ({engine})" if engine else device)
            front = _pareto_front(cards)  # the line joins the models no other model beats on both axes
            ax.plot([c.latency_ms for c in front], [c.top1 for c in front], color=points.get_facecolor()[0],
                    alpha=0.6)
            for c in cards if i == 0 or len(series) == 1 else []:  # label one series to keep it readable
                ax.annotate(_label(c.name), (c.latency_ms, c.top1), textcoords="offset points",
                            xytext=(4, -9), fontsize=7)
        if logx:
            ax.set_xscale("log")
        ax.set_xlabel(f"latency (ms, batch {batch})")
        ax.set_ylabel("ImageNet top-1 (%)")
        ax.set_title(title or "GPUNet: accuracy vs latency")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8, loc="lower right")
        fig.tight_layout()
        with atomic_path(out) as tmp:
            fig.savefig(tmp, format="jpeg" if ext == "jpg" else ext, dpi=dpi)
    finally:
        plt.close(fig)
    return out


def _label(name: str) -> str:
    return "GPUNet-" + name.split("-", 1)[1].upper() if name.startswith("gpunet-") else name


def _pareto_front(cards):
    front, best = [], float("-inf")
    for c in sorted(cards, key=lambda c: (c.latency_ms, -c.top1)):
        if c.top1 > best:
            front.append(c)
            best = c.top1
    return front
