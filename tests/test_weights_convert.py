"""NVIDIA checkpoint -> safetensors conversion, manual import, the manifest files and the CLI."""
from __future__ import annotations

import json
import os

import pytest
import torch

import gpunet
from gpunet.checkpoint import CheckpointError
from gpunet.cli import main
from gpunet.weights import (ManifestError, WeightsNotCachedError, convert_to_safetensors, import_weights,
                            list_cached, load_manifest, verify_cached)
from gpunet.weights.convert import safetensors_metadata
from gpunet.weights.manifest import PACKAGED_MANIFEST, Manifest
from test_weights_support import NGC_URL, ngc_zip_bytes, nvidia_checkpoint_bytes

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def g0():
    return nvidia_checkpoint_bytes("gpunet-0")


@pytest.fixture(scope="module")
def files(g0, tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("nvidia")
    pth = tmp_path / "0.65ms.pth.tar"
    pth.write_bytes(g0[1])
    zp = tmp_path / "gpunet_0_pyt_ckpt_21.12.0_amp.zip"
    zp.write_bytes(ngc_zip_bytes("gpunet-0", g0[1], compress=True))
    return pth, zp


def logits(model, x):
    with torch.no_grad():
        return model.eval()(x)


def test_convert_round_trip_gives_identical_logits(g0, files, tmp_path):
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    ref = logits(g0[0], x)
    src = files[1]  # NGC's zip around the .pth.tar (the bare .pth.tar goes through the CLI test)
    dst = tmp_path / f"{src.name}.safetensors"
    res = convert_to_safetensors("GPUNet_0", str(src), str(dst))
    model = gpunet.get_model("gpunet-0", checkpoint_path=str(dst))
    assert torch.equal(logits(model, x), ref)
    meta = safetensors_metadata(str(dst))
    assert meta["gpunet_model"] == "gpunet-0"
    assert meta["gpunet_spec_sha256"] == model.spec.fingerprint()
    assert meta["source_sha256"] == res["metadata"]["source_sha256"] and meta["source"] == src.name
    # our key names, not NVIDIA's
    from safetensors import safe_open

    with safe_open(str(dst), "pt") as f:
        keys = set(f.keys())
    assert keys == set(g0[0].state_dict()) and not any(k.startswith("network.") for k in keys)


def test_convert_rejects_wrong_architecture_and_writes_nothing(files, tmp_path):
    dst = tmp_path / "out.safetensors"
    with pytest.raises(CheckpointError, match="(no counterpart|does not fit)"):
        convert_to_safetensors("gpunet-1", str(files[0]), str(dst))
    assert os.listdir(tmp_path) == ["gpunet_home"]  # no output, no temp file


class Payload:
    """An arbitrary object: torch.load(weights_only=True) must refuse to unpickle it."""


def test_unsafe_pickle_is_refused(tmp_path):
    bad = tmp_path / "evil.pth.tar"
    torch.save({"state_dict": {"x": torch.zeros(1)}, "hook": Payload()}, bad)
    with pytest.raises(CheckpointError, match="weights_only=True"):
        convert_to_safetensors("gpunet-0", str(bad), str(tmp_path / "o.safetensors"))


def test_import_zip_then_load_offline(g0, files, monkeypatch):
    rec = import_weights("gpunet-0", str(files[1]))
    assert rec["variant"] == "nvidia-ngc" and rec["verified_by"] == "import" and rec["archive_sha256"]
    monkeypatch.setenv("GPUNET_OFFLINE", "1")
    model = gpunet.get_model("gpunet-0", pretrained=True)
    sd = g0[0].state_dict()
    assert all(torch.equal(v, sd[k]) for k, v in model.state_dict().items())
    # a file for another architecture, or of the wrong format for the variant, is refused
    with pytest.raises(CheckpointError):
        import_weights("gpunet-1", str(files[1]))
    with pytest.raises(ValueError, match="is not a safetensors file but variant 'safetensors'.*convert it first"):
        import_weights("gpunet-1", str(files[0]), variant="safetensors")
    assert [r["model"] for r in list_cached()] == ["gpunet-0"]


def test_cli_convert_import_list_verify(g0, files, tmp_path, capsys, monkeypatch):
    pth, zp = files
    dst, man = tmp_path / "gpunet-0.safetensors", tmp_path / "manifest.json"
    assert main(["weights", "convert", "gpunet-0", str(pth), str(dst), "--manifest", str(man),
                 "--hf-repo", "me/gpunet", "--hf-revision", "a" * 40, "--prefer"]) == 0
    out = capsys.readouterr().out
    sha = out.split("sha256 ")[1].split()[0]
    var = load_manifest(str(man)).model_variants("gpunet-0")[0]
    assert (var.name, var.sha256, var.size, var.sources[0].repo_id) == ("safetensors", sha, dst.stat().st_size,
                                                                        "me/gpunet")
    assert main(["weights", "import", "gpunet-0", str(dst)]) == 0
    assert main(["weights", "import", "gpunet-0", str(pth)]) == 0
    capsys.readouterr()
    assert main(["weights", "list"]) == 0
    listing = capsys.readouterr().out
    assert "nvidia-ngc" in listing and "safetensors" in listing
    assert main(["weights", "verify", "--deep"]) == 0
    assert capsys.readouterr().out.count(" ok ") == 2
    # safetensors is preferred when cached: loads with identical logits, offline
    monkeypatch.setenv("GPUNET_OFFLINE", "1")
    x = torch.randn(1, 3, 64, 64)
    assert torch.equal(logits(gpunet.get_model("gpunet-0", pretrained=True), x), logits(g0[0], x))
    cached = [r["path"] for r in list_cached() if r["variant"] == "safetensors"][0]
    with open(cached, "r+b") as f:
        f.seek(-16, 2)
        f.write(b"\xff" * 16)
    assert main(["weights", "verify", "gpunet-0"]) == 1
    assert "sha256 mismatch" in capsys.readouterr().out
    assert [r["ok"] for r in verify_cached("gpunet-0")] == [True, False]
    assert main(["weights", "convert", "gpunet-0", str(pth), str(tmp_path / "x.bin")]) == 1
    assert "must end with .safetensors" in capsys.readouterr().err


def test_packaged_manifest_matches_repository_copy_and_registry():
    root = os.path.join(REPO, "weights_manifest.json")
    assert open(root, "rb").read() == open(PACKAGED_MANIFEST, "rb").read(), \
        "cp weights_manifest.json gpunet/data/weights_manifest.json (the installed package reads the latter)"
    m = load_manifest()
    reg = gpunet.registry.get_registry()
    assert m.models() == reg.list_models()
    for name in m.models():
        info = reg.model_info(name)
        ngc = m.variant(name, "nvidia-ngc")
        src = ngc.sources[0]
        assert src.url == NGC_URL.format(ngc_id=info["ngc_id"])
        assert src.member == ngc.file == info["nvidia_config"].replace(".json", ".pth.tar")
        assert ngc.sha256 is None and ngc.format == "nvidia-pth-tar" and ngc.license
        st = m.variant(name, "safetensors")
        assert st.sources == [] and st.sha256 is None and "Not published" in st.note  # honest: no file yet


def test_bad_manifest_errors_name_the_field(tmp_path, monkeypatch):
    data = json.load(open(PACKAGED_MANIFEST))
    data["models"]["gpunet-0"]["variants"]["nvidia-ngc"]["sha256"] = "abc"
    with pytest.raises(ManifestError, match=r"models.gpunet-0.variants.nvidia-ngc.sha256: expected 64 hex"):
        Manifest(data, "m.json")
    data = json.load(open(PACKAGED_MANIFEST))
    del data["models"]["gpunet-0"]["variants"]["nvidia-ngc"]["sources"][0]["member"]
    with pytest.raises(ManifestError, match=r"sources\[0\]: a zip source needs 'member'"):
        Manifest(data, "m.json")
    monkeypatch.setenv("GPUNET_WEIGHTS_MANIFEST", str(tmp_path / "missing.json"))
    with pytest.raises(FileNotFoundError, match="missing.json.*GPUNET_WEIGHTS_MANIFEST"):
        gpunet.get_model("gpunet-0", pretrained=True)


def test_pretrained_fine_tuning_keeps_new_classifier(g0, files, monkeypatch):
    import_weights("gpunet-0", str(files[0]))
    monkeypatch.setenv("GPUNET_OFFLINE", "1")
    model = gpunet.get_model("gpunet-0", pretrained=True, num_classes=10)
    assert model.classifier.out_features == 10
    assert torch.equal(model.state_dict()["stem.0.conv.weight"], g0[0].state_dict()["stem.0.conv.weight"])
    with pytest.raises(WeightsNotCachedError):
        gpunet.get_model("gpunet-1", pretrained=True)


def test_import_checks_the_manifest_checksum(files, tmp_path, monkeypatch):
    data = json.load(open(PACKAGED_MANIFEST))
    data["models"]["gpunet-0"]["variants"]["nvidia-ngc"]["sha256"] = "0" * 64
    (tmp_path / "m.json").write_text(json.dumps(data))
    monkeypatch.setenv("GPUNET_WEIGHTS_MANIFEST", str(tmp_path / "m.json"))
    with pytest.raises(CheckpointError, match=f"differs from the manifest's {'0' * 64}.*not imported"):
        import_weights("gpunet-0", str(files[0]))
    assert list_cached() == []
    assert [f for _, _, fs in os.walk(os.environ["GPUNET_HOME"]) for f in fs if not f.endswith(".lock")] == []


def test_load_pretrained_refuses_safetensors_converted_for_another_architecture(g0, files, tmp_path):
    """The spec fingerprint in the file's header is checked on every load, not only on import:
    a model whose spec differs in a way the shapes do not show (here the resolution) is refused."""
    import warnings

    from gpunet.model import build_model
    from gpunet.weights import load_pretrained

    st = tmp_path / "g0.safetensors"
    convert_to_safetensors("gpunet-0", str(files[0]), str(st))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import_weights("gpunet-0", str(st), variant="safetensors")
    x = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    same = load_pretrained(gpunet.get_model("gpunet-0"), "gpunet-0", weights="safetensors")
    assert torch.equal(logits(same, x), logits(g0[0], x))
    other = build_model(same.spec.replace(resolution=same.spec.resolution + 32))
    with pytest.raises(CheckpointError, match=f"converted for a different architecture.*{same.spec.fingerprint()}"):
        load_pretrained(other, "gpunet-0", weights="safetensors")
