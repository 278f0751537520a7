"""Registry: packaged tiers, query semantics, name handling, and the user-local merge."""
import json
import os

import pytest

import gpunet
from gpunet.registry import Registry, RegistryError, get_registry, update_user_registry, user_registry_path

HUB = ["gpunet-0", "gpunet-1", "gpunet-2", "gpunet-p0", "gpunet-p1", "gpunet-d1", "gpunet-d2"]


def test_models_and_devices():
    assert gpunet.list_models() == HUB
    assert gpunet.list_devices() == ["a100", "gv100", "v100"]


def test_packaged_numbers_come_from_nvidia(nvidia_models):
    reg = Registry()
    for nv_name, ref in nvidia_models.items():
        info = reg.model_info(nv_name)
        assert info["top1"] == ref["top1"] and info["params"] == ref["param_count"]
        assert info["resolution"] == ref["input_resolution"] and info["crop_pct"] == ref["crop_pct"]
        assert reg.card(nv_name, "v100").latency_ms == ref["v100_trt8_fp16_ms"]
        assert reg.card(nv_name, "a100").latency_ms == ref["a100_trt8_fp16_ms"]
        assert reg.card(nv_name, "a100", engine="pytorch").latency_ms == ref["a100_pytorch_fp16_ms"]
        gv = reg.card(nv_name, "gv100")
        if ref["gv100_paper_ms"] is not None:
            assert (gv.latency_ms, gv.latency_kind) == (ref["gv100_paper_ms"], "measured")
        else:
            assert (gv.latency_ms, gv.latency_kind) == (ref["gv100_target_ms"], "target")
        assert gv.latency_source


def test_packaged_flops_and_params_are_what_the_builder_computes():
    from gpunet.complexity import count_flops, count_params

    reg = Registry()
    for name in ["gpunet-0", "gpunet-d1"]:
        model = gpunet.get_model(name)
        assert reg.model_info(name)["params"] == count_params(model)
        assert reg.model_info(name)["flops"] == count_flops(model, reg.spec(name).resolution)
    assert 3.2e9 < reg.model_info("gpunet-0")["flops"] < 3.3e9  # paper: 3.25 B


def test_query_sorted_by_top1_then_latency():
    cards = gpunet.query(max_latency_ms=1.0, gpu="gv100")
    assert [c.name for c in cards] == ["gpunet-p1", "gpunet-1", "gpunet-p0", "gpunet-0"]
    assert all(c.latency_ms <= 1.0 for c in cards)
    tops = [c.top1 for c in cards]
    assert tops == sorted(tops, reverse=True)
    for c in cards:
        assert {"name", "gpu", "latency_ms", "top1", "params", "resolution"} <= set(c.to_dict())


def test_query_filters():
    assert gpunet.query(max_latency_ms=0.1) == []
    assert {c.name for c in gpunet.query(gpu="a100", distilled=True)} == {"gpunet-p0", "gpunet-p1", "gpunet-d1",
                                                                       "gpunet-d2"}
    assert [c.name for c in gpunet.query(gpu="v100", min_top1=83)] == ["gpunet-d2"]
    assert gpunet.query(gpu="v100", batch=8) == []  # no published batch-8 figures
    with pytest.raises(ValueError, match="max_latency_ms"):
        gpunet.query(max_latency_ms=-1)


def test_names_are_forgiving_and_errors_suggest():
    assert type(gpunet.get_model("GPUNet_0")).__name__ == "GPUNet"
    with pytest.raises(ValueError, match=r"unknown model 'gpunet-3'.*Did you mean 'gpunet-2'.*gpunet-d2"):
        gpunet.get_model("gpunet-3")
    with pytest.raises(ValueError, match=r"unknown device 'v101'.*'v100'.*a100, gv100, v100"):
        gpunet.query(gpu="v101")
    with pytest.raises(ValueError, match="unknown device"):
        gpunet.get_model("gpunet-1", gpu="h100")


def _tiny_spec():
    return {"format": "gpunet-spec/1", "resolution": 64, "family": "standard", "num_classes": 10, "layers": [
        {"type": "head", "in_channels": 3, "out_channels": 16, "act": "relu"},
        {"type": "irb", "in_channels": 16, "out_channels": 24, "stride": 2, "kernel_size": 3, "expansion": 2,
         "se": False, "act": "relu", "stage": 4},
        {"type": "tail", "in_channels": 24, "out_channels": 64}]}


