"""Spec parsing, validation and round trips, NVIDIA's files read exactly as published."""
import dataclasses
import json
import os

import pytest

from gpunet.nvidia import load_any as load_spec  # our format and NVIDIA's (gpunet.spec reads only ours)
from gpunet.nvidia import spec_from_nvidia_config, spec_to_nvidia_config
from gpunet.registry import Registry
from gpunet.spec import LayerSpec, NetworkSpec, SpecError, parse_spec, save_spec

CONFIGS = ["0.65ms.json", "0.85ms.json", "1.75ms.json", "0.5ms-D.json", "0.8ms-D.json", "1.25ms-D.json",
           "2.25ms-D.json"]


@pytest.mark.parametrize("config", CONFIGS)
def test_nvidia_config_loads_as_published_and_matches_packaged_spec(reference_dir, nvidia_models, config):
    path = reference_dir / "nvidia_configs" / config
    spec = load_spec(str(path))
    nvidia_name = next(n for n, m in nvidia_models.items() if m["config"] == config)
    assert spec.resolution == nvidia_models[nvidia_name]["input_resolution"]
    hub_name = nvidia_name.lower()
    assert Registry().spec(hub_name).replace(name=None) == spec


def test_nvidia_quirks_are_tolerated(reference_dir):
    raw = (reference_dir / "nvidia_configs" / "0.8ms-D.json").read_text()
    assert raw.startswith("\n") and "\t" in raw  # leading newline, tabs
    assert load_spec(str(reference_dir / "nvidia_configs" / "0.8ms-D.json")).stem.act == "relu"
    assert '"stage:"' in (reference_dir / "nvidia_configs" / "2.25ms-D.json").read_text()  # misspelled key
    spec = load_spec(str(reference_dir / "nvidia_configs" / "2.25ms-D.json"))
    assert spec.family == "distill"
    assert spec.stem.kind == "head_large"
    assert spec.tail.out_channels == 1152 and spec.tail.pre_logits_channels == 1984


@pytest.mark.parametrize("config", CONFIGS)
def test_round_trips(reference_dir, config, tmp_path):
    spec = load_spec(str(reference_dir / "nvidia_configs" / config))
    # our format
    assert parse_spec(json.loads(spec.to_json())) == spec
    path = tmp_path / "spec.json"
    save_spec(spec, path)
    assert load_spec(str(path)) == spec
    # NVIDIA's format, both ways
    nv = spec_to_nvidia_config(spec)
    assert spec_from_nvidia_config(nv) == spec
    original = json.loads((reference_dir / "nvidia_configs" / config).read_text())
    for ours, theirs in zip(nv, original):
        theirs = {k: v for k, v in theirs.items() if k != "stage:"}
        assert {k: v for k, v in ours.items() if k in theirs} == theirs


def test_fingerprint_identifies_architecture():
    a = Registry().spec("gpunet-0")
    assert a.fingerprint() == a.replace(name="other").fingerprint()
    assert a.fingerprint() != a.replace(resolution=256).fingerprint()
    assert len(a.fingerprint()) == 64


def _small_spec_dict():
    return {
        "format": "gpunet-spec/1", "resolution": 64, "family": "standard", "num_classes": 10,
        "layers": [
            {"type": "head", "in_channels": 3, "out_channels": 16, "act": "relu"},
            {"type": "fused_irb", "in_channels": 16, "out_channels": 24, "stride": 2, "kernel_size": 3,
             "expansion": 4, "se": True, "act": "swish", "stage": 2},
            {"type": "irb", "in_channels": 24, "out_channels": 24, "stride": 1, "kernel_size": 5,
             "expansion": 3, "se": False, "act": "relu", "stage": 4},
            {"type": "tail", "in_channels": 24, "out_channels": 64},
        ],
    }


def test_malformed_json_names_the_file(tmp_path):
    p = tmp_path / "broken.json"
    p.write_text('{"layers": [')
    with pytest.raises(SpecError, match="broken.json.*not valid JSON"):
        load_spec(str(p))


@pytest.mark.parametrize("mutate, index, field", [
    (lambda d: d["layers"][2].update(in_channels=32), 2, "in_channels"),
    (lambda d: d["layers"][1].update(stride=3), 1, "stride"),
    (lambda d: d["layers"][1].update(kernel_size=4), 1, "kernel_size"),
    (lambda d: d["layers"][2].update(act="gelu"), 2, "act"),
    (lambda d: d["layers"][2].update(expansion=-1), 2, "expansion"),
    (lambda d: d["layers"][1].update(type="mlp"), 1, "type"),
    (lambda d: d["layers"][3].pop("out_channels"), 3, "out_channels"),
    # every field is type-checked: no truthy strings, no stage of any type
    (lambda d: d["layers"][2].update(se="no"), 2, "se"),
    (lambda d: d["layers"][2].update(se=1), 2, "se"),
    (lambda d: d["layers"][2].update(stage="4"), 2, "stage"),
    (lambda d: d["layers"][2].update(stage=-1), 2, "stage"),
    (lambda d: d["layers"][1].update(stride=True), 1, "stride"),
    (lambda d: d["layers"][2].update(expansion="3"), 2, "expansion"),
    (lambda d: d["layers"][2].update(act=None), 2, "act"),
    (lambda d: d["layers"][3].update(pre_logits_channels=2.5), 3, "pre_logits_channels"),
    # fields the layer kind ignores are refused, not silently dropped
    (lambda d: d["layers"][0].update(kernel_size=7), 0, "kernel_size"),  # the stem is always 3x3
    (lambda d: d["layers"][0].update(se=True), 0, "se"),
    (lambda d: d["layers"][3].update(act="relu"), 3, "act"),
    (lambda d: d["layers"][3].update(stride=2), 3, "stride"),
    (lambda d: d["layers"][3].update(stage=9), 3, "stage"),
    (lambda d: d["layers"][1].update(type="conv"), 1, "expansion"),
    (lambda d: d["layers"][1].update(type=["irb"]), 1, "type"),
])
def test_bad_entries_name_file_entry_and_field(tmp_path, mutate, index, field):
    d = _small_spec_dict()
    mutate(d)
    p = tmp_path / "bad.json"
    p.write_text(json.dumps(d))
    with pytest.raises(SpecError) as e:
        load_spec(str(p))
    assert e.value.index == index and e.value.field == field
    assert "bad.json" in str(e.value) and f"entry {index}" in str(e.value) and field in str(e.value)


