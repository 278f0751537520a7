"""Loading local checkpoints: formats, names, and errors that never allow a partial load."""
import os
import pickle

import pytest
import torch

import gpunet
from gpunet.checkpoint import CheckpointError, load_checkpoint
from gpunet.nvidia import state_dict_to_nvidia


@pytest.fixture(scope="module")
def trained():
    torch.manual_seed(0)
    model = gpunet.get_model("gpunet-0").eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.01)
    return model


def _logits(model, res=64):
    x = torch.randn(1, 3, res, res, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        return model.eval()(x)


def test_bare_state_dict_with_our_names(trained, tmp_path):
    path = tmp_path / "ours.pth"
    torch.save(trained.state_dict(), path)
    assert torch.equal(_logits(gpunet.get_model("gpunet-0", checkpoint_path=str(path))), _logits(trained))


def test_ddp_prefix_and_safetensors(trained, tmp_path):
    from safetensors.torch import save_file

    path = tmp_path / "ddp.pth"
    torch.save({"state_dict": {"module." + k: v for k, v in trained.state_dict().items()}}, path)
    assert torch.equal(_logits(gpunet.get_model("gpunet-0", checkpoint_path=str(path))), _logits(trained))
    st = tmp_path / "w.safetensors"
    save_file({k: v.contiguous() for k, v in trained.state_dict().items()}, str(st))
    assert torch.equal(_logits(gpunet.get_model("gpunet-0", checkpoint_path=str(st))), _logits(trained))


def test_ema_is_preferred(trained, tmp_path):
    nv = state_dict_to_nvidia(trained.state_dict(), trained.spec)
    path = tmp_path / "0.65ms.pth.tar"
    torch.save({"state_dict": {k: torch.zeros_like(v) for k, v in nv.items()}, "state_dict_ema": nv}, path)
    assert torch.equal(_logits(gpunet.get_model("gpunet-0", checkpoint_path=str(path))), _logits(trained))


def test_fine_tuning_keeps_new_classifier(trained, tmp_path):
    path = tmp_path / "ours.pth"
    torch.save(trained.state_dict(), path)
    model = gpunet.get_model("gpunet-0", checkpoint_path=str(path), num_classes=10)
    assert model.classifier.out_features == 10
    assert torch.equal(model.stem[0].conv.weight, trained.stem[0].conv.weight)


@pytest.mark.parametrize("damage, words", [
    (lambda sd: sd.pop("stages.3.1.conv_pw.weight"), ["1 missing", "stages.3.1.conv_pw.weight"]),
    (lambda sd: sd.update(extra_layer=torch.zeros(3)), ["1 unexpected", "extra_layer"]),
    (lambda sd: sd.update({"stages.0.0.conv.weight": torch.zeros(32, 32, 5, 5)}),
     ["mis-shaped", "stages.0.0.conv.weight", "(32, 32, 5, 5)", "(32, 32, 3, 3)"]),
])
def test_mismatched_checkpoints_fail_loudly(trained, tmp_path, damage, words):
    sd = dict(trained.state_dict())
    damage(sd)
    path = tmp_path / "bad.pth"
    torch.save(sd, path)
    fresh = gpunet.get_model("gpunet-0")
    before = {k: v.clone() for k, v in fresh.state_dict().items()}
    with pytest.raises(CheckpointError) as e:
        load_checkpoint(fresh, str(path))
    for w in words:
        assert w in str(e.value)
    assert str(path) in str(e.value)
    assert all(torch.equal(before[k], v) for k, v in fresh.state_dict().items())  # nothing loaded


def test_checkpoint_of_another_architecture(tmp_path):
    other = gpunet.get_model("gpunet-1")
    path = tmp_path / "0.85ms.pth.tar"
    torch.save({"state_dict_ema": state_dict_to_nvidia(other.state_dict(), other.spec)}, path)
    with pytest.raises(CheckpointError, match="no counterpart|does not fit"):
        gpunet.get_model("gpunet-0", checkpoint_path=str(path))


class _Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


def test_arbitrary_pickles_are_refused(tmp_path):
    path = tmp_path / "evil.pth"
    with open(path, "wb") as f:
        pickle.dump({"state_dict": _Evil()}, f)
    with pytest.raises(CheckpointError, match="weights_only"):
        gpunet.get_model("gpunet-0", checkpoint_path=str(path))


def test_missing_file_and_conflicting_arguments(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.pth"):
        gpunet.get_model("gpunet-0", checkpoint_path=str(tmp_path / "nope.pth"))
    with pytest.raises(ValueError, match="not both"):
        gpunet.get_model("gpunet-0", pretrained=True, checkpoint_path="x.pth")


def test_a_file_read_is_adopted_by_the_same_parameter_objects(trained, tmp_path):
    from safetensors.torch import save_file

    from gpunet.checkpoint import load_state_dict_into

    path = tmp_path / "w.safetensors"
    save_file({k: v.contiguous() for k, v in trained.state_dict().items()}, str(path))
    model = gpunet.get_model("gpunet-0")
    params = dict(model.named_parameters())
    opt = torch.optim.SGD(model.parameters(), lr=0.1)  # made before the load: must still train the model
    load_checkpoint(model, str(path))
    assert all(p is params[k] for k, p in model.named_parameters())  # same objects, new memory
    assert torch.equal(_logits(model), _logits(trained))
    before = model.classifier.weight.detach().clone()
    model.train()(torch.randn(2, 3, 64, 64)).sum().backward()
    opt.step()
    assert not torch.equal(model.classifier.weight, before)

    mine = {k: v.clone() for k, v in trained.state_dict().items()}  # the caller's dict: copied, never adopted
    other = load_state_dict_into(gpunet.get_model("gpunet-0"), mine)
    mine["classifier.bias"].add_(1.0)
    assert torch.equal(other.classifier.bias, trained.classifier.bias)

    half = gpunet.get_model("gpunet-0").half()  # another dtype: load_state_dict converts as before
    load_checkpoint(half, str(path))
    assert half.classifier.weight.dtype == torch.float16
    assert torch.allclose(half.classifier.weight.float(), trained.classifier.weight, atol=1e-3)
