"""Can this machine's timings be trusted right now: load average, busy-machine rules and
last-level cache-share notes, in one place.

A wall-clock timing is only as good as the machine was quiet while it was taken. Two signals
are read here: the 1-minute load average (other processes sharing the cores) and the spread of
a network's timed runs. Neither sees other tenants of a shared last-level cache, which change
what weight-heavy networks pay: :func:`cache_notes` compares the share probed now
(:func:`~gpunet.latency.cacheshare.cache_share`) with the one a calibration was fitted under.
"""
from __future__ import annotations

import math
import os
import statistics
from typing import List, Optional

__all__ = ["load_average", "LOAD_AVERAGE_ENV", "busy_load_limit", "busy_reasons", "cache_notes", "BUSY_LOAD_MARGIN",
           "BUSY_SPREAD", "UNREPEATABLE_MOVE", "CACHE_SHARE_RATIO"]

#: a machine counts as busy when the 1-minute load average exceeds the measuring threads by this
#: much: other processes shared the cores, so wall-clock timings are inflated
BUSY_LOAD_MARGIN = 0.6

#: besides the load, a machine counts as busy when the networks' timed runs spread this much
#: (p90 / median - 1, median over networks)
BUSY_SPREAD = 0.15
#: networks measured again whose latency moved this much since (median over them of |now / then -
#: 1|): half of them moved half the +-10 % band on their own, so a validation says that the machine,
#: not the table, bounds its share within +-10 %
UNREPEATABLE_MOVE = 0.05

#: a cache share this many times larger or smaller than the one a calibration was fitted under is
#: reported: weight-heavy networks then pay another DRAM cost than the calibration learnt
CACHE_SHARE_RATIO = 1.5


#: environment variable that replaces the OS's load average: a container sees its host's, and a
#: test of logic must not depend on the machine it runs on (tests set it to 0)
LOAD_AVERAGE_ENV = "GPUNET_LOAD_AVERAGE"


def load_average() -> float:
    """The 1-minute load average (NaN where the OS has none), or ``$GPUNET_LOAD_AVERAGE`` when set."""
    pinned = os.environ.get(LOAD_AVERAGE_ENV)
    if pinned is not None and pinned.strip():
        try:
            return float(pinned)
        except ValueError:
            raise ValueError(f"{LOAD_AVERAGE_ENV}={pinned!r}: expected a number (the 1-minute load average "
                             f"to assume), or unset it to read the OS's") from None
    try:
        return float(os.getloadavg()[0])
    except (AttributeError, OSError):
        return float("nan")


def busy_load_limit(threads: Optional[int]) -> float:
    """The load average above which timings taken with ``threads`` threads are not trusted."""
    return (threads or os.cpu_count() or 1) + BUSY_LOAD_MARGIN


def busy_reasons(load_avg: List[float], spread: float, threads: Optional[int]) -> List[str]:
    """Why the timings of a run cannot be trusted (empty when the machine looked quiet)."""
    out = []
    limit = busy_load_limit(threads)
    loads = [x for x in load_avg if math.isfinite(x)]
    if loads and max(loads) > limit:
        out.append(f"load average reached {max(loads):.2f} (> {limit:.1f} for {threads or 'all'} measuring "
                   f"thread(s)): other processes shared the cores")
    if math.isfinite(spread) and spread > BUSY_SPREAD:
        out.append(f"timed runs spread {spread:.0%} (p90 / median - 1, median over networks; > {BUSY_SPREAD:.0%})")
    return out


def cache_notes(now_mb: List[float], fitted_mb: Optional[float], cache_mb: Optional[float]) -> List[str]:
    """Why weight-heavy networks measured now may not match a calibration fitted under another
    cache share (other tenants of a shared last-level cache); empty when nothing moved."""
    if not now_mb or not fitted_mb:
        return []
    now = float(statistics.median(now_mb))
    if max(now, fitted_mb) / min(now, fitted_mb) < CACHE_SHARE_RATIO:
        return []
    heavy = f"more than {cache_mb:.0f} MB" if cache_mb and math.isfinite(cache_mb) else "many MB"
    return [f"the last-level cache share was {now:.0f} MB now and {fitted_mb:.0f} MB when the table's "
            f"calibration was fitted (other tenants of a shared cache?): networks with {heavy} of weights pay "
            f"another DRAM cost than it learnt"]
