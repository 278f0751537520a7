"""torch.hub entry points in hubconf.py, loaded from this checkout with ``source="local"``."""
from __future__ import annotations

import os

import pytest
import torch

import gpunet
from test_weights_support import Mirror, mirror_manifest, ngc_path, ngc_zip_bytes, nvidia_checkpoint_bytes

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_hubconf_has_every_model_and_nvidias_entry_point():
    import importlib.util

    spec = importlib.util.spec_from_file_location("hubconf", os.path.join(REPO, "hubconf.py"))
    hubconf = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(hubconf)
    entries = {k for k, v in vars(hubconf).items() if callable(v) and not k.startswith("_")}
    assert entries == {n.replace("-", "_") for n in gpunet.list_models()} | {"nvidia_gpunet"}
    assert all(importlib.util.find_spec(d) for d in hubconf.dependencies)  # what torch.hub checks
    assert "model_type" in hubconf.nvidia_gpunet.__doc__ and "GPUNet-P0" in hubconf.nvidia_gpunet.__doc__


def test_hub_load_without_weights_builds_the_architecture():
    model = torch.hub.load(REPO, "gpunet_p0", source="local", trust_repo=True, num_classes=10)
    assert model.spec.name == "gpunet-p0" and model.classifier.out_features == 10
    with pytest.raises(ValueError, match="model_type 'GPUNet-9' is not one of NVIDIA's GPUNets: GPUNet-0"):
        torch.hub.load(REPO, "nvidia_gpunet", source="local", trust_repo=True, model_type="GPUNet-9")
    with pytest.raises(ValueError, match="model_math 'int8'"):
        torch.hub.load(REPO, "nvidia_gpunet", source="local", trust_repo=True, pretrained=False,
                       model_math="int8")


@pytest.mark.filterwarnings("ignore:.*publisher gives no checksum")
def test_nvidia_arguments_load_pretrained_weights_on_cpu(tmp_path, monkeypatch):
    ref, pth = nvidia_checkpoint_bytes("gpunet-0", ema_differs=False)
    with Mirror() as m:
        m.files[ngc_path("gpunet-0")] = ngc_zip_bytes("gpunet-0", pth, compress=False)
        monkeypatch.setenv("GPUNET_WEIGHTS_MANIFEST", mirror_manifest(m, str(tmp_path / "m.json")))
        fp32 = torch.hub.load(REPO, "nvidia_gpunet", source="local", trust_repo=True, pretrained=True,
                              model_type="GPUNet-0", model_math="fp32")
        fp16 = torch.hub.load(REPO, "nvidia_gpunet", source="local", trust_repo=True, pretrained=True,
                              model_type="GPUNet-0", model_math="fp16")
        ours = torch.hub.load(REPO, "gpunet_0", source="local", trust_repo=True, pretrained=True)
    assert len([r for r in m.requests if r[2] == 200]) == 1  # downloaded once, then from the cache
    want = ref.state_dict()
    for model in (fp32, ours):
        sd = model.state_dict()
        assert all(torch.equal(sd[k], want[k]) for k in want)
        assert all(p.device.type == "cpu" and p.dtype == torch.float32 for p in model.parameters())
    assert all(p.dtype == torch.float16 for p in fp16.parameters())
    assert torch.equal(fp16.state_dict()["classifier.weight"], want["classifier.weight"].half())
