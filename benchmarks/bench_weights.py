"""Load time of GPUNet-2 weights: our safetensors vs NVIDIA's ``.pth.tar`` (generated locally).

NVIDIA's file is a timm training checkpoint (``state_dict`` + ``state_dict_ema`` + ``args``, their
key names), as published; the safetensors file is what ``gpunet weights convert`` makes from it.
Both are timed into the same, already built model, interleaved, files in the OS page cache:

* ``read``: file -> state_dict in our key names (no model involved): the format's own cost;
  ``safetensors`` is the library's ``load_file``, ``safetensors, gpunet`` our reader
  (:mod:`gpunet.safetensors_mmap`, what the loads below use)
* ``load_checkpoint``: read + (rename) + strict ``load_state_dict``
* ``load_pretrained``: the same through the cache: a file verified before and unchanged since
  (its stat signature) is not hashed again, and the tensors read are adopted by the model

    python benchmarks/bench_weights.py [--repeats 15] [--model gpunet-2]
"""
from __future__ import annotations

import argparse
import gc
import os
import random
import statistics
import sys
import tempfile
import time
import warnings

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def nvidia_pth_tar(model, path: str) -> None:
    from gpunet.nvidia import state_dict_to_nvidia

    ema = state_dict_to_nvidia(model.state_dict(), model.spec)
    raw = {k: v.clone() for k, v in ema.items()}
    import torch

    torch.save({"epoch": 449, "state_dict": raw, "state_dict_ema": ema, "version": 2,
                "args": argparse.Namespace(model="GPUNet-2", lr=0.08)}, path)


def as_built(model) -> None:
    """Give every parameter and buffer fresh memory of its own, as a newly built model has: each
    load then frees the same kind of memory, whatever the case before it left in the model (and
    every case starts after the same 99 MiB copy has gone through the CPU caches)."""
    import torch

    with torch.no_grad():
        for t in model.state_dict(keep_vars=True).values():
            t.data = t.data.clone()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="gpunet-2")
    ap.add_argument("--repeats", type=int, default=15)
    args = ap.parse_args()

    import torch

    import gpunet
    from gpunet.checkpoint import load_checkpoint
    from gpunet.cli._fmt import format_table
    from gpunet.latency.fingerprint import cpu_description
    from gpunet.weights import convert_to_safetensors, import_weights, load_pretrained

    torch.set_num_threads(max(1, os.cpu_count() or 1))
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["GPUNET_HOME"] = os.path.join(tmp, "home")
        os.environ["GPUNET_OFFLINE"] = "1"
        os.environ.pop("GPUNET_WEIGHTS_MANIFEST", None)
        model = gpunet.get_model(args.model)
        stem = gpunet.registry.get_registry().model_info(args.model)["nvidia_config"][:-len(".json")]
        pth = os.path.join(tmp, f"{stem}.pth.tar")
        st = os.path.join(tmp, f"{args.model}.safetensors")
        nvidia_pth_tar(model, pth)
        convert_to_safetensors(args.model, pth, st)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import_weights(args.model, pth)
            import_weights(args.model, st)
        from safetensors.torch import load_file

        from gpunet.checkpoint import extract_state_dict, read_checkpoint, read_safetensors, to_gpunet_state_dict

        cases = {
            ("read", "safetensors"): lambda: load_file(st),
            ("read", "safetensors, gpunet"): lambda: read_safetensors(st),
            ("read", "nvidia .pth.tar"): lambda: to_gpunet_state_dict(extract_state_dict(read_checkpoint(pth)),
                                                                       model.spec),
            ("load_checkpoint", "safetensors"): lambda: load_checkpoint(model, st),
            ("load_checkpoint", "nvidia .pth.tar"): lambda: load_checkpoint(model, pth),
            ("load_pretrained", "safetensors"): lambda: load_pretrained(model, args.model, weights="safetensors"),
            ("load_pretrained", "nvidia .pth.tar"): lambda: load_pretrained(model, args.model, weights="nvidia-ngc"),
        }
        for fn in cases.values():  # warm-up: page cache, lazy imports
            fn()
        times = {k: [] for k in cases}
        rng = random.Random(0)
        for _ in range(args.repeats):  # interleaved, in a new order each repeat: drift and what ran
            order = list(cases)  # just before (a .pth.tar read leaves 200 MiB to the allocator) hit
            rng.shuffle(order)  # every case alike
            for k in order:
                as_built(model)  # before every case, reads too: the same memory and caches for each
                gc.collect()
                gc.disable()  # as timeit does: a collection falls on no case by chance
                t0 = time.perf_counter()
                cases[k]()
                times[k].append(time.perf_counter() - t0)
                gc.enable()
        sizes = {"safetensors": os.path.getsize(st), "safetensors, gpunet": os.path.getsize(st),
                 "nvidia .pth.tar": os.path.getsize(pth)}
    rows = []
    for path_kind in ("read", "load_checkpoint", "load_pretrained"):
        base = statistics.median(times[(path_kind, "safetensors")])
        for fmt in ("safetensors", "safetensors, gpunet", "nvidia .pth.tar"):
            if (path_kind, fmt) not in times:
                continue
            t = times[(path_kind, fmt)]
            rows.append((path_kind, fmt, f"{sizes[fmt] / 2**20:.1f}", f"{statistics.median(t) * 1e3:.1f}",
                         f"{min(t) * 1e3:.1f}", f"{statistics.median(t) / base:.2f}x"))
    print(f"{args.model}: {sum(p.numel() for p in model.parameters()) / 1e6:.1f}M params, "
          f"{args.repeats} interleaved repeats (shuffled), torch {torch.__version__}, {os.cpu_count()} CPUs, warm page cache; "
          f"{cpu_description()}; load average {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    print(format_table(rows, ["path", "format", "MiB", "median ms", "min ms", "vs safetensors"], align="llrrrr"))
    ratio = statistics.median(times[("load_pretrained", "safetensors")]) / \
        statistics.median(times[("read", "safetensors")])
    print(f"cached, verified load_pretrained / safetensors.torch.load_file of the same file: {ratio:.2f}x "
          f"(target <= 1.5x, issue 25)")


if __name__ == "__main__":
    main()
