"""Pareto plot (latency vs top-1, the paper's Fig. 1) from the registry."""
from __future__ import annotations

import os

import pytest

pytest.importorskip("matplotlib")

from gpunet.cli import main  # noqa: E402
from gpunet.plot import _pareto_front, plot_pareto  # noqa: E402
from gpunet.registry import get_registry  # noqa: E402

PNG = b"\x89PNG\r\n\x1a\n"


def test_plot_gv100_png(tmp_path):
    out = tmp_path / "pareto.png"
    assert plot_pareto("gv100", out) == str(out)
    assert out.read_bytes()[:8] == PNG and out.stat().st_size > 10_000


def test_plot_several_devices_svg_has_one_series_each(tmp_path):
    out = tmp_path / "p.svg"
    plot_pareto(["gv100", "a100"], out)
    svg = out.read_text()
    assert "gv100" in svg and "a100" in svg


def test_pareto_front_is_the_non_dominated_models():
    front = [c.name for c in _pareto_front(get_registry().query(gpu="gv100"))]
    # GV100 (paper Table 3): GPUNet-2 (1.76 ms, 82.2) is beaten by GPUNet-D1 (1.25 ms, 82.5)
    assert "gpunet-2" not in front and front[-1] == "gpunet-d2" and front[0] == "gpunet-p0"


def test_plot_bad_input(tmp_path):
    with pytest.raises(ValueError, match="must end in one of"):
        plot_pareto("gv100", tmp_path / "p.bmp")
    with pytest.raises(ValueError, match="unknown device"):
        plot_pareto("gv1000", tmp_path / "p.png")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        plot_pareto("gv100", tmp_path / "nope" / "p.png")
    assert sorted(os.listdir(tmp_path)) == ["gpunet_home"]


def test_cli_plot(tmp_path, capsys):
    out = tmp_path / "x.png"
    assert main(["plot", "--gpu", "gv100", "--gpu", "v100", "--out", str(out), "--logx"]) == 0
    assert out.read_bytes()[:8] == PNG and "wrote" in capsys.readouterr().out
