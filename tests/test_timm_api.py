"""The models behave as timm's model conventions expect (after `import gpunet`)."""
import warnings

import pytest
import timm
import torch

import gpunet  # noqa: F401  (registers the models)

TIMM_NAMES = ["gpunet_0", "gpunet_1", "gpunet_2", "gpunet_p0", "gpunet_p1", "gpunet_d1", "gpunet_d2"]
SMALL = 64  # the networks are fully convolutional; shapes scale with the input


def test_registered_with_timm():
    # NVIDIA's seven, and the generic entry point that builds any GPUNet from a spec (model folders);
    # winners another test exported in this process are registered too (test_search_winners)
    from gpunet.timm_models import USER_NAMES

    listed = [n for n in timm.list_models("gpunet*") if n not in USER_NAMES]
    assert sorted(listed) == sorted(TIMM_NAMES + ["gpunet_spec"])
    cfg = timm.create_model("gpunet_p0").pretrained_cfg
    assert cfg["interpolation"] == "bicubic" and cfg["crop_pct"] == 0.875
    assert cfg["mean"] == (0.485, 0.456, 0.406) and cfg["std"] == (0.229, 0.224, 0.225)
    assert cfg["input_size"] == (3, 224, 224) and cfg["license"] == "apache-2.0"
    assert "2205.00841" in cfg["paper_ids"]
    assert timm.create_model("gpunet_d2").pretrained_cfg["crop_pct"] == 1.0


@pytest.mark.parametrize("name", TIMM_NAMES)
def test_default_cfg_conventions(name):
    """timm's test_model_default_cfgs: pool_size, num_features, classifier/first_conv names."""
    model = timm.create_model(name).eval()
    cfg = model.pretrained_cfg
    sd = model.state_dict()
    assert cfg["classifier"] + ".weight" in sd and cfg["first_conv"] + ".weight" in sd
    res = cfg["input_size"][-1]
    x = torch.randn(1, 3, res, res)
    with torch.no_grad():
        feats = model.forward_features(x)
        assert feats.shape[1] == model.num_features
        assert tuple(feats.shape[2:]) == tuple(cfg["pool_size"])
        logits = model.forward_head(feats)
        assert logits.shape == (1, 1000)
        assert model.forward_head(feats, pre_logits=True).shape == (1, model.head_hidden_size)
        model.reset_classifier(0)
        assert model(x).shape == (1, model.head_hidden_size)
        model.reset_classifier(0, "")
        out = model(x)
        assert out.ndim == 4 and tuple(out.shape[2:]) == tuple(cfg["pool_size"])


@pytest.mark.parametrize("name", TIMM_NAMES)
def test_forward_backward_and_head_api(name):
    model = timm.create_model(name, num_classes=7, drop_rate=0.1, drop_path_rate=0.1)
    assert model.num_classes == 7 and model.get_classifier().out_features == 7
    x = torch.randn(2, 3, SMALL, SMALL)
    out = model(x)
    assert out.shape == (2, 7) and torch.isfinite(out).all()
    out.mean().backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)
    model.reset_classifier(3, global_pool="max")
    assert model(x).shape == (2, 3)


def test_in_chans_and_channels_last():
    model = timm.create_model("gpunet_1", in_chans=1, num_classes=5).eval()
    assert model.stem[0].conv.in_channels == 1
    x = torch.randn(1, 1, SMALL, SMALL)
    with torch.no_grad():
        ref = model(x)
        model = model.to(memory_format=torch.channels_last)
        out = model(x.to(memory_format=torch.channels_last))
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", ["gpunet_0", "gpunet_p0", "gpunet_d1"])
def test_features_only(name):
    model = timm.create_model(name, features_only=True).eval()
    x = torch.randn(1, 3, 128, 128)
    with torch.no_grad():
        outs = model(x)
    info = model.feature_info
    assert [o.shape[1] for o in outs] == info.channels()
    reductions = info.reduction()
    assert reductions == sorted(reductions) and len(set(reductions)) == len(reductions)
    for o, r in zip(outs, reductions):
        assert abs(o.shape[-1] - 128 / r) <= 1  # NVIDIA's unpadded stride-2 convs lose a pixel
    sub = timm.create_model(name, features_only=True, out_indices=(1, 3)).eval()
    with torch.no_grad():
        sub_outs = sub(x)
    assert [o.shape for o in sub_outs] == [outs[1].shape, outs[3].shape]


def test_features_only_through_get_model():
    model = gpunet.get_model("gpunet-2", features_only=True, out_indices=(2, 3, 4))
    assert model.feature_info.reduction() == [8, 16, 32]
    with pytest.raises(ValueError, match="out_indices"):
        gpunet.get_model("gpunet-2", features_only=True, out_indices=(9,))


def test_forward_intermediates_and_pruning():
    model = timm.create_model("gpunet_0").eval()
    x = torch.randn(1, 3, SMALL, SMALL)
    with torch.no_grad():
        final, inter = model.forward_intermediates(x)
        assert torch.equal(final, model.forward_features(x))
        assert [t.shape[1] for t in inter] == [f["num_chs"] for f in model.feature_info]
        only = model.forward_intermediates(x, indices=2, intermediates_only=True)
        assert [t.shape for t in only] == [t.shape for t in inter[-2:]]
        kept = model.prune_intermediate_layers(indices=(0, 1))
        assert kept == [0, 1]
        pruned = model.forward_intermediates(x, indices=(0, 1), intermediates_only=True)
        assert [t.shape for t in pruned] == [t.shape for t in inter[:2]]


