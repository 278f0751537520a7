"""get_model / load_spec: one rule for "is this a path", pathlib.Path and str alike."""
import pathlib

import pytest

import gpunet
from gpunet.registry import UnknownNameError

SPEC = {"format": "gpunet-spec/1", "resolution": 32, "family": "standard", "num_classes": 7, "layers": [
    {"type": "head", "in_channels": 3, "out_channels": 8, "act": "relu"},
    {"type": "conv", "in_channels": 8, "out_channels": 8, "stride": 1, "kernel_size": 3, "act": "relu"},
    {"type": "tail", "in_channels": 8, "out_channels": 16}]}


@pytest.fixture
def spec_file(tmp_path, monkeypatch):
    import json

    monkeypatch.chdir(tmp_path)
    (tmp_path / "mynet.json").write_text(json.dumps(SPEC))
    (tmp_path / "plainname").write_text(json.dumps(SPEC))  # a file without .json or a slash
    return tmp_path / "mynet.json"


@pytest.mark.parametrize("form", [lambda p: p, str, lambda p: pathlib.Path(p.name), lambda p: p.name,
                                  lambda p: pathlib.Path("plainname"), lambda p: "plainname"])
def test_paths_as_path_or_str_build_the_same_model(spec_file, form):
    arg = form(spec_file)
    assert gpunet.get_model(arg).num_classes == 7
    assert gpunet.load_spec(arg).num_classes == 7


def test_missing_path_is_a_clear_error_and_names_stay_names(spec_file):
    with pytest.raises(FileNotFoundError, match="nothere.json"):
        gpunet.get_model(pathlib.Path("nothere.json"))
    with pytest.raises(FileNotFoundError, match="nothere.json"):
        gpunet.get_model("nothere.json")
    with pytest.raises(UnknownNameError, match="gpunet-9"):
        gpunet.get_model("gpunet-9")
    assert gpunet.load_spec("GPUNet_0").name == "gpunet-0"