def test_user_registry_merges_devices_models_and_tiers(isolated_home):
    def change(data):
        data["devices"]["my-cpu"] = {"name": "Xeon", "kind": "cpu", "engine": "onnxruntime", "precision": "fp32"}
        data["models"]["found-net"] = {"spec": _tiny_spec(), "top1": 50.0, "params": 1, "resolution": 64}
        data["latency"]["my-cpu"] = {
            "gpunet-0": [{"latency_ms": 12.5, "batch": 1, "precision": "fp32", "engine": "onnxruntime",
                          "kind": "measured", "source": "gpunet bench", "fingerprint": {"cpu": "Xeon"}}],
            "found-net": [{"latency_ms": 0.9, "batch": 1, "precision": "fp32", "engine": "onnxruntime"}]}
        # a user measurement overrides the packaged one with the same batch/precision/engine
        data["latency"]["v100"] = {"gpunet-0": [{"latency_ms": 0.7, "batch": 1, "precision": "fp16",
                                                 "engine": "TensorRT 8", "kind": "measured"}]}

    path = update_user_registry(change)
    assert path == user_registry_path() and path.startswith(str(isolated_home))
    assert "my-cpu" in gpunet.list_devices()
    assert gpunet.list_models()[-1] == "found-net"
    assert [c.name for c in gpunet.query(gpu="my-cpu")] == ["gpunet-0", "found-net"]
    card = get_registry().card("gpunet-0", "my-cpu")
    assert card.measurement["fingerprint"] == {"cpu": "Xeon"}
    assert get_registry().card("gpunet-0", "v100").latency_ms == 0.7
    assert get_registry().card("gpunet-0", "v100", engine="pytorch").latency_ms == 1.82  # untouched
    net = gpunet.get_model("found-net", gpu="my-cpu")
    assert net.num_classes == 10
    with pytest.raises(ValueError, match="no latency tier on device 'my-cpu'"):
        gpunet.get_model("gpunet-1", gpu="my-cpu")


def test_user_registry_rejects_bad_entries_and_keeps_file(isolated_home):
    update_user_registry(lambda d: d["devices"].update({"box": {"name": "box"}}))
    before = open(user_registry_path()).read()
    bad = _tiny_spec()
    bad["layers"][1]["in_channels"] = 99

    with pytest.raises(RegistryError, match="models.broken"):
        update_user_registry(lambda d: d["models"].update({"broken": {"spec": bad}}))
    with pytest.raises(RegistryError, match="latency_ms"):
        update_user_registry(lambda d: d["latency"].update({"box": {"gpunet-0": [{"latency_ms": -3}]}}))
    assert open(user_registry_path()).read() == before
    assert sorted(os.listdir(isolated_home)) == ["registry.json", "registry.json.lock"]


def test_malformed_user_registry_names_file(isolated_home):
    with open(user_registry_path(), "w") as f:
        f.write("{not json")
    with pytest.raises(RegistryError, match="registry.json: not valid JSON"):
        gpunet.list_models()
    with open(user_registry_path(), "w") as f:
        json.dump({"schema": "something-else"}, f)
    with pytest.raises(RegistryError, match="schema"):
        gpunet.list_models()


def test_registry_path_env(tmp_path, monkeypatch):
    p = tmp_path / "elsewhere.json"
    monkeypatch.setenv("GPUNET_REGISTRY", str(p))
    update_user_registry(lambda d: d["devices"].update({"edge": {"name": "edge box"}}))
    assert p.exists() and "edge" in gpunet.list_devices()


@pytest.mark.parametrize("section, entry", [
    ("devices", {"box": "not an object"}),
    ("models", {"net": ["spec.json"]}),
    ("latency", {"gv100": {"gpunet-0": ["fast"]}}),
])
def test_non_object_user_entry_is_a_registry_error(isolated_home, section, entry):
    """A non-dict entry is a RegistryError naming the file and the entry, never a TypeError."""
    with open(user_registry_path(), "w") as f:
        json.dump({"schema": "gpunet-registry/1", section: entry}, f)
    name = next(iter(entry))
    with pytest.raises(RegistryError) as info:
        gpunet.list_models()
    assert user_registry_path() in str(info.value) and f"{section}.{name}" in str(info.value)


def test_bad_spec_file_of_a_user_model_is_a_registry_error(isolated_home):
    (isolated_home / "net.json").write_text('{"format": "gpunet-spec/1", "layers": [')
    with open(user_registry_path(), "w") as f:
        json.dump({"models": {"net": {"spec": "net.json"}}}, f)
    with pytest.raises(RegistryError) as info:
        gpunet.get_model("net")
    msg = str(info.value)
    assert "net.json" in msg and "not valid JSON" in msg and "'net'" in msg


def test_cli_corrupt_registry_is_one_line_exit_2(isolated_home, capsys):
    from gpunet.cli import main

    with open(user_registry_path(), "w") as f:
        f.write('{"models": {')
    assert main(["list"]) == 3
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and user_registry_path() in err[0] and "not valid JSON" in err[0]
