"""The builder reproduces NVIDIA's seven networks exactly: parameters, key names, logits."""
import argparse
import json

import pytest
import torch

import gpunet
from conftest import fill_recipe_b
from gpunet.nvidia import nvidia_module_map, state_dict_from_nvidia, state_dict_to_nvidia

MODELS = ["GPUNet-0", "GPUNet-1", "GPUNet-2", "GPUNet-P0", "GPUNet-P1", "GPUNet-D1", "GPUNet-D2"]


@pytest.fixture(scope="module")
def parity(reference_dir):
    return json.loads((reference_dir / "nvidia_parity_samples.json").read_text())["models"]


@pytest.mark.parametrize("nvidia_name", MODELS)
def test_params_and_state_dict_layout_match_nvidia(nvidia_models, nvidia_name):
    ref = nvidia_models[nvidia_name]
    model = gpunet.get_model(nvidia_name)
    assert sum(p.numel() for p in model.parameters()) == ref["param_count"]
    ours = state_dict_to_nvidia(model.state_dict(), model.spec)
    # same names, same shapes, same order as NVIDIA's builder
    assert [(k, list(v.shape)) for k, v in ours.items()] == [(k, list(s)) for k, s in ref["state_dict"]]


@pytest.mark.parametrize("nvidia_name", MODELS)
def test_key_mapping_round_trips(nvidia_models, nvidia_name):
    model = gpunet.get_model(nvidia_name)
    sd = model.state_dict()
    back = state_dict_from_nvidia(state_dict_to_nvidia(sd, model.spec), model.spec)
    assert list(back) == list(sd)
    assert all(back[k] is sd[k] for k in sd)
    assert len(set(nvidia_module_map(model.spec).values())) == len(nvidia_module_map(model.spec))


def _nvidia_training_checkpoint(path, nvidia_sd, decoy_sd):
    """A timm training checkpoint as NVIDIA publishes them: EMA weights are the real ones."""
    torch.save({"epoch": 449, "arch": "gpunet", "state_dict": decoy_sd, "state_dict_ema": nvidia_sd,
                "args": argparse.Namespace(model="gpunet", lr=0.06)}, path)


@pytest.mark.parametrize("nvidia_name", ["GPUNet-0", "GPUNet-D1"])
def test_logits_match_nvidia_reference(nvidia_models, parity, nvidia_name, tmp_path):
    ref = nvidia_models[nvidia_name]
    sample = parity[nvidia_name]["recipe_b"]
    nvidia_sd = fill_recipe_b(ref["state_dict"])
    decoy = {k: torch.zeros_like(v) for k, v in nvidia_sd.items()}
    ckpt = tmp_path / (ref["config"].replace(".json", ".pth.tar"))
    _nvidia_training_checkpoint(ckpt, nvidia_sd, decoy)

    model = gpunet.get_model(nvidia_name.lower(), checkpoint_path=str(ckpt)).eval()
    r = ref["input_resolution"]
    x = torch.randn(2, 3, r, r, generator=torch.Generator().manual_seed(1234))
    with torch.no_grad():
        logits32 = model(x)
    want32 = sample["logits_float32"]
    torch.testing.assert_close(logits32[0, :10], torch.tensor(want32["row0_first10"]), rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(logits32[1, :10], torch.tensor(want32["row1_first10"]), rtol=1e-4, atol=1e-5)
    assert logits32.argmax(1).tolist() == want32["argmax"]

    # float64: every top-level block of NVIDIA's network, then the logits, to ~1e-9 relative
    model = model.double()
    h = x.double()
    outputs = []
    with torch.no_grad():
        h = model.stem(h)
        outputs.append(h)
        for stage in model.stages:
            for block in stage:
                h = block(h)
                outputs.append(h)
        outputs.append(model.forward_head(model.conv_head(h)))
    blocks = sample["blocks_float64"]
    assert len(outputs) == len(blocks)
    for out, want in zip(outputs, blocks):
        assert list(out.shape) == want["shape"], want["name"]
        assert out.sum().item() == pytest.approx(want["sum"], rel=1e-9, abs=1e-9), want["name"]
        assert (out ** 2).sum().item() == pytest.approx(want["sumsq"], rel=1e-9), want["name"]
    f64 = sample["float64_forward"]
    logits = outputs[-1]
    assert logits[0, :10].tolist() == pytest.approx(f64["row0_first10"], rel=1e-8, abs=1e-12)
    assert logits.sum().item() == pytest.approx(f64["sum"], rel=1e-9)


@pytest.mark.parametrize("nvidia_name", ["GPUNet-1", "GPUNet-2", "GPUNet-P0", "GPUNet-P1", "GPUNet-D2"])
def test_nvidia_checkpoints_of_every_model_load_to_the_same_function(nvidia_models, nvidia_name, tmp_path):
    """No published logits for these five: an NVIDIA-named checkpoint must give exactly the
    network that the same weights give under our names (the mapping is a bijection on
    modules, checked above), at a reduced resolution to stay fast."""
    ref = nvidia_models[nvidia_name]
    nvidia_sd = fill_recipe_b(ref["state_dict"])
    path = tmp_path / "ckpt.pth"
    if ref["checkpoint_format"].startswith("bare"):
        torch.save(nvidia_sd, path)  # P0 / P1 ship bare state_dicts
    else:
        _nvidia_training_checkpoint(path, nvidia_sd, {k: v * 0 for k, v in nvidia_sd.items()})
    loaded = gpunet.get_model(nvidia_name, checkpoint_path=str(path)).eval()
    direct = gpunet.build_model(loaded.spec).eval()
    direct.load_state_dict(state_dict_from_nvidia(nvidia_sd, direct.spec))
    x = torch.randn(1, 3, 96, 96, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        a, b = loaded(x), direct(x)
    assert torch.equal(a, b)
    assert a.abs().sum() > 0


def test_feature_map_sizes_reproduce_padding_quirk():
    model = gpunet.get_model("gpunet-0").eval()
    x = torch.zeros(1, 3, 320, 320)
    sizes = []
    with torch.no_grad():
        h = model.stem(x)
        for stage in model.stages:
            h = stage(h)
            sizes.append(h.shape[-1])
    assert sizes == [160, 79, 39, 20, 10]


def test_drop_path_schedule_follows_nvidia():
    model = gpunet.get_model("gpunet-0", drop_path_rate=0.2)
    spec = model.spec
    n = len(spec.layers)
    rates = {}
    for g, (_, idx) in enumerate(spec.stages()):
        for b, li in enumerate(idx):
            block = model.stages[g][b]
            dp = getattr(block, "drop_path", None)
            if dp is not None and hasattr(dp, "drop_prob"):
                rates[li] = dp.drop_prob
    # residual blocks only, rate 0.2 * p / (N - 1) with p the NVIDIA file position
    assert rates and all(r == pytest.approx(0.2 * (li + 1) / n) for li, r in rates.items())


def test_batchnorm_eps_per_family():
    std = gpunet.get_model("gpunet-0")
    dis = gpunet.get_model("gpunet-d1")
    assert {m.eps for m in std.modules() if isinstance(m, torch.nn.BatchNorm2d)} == {1e-3}
    assert {m.eps for m in dis.modules() if isinstance(m, torch.nn.BatchNorm2d)} == {1e-5}
