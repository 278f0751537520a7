"""End to end: ``get_model(name, pretrained=True)`` for every hub model against a loopback mirror
serving NGC-style zips (NVIDIA's key names and checkpoint layout), and timm's entry point."""
from __future__ import annotations

import os

import pytest
import torch

import gpunet
from test_weights_support import Mirror, mirror_manifest, ngc_path, ngc_zip_bytes, nvidia_checkpoint_bytes


@pytest.fixture(scope="module")
def mirror():
    with Mirror() as m:
        yield m


@pytest.fixture
def manifest(mirror, tmp_path, monkeypatch):
    monkeypatch.setenv("GPUNET_WEIGHTS_MANIFEST", mirror_manifest(mirror, str(tmp_path / "m.json")))


def serve(mirror, name):
    model, pth = nvidia_checkpoint_bytes(name, seed=len(name), ema_differs=False)
    mirror.files[ngc_path(name)] = ngc_zip_bytes(name, pth, compress=False)
    return model


@pytest.mark.filterwarnings("ignore:.*publisher gives no checksum")
@pytest.mark.parametrize("name", gpunet.list_models())
def test_get_model_pretrained_end_to_end(name, mirror, manifest):
    ref = serve(mirror, name).state_dict()
    try:
        model = gpunet.get_model(name, pretrained=True)
    finally:
        del mirror.files[ngc_path(name)]
    sd = model.state_dict()
    assert sd.keys() == ref.keys() and all(torch.equal(sd[k], ref[k]) for k in sd)
    assert (mirror.requests[-1][0], mirror.requests[-1][2]) == (ngc_path(name), 200)
    cached = os.listdir(os.path.join(os.environ["GPUNET_HOME"], "weights", name, "nvidia-ngc"))
    stem = gpunet.registry.get_registry().model_info(name)["nvidia_config"][:-5]
    assert sorted(cached) == [f"{stem}.pth.tar", f"{stem}.pth.tar.json", f"{stem}.pth.tar.lock"]


@pytest.mark.filterwarnings("ignore:.*publisher gives no checksum")
def test_timm_create_model_pretrained(mirror, manifest):
    import timm

    ref = serve(mirror, "gpunet-d1")
    model = timm.create_model("gpunet_d1", pretrained=True)
    sd, want = model.state_dict(), ref.state_dict()
    assert sd.keys() == want.keys() and all(torch.equal(sd[k], want[k]) for k in sd)
    assert model.pretrained_cfg["input_size"] == (3, 456, 456)
