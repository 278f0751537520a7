"""The CLI's error policy: the library's own errors are one line, bugs keep their traceback."""
import json
import os

import pytest

import gpunet.registry
from gpunet.cli import main
from gpunet.errors import BadInputError, GPUNetError
from gpunet.registry import RegistryError, UnknownNameError, user_registry_path


def _break_registry(monkeypatch, exc):
    def boom():
        raise exc
    monkeypatch.setattr(gpunet.registry, "get_registry", boom)


@pytest.mark.parametrize("exc", [KeyError("devices"), RuntimeError("internal invariant"), TypeError("bad call")])
def test_programming_errors_keep_their_traceback(isolated_home, monkeypatch, exc):
    _break_registry(monkeypatch, exc)
    with pytest.raises(type(exc)):
        main(["list"])


def test_library_errors_are_one_line_with_their_exit_code(isolated_home, capsys):
    with open(user_registry_path(), "w") as f:
        json.dump({"devices": {"box": 3}}, f)
    assert main(["list"]) == 2  # malformed input file
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("gpunet list: error: ") and "devices.box" in err[0]
    os.unlink(user_registry_path())
    assert main(["query", "--gpu", "gv1000"]) == 1  # unknown name: an ordinary error
    assert "unknown device 'gv1000'" in capsys.readouterr().err


def test_debug_flag_and_env_show_the_traceback(isolated_home, monkeypatch):
    with open(user_registry_path(), "w") as f:
        f.write("{")
    with pytest.raises(RegistryError):
        main(["--debug", "list"])
    monkeypatch.setenv("GPUNET_DEBUG", "1")
    with pytest.raises(RegistryError):
        main(["list"])
    monkeypatch.setenv("GPUNET_DEBUG", "0")
    assert main(["list"]) == 2


def test_library_error_types_share_one_base():
    from gpunet.checkpoint import CheckpointError
    from gpunet.export.onnx import ExportError
    from gpunet.search.lut import LUTError
    from gpunet.spec import SpecError
    from gpunet.weights.download import DownloadError
    from gpunet.weights.manifest import ManifestError

    for cls in (CheckpointError, ExportError, LUTError, DownloadError, UnknownNameError):
        assert issubclass(cls, GPUNetError)
    for cls in (SpecError, RegistryError, ManifestError):  # still ValueErrors for existing callers
        assert issubclass(cls, BadInputError) and issubclass(cls, ValueError)
