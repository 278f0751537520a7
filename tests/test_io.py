"""gpunet._io: files written atomically get the mode a plain write would, and IR pairs never mismatch."""
from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from gpunet._io import atomic_dir, atomic_path, atomic_write_bytes, atomic_write_text


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.fixture
def umask():
    """Set a umask for the test and restore the caller's afterwards."""
    old = os.umask(0o022)
    try:
        yield lambda m: os.umask(m)
    finally:
        os.umask(old)


@pytest.mark.parametrize("mask", [0o022, 0o027, 0o002])
def test_new_files_follow_the_umask_like_a_plain_open(tmp_path, umask, mask):
    umask(mask)
    plain = tmp_path / "plain.txt"
    plain.write_text("x")
    atomic_write_text(tmp_path / "a.txt", "x")
    atomic_write_bytes(tmp_path / "b.bin", b"x")
    with atomic_path(tmp_path / "c.onnx") as tmp:
        with open(tmp, "wb") as f:
            f.write(b"x")
    assert _mode(plain) == 0o666 & ~mask
    for name in ("a.txt", "b.bin", "c.onnx"):
        assert _mode(tmp_path / name) == _mode(plain), name


def test_replacing_a_file_keeps_its_mode(tmp_path, umask):
    umask(0o077)  # a new file would be 0600: the replaced file's 0644 must win
    target = tmp_path / "registry.json"
    target.write_text("old")
    os.chmod(target, 0o644)
    atomic_write_text(target, "new")
    assert target.read_text() == "new" and _mode(target) == 0o644
    os.chmod(target, 0o640)
    atomic_write_bytes(target, b"newer")
    assert _mode(target) == 0o640


def test_failed_write_leaves_the_old_file_and_no_temp(tmp_path):
    (tmp_path / "d").mkdir()
    target = tmp_path / "d" / "f.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            open(tmp, "w").write("half")
            raise RuntimeError("boom")
    assert target.read_text() == "old" and os.listdir(tmp_path / "d") == ["f.txt"]


def test_a_folder_is_replaced_whole_or_not_at_all(tmp_path, umask):
    umask(0o022)
    dest = tmp_path / "out" / "model"
    with atomic_dir(dest) as tmp:
        (Path(tmp) / "a.txt").write_text("one")
        assert not dest.exists()  # nothing at the destination while it is written
    assert sorted(p.name for p in dest.iterdir()) == ["a.txt"] and _mode(dest) == 0o755
    with pytest.raises(RuntimeError):
        with atomic_dir(dest) as tmp:
            (Path(tmp) / "b.txt").write_text("half")
            raise RuntimeError("interrupted")
    assert sorted(p.name for p in dest.iterdir()) == ["a.txt"]  # the old folder, untouched
    with atomic_dir(dest) as tmp:
        (Path(tmp) / "b.txt").write_text("two")
    assert sorted(p.name for p in dest.iterdir()) == ["b.txt"]  # replaced, not merged
    assert sorted(p.name for p in dest.parent.iterdir()) == ["model"]  # no temp or old folder left


def test_openvino_pair_is_never_mismatched_after_a_crash(tmp_path, monkeypatch):
    """A crash while committing the new IR leaves the old pair or no .xml, never old .xml + new .bin."""
    pytest.importorskip("openvino")
    import numpy as np
    import torch
    from torch import nn

    import gpunet._io
    from gpunet.export.openvino import export_openvino

    def tiny(seed, channels):
        torch.manual_seed(seed)
        return nn.Sequential(nn.Conv2d(3, channels, 3, padding=1), nn.ReLU()).eval()

    xml, binf = tmp_path / "m.xml", tmp_path / "m.bin"
    export_openvino(tiny(0, 4), xml, input_shape=(1, 3, 16, 16), check=False)
    old = (xml.read_bytes(), binf.read_bytes())

    real_replace = os.replace
    calls = []

    def crash_on_second(src, dst):  # dies after the first of the two final files is in place
        if os.fspath(dst) in (str(xml), str(binf)):
            calls.append(os.fspath(dst))
            if len(calls) == 2:
                raise OSError("simulated crash")
        return real_replace(src, dst)

    monkeypatch.setattr(gpunet._io.os, "replace", crash_on_second)
    with pytest.raises(OSError, match="simulated crash"):
        export_openvino(tiny(1, 8), xml, input_shape=(1, 3, 16, 16), check=False)
    monkeypatch.setattr(gpunet._io.os, "replace", real_replace)
    assert len(calls) == 2  # the crash hit the commit, not an earlier step
    # whatever .xml is there is the old one with the old .bin (or there is none)
    assert not xml.exists() or (xml.read_bytes(), binf.read_bytes()) == old
    assert not [f for f in os.listdir(tmp_path) if f.endswith(".tmp")]
    export_openvino(tiny(1, 8), xml, input_shape=(1, 3, 16, 16), check=False)  # the next export completes
    import openvino as ov

    compiled = ov.Core().compile_model(ov.Core().read_model(str(xml)), "CPU")
    assert compiled(np.zeros((1, 3, 16, 16), np.float32))[compiled.output(0)].shape == (1, 8, 16, 16)
