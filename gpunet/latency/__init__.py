"""Latency measurement: the benchmark harness, device fingerprints, and saving tiers."""
from .bench import BACKENDS, PRECISIONS, BenchmarkResult, benchmark
from .cacheshare import CacheShare, cache_share
from .fingerprint import default_device_name, device_fingerprint

__all__ = ["benchmark", "BenchmarkResult", "BACKENDS", "PRECISIONS", "device_fingerprint", "default_device_name",
           "save_tiers", "cache_share", "CacheShare"]


def __getattr__(name):
    if name == "save_tiers":
        from .tiers import save_tiers

        return save_tiers
    raise AttributeError(f"module 'gpunet.latency' has no attribute {name!r}")
