"""ONNX export time: ``gpunet.export.onnx.export_onnx_proto`` vs the public ``torch.onnx.export``.

A latency-table build exports every block it times (hundreds per validation), so the exporter's
fixed cost per call matters more than its cost per layer. The public dynamo call rebuilds its
registry of ONNX decompositions on every export; ours builds it once per process (the graphs are
byte-identical, checked here on every case). Cases: blocks of the small search space and whole
networks, each exported both ways, interleaved in a new shuffled order per repeat.

    python benchmarks/bench_export.py [--blocks 12] [--networks 3] [--repeats 3]
"""
from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def public_export(model, shape):
    """What ``export_onnx_proto`` did before: the public call, with the same arguments."""
    import copy

    import torch

    from gpunet.export import onnx as onnx_export

    model = copy.deepcopy(model).eval()
    with onnx_export.quiet():
        return torch.onnx.export(onnx_export._InputNamed(model), (torch.randn(*shape),), dynamo=True,
                                 external_data=False, optimize=True, opset_version=onnx_export.DEFAULT_OPSET,
                                 input_names=["input"], output_names=["output"], verbose=False,
                                 report=False).model_proto


def cases(n_blocks: int, n_networks: int, seed: int):
    """[(kind, label, module, input shape)]: distinct blocks and whole networks of the small space."""
    from gpunet.model import build_model
    from gpunet.search.lut.codes import network_blocks
    from gpunet.search.space import SearchSpace

    space = SearchSpace.small()
    vectors = space.sample(max(n_networks, 4), seed=seed)
    keys = network_blocks(space, vectors)[:n_blocks]
    out = [("block", k.key[:40], k.build_module().eval(), k.input_shape) for k in keys]
    for v in vectors[:n_networks]:
        spec = space.decode(v)
        out.append(("network", f"{spec.resolution} px", build_model(spec).eval(),
                    (1, 3, spec.resolution, spec.resolution)))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--blocks", type=int, default=12)
    ap.add_argument("--networks", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--seed", type=int, default=101)
    args = ap.parse_args()

    import torch

    from gpunet.cli._fmt import format_table
    from gpunet.export.onnx import export_onnx_proto
    from gpunet.latency.fingerprint import cpu_description

    todo = cases(args.blocks, args.networks, args.seed)
    ways = {"torch.onnx.export": public_export, "export_onnx_proto": export_onnx_proto}
    for name, fn in ways.items():  # warm-up: lazy imports, and our registry is built here once
        t0 = time.perf_counter()
        fn(todo[0][2], todo[0][3])
        print(f"first export, {name}: {time.perf_counter() - t0:.2f} s")
    times = {(i, w): [] for i in range(len(todo)) for w in ways}
    rng = random.Random(0)
    for _ in range(args.repeats):
        order = list(times)
        rng.shuffle(order)
        graphs = {}
        for i, w in order:
            t0 = time.perf_counter()
            graphs[(i, w)] = ways[w](todo[i][2], todo[i][3]).SerializeToString()
            times[(i, w)].append(time.perf_counter() - t0)
        for i in range(len(todo)):
            if graphs[(i, "torch.onnx.export")] != graphs[(i, "export_onnx_proto")]:
                raise SystemExit(f"case {i} ({todo[i][1]}): the two graphs differ")
    rows = []
    for kind in ("block", "network"):
        idx = [i for i, c in enumerate(todo) if c[0] == kind]
        if not idx:
            continue
        med = {w: statistics.median(statistics.median(times[(i, w)]) for i in idx) for w in ways}
        rows.append((kind, str(len(idx)), f"{med['torch.onnx.export'] * 1e3:.0f}",
                     f"{med['export_onnx_proto'] * 1e3:.0f}",
                     f"{med['torch.onnx.export'] / med['export_onnx_proto']:.2f}x"))
    print(f"torch {torch.__version__}, {args.repeats} interleaved repeats (shuffled), graphs byte-identical; "
          f"{cpu_description()}; load average {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    print(format_table(rows, ["case", "n", "torch.onnx.export ms", "export_onnx_proto ms", "speed-up"],
                       align="lrrrr"))


if __name__ == "__main__":
    main()
