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
    assert main(["list"]) == 3  # malformed input file
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
    assert main(["list"]) == 3


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


def _leaf_commands(parser=None, prefix=()):
    """Every runnable command path: ("list",), ("search", "run"), ..."""
    import argparse

    from gpunet.cli import build_parser

    parser = parser or build_parser()
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subs:
        return [prefix]
    return [leaf for name, p in sorted(subs[0].choices.items()) for leaf in _leaf_commands(p, prefix + (name,))]


def test_every_command_exits_2_on_a_usage_error_and_0_on_help(capsys):
    from gpunet.cli import EXIT_CODES

    leaves = _leaf_commands()
    assert ("deploy",) in leaves and ("search", "run") in leaves and ("weights", "verify") in leaves
    for cmd in leaves:
        with pytest.raises(SystemExit) as e:
            main([*cmd, "--no-such-flag"])
        assert e.value.code == 2, cmd
        err = capsys.readouterr().err  # the unknown flag, or the required ones named first
        assert "unrecognized arguments: --no-such-flag" in err or \
            f"gpunet {' '.join(cmd)}: error: the following arguments are required" in err, cmd
        with pytest.raises(SystemExit) as e:
            main([*cmd, "--help"])
        assert e.value.code == 0, cmd
        assert capsys.readouterr().out.startswith("usage: gpunet " + " ".join(cmd)), cmd
    assert set(EXIT_CODES) == {0, 1, 2, 3, 130}


def test_a_flag_value_the_library_refuses_is_a_usage_error_naming_the_flag(isolated_home, capsys, tmp_path):
    assert main(["sample", "--n", "0", "--out", str(tmp_path / "p.npz")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("gpunet sample: error: --n must be") and not (tmp_path / "p.npz").exists()


def test_global_verbosity_sets_the_log_level_for_every_command(isolated_home, capsys):
    import logging

    assert main(["-v", "list"]) == 0
    assert logging.getLogger().level == logging.INFO
    assert main(["-vv", "list"]) == 0
    assert logging.getLogger().level == logging.DEBUG
    assert main(["-q", "list"]) == 0
    assert logging.getLogger().level == logging.ERROR
    assert main(["list"]) == 0
    assert logging.getLogger().level == logging.WARNING
    logging.getLogger("gpunet.test").info("shown with -v only")
    assert "shown with -v only" not in capsys.readouterr().err
