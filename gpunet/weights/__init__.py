"""Pretrained weights: manifest, verified download and cache, NVIDIA conversion, safetensors.

    model = gpunet.get_model("gpunet-0", pretrained=True)             # best available variant
    model = gpunet.get_model("gpunet-0", pretrained=True, weights="nvidia-ngc")

Files land in ``$GPUNET_HOME/weights`` (default ``~/.cache/gpunet/weights``); the manifest is
``$GPUNET_WEIGHTS_MANIFEST`` or the packaged one; ``GPUNET_OFFLINE=1`` / ``HF_HUB_OFFLINE=1``
load from the cache only. See :mod:`.manifest` for the schema.
"""
from .cache import CacheCorruptError, cache_file, cache_root, list_cached
from .convert import convert_to_safetensors, import_weights, read_weights
from .download import ChecksumError, DownloadError, offline_mode
from .manifest import Manifest, ManifestError, Variant, load_manifest, manifest_path
from .pretrained import WeightsNotCachedError, choose_variant, fetch_weights, load_pretrained
from .verify import verify_cached

__all__ = [
    "load_pretrained", "fetch_weights", "choose_variant", "convert_to_safetensors", "import_weights",
    "read_weights", "list_cached", "verify_cached", "cache_root", "cache_file", "load_manifest",
    "manifest_path", "offline_mode", "Manifest", "Variant", "ManifestError", "DownloadError", "ChecksumError",
    "CacheCorruptError", "WeightsNotCachedError",
]
