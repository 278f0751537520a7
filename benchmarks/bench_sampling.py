"""How many networks per minute can be Sobol-sampled and priced from a latency table?

The paper samples "millions within a minute". This script times, for the Table 1 space:
Sobol sampling of N networks (41 integers each) and the vectorised table estimate (sum of
block latencies + calibration), then ``Pool.sample`` end to end (the same, plus the latency groups),
whose rate is the headline. The table is prepared first, untimed: a real SQLite
lookup table holding every block those networks use (latencies from the roofline cost
model, since measuring ~10^5 blocks takes days on a CPU; lookup cost does not depend on the
values). Prints a table (with the memory a million networks take) and, last,
``networks_per_minute: <N>`` of ``Pool.sample``.

    python benchmarks/bench_sampling.py [--n 1000000] [--seed 0]
"""
from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # run from a checkout


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--stream", type=int, default=0, metavar="N",
                    help="also write a pool of N networks with Pool.sample_to (chunk by chunk, in a fresh process) "
                         "and print its time, file size and peak memory")
    args = ap.parse_args()

    import torch

    from gpunet.cli._fmt import format_table
    from gpunet.latency.fingerprint import cpu_description
    from gpunet.search import Pool, SearchSpace
    from gpunet.search.lut.costmodel import RooflineModel
    from gpunet.search.lut.calibration import Calibration
    from gpunet.search.lut.codes import block_slots, unpack_codes, unpack_fields
    from gpunet.search.lut.estimate import LatencyEstimator
    from gpunet.search.lut import LatencyTable

    space = SearchSpace()
    with tempfile.TemporaryDirectory() as tmp:
        # -- untimed: a table holding every block the N networks use ---------------------------
        t0 = time.perf_counter()
        vectors = space.sample(args.n, seed=args.seed)
        codes = np.unique(np.concatenate([s.codes[s.counts > 0] for s in block_slots(space, vectors)]))
        f = unpack_fields(codes)
        ms = RooflineModel().predict({"kind": f["kind"], "cin": f["cin"], "cout": f["cout"], "k": f["k"],
                                      "stride": f["stride"], "e": f["e100"] / 100.0, "se": f["se"], "h": f["h"]})
        path = os.path.join(tmp, "bench.db")
        fp = {"id": "benchmark", "backend": "onnxruntime", "cpu": "synthetic"}
        with LatencyTable(path, backend="onnxruntime", fingerprint=fp, create=True) as table:
            table.put_many(zip(unpack_codes(codes), ({"median_ms": float(m)} for m in ms)), source="synthetic")
            table.set_meta("calibration", Calibration(0.8, 0.01, 0.05).to_dict())
        del vectors
        prep = time.perf_counter() - t0

        # -- timed: sample + estimate ------------------------------------------------------------
        t0 = time.perf_counter()
        estimator = LatencyEstimator(path, space, fill="error")
        t_load = time.perf_counter() - t0
        t0 = time.perf_counter()
        vectors = space.sample(args.n, seed=args.seed)
        t_sample = time.perf_counter() - t0
        t0 = time.perf_counter()
        result = estimator.estimate(vectors)
        t_est = time.perf_counter() - t0
        per_million = (vectors.nbytes + sum(a.nbytes for a in vars(result).values() if isinstance(a, np.ndarray))) \
            / args.n  # bytes per network: the vectors and every per-network result
        del vectors, result, estimator
        t0 = time.perf_counter()  # the whole of it, as `gpunet sample` runs it: + 5 latency groups
        pool = Pool.sample(space, args.n, seed=args.seed, lut=path, groups=5)
        t_pool = time.perf_counter() - t0
        assert np.isfinite(pool.latency_ms).all() and pool.source["calibrated"]
        median_ms = float(np.median(pool.latency_ms))
        del pool
        streamed = _stream(path, os.path.join(tmp, "stream.npz"), args.stream, args.seed) if args.stream else None
    total = t_load + t_sample + t_est
    rows = [["table blocks", len(codes)], ["networks", args.n], ["cpu threads (torch / usable)",
            f"{torch.get_num_threads()} / {len(os.sched_getaffinity(0))}"],
            ["prepare table (untimed, s)", f"{prep:.2f}"], ["load table (s)", f"{t_load:.3f}"],
            ["Sobol sample (s)", f"{t_sample:.3f}"], ["estimate (s)", f"{t_est:.3f}"],
            ["load + sample + estimate (s)", f"{total:.3f}"],
            ["Pool.sample with 5 groups, end to end (s)", f"{t_pool:.3f}"],
            ["memory per million networks (MB)", f"{per_million:.0f}"],
            ["peak resident memory (MB)", f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f}"],
            ["median estimated latency (ms)", f"{median_ms:.3f}"]]
    if streamed:
        rows += [[f"Pool.sample_to of {args.stream:,} networks, fresh process (s)", f"{streamed['seconds']:.1f}"],
                 ["  pool file (MB)", f"{streamed['file_mb']:.0f}"],
                 ["  peak resident memory of that process (MB)", f"{streamed['peak_rss_mb']:.0f}"]]
    print(f"{cpu_description()}; load average {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    print(format_table(rows, ["step", "value"], align="ll"))
    print(f"networks_per_minute: {int(args.n / t_pool * 60)}")


def _stream_child(lut: str, out: str, n: int, seed: int, queue) -> None:
    from gpunet.search import Pool, SearchSpace

    t0 = time.perf_counter()
    Pool.sample_to(out, SearchSpace(), n, seed=seed, lut=lut, groups=5)  # blocks past the table's: NaN, no group
    queue.put({"seconds": time.perf_counter() - t0, "file_mb": os.path.getsize(out) / 2**20,
               "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024})


def _stream(lut: str, out: str, n: int, seed: int) -> dict:
    """Pool.sample_to in a spawned process, so its peak memory is its own, not this one's."""
    import multiprocessing

    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_stream_child, args=(lut, out, n, seed + 1, queue))
    proc.start()
    result = queue.get()
    proc.join()
    return result


if __name__ == "__main__":
    main()