@pytest.mark.parametrize("key, value", [("resolution", "64"), ("resolution", 64.0), ("num_classes", True),
                                        ("family", ["standard"]), ("name", 5)])
def test_bad_top_level_fields_name_the_field(tmp_path, key, value):
    d = _small_spec_dict()
    d[key] = value
    p = tmp_path / "bad.json"
    p.write_text(json.dumps(d))
    with pytest.raises(SpecError) as e:
        load_spec(str(p))
    assert e.value.field == key and "bad.json" in str(e.value)


def _distill_spec_dict():
    d = _small_spec_dict()
    d["family"] = "distill"
    del d["layers"][1]
    d["layers"][1].update(in_channels=16, se=False)
    d["layers"][2].update(pre_logits_channels=128)
    return d


def test_distill_tail_needs_pre_logits_channels():
    parse_spec(_distill_spec_dict())
    d = _distill_spec_dict()
    del d["layers"][-1]["pre_logits_channels"]
    with pytest.raises(SpecError) as e:
        parse_spec(d, source="d.json")
    assert (e.value.index, e.value.field) == (2, "pre_logits_channels") and "d.json" in str(e.value)


def test_validate_checks_specs_built_in_code():
    """Specs made in Python (search space, NVIDIA reader) get the same checks as files."""
    good = parse_spec(_small_spec_dict())
    layers = list(good.layers)
    for i, change, fld in [(2, dict(se="no"), "se"), (2, dict(stage=1.5), "stage"), (0, dict(kernel_size=7), "kernel_size"),
                           (3, dict(act="relu"), "act")]:
        bad = good.replace(layers=tuple(layers[:i] + [dataclasses.replace(layers[i], **change)] + layers[i + 1:]))
        with pytest.raises(SpecError) as e:
            bad.validate()
        assert (e.value.index, e.value.field) == (i, fld)


def test_nvidia_format_errors_name_entry(reference_dir, tmp_path):
    cfg = json.loads((reference_dir / "nvidia_configs" / "0.65ms.json").read_text())
    cfg[5]["num_in_channels"] = 48
    p = tmp_path / "nv.json"
    p.write_text(json.dumps(cfg))
    with pytest.raises(SpecError, match=r"nv.json, entry 5, field 'num_in_channels'.*does not match"):
        load_spec(str(p))
    cfg = json.loads((reference_dir / "nvidia_configs" / "0.65ms.json").read_text())
    cfg[3]["bogus"] = 1
    p.write_text(json.dumps(cfg))
    with pytest.raises(SpecError, match=r"entry 3.*bogus"):
        load_spec(str(p))
    with pytest.raises(SpecError, match="data"):
        spec_from_nvidia_config(cfg[1:])


def test_structure_rules():
    d = _small_spec_dict()
    d["layers"] = d["layers"][1:]  # no head
    with pytest.raises(SpecError, match="first layer"):
        parse_spec(d)
    d = _small_spec_dict()
    d["family"] = "distill"
    with pytest.raises(SpecError, match="distill family only has 'irb'"):
        parse_spec(d)


def test_save_spec_leaves_nothing_behind_on_failure(tmp_path, monkeypatch):
    bad = NetworkSpec(layers=(LayerSpec("head", 3, 8, stride=2), LayerSpec("tail", 16, 32)))
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(SpecError):
        save_spec(bad, out / "spec.json")
    assert os.listdir(out) == []
    # a failure in the middle of the write (disk full once the bytes are in the temp file)
    # leaves the previous file intact and no temp file beside it
    old, new = Registry().spec("gpunet-0"), Registry().spec("gpunet-1")
    save_spec(old, out / "spec.json")
    before = (out / "spec.json").read_bytes()

    def disk_full(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", disk_full)
    with pytest.raises(OSError, match="No space"):
        save_spec(new, out / "spec.json")
    monkeypatch.undo()
    assert os.listdir(out) == ["spec.json"] and (out / "spec.json").read_bytes() == before
    assert load_spec(out / "spec.json") == old


def test_load_spec_accepts_hub_names():
    import gpunet

    assert gpunet.load_spec("GPUNet_1") == Registry().spec("gpunet-1")
    with pytest.raises(ValueError, match="unknown model"):
        gpunet.load_spec("gpunet-9")
    with pytest.raises(FileNotFoundError):
        gpunet.load_spec("missing/file.json")


def test_spatial_sizes_reproduce_unpadded_fused_convs():
    spec = Registry().spec("gpunet-0")
    sizes = spec.spatial_sizes()
    assert sizes[0] == 160 and sizes[3] == 79 and sizes[5] == 39 and sizes[-1] == 10