def test_grad_checkpointing_gives_same_gradients():
    torch.manual_seed(0)
    model = timm.create_model("gpunet_0", num_classes=4, drop_rate=0.0).train()
    x = torch.randn(2, 3, SMALL, SMALL)
    model(x).sum().backward()
    ref = model.stem[0].conv.weight.grad.clone()
    model.zero_grad()
    model.set_grad_checkpointing(True)
    model(x).sum().backward()
    torch.testing.assert_close(model.stem[0].conv.weight.grad, ref, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("name", ["gpunet_0", "gpunet_d2"])
def test_torchscript(name):
    model = timm.create_model(name).eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        scripted = torch.jit.script(model)
    x = torch.randn(1, 3, SMALL, SMALL)
    with torch.no_grad():
        torch.testing.assert_close(scripted(x), model(x))


def test_group_matcher_covers_every_parameter():
    from timm.models import group_parameters

    model = timm.create_model("gpunet_1")
    groups = group_parameters(model, model.group_matcher(coarse=True))
    assert sum(len(v) for v in groups.values()) == len(list(model.named_parameters()))


@pytest.mark.parametrize("name", TIMM_NAMES)
def test_meta_and_dtype_factories_reach_every_layer(name):
    """timm's device / dtype factory kwargs, also for layers created later (reset_classifier)."""
    meta = timm.create_model(name, device="meta")
    assert {p.device.type for p in meta.parameters()} | {b.device.type for b in meta.buffers()} == {"meta"}
    meta.reset_classifier(10)
    assert meta.classifier.weight.device.type == "meta"
    bf16 = timm.create_model(name, dtype=torch.bfloat16, num_classes=3)
    assert {p.dtype for p in bf16.parameters()} == {torch.bfloat16}
    bf16.reset_classifier(5, "max" if name.startswith("gpunet_d") else "catavgmax")
    assert bf16.classifier.weight.dtype == torch.bfloat16
    with torch.no_grad():
        assert bf16.eval()(torch.randn(1, 3, 32, 32, dtype=torch.bfloat16)).shape == (1, 5)


@pytest.mark.parametrize("name", TIMM_NAMES)
def test_output_stride_16_and_8_dilate_the_last_stages(name):
    x = torch.randn(1, 3, SMALL, SMALL)
    ref = timm.create_model(name, features_only=True).eval()
    natural = ref.feature_info.reduction()
    with torch.no_grad():
        ref_outs = ref(x)
    for os_ in (16, 8):
        model = timm.create_model(name, features_only=True, output_stride=os_).eval()
        assert model.feature_info.reduction() == [min(r, os_) for r in natural]
        with torch.no_grad():
            outs = model(x)
        # same levels and channels; the capped levels keep the spatial size of the last kept stride
        assert [o.shape[1] for o in outs] == [o.shape[1] for o in ref_outs]
        capped = [o for o, r in zip(outs, model.feature_info.reduction()) if r == os_]
        assert len({o.shape[-1] for o in capped}) == 1
        # levels before the cap are computed by identical layers
        for o, r, o_ref in zip(outs, natural, ref_outs):
            if r < os_:
                assert o.shape == o_ref.shape
    dilated = timm.create_model(name, output_stride=8)
    convs = [m for m in dilated.stages[-1].modules() if isinstance(m, torch.nn.Conv2d) and m.kernel_size[0] > 1]
    assert convs and all(c.stride == (1, 1) and c.dilation[0] > 1 for c in convs)


def test_output_stride_keeps_weights_compatible():
    """A dilated backbone loads the stride-32 state_dict unchanged (same names and shapes)."""
    sd = timm.create_model("gpunet_0").state_dict()
    dense = timm.create_model("gpunet_0", output_stride=16)
    dense.load_state_dict(sd)
    with pytest.raises(ValueError, match="output_stride"):
        timm.create_model("gpunet_0", output_stride=12)


@pytest.mark.parametrize("name", ["gpunet_0", "gpunet_d1"])
def test_reset_classifier_keeps_trained_layers(name):
    model = timm.create_model(name).eval()
    x = torch.randn(2, 3, SMALL, SMALL)
    pre = model.conv_pre_logits
    model.reset_classifier(10, "")
    assert model.conv_pre_logits is pre  # the distill family's trained conv is never dropped
    with torch.no_grad():
        dense = model(x)  # no pooling: logits at every location, as NCHW
    assert dense.shape[:2] == (2, 10) and dense.ndim == 4
    head = model.classifier.state_dict()
    model.reset_classifier(10, "avg")
    model.classifier.load_state_dict(head)
    with torch.no_grad():
        pooled = model(x)
    assert pooled.shape == (2, 10)
    if model.conv_pre_logits is None:  # a linear classifier commutes with average pooling
        torch.testing.assert_close(dense.mean((2, 3)), pooled, rtol=1e-4, atol=1e-5)
    if name == "gpunet_d1":
        with pytest.raises(ValueError, match="conv_pre_logits"):
            model.reset_classifier(10, "catavgmax")
        assert model.conv_pre_logits is pre and model.global_pool.pool_type == "avg"
    else:
        model.reset_classifier(10, "catavgmax")
        assert model.classifier.in_features == 2 * model.num_features


def test_a_damaged_user_registry_does_not_break_the_import(monkeypatch, tmp_path):
    """Registering the user registry's exported models runs on `import gpunet`: a broken file is a
    warning naming it there, and the error where the registry is used."""
    from gpunet.registry import RegistryError, get_registry
    from gpunet.timm_models import _register_user_models_on_import

    bad = tmp_path / "registry.json"
    bad.write_text("{not json")
    monkeypatch.setenv("GPUNET_REGISTRY", str(bad))
    with pytest.warns(UserWarning, match=r"registry.json: not valid JSON"):
        _register_user_models_on_import()
    with pytest.raises(RegistryError, match="registry.json: not valid JSON"):
        get_registry()
